"""Training datasets: snapshots at monthly cutoffs, and their labels censored at a backtest origin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import FeatureConfig, build_customer_snapshots, build_snapshots
from features.labels import last_event_date
from ledger import Ledger

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Datasets:
    """Invoice and customer snapshots with full-observation labels, and where observation ends."""

    invoices: pd.DataFrame
    customers: pd.DataFrame
    observation_end: pd.Timestamp


def monthly_cutoffs(ledger: Ledger, warmup_months: int = 3, until: pd.Timestamp | None = None) -> list[pd.Timestamp]:
    """Month ends from `warmup_months` after the first invoice to the end of observation (or `until`)."""
    end = last_event_date(ledger) if until is None else min(pd.Timestamp(until), last_event_date(ledger))
    return month_ends_between(ledger.invoices["invoice_date"].min(), end, warmup_months)


def month_ends_between(first_invoice: pd.Timestamp, end: pd.Timestamp, warmup_months: int = 3) -> list[pd.Timestamp]:
    """Month ends from `warmup_months` after `first_invoice` to `end`: the cutoffs of `monthly_cutoffs`,
    from the two dates a partitioned ledger combines from its buckets."""
    start = (first_invoice + pd.offsets.MonthEnd(warmup_months)).normalize()
    return list(pd.date_range(start, end, freq="ME"))


def backtest_origins(cutoffs: Sequence[pd.Timestamp], observation_end: pd.Timestamp, count: int = 3,
                     label_days: int = 91, min_training_cutoffs: int = 3) -> list[pd.Timestamp]:
    """The last `count` cutoffs whose whole label window is observed and with enough history before."""
    usable = [c for i, c in enumerate(cutoffs) if c + label_days * DAY <= observation_end and i >= min_training_cutoffs]
    return usable[-count:]


def build_datasets(ledger: Ledger, cutoffs: Sequence[pd.Timestamp], config: FeatureConfig | None = None,
                   progress: bool = False, observation_end: pd.Timestamp | None = None,
                   peers: Mapping[pd.Timestamp, pd.DataFrame] | None = None) -> Datasets:
    """Invoice and customer snapshots at `cutoffs`, plus the columns training needs: due date, the
    deterioration event date and a `deteriorates` label under one name; rows in key order (`in_key_order`).

    `observation_end` defaults to the ledger's last event; a part of a ledger (one bucket) passes the whole
    ledger's, so that its labels are censored where the whole ledger's are, and the peer sums of all
    customers per cutoff (`features.peer_sums_at`, added over the buckets)."""
    config = config or FeatureConfig()
    end = last_event_date(ledger) if observation_end is None else pd.Timestamp(observation_end)
    invoices = build_snapshots(ledger, cutoffs, config, observation_end=end, progress=progress, peers=peers)
    invoices["due_date"] = due_dates(invoices)
    customers = customer_rows(ledger, cutoffs, config, end, progress, peers)
    return Datasets(in_key_order(invoices, "invoice_id"), customers, end)


def due_dates(invoices: pd.DataFrame) -> pd.Series:
    """Each snapshot row's due date, from its cutoff and days to or past due."""
    return invoices["cutoff"] + (invoices["days_to_due"] - invoices["days_past_due"]) * DAY


def customer_rows(ledger: Ledger, cutoffs: Sequence[pd.Timestamp], config: FeatureConfig, end: pd.Timestamp,
                  progress: bool = False, peers: Mapping[pd.Timestamp, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Customer snapshots at `cutoffs` with the deterioration label under one name (`deteriorates`) and the
    next deterioration date, in key order."""
    customers = build_customer_snapshots(ledger, cutoffs, config, observation_end=end, progress=progress,
                                         peers=peers)
    customers["deteriorates"] = customers[f"deteriorates_{config.deterioration_horizon_days}d"]
    customers["deterioration_date"] = next_deterioration_date(ledger, customers[["customer_id", "cutoff"]], config)
    return in_key_order(customers, "customer_id")


def in_key_order(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """`rows` sorted by cutoff then `key`, with a fresh index: one order whoever built the rows (the whole
    ledger at once or its buckets one by one), since LightGBM fits depend on the order of their rows."""
    return rows.sort_values(["cutoff", key], kind="stable", ignore_index=True)


def deterioration_dates(ledger: Ledger, config: FeatureConfig) -> pd.DataFrame:
    """Every (customer_id, date) on which a customer newly went past the deterioration limit on an
    open invoice, or had a document written off."""
    invoices = ledger.invoices[ledger.invoices["doc_type"] == "invoice"]
    bad_day = invoices["due_date"] + (config.deterioration_days_past_due + 1) * DAY
    still_open = ~(invoices["cleared_date"] <= bad_day)
    overdue = pd.DataFrame({"customer_id": invoices["customer_id"], "date": bad_day})[still_open]
    customer_of = ledger.invoices.set_index("invoice_id")["customer_id"]
    written = pd.DataFrame({"customer_id": ledger.writeoffs["invoice_id"].map(customer_of),
                            "date": ledger.writeoffs["date"]})
    return pd.concat([overdue, written]).dropna().sort_values("date").reset_index(drop=True)


def next_deterioration_date(ledger: Ledger, keys: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """Per (customer_id, cutoff) row, the first deterioration date after the cutoff (NaT when none)."""
    events = deterioration_dates(ledger, config).rename(columns={"date": "event_date"})
    events["cutoff"] = events["event_date"] - DAY  # an event after the cutoff: strictly later date
    rows = keys.reset_index().sort_values("cutoff")
    matched = pd.merge_asof(rows, events.sort_values("cutoff"), on="cutoff", by="customer_id",
                            direction="forward")
    return matched.set_index("index")["event_date"].reindex(keys.index).astype("datetime64[ns]")


def censor_invoice_labels(invoices: pd.DataFrame, origin: pd.Timestamp) -> pd.DataFrame:
    """Invoice labels as they were known at `origin`: payments after it are unknown (censored)."""
    paid = invoices["paid_date"] <= origin
    paid_date = invoices["paid_date"].where(paid)
    return invoices.assign(
        paid=paid,
        paid_date=paid_date,
        days_to_pay=((paid_date.where(paid, origin) - invoices["cutoff"]) / DAY).astype(float),
        days_late=((paid_date.where(paid, origin + DAY) - invoices["due_date"]) / DAY).astype(float),
        observed_days_past_due=((origin - invoices["due_date"]) / DAY).astype(float),
    )


def censor_customer_labels(customers: pd.DataFrame, origin: pd.Timestamp, horizon_days: int = 90) -> pd.DataFrame:
    """Deterioration labels as known at `origin`: an event after it is unknown, and a window not yet
    over at `origin` with no event so far is undetermined."""
    window_end = customers["cutoff"] + horizon_days * DAY
    event_seen = customers["deterioration_date"] <= window_end.clip(upper=origin)
    window_over = window_end <= origin
    already = customers["already_deteriorated"].astype(bool)
    label = np.where(already, np.nan, np.where(event_seen, 1.0, np.where(window_over, 0.0, np.nan)))
    return customers.assign(deteriorates=label)

