"""Feature benchmark: a generated ledger of 10,000 customers x 36 months; features at one cutoff, at
24 monthly cutoffs, and the brute-force reference on a sample, extrapolated per row. Prints numbers,
asserts nothing.

    .venv/bin/python benchmarks/bench_features.py [--customers N] [--months M] [--cache DIR]

Targets (issue 4, on 2 cores): one cutoff < 10 s, 24 cutoffs < 2 min, peak memory < 6 GB. The ledger is
generated once and cached as Parquet; the timings run in a fresh process so that the peak memory
reported is that of the feature work on a loaded ledger, not of the generator.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

TARGETS = {"one cutoff": 10.0, "24 cutoffs": 120.0}
PEAK_TARGET_GB = 6.0


def cached_ledger(customers: int, months: int, seed: int, cache: Path) -> Path:
    """The ledger directory, generated and written on first use."""
    from ledger import write_ledger
    from ledger.synthetic import generate_ledger

    path = cache / f"ledger-{customers}x{months}-seed{seed}"
    if not (path / "ledger.json").exists():
        started = time.perf_counter()
        ledger, _ = generate_ledger(customers=customers, months=months, seed=seed)
        write_ledger(ledger, path, validate=False)
        print(f"generated {path} in {time.perf_counter() - started:.1f} s")
    return path


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def measure(path: Path, reference_invoices: int, reference_customers: int) -> None:
    from features import build_customer_snapshots, build_snapshots, feature_frames
    from ledger import read_ledger
    from tests.reference_features import index_events, reference_customer_features, reference_invoice_features

    started = time.perf_counter()
    ledger = read_ledger(path, validate=False)
    rows = {name: len(table) for name, table in ledger.tables().items()}
    print(f"read ledger in {time.perf_counter() - started:.1f} s: "
          + ", ".join(f"{name} {count:,}" for name, count in rows.items()))
    print(f"peak memory after reading: {peak_rss_gb():.2f} GB")

    last_day = ledger.invoices["invoice_date"].max()
    cutoff = (last_day - pd.offsets.MonthEnd(1)).normalize()
    started = time.perf_counter()
    invoices, customers = feature_frames(ledger, cutoff)
    one_cutoff = time.perf_counter() - started
    print(f"\none cutoff ({cutoff:%Y-%m-%d}): {one_cutoff:.2f} s for {len(invoices):,} open documents and "
          f"{len(customers):,} customers, {invoices.shape[1] - 2} features "
          f"(target < {TARGETS['one cutoff']:.0f} s)")

    cutoffs = list(pd.date_range(end=cutoff, periods=24, freq="ME"))
    started = time.perf_counter()
    snapshots = build_snapshots(ledger, cutoffs)
    many = time.perf_counter() - started
    print(f"24 monthly cutoffs ({cutoffs[0]:%Y-%m-%d} .. {cutoffs[-1]:%Y-%m-%d}), features + labels: "
          f"{many:.1f} s for {len(snapshots):,} rows (target < {TARGETS['24 cutoffs']:.0f} s)")
    del snapshots
    started = time.perf_counter()
    customer_rows = len(build_customer_snapshots(ledger, cutoffs))
    print(f"24 monthly cutoffs, customer features + labels (training builds both): "
          f"{time.perf_counter() - started:.1f} s for {customer_rows:,} rows")
    print(f"peak memory: {peak_rss_gb():.2f} GB (target < {PEAK_TARGET_GB:.0f} GB)")

    rng = np.random.default_rng(0)
    invoice_sample = list(rng.choice(invoices["invoice_id"].to_numpy(), reference_invoices, replace=False))
    customer_sample = list(rng.choice(customers["customer_id"].to_numpy(), reference_customers, replace=False))
    started = time.perf_counter()
    events = index_events(ledger)
    indexing = time.perf_counter() - started
    started = time.perf_counter()
    reference_invoice_features(ledger, cutoff, invoice_sample, events=events)
    per_invoice = (time.perf_counter() - started) / reference_invoices
    started = time.perf_counter()
    reference_customer_features(ledger, cutoff, customer_sample, events=events)
    per_customer = (time.perf_counter() - started) / reference_customers
    rows_only = per_invoice * len(invoices) + per_customer * len(customers)
    print(f"\nbrute-force reference at {cutoff:%Y-%m-%d}: indexing the ledger {indexing:.1f} s (once), "
          f"{per_invoice * 1e3:.2f} ms per invoice ({reference_invoices} sampled), "
          f"{per_customer * 1e3:.1f} ms per customer ({reference_customers} sampled)")
    print(f"extrapolated to every row: {rows_only:.0f} s + {indexing:.0f} s indexing = {rows_only + indexing:.0f} s "
          f"vs {one_cutoff:.2f} s fast: {(rows_only + indexing) / one_cutoff:.0f}x slower "
          f"({rows_only / one_cutoff:.0f}x without the indexing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "arrisk-benchmarks")
    parser.add_argument("--reference-invoices", type=int, default=300)
    parser.add_argument("--reference-customers", type=int, default=100)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the fresh child process
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.reference_invoices, args.reference_customers)
        return
    print(f"ar-risk feature benchmark: {args.customers:,} customers x {args.months} months, "
          f"{os.cpu_count()} CPU(s), pandas {pd.__version__}")
    path = cached_ledger(args.customers, args.months, args.seed, args.cache)
    subprocess.run([sys.executable, __file__, "--measure", str(path),
                    "--reference-invoices", str(args.reference_invoices),
                    "--reference-customers", str(args.reference_customers)], check=True)


if __name__ == "__main__":
    main()
