"""Serving benchmark (issue 16): serve a daily run by lookups, against computing on the request path.

1. Fit the three models on a 300-customer ledger and register them as champions in a throwaway MLflow store.
2. Generate the ledger to serve (20,000 customers x 24 months: about 100,000 open documents).
3. `arrisk run` for its last day: wall time, and seconds and peak memory per step from the manifest.
4. The same measures twice, once for `arrisk serve --runs` and once for `arrisk serve --ledger` (the
   compute-on-request path), each on its own port with its own empty activity store:
   start to healthy; `GET /v1/worklist?top=50` p99 (sequential); a promise recorded then the worklist read
   again (each of 20 times); `GET /v1/customers/{id}/risk` p50/p99 one at a time for customers not asked
   before (cold), and at CONNECTIONS connections; the server's memory (all its processes).
5. Print every figure next to its target, and the ratio run / compute-on-request.

Targets on 2 cores: the run under 90 s and 6 GB; healthy under 5 s; worklist p99 under 50 ms; worklist after
a promise under 100 ms; customer risk p99 under 10 ms one at a time and 500 requests/s or more with p99 under
50 ms at 32 connections.
Run: `python benchmarks/bench_serving.py [--customers 20000] [--months 24] [--workers 2]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

TOKEN = "arr_benchmark_token_0123456789abcdef"


def register_champions(tracking_uri: str) -> None:
    """Fit the models on a 300-customer ledger and register them as champions."""
    from features import FeatureConfig, features_at
    from ledger.synthetic import generate_ledger
    from training.backtest import ModelSettings, fit_models
    from training.datasets import (
        build_datasets,
        censor_customer_labels,
        censor_invoice_labels,
        monthly_cutoffs,
    )
    from training.pipeline import MODEL_NAMES
    from training.tracking import GateDecision, log_model_run

    ledger, _ = generate_ledger(customers=300, months=24, seed=7)
    datasets = build_datasets(ledger, monthly_cutoffs(ledger), FeatureConfig())
    end = datasets.observation_end
    fitted = fit_models(censor_invoice_labels(datasets.invoices, end), censor_customer_labels(datasets.customers, end),
                        ModelSettings())
    example = features_at(ledger, end)
    for task, name in MODEL_NAMES.items():
        model = getattr(fitted, task)
        log_model_run(tracking_uri=tracking_uri, model_name=name, model=model, params={}, metrics={}, features={},
                      ledger_fingerprint=ledger.fingerprint(),
                      input_example=example[list(model.feature_names_in_)].head(3),
                      decision=GateDecision(True, "benchmark"))


async def load(base: str, paths: list[str], connections: int) -> tuple[np.ndarray, float, int]:
    """Send every path with at most `connections` in flight; latencies in ms, wall seconds, failures."""
    import httpx

    latencies = np.zeros(len(paths))
    failures = 0
    queue: asyncio.Queue = asyncio.Queue()
    for index, path in enumerate(paths):
        queue.put_nowait((index, path))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, limits=limits,
                                 timeout=60) as client:
        async def worker() -> None:
            nonlocal failures
            while not queue.empty():
                index, path = queue.get_nowait()
                started = time.perf_counter()
                response = await client.get(path)
                latencies[index] = (time.perf_counter() - started) * 1000
                failures += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        wall = time.perf_counter() - started
    return latencies, wall, failures


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def server_memory_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (the BentoML server and its workers), MB."""
    output = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,rss="], capture_output=True, text=True).stdout
    rows = [tuple(int(value) for value in line.split()) for line in output.splitlines() if line.strip()]
    children: dict[int, list[int]] = {}
    for child, parent, _ in rows:
        children.setdefault(parent, []).append(child)
    rss = {child: memory for child, _, memory in rows}
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        total += rss.get(current, 0)
        pending.extend(children.get(current, []))
    return total / 1024


