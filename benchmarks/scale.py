"""Scale: the daily run on a Dask cluster against the pandas engine, at about 1M and 10M+ documents.

    python benchmarks/scale.py [--workdir /tmp/arrisk-scale] [--documents 10000000] [--small 1000000]

For each size it generates a partitioned synthetic ledger chunk by chunk (`arrisk generate --partitions`,
reused when already there), then measures in fresh processes:
- dask: a LocalCluster of `--workers` worker processes (one thread each) with `--memory-limit` each; the
  features of every open document (`arrisk features --engine dask`), then the whole daily run (`arrisk run
  --engine dask`); whether a worker was lost on the way, and the peak memory of the workers;
- pandas: the same in one process limited to the cluster's total memory (RLIMIT_AS = workers x limit), so
  that "does it fit" means the same thing for both; a MemoryError is reported with the step it hit.
Documents are the ledger's invoices and credit memos. Throughput is documents per second per worker:
documents / (wall seconds x workers) for the features and the run, documents / worker-seconds of the
scores step for scoring. The champions come from `--tracking-uri`, or are trained on a 2,000-customer
ledger of the same generator first.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
ARRISK = [sys.executable, "-m", "serving.cli"]
AS_OF = "2023-12-31"
MONTHS = 24
INVOICES_PER_CUSTOMER_MONTH = 2.7  # what the generator draws on average


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/arrisk-scale"))
    parser.add_argument("--documents", type=int, default=10_000_000)
    parser.add_argument("--small", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=64, help="buckets of the large ledger")
    parser.add_argument("--small-partitions", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--tracking-uri")
    parser.add_argument("--only", choices=("small", "large"))
    parser.add_argument("--engines", default="dask,pandas")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one engine in this process
    parser.add_argument("--ledger", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.ledger, args)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    tracking_uri = args.tracking_uri or champions(args.workdir)
    sizes = [("small", args.small, args.small_partitions), ("large", args.documents, args.partitions)]
    rows = []
    for label, documents, partitions in sizes:
        if args.only and args.only != label:
            continue
        ledger = ledger_of(args.workdir, documents, partitions)
        for engine in args.engines.split(","):
            result = in_fresh_process(engine, ledger, tracking_uri, args)
            rows.append({"size": label, **result})
            print(json.dumps(rows[-1]), flush=True)
    table(rows, args.workers)


def champions(workdir: Path) -> str:
    """A champion store trained on a 2,000-customer ledger of the same generator (reused when there)."""
    store = workdir / "mlflow" / "mlflow.db"
    uri = f"sqlite:///{store}"
    if not store.exists():
        ledger = workdir / "train-ledger"
        run([*ARRISK, "generate", "--customers", "2000", "--months", str(MONTHS), "--seed", "11", "--out", str(ledger)])
        store.parent.mkdir(parents=True, exist_ok=True)
        run([*ARRISK, "train", "--ledger", str(ledger), "--tracking-uri", uri])
    return uri


def ledger_of(workdir: Path, documents: int, partitions: int) -> Path:
    """A partitioned ledger of about `documents` invoices, generated chunk by chunk (reused when there)."""
    customers = math.ceil(documents / (INVOICES_PER_CUSTOMER_MONTH * MONTHS))
    folder = workdir / f"ledger-{customers}c-{partitions}p"
    if not (folder / "ledger.json").exists():
        started = time.perf_counter()
        run(["/usr/bin/time", "-v", *ARRISK, "generate", "--customers", str(customers), "--months", str(MONTHS),
             "--seed", "11", "--partitions", str(partitions), "--out", str(folder)])
        print(f"generated {folder} in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def in_fresh_process(engine: str, ledger: Path, tracking_uri: str, args) -> dict:
    command = [sys.executable, __file__, "--one", engine, "--ledger", str(ledger), "--tracking-uri", tracking_uri,
               "--workers", str(args.workers), "--memory-limit", args.memory_limit,
               "--workdir", str(args.workdir)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"engine": engine, "documents": documents_of(ledger), "error":
                f"exit {done.returncode}: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"}
    return json.loads(lines[-1])


def documents_of(ledger: Path) -> int:
    return json.loads((ledger / "ledger.json").read_text())["rows"]["invoices"]


def measure(engine: str, ledger: Path, args) -> dict:
    """Features, then the whole run, with `engine`; in this (fresh) process."""
    from dask.utils import parse_bytes

    documents = documents_of(ledger)
    runs = args.workdir / f"runs-{engine}-{ledger.name}"
    result = {"engine": engine, "documents": documents, "workers": args.workers if engine == "dask" else 1}
    if engine == "pandas":
        limit = args.workers * parse_bytes(args.memory_limit)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        result["memory_limit_gb"] = round(limit / 1e9, 1)
        return {**result, **measure_pandas(ledger, runs, args.tracking_uri, documents)}
    return {**result, **measure_dask(ledger, runs, args, documents)}


def measure_pandas(ledger: Path, runs: Path, tracking_uri: str, documents: int) -> dict:
    from features import features_at
    from ledger import read_ledger
    from serving.daily import daily_run

    result, step = {}, "read"
    started = time.perf_counter()
    try:
        whole = read_ledger(ledger, validate=False)
        step = "features"
        features_started = time.perf_counter()
        features_at(whole, pd.Timestamp(AS_OF))
        result["features_seconds"] = round(time.perf_counter() - features_started, 1)
        del whole
        step = "run"
        run_started = time.perf_counter()
        folder = daily_run(ledger, pd.Timestamp(AS_OF), runs, tracking_uri=tracking_uri, keep=1)
        result["run_seconds"] = round(time.perf_counter() - run_started, 1)
        result.update(from_manifest(folder))
    except MemoryError:
        result["error"] = f"MemoryError in {step} after {time.perf_counter() - started:.0f} s"
    except Exception as error:  # the run's StepFailed wraps the MemoryError of a step
        cause = getattr(error, "error", error)
        result["error"] = (f"{type(cause).__name__} in {getattr(error, 'step', step)} after "
                           f"{time.perf_counter() - started:.0f} s")
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return with_rates(result, documents, workers=1)


def measure_dask(ledger: Path, runs: Path, args, documents: int) -> dict:
    from distributed import Client, LocalCluster

    from runs.distributed import features_on_cluster
    from serving.daily import daily_run

    result = {}
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=args.memory_limit,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        before = set(client.scheduler_info()["workers"])
        started = time.perf_counter()
        features_on_cluster(client, ledger, pd.Timestamp(AS_OF), args.workdir / f"features-{ledger.name}")
        result["features_seconds"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        folder = daily_run(ledger, pd.Timestamp(AS_OF), runs, tracking_uri=args.tracking_uri, keep=1, engine="dask",
                           scheduler=cluster.scheduler_address)
        result["run_seconds"] = round(time.perf_counter() - started, 1)
        after = set(client.scheduler_info()["workers"])
        result["workers_lost"] = len(before - after)
        result.update(from_manifest(folder))
    result["driver_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return with_rates(result, documents, workers=args.workers)


def from_manifest(folder: Path) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    seconds = {step["name"].removesuffix(" (worker-seconds)"): step["seconds"] for step in manifest["steps"]}
    return {"scores_seconds": seconds.get("scores"), "steps": seconds, "open_documents": manifest["tables"]["scores"],
            "peak_worker_rss_mb": manifest.get("peak_worker_rss_mb"), "partitions": manifest.get("partitions"),
            "manifest_peak_rss_mb": manifest["peak_rss_mb"]}


def with_rates(result: dict, documents: int, workers: int) -> dict:
    """Documents per second per worker: features and the run by wall time, scoring by its worker-seconds."""
    for name in ("features", "run"):
        if result.get(f"{name}_seconds"):
            result[f"{name}_docs_per_s_per_worker"] = round(documents / (result[f"{name}_seconds"] * workers))
    if result.get("scores_seconds"):
        result["scores_docs_per_s_per_worker"] = round(documents / result["scores_seconds"])
    return result


def run(command: list[str]) -> None:
    subprocess.run(command, check=True, cwd=ROOT)


def table(rows: list[dict], workers: int) -> None:
    print(f"\n{'size':6} {'engine':7} {'documents':>11} {'features s':>10} {'run s':>8} "
          f"{'docs/s/worker: features':>24} {'scoring':>8} {'run':>6} {'peak MB':>8}  outcome")
    for row in rows:
        peak = row.get("peak_worker_rss_mb") if row["engine"] == "dask" else row.get("peak_rss_mb")
        outcome = row.get("error") or ("ok" if not row.get("workers_lost") else f"{row['workers_lost']} worker(s) lost")
        print(f"{row['size']:6} {row['engine']:7} {row['documents']:>11,} {row.get('features_seconds') or '-':>10} "
              f"{row.get('run_seconds') or '-':>8} {row.get('features_docs_per_s_per_worker') or '-':>24} "
              f"{row.get('scores_docs_per_s_per_worker') or '-':>8} {row.get('run_docs_per_s_per_worker') or '-':>6} "
              f"{peak or '-':>8}  {outcome}")
    print(f"(dask: {workers} workers; peak MB is the largest worker's for dask, the process's for pandas)")


if __name__ == "__main__":
    main()
