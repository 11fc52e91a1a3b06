"""Issue 5's figures: backtest the three models on a generated ledger (default 10,000 customers x 36
months) against the oracle that knows the generator's true P(late), time the final fit of all three
models, and backtest the IBM sample. Prints every figure next to its target; asserts nothing.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_backtest_models.py [--customers 10000] [--months 36] [--origins 3]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ledger.importing import import_ledger
from ledger.synthetic import generate_ledger
from training import metrics as m
from training.backtest import ModelSettings, fit_models
from training.datasets import censor_customer_labels, censor_invoice_labels
from training.pipeline import backtest_ledger

ROOT = Path(__file__).resolve().parents[1]


def peak_memory_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def oracle_figures(run, truth_invoices: pd.DataFrame) -> dict:
    """AUC and ECE of the generator's true P(late) on exactly the rows the model was tested on."""
    late = pd.concat([origin.late for origin in run.result.per_origin])
    ids = run.datasets.invoices.loc[late.index, "invoice_id"]
    p_true = ids.map(truth_invoices.set_index("invoice_id")["p_late"]).to_numpy()
    known = ~np.isnan(p_true)
    y = late["y"].to_numpy()[known]
    return {"oracle_roc_auc": m.roc_auc(y, p_true[known]), "oracle_ece": m.ece(y, p_true[known]),
            "model_roc_auc_same_rows": m.roc_auc(y, late["model"].to_numpy()[known]),
            "rows": int(known.sum())}


def report(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(name) for name, _, _ in rows)
    for name, value, target in rows:
        print(f"  {name:<{width}}  {value:>12}   target: {target}")


def synthetic(customers: int, months: int, origins: int) -> None:
    print(f"== synthetic ledger, {customers:,} customers x {months} months ==")
    started = time.perf_counter()
    ledger, truth = generate_ledger(customers=customers, months=months, seed=0)
    print(f"generated {len(ledger.invoices):,} documents in {time.perf_counter() - started:.1f} s")
    run = backtest_ledger(ledger, origins=origins, progress=lambda step: print(f"  {step}", flush=True))
    metrics = run.result.metrics
    oracle = oracle_figures(run, truth["truth/invoices.parquet"])

    fit_started = time.perf_counter()
    end = run.datasets.observation_end
    fit_models(censor_invoice_labels(run.datasets.invoices, end),
               censor_customer_labels(run.datasets.customers, end), ModelSettings())
    fit_seconds = time.perf_counter() - fit_started

    late, timing, deterioration = (metrics[k] for k in ("late_payment", "receipt_timing", "deterioration"))
    due = timing["baselines"]["pays_on_due_date"]
    report([
        ("late AUC (model)", f"{late['model']['roc_auc']:.4f}", f"within 0.02 of oracle {oracle['oracle_roc_auc']:.4f}"),
        ("late AUC gap to oracle", f"{oracle['oracle_roc_auc'] - oracle['model_roc_auc_same_rows']:.4f}", "<= 0.02"),
        ("late ECE", f"{late['model']['ece']:.4f}", f"< 0.02 (oracle {oracle['oracle_ece']:.4f})"),
        ("late AUC baselines", ", ".join(f"{k} {v['roc_auc']:.3f}" for k, v in late["baselines"].items()), "below model"),
        ("timing coverage p10-p90", f"{timing['model']['coverage_p10_p90']:.3f}", "0.75 - 0.85"),
        ("timing MAE days", f"{timing['model']['mae_days']:.2f}", f"below baselines ({due['mae_days']:.2f} due date)"),
        ("cash WAPE 13 weeks (model)", f"{timing['model']['wape_13w']:.3f}",
         f"<= half of due-date baseline {due['wape_13w']:.3f}"),
        ("cash WAPE per week, mean", f"{np.nanmean(timing['model']['wape_week']):.3f}",
         f"due-date baseline {np.nanmean(due['wape_week']):.3f}"),
        ("deterioration precision@k", f"{deterioration['model']['precision_at_k']:.3f}",
         f"reported (k={deterioration['model']['k']}; baseline "
         f"{deterioration['baselines']['past_due_60_plus']['precision_at_k']:.3f})"),
        ("deterioration recall / flag precision",
         f"{deterioration['model']['recall']:.3f}/{deterioration['model']['flag_precision']:.3f}", "reported"),
        ("deterioration median lead days", f"{deterioration['model']['median_lead_days']:.0f}",
         f"reported (baseline {deterioration['baselines']['past_due_60_plus']['median_lead_days']:.0f})"),
        ("snapshot build seconds", f"{run.seconds['datasets']:.1f}", "-"),
        ("backtest seconds", f"{run.seconds['backtest']:.1f}", f"{origins} origins x 3 models"),
        ("final fit of all three models, s", f"{fit_seconds:.1f}", "< 300"),
        ("peak memory GB", f"{peak_memory_gb():.2f}", "-"),
    ])
    print(f"rows: {metrics['rows']}")


def ibm(origins: int) -> None:
    print("== IBM sample (time-ordered, monthly cutoffs) ==")
    ledger = import_ledger([ROOT / "samples/ibm/ibm_wa_accounts_receivable.csv"], "ibm_sample")
    run = backtest_ledger(ledger, origins=origins)
    late, timing = run.result.metrics["late_payment"], run.result.metrics["receipt_timing"]
    report([
        ("late AUC", f"{late['model']['roc_auc']:.4f}", ">= 0.90 and above baselines: " +
         ", ".join(f"{k} {v['roc_auc']:.3f}" for k, v in late["baselines"].items())),
        ("days-late MAE (p50 pay date)", f"{timing['model']['mae_days']:.2f}", "<= 4.0 and above baselines: " +
         ", ".join(f"{k} {v['mae_days']:.2f}" for k, v in timing["baselines"].items())),
        ("rows (late / timing)", f"{run.result.metrics['rows']['late_payment']}/"
                                 f"{run.result.metrics['rows']['receipt_timing_paid']}", "-"),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--origins", type=int, default=3)
    parser.add_argument("--ibm-origins", type=int, default=6)
    args = parser.parse_args()
    ibm(args.ibm_origins)
    synthetic(args.customers, args.months, args.origins)


if __name__ == "__main__":
    main()
