"""Time the synthetic ledger generator at 10,000 customers x 36 months (issue 3: under 60 s on 2 cores
and under 4 GB), then validation and the atomic write separately, and print the numbers.

For comparison, in the same run: the same generator at a tenth of the customers (it should scale
about linearly), and a naive per-invoice Python loop over just the payment-outcome step on a sample,
extrapolated to the full invoice count. Nothing is asserted; timings are printed.

    .venv/bin/python benchmarks/bench_generate.py [--customers 10000] [--months 36] [--cores 2]

With `--partitioned`, it compares instead the one-shot generator written whole with the chunked generator
written partitioned (`arrisk generate --partitions`), each in a fresh process so its peak RSS is its own,
at ledgers of about `--invoices` invoices each (customers = invoices / (2.8 x months)):

    .venv/bin/python benchmarks/bench_generate.py --partitioned --invoices 200000 1000000 [--months 24]
        [--partitions 8] [--chunk-customers 5000]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

from ledger import write_ledger
from ledger.synthetic import generate_ledger


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """Resident memory of this process now."""
    return psutil.Process().memory_info().rss / 2**20


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    """The action's result and its wall-clock seconds."""
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def naive_outcomes(invoices: pd.DataFrame, terms_days: dict[str, int], seed: int) -> pd.DataFrame:
    """The reference a first version would write: one Python iteration per invoice drawing P(late),
    the late draw and the pay date (one stage of the generator only, so a lower bound)."""
    draw = random.Random(seed)
    rows = []
    for invoice in invoices.itertuples(index=False):
        log_odds = -1.2 + 0.25 * math.log(invoice.amount / 1000.0) + draw.gauss(0.0, 0.5)
        p_late = 1.0 / (1.0 + math.exp(-log_odds))
        late = draw.random() < p_late
        days = 6 + int(math.exp(math.log(12.0) + 0.9 * draw.gauss(0.0, 1.0))) if late else round(draw.gauss(-2.0, 4.0))
        due = invoice.invoice_date + pd.Timedelta(days=terms_days[invoice.customer_id])
        pay = due + pd.Timedelta(days=min(days, 5) if not late else days)
        while pay.dayofweek >= 5:  # late payments wait for Monday
            pay += pd.Timedelta(days=1)
        rows.append({"invoice_id": invoice.invoice_id, "p_late": p_late, "late": late, "pay_date": pay})
    return pd.DataFrame(rows)


INVOICES_PER_CUSTOMER_MONTH = 2.8  # what the default configuration draws, measured


