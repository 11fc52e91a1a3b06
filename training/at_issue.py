"""The at-issue protocol (`arrisk backtest --at-issue`): each invoice scored once, on its invoice date.

The published figures on the IBM sample are measured this way, so ours can stand beside them:
- every invoice gets one row, its features as known at the end of its invoice date (the cutoff is the
  invoice date: the invoice itself is known, nothing later is). An invoice settled on its own invoice date
  is no longer open at the end of that day, so it has no row (4 of the IBM sample's 2,466);
- the invoices are split in time: the earliest `train_share` (70%) by invoice date train, the rest test.
  The split date is the last invoice date of the training part;
- the models are trained on the training rows with their labels as known on the split date (an invoice
  not settled by then is censored, exactly as the month-end backtest censors at its origin), and tested on
  the later invoices with their outcomes seen in full;
- deterioration is a customer-level model with no invoice date: it is tested as in the month-end backtest,
  at the last month end on or before the split date, so that `metrics.json` keeps every key.

Pay dates are counted from the invoice date (`days_to_pay` of a row is from its cutoff), so the pay-date MAE
is the one published "at issue". The month-end backtest stays the one the promotion gate uses: it scores
items as a collector meets them, at any age.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from features import FeatureConfig, build_snapshots
from features.labels import last_event_date
from ledger import Ledger, LedgerError, Problem
from training.backtest import ModelSettings, combined_backtest, evaluate_origin, fit_models
from training.datasets import (
    Datasets,
    censor_customer_labels,
    censor_invoice_labels,
    customer_rows,
    due_dates,
    in_key_order,
    monthly_cutoffs,
)

TRAIN_SHARE = 0.7
# Invoice dates whose snapshots are built together: each build encodes the ledger's keys once.
DATES_PER_BUILD = 32
PROTOCOL = "at_issue"


def issue_dates(ledger: Ledger) -> list[pd.Timestamp]:
    """The distinct dates on which invoices (not credit memos) were issued, in order."""
    invoices = ledger.invoices[ledger.invoices["doc_type"] == "invoice"]
    return sorted(pd.to_datetime(invoices["invoice_date"].unique()))


def at_issue_rows(ledger: Ledger, config: FeatureConfig | None = None, observation_end: pd.Timestamp | None = None,
                  progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """One row per invoice: its features as of its own invoice date (`cutoff`), and its labels observed up
    to `observation_end` (the ledger's last event by default); rows in (cutoff, invoice_id) order."""
    config = config or FeatureConfig()
    end = last_event_date(ledger) if observation_end is None else pd.Timestamp(observation_end)
    dates = issue_dates(ledger)
    frames = []
    for start in range(0, len(dates), DATES_PER_BUILD):
        chunk = dates[start:start + DATES_PER_BUILD]
        if progress:
            progress(f"at-issue rows {chunk[0]:%Y-%m-%d} .. {chunk[-1]:%Y-%m-%d}")
        snapshots = build_snapshots(ledger, chunk, config, observation_end=end)
        frames.append(snapshots[issued_on_cutoff(snapshots)])
    rows = pd.concat(frames, ignore_index=True)
    rows["due_date"] = due_dates(rows)
    return in_key_order(rows, "invoice_id")


def issued_on_cutoff(snapshots: pd.DataFrame) -> pd.Series:
    """Rows of invoices (not credit memos) issued on their snapshot's cutoff date."""
    return (snapshots["invoice_age_days"] == 0) & (snapshots["is_credit_memo"] == 0)


def split_date(rows: pd.DataFrame, train_share: float = TRAIN_SHARE) -> pd.Timestamp:
    """The last invoice date of the training part: the earliest `train_share` of invoices by invoice date.
    All invoices of one date fall on the same side, so the share is reached or just passed."""
    if not 0 < train_share < 1:
        raise ValueError(f"train_share must lie strictly between 0 and 1, got {train_share}")
    dates = np.sort(rows["cutoff"].to_numpy())
    if len(np.unique(dates)) < 2:
        raise LedgerError(Problem("ledger", None, None, "an at-issue backtest needs invoices issued on at least "
                                  "two dates"), title="cannot backtest")
    split = pd.Timestamp(dates[max(0, int(np.ceil(train_share * len(dates))) - 1)])
    return min(split, pd.Timestamp(dates[dates < dates[-1]][-1]))  # at least one date is left to test


def training_rows(rows: pd.DataFrame, split: pd.Timestamp) -> pd.DataFrame:
    """Invoices issued on or before `split`, with their labels as known on that day."""
    return censor_invoice_labels(rows[rows["cutoff"] <= split], split)


def held_out_rows(rows: pd.DataFrame, split: pd.Timestamp) -> pd.DataFrame:
    """Invoices issued after `split`, with their outcomes observed in full."""
    return rows[rows["cutoff"] > split]


def customer_origin(customers: pd.DataFrame, split: pd.Timestamp) -> pd.Timestamp | None:
    """The month end on or before `split` at which deterioration is tested (None when there is none with
    earlier month ends to train on)."""
    cutoffs = np.sort(customers["cutoff"].unique())
    usable = cutoffs[cutoffs <= split]
    return pd.Timestamp(usable[-1]) if len(usable) >= 2 else None


def backtest_at_issue(ledger: Ledger, *, until: pd.Timestamp | None = None, train_share: float = TRAIN_SHARE,
                      settings: ModelSettings | None = None, config: FeatureConfig | None = None,
                      progress: Callable[[str], None] | None = None, rows: pd.DataFrame | None = None):
    """The at-issue backtest of the three models and their baselines (see the module docstring); a
    `training.pipeline.BacktestRun` whose metrics carry `protocol: at_issue` and the split. `rows` are the
    ledger's `at_issue_rows` when the caller already built them (with the same config)."""
    from training.pipeline import BacktestRun

    settings = settings or ModelSettings()
    config = config or FeatureConfig(late_grace_days=settings.late_grace_days)
    started = time.perf_counter()
    if until is not None:
        from features import known_at

        ledger = known_at(ledger, until)
    end = last_event_date(ledger)
    rows = at_issue_rows(ledger, config, end, progress) if rows is None else rows
    customers = customer_rows(ledger, monthly_cutoffs(ledger), config, end)
    datasets = Datasets(rows, customers, end)
    built = time.perf_counter()

    split = split_date(rows, train_share)
    origin = customer_origin(customers, split)
    if origin is None:
        train_customers, test_customers = customers.iloc[:0], customers.iloc[:0]
    else:
        train_customers = censor_customer_labels(customers[customers["cutoff"] < origin], origin)
        test_customers = customers[customers["cutoff"] == origin]
    if progress:
        progress(f"fit on {int((rows['cutoff'] <= split).sum()):,} invoices issued by {split:%Y-%m-%d}")
    fitted = fit_models(training_rows(rows, split), train_customers, settings)
    result = evaluate_origin(fitted, held_out_rows(rows, split), test_customers, split, settings)
    backtest = combined_backtest(datasets, [split], [result])
    backtest.metrics["protocol"] = PROTOCOL
    backtest.metrics["at_issue"] = {
        "split_date": f"{split:%Y-%m-%d}", "train_share": train_share,
        "train_invoices": int((rows["cutoff"] <= split).sum()), "test_invoices": int((rows["cutoff"] > split).sum()),
        "deterioration_origin": None if origin is None else f"{origin:%Y-%m-%d}",
    }
    return BacktestRun(ledger, datasets, backtest,
                       {"datasets": built - started, "backtest": time.perf_counter() - built})
