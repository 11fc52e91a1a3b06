"""Feature ablation (issue 19): the month-end backtest (`training.pipeline.backtest_ledger`'s steps) with the
invoice models' inputs restricted, on the IBM sample and on a synthetic ledger. Prints a table, asserts
nothing.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ablation.py [--customers 1000] [--months 24] [--seed 3]

Feature sets: all features; all minus each group of the current-state features (recency, behaviour change,
overdue share, payment rhythm, peers); and the pre-issue set (all minus every new group; the behaviour
change group, `days_late_trend` and `late_share_trend`, existed before and stays in it). The snapshots are
built once per ledger and every set is backtested on the same rows and origins; only the late-payment and
receipt-timing models' inputs change (`ModelSettings.features`).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

IBM_SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "ibm" / "ibm_wa_accounts_receivable.csv"


def groups() -> dict[str, list[str]]:
    """The feature groups of issue 19 item 1, by name (`features.registry.current_state_groups`)."""
    from features.registry import current_state_groups

    return current_state_groups()


def feature_sets() -> dict[str, tuple[str, ...]]:
    """Name -> the invoice models' input columns."""
    from training.backtest import invoice_model_features

    every, by_group = invoice_model_features(), groups()
    new = {name for group, names in by_group.items() if group != "behaviour change" for name in names}
    sets = {"all": tuple(every)}
    sets |= {f"all - {group}": tuple(n for n in every if n not in names) for group, names in by_group.items()}
    sets["pre-issue"] = tuple(n for n in every if n not in new)
    return sets


def row(name: str, metrics: dict) -> dict:
    late = metrics["late_payment"]
    model, baseline = late["model"], late["baselines"]["customer_late_rate"]
    return {"feature set": name, "late ROC AUC": model["roc_auc"],
            "lift vs customer_late_rate": model["roc_auc"] - baseline["roc_auc"],
            "Brier": model["brier"], "ECE": model["ece"],
            "timing MAE (days)": metrics["receipt_timing"]["model"]["mae_days"]}


def ablation(ledger, label: str) -> pd.DataFrame:
    from features import FeatureConfig
    from training.backtest import ModelSettings, run_backtest
    from training.datasets import build_datasets, monthly_cutoffs
    from training.pipeline import chosen_origins

    settings = ModelSettings()
    started = time.perf_counter()
    cutoffs = monthly_cutoffs(ledger)
    datasets = build_datasets(ledger, cutoffs, FeatureConfig(late_grace_days=settings.late_grace_days))
    origins = chosen_origins(cutoffs, datasets.observation_end, 3)
    print(f"{label}: {len(datasets.invoices):,} snapshot rows, origins "
          f"{', '.join(f'{o:%Y-%m-%d}' for o in origins)} ({time.perf_counter() - started:.0f} s)", flush=True)
    rows = []
    for name, features in feature_sets().items():
        began = time.perf_counter()
        result = run_backtest(datasets, origins, replace(settings, features=features))
        rows.append(row(name, result.metrics))
        print(f"  {name}: {len(features)} inputs, {time.perf_counter() - began:.0f} s: "
              + ", ".join(f"{key} {value:.4f}" for key, value in rows[-1].items() if key != "feature set"),
              flush=True)
    return pd.DataFrame(rows).set_index("feature set")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--only", choices=["ibm", "synthetic"])
    args = parser.parse_args()
    from ledger.importing import import_ledger
    from ledger.synthetic import generate_ledger

    ledgers = {"IBM sample": lambda: import_ledger([IBM_SAMPLE], "ibm_sample"),
               f"synthetic {args.customers} x {args.months}, seed {args.seed}":
                   lambda: generate_ledger(customers=args.customers, months=args.months, seed=args.seed)[0]}
    if args.only:
        ledgers = {label: make for label, make in ledgers.items() if label.lower().startswith(args.only)}
    with pd.option_context("display.width", 160, "display.float_format", "{:.4f}".format):
        for label, make in ledgers.items():
            table = ablation(make(), label)
            print(f"\n{label}\n{table.to_string()}\n", flush=True)


if __name__ == "__main__":
    main()
