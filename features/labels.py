"""Labels: what happened after `as_of`, read from the FULL ledger up to an explicit `observation_end`.

Kept apart from the features on purpose: no feature module imports this one. Definitions, after
DESIGN.md §1 and §5 and lifelines' censoring conventions:

Invoice labels, for every document open at the end of `as_of`:
- `paid_date`: the date its open amount reached zero by payments (its `cleared_date`), when that is on
  or before `observation_end`; NaT while still open then (censored). A document with a write-off is
  never paid: `paid_date` NaT, `written_off` True.
- `paid`: the event flag (paid_date known). `days_to_pay`: days from `as_of` to the paid date, or to
  `observation_end` when not paid (the censoring time).
- `days_late`: paid date minus due date; when not paid, the lower bound it has already reached:
  (observation_end + 1 day) - due date, since the earliest possible payment is the day after
  observation ends. Read it together with `paid` (the convention `models.late_payment` expects).
- `late`: 1.0 when days late > `late_grace_days`, 0.0 when paid within the grace, and also 1.0 for an
  unpaid document whose lower bound already exceeds the grace or that was written off; NaN while it
  cannot be known yet.
- `paid_within_{h}d`: 1.0 when paid on or before as_of + h days, 0.0 when paid later or known unpaid
  at that date (observation_end >= as_of + h, or written off), NaN when observation ends before.

Customer labels, for every customer:
- `already_deteriorated`: at `as_of` the customer has an open invoice more than
  `deterioration_days_past_due` days past due. Those customers have nothing left to predict, so their
  label is NaN and the deterioration model is trained on the others (DESIGN §1: "before they go 90+").
- `deteriorates_{h}d`: 1.0 when, on some day in (as_of, as_of + h], an invoice of the customer is open
  and more than `deterioration_days_past_due` days past due, or a document of the customer is written
  off; 0.0 when neither happens and the whole window is observed; NaN when observation ends before
  the window does and nothing happened yet, or when already deteriorated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.config import FeatureConfig
from ledger import Ledger, LedgerError, Problem

DAY = pd.Timedelta(days=1)

# Columns whose dates mark when something happened (not due or promised dates, which are plans).
EVENT_DATES = {
    "invoices": ("invoice_date", "cleared_date"),
    "payments": ("received_date",),
    "payment_applications": ("applied_date",),
    "disputes": ("opened_date", "resolved_date"),
    "promises": ("made_date",),
    "writeoffs": ("date",),
    "dunning_notices": ("issued_date", "known_date"),
    "contacts": ("contact_date",),
}


def last_event_date(ledger: Ledger) -> pd.Timestamp:
    """The last date on which anything happened in the ledger: the default end of observation."""
    tables = ledger.tables()
    latest = [tables[name][column].max() for name, columns in EVENT_DATES.items() for column in columns
              if name in tables and column in tables[name] and len(tables[name])]
    latest = [date for date in latest if pd.notna(date)]
    if not latest:
        raise ValueError("the ledger has no dated events, so observation has no end")
    return max(latest)


def open_at(invoices: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """True for documents issued on or before `as_of` and not cleared by the end of that day."""
    return (invoices["invoice_date"] <= as_of) & ~(invoices["cleared_date"] <= as_of)


def invoice_labels(ledger: Ledger, as_of: pd.Timestamp, observation_end: pd.Timestamp | None = None,
                   config: FeatureConfig | None = None) -> pd.DataFrame:
    """Labels of every document open at `as_of` (see the module docstring), one row per invoice_id."""
    config = config or FeatureConfig()
    as_of = pd.Timestamp(as_of)
    end = _observation_end(ledger, as_of, observation_end)
    invoices = ledger.invoices[open_at(ledger.invoices, as_of)].sort_values("invoice_id")
    written_off_on = invoices["invoice_id"].map(ledger.writeoffs.groupby("invoice_id", sort=False)["date"].min())
    written_off = written_off_on <= end
    has_writeoff = written_off_on.notna()
    paid_date = invoices["cleared_date"].where((invoices["cleared_date"] <= end) & ~has_writeoff)
    paid = paid_date.notna()
    days_late = ((paid_date.where(paid, end + DAY) - invoices["due_date"]) / DAY).astype(float)
    # A written-off document is never paid, so it is late whatever the lower bound says yet.
    known_late = (days_late > config.late_grace_days) | written_off
    late = pd.Series(np.where(known_late, 1.0, np.where(paid, 0.0, np.nan)), index=invoices.index)
    labels = pd.DataFrame({
        "invoice_id": invoices["invoice_id"],
        "paid_date": paid_date.astype("datetime64[ns]"),
        "paid": paid,
        "days_to_pay": ((paid_date.where(paid, end) - as_of) / DAY).astype(float),
        "days_late": days_late,
        "late": late,
        "written_off": written_off,
    })
    for days in config.paid_within_days:
        horizon = as_of + days * DAY
        known_unpaid = (paid & (paid_date > horizon)) | (~paid & ((end >= horizon) | written_off))
        labels[f"paid_within_{days}d"] = np.where(paid & (paid_date <= horizon), 1.0,
                                                  np.where(known_unpaid, 0.0, np.nan))
    return labels.reset_index(drop=True)


def customer_labels(ledger: Ledger, as_of: pd.Timestamp, observation_end: pd.Timestamp | None = None,
                    config: FeatureConfig | None = None) -> pd.DataFrame:
    """Deterioration labels of every customer (see the module docstring), one row per customer_id."""
    config = config or FeatureConfig()
    as_of = pd.Timestamp(as_of)
    end = _observation_end(ledger, as_of, observation_end)
    horizon = config.deterioration_horizon_days
    window_end = min(as_of + horizon * DAY, end)
    invoices = ledger.invoices[ledger.invoices["doc_type"] == "invoice"]
    first_bad_day = invoices["due_date"] + (config.deterioration_days_past_due + 1) * DAY
    already = open_at(invoices, as_of) & (first_bad_day <= as_of)
    # The first day inside the window on which the invoice is past the limit; it must still be open then.
    first_in_window = first_bad_day.where(first_bad_day > as_of, as_of + DAY)
    goes_bad = (first_in_window <= window_end) & ~(invoices["cleared_date"] <= first_in_window)
    customer_of = ledger.invoices.set_index("invoice_id")["customer_id"]
    writeoffs = ledger.writeoffs[(ledger.writeoffs["date"] > as_of) & (ledger.writeoffs["date"] <= window_end)]
    deteriorated = set(invoices.loc[goes_bad, "customer_id"]) | set(writeoffs["invoice_id"].map(customer_of))
    customers = ledger.customers["customer_id"].sort_values()
    already_deteriorated = customers.isin(invoices.loc[already, "customer_id"])
    event = customers.isin(deteriorated)
    fully_observed = end >= as_of + horizon * DAY
    label = np.where(already_deteriorated, np.nan, np.where(event, 1.0, 0.0 if fully_observed else np.nan))
    return pd.DataFrame({
        "customer_id": customers.to_numpy(),
        "already_deteriorated": already_deteriorated.to_numpy(),
        f"deteriorates_{horizon}d": label,
    })


def label_names(config: FeatureConfig | None = None) -> dict[str, list[str]]:
    """Label column names by level ("invoice", "customer") for `config`."""
    config = config or FeatureConfig()
    return {
        "invoice": ["paid_date", "paid", "days_to_pay", "days_late", "late", "written_off",
                    *[f"paid_within_{days}d" for days in config.paid_within_days]],
        "customer": ["already_deteriorated", f"deteriorates_{config.deterioration_horizon_days}d"],
    }


def _observation_end(ledger: Ledger, as_of: pd.Timestamp, observation_end: pd.Timestamp | None) -> pd.Timestamp:
    end = last_event_date(ledger) if observation_end is None else pd.Timestamp(observation_end)
    if end < as_of:
        raise LedgerError(Problem("as_of", None, None, f"{as_of:%Y-%m-%d} is after the end of observation "
                                  f"({end:%Y-%m-%d}): nothing after it is known to label"), title="bad cutoff")
    return end
