"""Serving benchmark (issue 7): the API under a bounded load, against calling the same Python function.

1. Fit the three models on a small synthetic ledger (default settings) and register them as champions
   in a throwaway MLflow store.
2. Generate a large ledger to serve (about 100,000 open invoices with the defaults) and start the
   service on 127.0.0.1 with `arrisk serve`.
3. Time the worklist endpoint cold (first request for a date: scoring and ranking every open invoice)
   and warm (cached), and the same function called directly.
4. Send REQUESTS requests over CONNECTIONS concurrent connections to the single-customer score +
   explanation endpoint (`/v1/customers/{id}/risk`) for random customers; print p50/p99 latency and
   throughput, and the ratio to calling `ServingState.customer_risk` directly.

Targets on 2 cores: score+explain p99 < 50 ms and >= 300 requests/s; worklist for 100,000 open invoices < 2 s.
Run: `python benchmarks/bench_serving.py [--customers 20000] [--requests 10000] [--connections 32]`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


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


async def load(base: str, paths: list[str], token: str, connections: int) -> tuple[np.ndarray, float, int]:
    """Send every path with at most `connections` in flight; latencies in ms, wall seconds, errors."""
    import httpx

    latencies = np.zeros(len(paths))
    failures = 0
    queue: asyncio.Queue = asyncio.Queue()
    for index, path in enumerate(paths):
        queue.put_nowait((index, path))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, limits=limits,
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


def percentiles(values: np.ndarray) -> str:
    return f"p50 {np.percentile(values, 50):7.1f} ms  p99 {np.percentile(values, 99):7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    from ledger import write_ledger
    from ledger.synthetic import generate_ledger
    from serving.auth import hash_token
    from serving.scoring import load_champions
    from serving.smoke import free_port, get_json, start_service, stop, wait_until_healthy
    from serving.views import ServingState

    folder = Path(tempfile.mkdtemp(prefix="arrisk-bench-"))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    started = time.perf_counter()
    register_champions(uri)
    print(f"champions fitted and registered in {time.perf_counter() - started:.0f} s")

    started = time.perf_counter()
    ledger, _ = generate_ledger(customers=args.customers, months=args.months, seed=1)
    write_ledger(ledger, folder / "ledger")
    open_invoices = int(ledger.invoices["cleared_date"].isna().sum())
    print(f"ledger: {args.customers:,} customers x {args.months} months, {len(ledger.invoices):,} documents, "
          f"{open_invoices:,} open at the end ({time.perf_counter() - started:.0f} s)")

    token = "arr_benchmark_token_0123456789abcdef"
    (folder / "tokens.yaml").write_text(
        f"tokens:\n  - name: bench\n    user: bench\n    scopes: [admin]\n    sha256: {hash_token(token)}\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = start_service(folder / "ledger", port, tokens=folder / "tokens.yaml", tracking_uri=uri,
                            log=folder / "service.log")
    try:
        wait_until_healthy(base, process, seconds=900)
        print(f"service ready in {time.perf_counter() - started:.1f} s (includes scoring and ranking the last day)")
        as_of = ledger.invoices["invoice_date"].max()
        cold_day = (as_of - pd.Timedelta(days=7)).date().isoformat()
        started = time.perf_counter()
        status, body = get_json(f"{base}/v1/worklist?as_of={cold_day}&top=100", token, timeout=600)
        cold = time.perf_counter() - started
        warm = []
        for _ in range(20):
            started = time.perf_counter()
            get_json(f"{base}/v1/worklist?top=100", token)
            warm.append(time.perf_counter() - started)
        print(f"worklist over HTTP: cold {cold:.2f} s (status {status}, {body.get('count')} rows), "
              f"warm median {np.median(warm) * 1000:.1f} ms")

        rng = np.random.default_rng(0)
        customers = ledger.invoices.loc[ledger.invoices["cleared_date"].isna(), "customer_id"].unique()
        chosen = rng.choice(customers, size=args.requests)
        paths = [f"/v1/customers/{customer}/risk" for customer in chosen]
        asyncio.run(load(base, paths[:200], token, args.connections))  # warm-up
        latencies, wall, failures = asyncio.run(load(base, paths, token, args.connections))
        http_rate = len(paths) / wall
    finally:
        stop(process)

    state = ServingState(ledger, load_champions(uri))
    started = time.perf_counter()
    state.full_worklist(pd.Timestamp(cold_day))
    direct_cold = time.perf_counter() - started
    state.full_worklist()
    direct = []
    for customer in chosen[:1000]:
        started = time.perf_counter()
        state.customer_risk(customer)
        direct.append((time.perf_counter() - started) * 1000)
    direct = np.array(direct)

    print()
    print(f"score+explain over HTTP ({args.requests:,} requests, {args.connections} connections): "
          f"{percentiles(latencies)}  {http_rate:,.0f} requests/s  {failures} failures")
    print(f"score+explain direct call (1,000 calls, one at a time):      {percentiles(direct)}  "
          f"{1000 / direct.mean():,.0f} calls/s")
    print(f"ratio HTTP / direct: p50 x{np.percentile(latencies, 50) / np.percentile(direct, 50):.1f}, "
          f"throughput x{http_rate / (1000 / direct.mean()):.2f}")
    print(f"worklist cold ({open_invoices:,} open invoices): HTTP {cold:.2f} s, direct {direct_cold:.2f} s; "
          f"warm over HTTP {np.median(warm) * 1000:.1f} ms")
    print("targets: score+explain p99 < 50 ms and >= 300 requests/s; worklist for 100,000 open invoices < 2 s")


if __name__ == "__main__":
    main()
