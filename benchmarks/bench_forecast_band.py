"""Does the cash forecast's 10-90% band cover 80% of the weekly actuals? Coverage per horizon week and pooled
over many month-end origins, for independent draws per invoice (rho 0), one shared draw per customer
(rho 1) and the customer copula with the rho fitted before each origin (what the backtest and the daily
run use).

At each origin T the timing model is fitted on the cutoffs before T, labels censored at T, as the backtest
does; rho is fitted as `training.backtest.fitted_cash_rho` does, by the same recipe fitted on the cutoffs
before the latest complete training cutoffs (labels censored at the first of them), judged on those. That
earlier model is the one of an earlier origin, so each model is fitted once. Nothing after T is used.

    .venv/bin/python benchmarks/bench_forecast_band.py --ledger /tmp/ibm --origins 12
    .venv/bin/python benchmarks/bench_forecast_band.py --ledger /tmp/syn --origins 12 --trees 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from features.config import FeatureConfig
from ledger.store import read_ledger
from training.backtest import (
    HORIZON_WEEKS,
    FittedModels,
    ModelSettings,
    customer_rho_on,
    rho_cutoffs,
    weekly_cash,
    weekly_cash_band,
)
from training.datasets import build_datasets, censor_invoice_labels, monthly_cutoffs

NOMINAL = 0.8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--origins", type=int, default=12, help="the latest month ends with 13 weeks of outcomes")
    parser.add_argument("--trees", type=int, default=300, help="the timing model's rounds (300: the backtest's)")
    parser.add_argument("--draws", type=int, default=500)
    args = parser.parse_args()

    started = time.perf_counter()
    ledger = read_ledger(args.ledger)
    settings = ModelSettings(n_estimators=args.trees)
    cutoffs = monthly_cutoffs(ledger)
    datasets = build_datasets(ledger, cutoffs, FeatureConfig(late_grace_days=settings.late_grace_days))
    end = datasets.observation_end
    complete = [c for c in cutoffs if c + pd.Timedelta(days=7 * HORIZON_WEEKS) <= end]
    origins = complete[-args.origins:]
    models: dict[pd.Timestamp, object] = {}

    def model_at(origin: pd.Timestamp):
        """The timing model fitted on the cutoffs before `origin`, labels censored at it (once)."""
        if origin not in models:
            train = censor_invoice_labels(datasets.invoices[datasets.invoices["cutoff"] < origin], origin)
            models[origin] = settings.timing_model().fit(train, train[["days_to_pay", "paid"]])
        return models[origin]

    rows = []
    for origin in origins:
        train = censor_invoice_labels(datasets.invoices[datasets.invoices["cutoff"] < origin], origin)
        chosen = rho_cutoffs(train)
        rho = customer_rho_on(model_at(min(chosen)), train[train["cutoff"].isin(chosen)])
        fitted = FittedModels(None, model_at(origin), None, {}, {}, {})
        test = datasets.invoices[datasets.invoices["cutoff"] == origin]
        actual = weekly_cash(fitted, test)["actual"].to_numpy()
        row = {"origin": origin, "rho": rho}
        for name, value in (("independent", 0.0), ("shared", 1.0), ("fitted", rho)):
            band = weekly_cash_band(fitted, test, draws=args.draws, rho=value)
            row[name] = (actual >= band["p10"].to_numpy()) & (actual <= band["p90"].to_numpy())
        rows.append(row)
        print(f"origin {origin:%Y-%m-%d}: rho {rho:.2f}, {len(test):,} open invoices, "
              f"inside independent/shared/fitted {row['independent'].mean():.2f}/{row['shared'].mean():.2f}/"
              f"{row['fitted'].mean():.2f} ({time.perf_counter() - started:.0f} s)", flush=True)

    print(f"\n{args.ledger}: {len(origins)} origins {origins[0]:%Y-%m-%d} .. {origins[-1]:%Y-%m-%d}, "
          f"{args.trees} trees, {args.draws} draws; fitted rho {np.mean([r['rho'] for r in rows]):.2f} on "
          f"average ({min(r['rho'] for r in rows):.2f} .. {max(r['rho'] for r in rows):.2f}); nominal {NOMINAL:.0%}")
    table = pd.DataFrame({name: np.mean([r[name] for r in rows], axis=0) for name in ("independent", "shared", "fitted")},
                         index=pd.RangeIndex(1, HORIZON_WEEKS + 1, name="week"))
    table.loc["pooled"] = table.mean()
    table["nominal"] = NOMINAL
    print(table.round(3).to_string())
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
