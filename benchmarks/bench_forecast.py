"""Cash forecast speed and memory: `cash_forecast` on 100,000 random open invoices x 1,000 draws, weekly
and daily periods over 13 weeks, next to two references that draw the same thing a slower way, timed
on a part of the work and scaled linearly to the full size. Prints a table; asserts nothing.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_forecast.py [--invoices 100000] [--draws 1000]
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import pandas as pd

from rules.forecast import cash_forecast, period_edges

AS_OF = pd.Timestamp("2024-02-27")
RATES = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17}


def random_cdf(invoices: int, edges: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Logistic pay times (centre -5..80 days, scale 2..15) conditioned on after as_of, 85-100% ever paid."""
    centre = rng.uniform(-5, 80, (invoices, 1))
    scale = rng.uniform(2, 15, (invoices, 1))
    ever_paid = rng.uniform(0.85, 1.0, (invoices, 1))
    logistic = 1 / (1 + np.exp(-(edges[None, :] - centre) / scale))
    return ever_paid * (logistic - logistic[:, :1]) / (1 - logistic[:, :1])


def random_items(invoices: int, rng: np.random.Generator) -> pd.DataFrame:
    """Open invoices of 10,000 customers in three currencies, log-normal amounts."""
    currency = rng.choice(list(RATES), invoices, p=[0.7, 0.2, 0.1])
    amount = np.round(rng.lognormal(7, 1, invoices), 2)
    return pd.DataFrame({
        "currency": currency,
        "open_amount": amount,
        "open_amount_base": amount * pd.Series(currency).map(RATES).to_numpy(),
        "customer_id": np.char.add("C", rng.integers(0, 10_000, invoices).astype(str)),
    })


def measured(run) -> tuple[float, float]:
    """Seconds and peak MB allocated above what was allocated before (tracemalloc sees numpy buffers)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    return seconds, peak / 1e6


def loop_reference(cdf: np.ndarray, amounts: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Base total per draw and period by a plain loop over draws and invoices, one searchsorted each."""
    periods = cdf.shape[1] - 1
    totals = np.zeros((draws, periods + 1))
    for draw in range(draws):
        for row, amount in zip(cdf, amounts, strict=True):
            totals[draw, np.searchsorted(row[1:], 1 - rng.random())] += amount
    return totals[:, :periods]


def flat_search_reference(cdf: np.ndarray, amounts: np.ndarray, draws: int,
                          rng: np.random.Generator) -> np.ndarray:
    """Base total per draw and period by one searchsorted over all rows, row i offset by 2 i."""
    items, periods = cdf.shape[0], cdf.shape[1] - 1
    offset = 2.0 * np.arange(items)
    flat = (cdf[:, 1:] + offset[:, None]).ravel()
    paid_in = np.searchsorted(flat, (1 - rng.random((draws, items)) + offset).ravel()) - np.tile(
        np.arange(items) * periods, draws)
    slot = paid_in + np.repeat(np.arange(draws) * (periods + 1), items)
    totals = np.bincount(slot, weights=np.tile(amounts, draws), minlength=draws * (periods + 1))
    return totals.reshape(draws, periods + 1)[:, :periods]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    full = args.invoices * args.draws
    rng = np.random.default_rng(0)
    items = random_items(args.invoices, rng)
    base = items["open_amount_base"].to_numpy()
    rows = []
    for freq in ("week", "day"):
        edges = period_edges(13, freq)
        cdf = random_cdf(args.invoices, edges, rng)
        for shared in (True, False):
            seconds, peak = measured(lambda cdf=cdf, edges=edges, shared=shared: cash_forecast(
                AS_OF, cdf, edges, items, "EUR", draws=args.draws, shared_by_customer=shared))
            rows.append((f"cash_forecast, shared={shared}", freq, f"{args.invoices:,} x {args.draws:,}",
                         seconds, seconds, peak))
        subset, draws = min(2_000, args.invoices), 20
        seconds, peak = measured(lambda cdf=cdf, subset=subset, draws=draws: loop_reference(
            cdf[:subset], base[:subset], draws, np.random.default_rng(1)))
        rows.append(("loop over draws and rows", freq, f"{subset:,} x {draws}", seconds,
                     seconds * full / (subset * draws), peak))
        draws = min(20, args.draws)
        seconds, peak = measured(lambda cdf=cdf, draws=draws: flat_search_reference(
            cdf, base, draws, np.random.default_rng(1)))
        rows.append(("one searchsorted, offset rows", freq, f"{args.invoices:,} x {draws}", seconds,
                     seconds * full / (args.invoices * draws), peak))

    print(f"== cash forecast, {args.invoices:,} invoices x {args.draws:,} draws, 13 weeks ==")
    header = ("method", "freq", "timed (invoices x draws)", "seconds", f"scaled to {args.invoices:,} x "
              f"{args.draws:,}", "peak MB")
    print(f"  {header[0]:<32} {header[1]:<5} {header[2]:>25} {header[3]:>8} {header[4]:>24} {header[5]:>8}")
    for method, freq, timed, seconds, scaled, peak in rows:
        print(f"  {method:<32} {freq:<5} {timed:>25} {seconds:>8.2f} {scaled:>24.1f} {peak:>8.0f}")
    print(f"  process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