def measure_service(name: str, folder: Path, ledger_dir: Path, uri: str, customers: list[str], as_of: str, *,
                    runs: Path | None, workers: int, connections: int, requests: int) -> dict:
    """Start one service, measure it, stop it."""
    import httpx

    from serving.smoke import free_port, start_service, stop, wait_until_healthy

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environ = {**os.environ, "ARRISK_DATABASE_URL": f"sqlite:///{folder / f'activity-{name}.sqlite'}",
               "ARRISK_HOME": str(folder), "ARRISK_RUNS_POLL_SECONDS": "0"}
    environ.pop("ARRISK_RUNS", None)
    started = time.perf_counter()
    process = start_service(None if runs is not None else ledger_dir, port, tokens=folder / "tokens.yaml",
                            tracking_uri=uri, log=folder / f"service-{name}.log", runs=runs, workers=workers,
                            environ=environ)
    figures: dict = {}
    try:
        wait_until_healthy(base, process, seconds=1800)
        figures["healthy_s"] = time.perf_counter() - started
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600) as client:
            # The latencies below are of a warm service: wait for the background warm-up (ledger, index).
            while not client.get("/v1/health").json().get("warm"):
                time.sleep(0.2)
            figures["warm_s"] = time.perf_counter() - started
            figures["first_worklist_ms"] = timed(lambda: client.get("/v1/worklist?top=50").raise_for_status())
            figures["worklist_ms"] = [timed(lambda: client.get("/v1/worklist?top=50").raise_for_status())
                                      for _ in range(200)]
            after_promise = []
            for index, customer in enumerate(customers[:20]):
                started = time.perf_counter()
                client.post("/v1/promises", json={"customer_id": customer, "amount": "100.00",
                                                  "made_date": as_of, "promised_date": as_of},
                            headers={"Idempotency-Key": f"bench-{name}-{index}"}).raise_for_status()
                client.get("/v1/worklist?top=50").raise_for_status()
                after_promise.append((time.perf_counter() - started) * 1000)
            figures["promise_then_worklist_ms"] = after_promise
            cold = customers[20:20 + 500]
            figures["risk_one_at_a_time_ms"] = [timed(lambda c=c: client.get(f"/v1/customers/{c}/risk")
                                                      .raise_for_status()) for c in cold]
        paths = [f"/v1/customers/{customer}/risk" for customer in
                 np.random.default_rng(1).choice(customers, size=requests)]
        asyncio.run(load(base, paths[:300], connections))  # warm-up: connections open
        latencies, wall, failures = asyncio.run(load(base, paths, connections))
        figures["risk_concurrent_ms"], figures["risk_rate"], figures["failures"] = latencies, len(paths) / wall, failures
        figures["memory_mb"] = server_memory_mb(process.pid)
    finally:
        stop(process)
    return figures