def one_mode(mode: str, customers: int, months: int, seed: int, partitions: int, chunk_customers: int) -> None:
    """Generate and write one ledger in this process and print `mode seconds peak_mib invoices`."""
    from ledger.synthetic import write_synthetic, write_synthetic_chunks

    out = Path(tempfile.mkdtemp(prefix="arrisk-bench-")) / "ledger"
    try:
        started = time.perf_counter()
        if mode == "oneshot":
            ledger, truth = generate_ledger(customers, months, seed)
            write_synthetic(ledger, truth, out)
            invoices = int((ledger.invoices["doc_type"] == "invoice").sum())
        else:
            write_synthetic_chunks(out, customers, months, seed, partitions, chunk_customers)
            invoices = sum(len(pd.read_parquet(f, columns=["invoice_id"]))
                           for f in (out / "truth" / "invoices").glob("*.parquet"))
        seconds = time.perf_counter() - started
        print(f"{mode} {seconds:.2f} {peak_rss_mib():.0f} {invoices}")
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def compare_partitioned(args: argparse.Namespace) -> None:
    """One-shot vs chunked-partitioned, each size and mode in a fresh process."""
    print(f"{'invoices (target)':>18} {'customers':>10} {'mode':<26} {'seconds':>8} {'peak RSS MiB':>13} "
          f"{'invoices':>10}")
    for target in args.invoices:
        customers = max(1, round(target / (INVOICES_PER_CUSTOMER_MONTH * args.months)))
        for mode in ("oneshot", "chunked"):
            command = [sys.executable, __file__, "--child", mode, "--customers", str(customers), "--months",
                       str(args.months), "--seed", str(args.seed), "--partitions", str(args.partitions),
                       "--chunk-customers", str(args.chunk_customers), "--cores", str(args.cores)]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            _, seconds, peak, invoices = result.stdout.split()[-4:]
            label = "one-shot, written whole" if mode == "oneshot" else (
                f"chunked {args.chunk_customers:,}, {args.partitions} parts")
            print(f"{target:>18,} {customers:>10,} {label:<26} {float(seconds):>8.1f} {float(peak):>13,.0f} "
                  f"{int(invoices):>10,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitioned", action="store_true", help="Compare one-shot and chunked-partitioned.")
    parser.add_argument("--invoices", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--chunk-customers", type=int, default=5_000)
    parser.add_argument("--child", choices=["oneshot", "chunked"], help=argparse.SUPPRESS)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", type=int, default=2, help="CPU cores to pin the process to (0: leave as is).")
    parser.add_argument("--naive-sample", type=int, default=20_000, help="Invoices the naive loop runs on.")
    args = parser.parse_args()

    if args.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.child:
        one_mode(args.child, args.customers, args.months, args.seed, args.partitions, args.chunk_customers)
        return
    if args.partitioned:
        print(f"python {sys.version.split()[0]}, {cores} core(s), {args.months} months, seed {args.seed}")
        compare_partitioned(args)
        return
    print(f"python {sys.version.split()[0]}, pandas {pd.__version__}, {cores} core(s), "
          f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM")

    # The small references run first, so the peak memory below belongs to the full-size run.
    small_customers = max(1, args.customers // 10)
    (small_ledger, _), small_seconds = timed(lambda: generate_ledger(small_customers, args.months, args.seed))
    small_invoices = len(small_ledger.invoices)
    terms = dict(zip(small_ledger.customers["customer_id"], small_ledger.customers["payment_terms_days"], strict=True))
    sample = small_ledger.invoices[small_ledger.invoices["doc_type"] == "invoice"].head(args.naive_sample)
    _, naive_seconds = timed(lambda: naive_outcomes(sample, terms, args.seed))
    del small_ledger
    baseline_peak = peak_rss_mib()

    (ledger, truth), generate_seconds = timed(lambda: generate_ledger(args.customers, args.months, args.seed))
    generate_peak = peak_rss_mib()
    n_invoices = int((ledger.invoices["doc_type"] == "invoice").sum())
    _, validate_seconds = timed(ledger.validate)
    out = Path(tempfile.mkdtemp(prefix="arrisk-bench-"))
    try:
        # write_synthetic validates and then writes; the validation is timed above, so write only here.
        _, write_seconds = timed(lambda: write_ledger(ledger, out / "ledger", validate=False, extras=truth))
        size_mib = sum(f.stat().st_size for f in (out / "ledger").rglob("*") if f.is_file()) / 2**20
    finally:
        shutil.rmtree(out, ignore_errors=True)
    final_peak = peak_rss_mib()

    print(f"\ngenerate_ledger({args.customers:,} customers x {args.months} months, seed {args.seed})")
    print(f"  invoices (doc_type invoice): {n_invoices:,}; all documents: {len(ledger.invoices):,}")
    for name, table in ledger.tables().items():
        print(f"    {name:<22}{len(table):>12,} rows")
    print(f"  generate:            {generate_seconds:8.2f} s   peak RSS {generate_peak:8.0f} MiB "
          f"(before: {baseline_peak:.0f} MiB)")
    print(f"  validate:            {validate_seconds:8.2f} s")
    print(f"  write (atomic):      {write_seconds:8.2f} s   ({size_mib:.0f} MiB on disk, truth included; "
          f"write_synthetic = validate + write = {validate_seconds + write_seconds:.1f} s)")
    print(f"  peak RSS, all steps: {final_peak:8.0f} MiB   (RSS now {rss_mib():.0f} MiB)")

    per_invoice = naive_seconds / max(len(sample), 1)
    print("\nreferences")
    print(f"  same generator at {small_customers:,} customers: {small_seconds:.2f} s for {small_invoices:,} documents "
          f"(x{args.customers / small_customers:.0f} scaled: {small_seconds * args.customers / small_customers:.1f} s)")
    print(f"  naive per-invoice loop, outcome step only: {naive_seconds:.2f} s for {len(sample):,} invoices "
          f"-> {per_invoice * n_invoices:.0f} s extrapolated to {n_invoices:,} "
          f"(vectorised generator, all steps: {generate_seconds:.1f} s)")


if __name__ == "__main__":
    main()
