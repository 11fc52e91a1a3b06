"""Issue 21's measure: backtest the escalation queue on a generated ledger (default 2,000 customers x 36
months). At each month-end origin t of the last year whose 90 days after are observed, the events are the
customers that went 90+ days past due or were written off in (t, t + 90]; the queue is the escalation rules at
t - 30, with the deterioration probability and flag from a model trained only on what was known at t - 30
(snapshots at the month ends before it, labels censored there); the baseline is as many customers flagged by
overdue amount alone at t - 30. Prints recall and precision of both per origin and pooled; asserts nothing.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_escalations.py [--customers 2000] [--months 36] [--no-model]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from features import FeatureConfig, customer_features_at
from features.labels import last_event_date
from ledger.synthetic import generate_ledger
from queues.escalations import backtest_origin, load_escalation_policy, pooled
from training.backtest import ModelSettings
from training.datasets import censor_customer_labels, customer_rows, monthly_cutoffs

DAY = pd.Timedelta(days=1)


def origins_of(cutoffs: list[pd.Timestamp], end: pd.Timestamp, count: int = 12) -> list[pd.Timestamp]:
    """The last `count` month ends whose 90 days after are observed."""
    return [cutoff for cutoff in cutoffs if cutoff + 90 * DAY <= end][-count:]


def scores_at(ledger, snapshots: pd.DataFrame, queue_date: pd.Timestamp, settings: ModelSettings) -> pd.DataFrame:
    """The deterioration model's probability and flag at `queue_date`, trained on the month-end snapshots
    before it with their labels as known at `queue_date`."""
    rows = censor_customer_labels(snapshots[snapshots["cutoff"] < queue_date], queue_date)
    rows = rows[rows["deteriorates"].notna()]
    model = settings.deterioration_model().fit(rows, rows["deteriorates"].astype(int))
    features = customer_features_at(ledger, queue_date)
    return pd.DataFrame({"customer_id": features["customer_id"],
                         "deterioration_probability": model.predict_proba(features)[:, 1],
                         "deteriorating": model.flag(features)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--origins", type=int, default=12)
    parser.add_argument("--lead-days", type=int, default=30)
    parser.add_argument("--no-model", action="store_true", help="Skip the deterioration rule (no model fits).")
    args = parser.parse_args()

    started = time.perf_counter()
    ledger, _ = generate_ledger(args.customers, args.months, args.seed)
    end = last_event_date(ledger)
    cutoffs = monthly_cutoffs(ledger)
    origins = origins_of(cutoffs, end, args.origins)
    policy = load_escalation_policy()
    settings = ModelSettings(n_estimators=200)
    print(f"ledger: {args.customers:,} customers x {args.months} months, {len(ledger.invoices):,} documents, "
          f"{len(ledger.contacts):,} contacts, {len(ledger.promises):,} promises; observed until {end:%Y-%m-%d}; "
          f"generated in {time.perf_counter() - started:.1f}s")
    snapshots = None
    if not args.no_model:
        step = time.perf_counter()
        last_queue_date = origins[-1] - args.lead_days * DAY
        snapshots = customer_rows(ledger, [c for c in cutoffs if c < last_queue_date], FeatureConfig(), end)
        print(f"customer snapshots: {len(snapshots):,} rows in {time.perf_counter() - step:.1f}s")

    results = []
    for origin in origins:
        step = time.perf_counter()
        queue_date = origin - args.lead_days * DAY
        scores = None if snapshots is None else scores_at(ledger, snapshots, queue_date, settings)
        result = backtest_origin(ledger, origin, scores, policy, args.lead_days)
        result["flagged_by_model"] = 0 if scores is None else int(scores["deteriorating"].sum())
        result["seconds"] = time.perf_counter() - step
        results.append(result)
        print(f"origin {origin:%Y-%m-%d} (queue {queue_date:%Y-%m-%d}): {result['events']:4d} events, "
              f"queue {result['queued']:4d}: recall {result['recall']:.3f} precision {result['precision']:.3f} | "
              f"overdue baseline: recall {result['baseline_recall']:.3f} precision {result['baseline_precision']:.3f}"
              f" | model flagged {result['flagged_by_model']} ({result['seconds']:.1f}s)", flush=True)
    table = pd.DataFrame(results)
    total = pooled(table)
    print(f"pooled over {len(table)} origins: {total['events']:,} events, {total['queued']:,} queued: "
          f"recall {total['recall']:.3f} precision {total['precision']:.3f} | overdue baseline (same sizes): "
          f"recall {total['baseline_recall']:.3f} precision {total['baseline_precision']:.3f}")
    print(f"deterioration rule: {'skipped (--no-model)' if args.no_model else 'model trained before each queue date'}"
          f"; total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