def p(values, q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="Service workers for the runs (1 for the other).")
    parser.add_argument("--ledger", type=Path, help="Use this generated ledger instead of generating one.")
    parser.add_argument("--reuse", type=Path, help="A folder of an earlier run of this benchmark: reuse its "
                        "champions and run (the run's figures are then that run's, from its manifest).")
    parser.add_argument("--runs-only", action="store_true", help="Measure the service on runs only.")
    args = parser.parse_args()

    from ledger import read_ledger, write_ledger
    from ledger.synthetic import generate_ledger
    from serving.auth import hash_token

    folder = args.reuse or Path(tempfile.mkdtemp(prefix="arrisk-bench-"))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if args.reuse is None:
        started = time.perf_counter()
        register_champions(uri)
        print(f"champions fitted and registered in {time.perf_counter() - started:.0f} s")
    for store in folder.glob("activity-*.sqlite"):
        store.unlink()  # each service starts with an empty activity store

    started = time.perf_counter()
    if args.ledger is not None:
        ledger_dir, ledger = args.ledger, read_ledger(args.ledger, validate=False)
    else:
        ledger, _ = generate_ledger(customers=args.customers, months=args.months, seed=1)
        ledger_dir = folder / "ledger"
        write_ledger(ledger, ledger_dir)
    open_documents = int(ledger.invoices["cleared_date"].isna().sum())
    print(f"ledger: {ledger.customers.shape[0]:,} customers, {len(ledger.invoices):,} documents, "
          f"{open_documents:,} open at the end ({time.perf_counter() - started:.0f} s)")
    (folder / "tokens.yaml").write_text(
        f"tokens:\n  - name: bench\n    user: bench\n    scopes: [admin]\n    sha256: {hash_token(TOKEN)}\n")
    from features.labels import last_event_date

    as_of = f"{last_event_date(ledger):%Y-%m-%d}"
    overdue = ledger.invoices[ledger.invoices["cleared_date"].isna()
                              & (ledger.invoices["due_date"] < pd.Timestamp(as_of))]["customer_id"].unique()
    customers = list(np.random.default_rng(0).permutation(overdue))
    del ledger

    runs = folder / "runs"
    environ = {**os.environ, "ARRISK_HOME": str(folder), "ARRISK_DATABASE_URL": f"sqlite:///{folder / 'run.sqlite'}"}
    started = time.perf_counter()
    if args.reuse is None:
        subprocess.run([sys.executable, "-m", "serving.cli", "run", "--ledger", str(ledger_dir), "--as-of", as_of,
                        "--out", str(runs), "--tracking-uri", uri], check=True, env=environ, stdout=subprocess.DEVNULL)
    manifest = json.loads((runs / as_of / "manifest.json").read_text())
    run_wall = time.perf_counter() - started if args.reuse is None else manifest["seconds"]

    served = measure_service("runs", folder, ledger_dir, uri, customers, as_of, runs=runs, workers=args.workers,
                             connections=args.connections, requests=args.requests)
    computed = served if args.runs_only else measure_service(
        "ledger", folder, ledger_dir, uri, customers, as_of, runs=None, workers=1, connections=args.connections,
        requests=args.requests // 5)

    print(f"\nrun for {as_of}: {run_wall:.1f} s wall (target < 90 s), peak memory {manifest['peak_rss_mb']:,.0f} MB "
          "(target < 6 GB)")
    for step in manifest["steps"]:
        print(f"  {step['name']:<13} {step['seconds']:7.1f} s   peak {step['peak_rss_mb']:7,.0f} MB")
    print(f"  tables: {', '.join(f'{name} {rows:,}' for name, rows in manifest['tables'].items())}")
    rows = [
        ("start to healthy", "healthy_s", lambda f: f["healthy_s"], "s", "< 5 s"),
        ("start to warm (ledger, index loaded)", "", lambda f: f["warm_s"], "s", ""),
        ("first worklist top 50", "first_worklist_ms", lambda f: f["first_worklist_ms"], "ms", ""),
        ("worklist top 50 p99", "worklist_ms", lambda f: p(f["worklist_ms"], 99), "ms", "< 50 ms"),
        ("promise then worklist p50", "", lambda f: p(f["promise_then_worklist_ms"], 50), "ms", ""),
        ("promise then worklist max", "", lambda f: max(f["promise_then_worklist_ms"]), "ms", "< 100 ms"),
        ("risk one at a time p50", "", lambda f: p(f["risk_one_at_a_time_ms"], 50), "ms", ""),
        ("risk one at a time p99", "", lambda f: p(f["risk_one_at_a_time_ms"], 99), "ms", "< 10 ms"),
        (f"risk at {args.connections} connections p99", "", lambda f: p(f["risk_concurrent_ms"], 99), "ms", "< 50 ms"),
        (f"risk at {args.connections} connections rate", "", lambda f: f["risk_rate"], "req/s", ">= 500"),
        ("server memory", "", lambda f: f["memory_mb"], "MB", ""),
    ]
    print(f"\n{'':34} {'runs (' + str(args.workers) + ' workers)':>20} {'on request (1)':>16} {'ratio':>8}  target")
    for label, _, value, unit, target in rows:
        a, b = value(served), value(computed)
        print(f"{label:34} {a:17,.1f} {unit:<3}{b:13,.1f} {unit:<3}{(a / b if b else float('nan')):7.2f}x  {target}")
    print(f"failures: runs {served['failures']}, on request {computed['failures']}")


if __name__ == "__main__":
    main()
