"""Fitting at scale: the late-payment trees fitted on the gathered sample on one worker (what
`--engine dask` does) against lightgbm.dask's DaskLGBMClassifier on the same rows spread over the workers.

    .venv/bin/python benchmarks/bench_train_dask.py [--customers 3000] [--months 24] [--partitions 8]

A ledger of `--customers` x `--months` is generated once under /tmp and written in `--partitions` buckets;
its training rows are built per bucket on a LocalCluster of 2 workers x 4 GB (`sample_from_partitions`,
all rows), and the late-payment training rows of the last backtest origin (labels censored there, encoded
by the model's FrameEncoder) are written as one Parquet file per bucket. Each fitting path then runs on a
fresh LocalCluster of 2 workers x 4 GB, so each peak worker memory (the largest ru_maxrss of a worker
process) is its own:
- sample: one task reads the files and fits lgb.LGBMClassifier with the models' settings;
- lightgbm.dask: the files read as a Dask DataFrame (one partition per bucket, persisted over the two
  workers) and DaskLGBMClassifier fitted with the same settings.
Both are scored by ROC AUC on the last origin's test rows (invoices still undecided at it, outcomes in full).

Measured here (2 cores shared with other jobs, load average ~4.4, so times are noisy; OMP_NUM_THREADS=1;
3000 customers x 24 months, 8 buckets: 310,256 invoice rows built per bucket in 97 s; last origin
2023-09-30: 209,897 late-payment training rows x 49 columns, 12,153 test rows), two runs:
    sample (one worker)        fit 83.3 s / 61.4 s   peak worker memory 0.95 / 0.62 GB   ROC AUC 0.8116
    lightgbm.dask (2 workers)  fit 14.0 s / 22.4 s   peak worker memory 0.95 / 0.55 GB   ROC AUC 0.8129 / 0.8128
Most of the time gap is not the second worker: the same one-process fit took 40.1 s with the models'
monotone_constraints_method "intermediate" and 13.0 s with "basic", and LightGBM's distributed (data-parallel)
learner evidently does not run the costly method (its fit is as fast as "basic", with one worker's rows each).
Kept: the sample path. Its ROC AUC is the same to 0.001, its memory the same; it fits the project's own models
(calibration, bucket and days models, the intermediate monotone constraints, the artifact MLflow logs and the
scorer loads) and is deterministic: with all rows it gives exactly the pandas engine's fits, whereas
lightgbm.dask's trees depend on how the partitions fall over the workers and would need a second model
class, artifact and scorer path. lightgbm.dask becomes worth it when the rows that matter no longer fit one
worker even as a stratified sample, which the row budget (`--sample-rows`) postpones far beyond these ledgers.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path("/tmp/arrisk_bench_train_dask")
WORKER_MEMORY = "4GB"


def peak_worker_gb() -> float:
    """This process's peak resident memory in GB (run on each worker)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def partitioned_ledger(customers: int, months: int, partitions: int) -> Path:
    """The benchmark's ledger, generated and written once per size."""
    from ledger import write_ledger
    from ledger.synthetic import generate_ledger

    path = ROOT / f"ledger_{customers}x{months}_p{partitions}"
    if not (path / "ledger.json").exists():
        started = time.perf_counter()
        ledger, _ = generate_ledger(customers=customers, months=months, seed=7)
        write_ledger(ledger, path, partitions=partitions)
        print(f"generated and wrote {path} in {time.perf_counter() - started:.1f} s")
    return path


def late_rows(path: Path, out: Path) -> tuple[pd.Timestamp, int]:
    """Build the training rows on the cluster, then write the last origin's encoded late-payment training rows
    (one file per bucket of rows) and test rows under `out`; returns the origin and the feature count."""
    from features import FeatureConfig
    from ledger.cluster import dask_client
    from ledger.partitions import bucket_of, partition_count
    from models.encoding import FrameEncoder
    from models.late_payment import known_late
    from training.backtest import ModelSettings, invoice_model_features, undecided
    from training.datasets import censor_invoice_labels
    from training.distributed import sample_from_partitions
    from training.pipeline import chosen_origins

    settings = ModelSettings()
    grace = settings.late_grace_days
    started = time.perf_counter()
    with dask_client(workers=2, memory_limit=WORKER_MEMORY) as client:
        sample = sample_from_partitions(client, path, config=FeatureConfig(late_grace_days=grace))
    print(f"training rows built per bucket on 2 workers in {time.perf_counter() - started:.1f} s: "
          f"{len(sample.datasets.invoices):,} invoice rows, {len(sample.datasets.customers):,} customer rows")
    invoices = sample.datasets.invoices
    origin = chosen_origins(sample.cutoffs, sample.datasets.observation_end, 3)[-1]
    train = censor_invoice_labels(invoices[invoices["cutoff"] < origin], origin)
    train = train[undecided(train, grace)]
    late = known_late(train["days_late"], train["paid"], grace)
    keep = ~np.isnan(late) & (train["observed_days_past_due"].to_numpy() > grace)  # as LatePaymentModel.fit
    train, y_train = train[keep], late[keep].astype(int)
    test = invoices[invoices["cutoff"] == origin]
    test = test[undecided(test, grace)]
    y_test = known_late(test["days_late"], test["paid"], grace)
    test, y_test = test[~np.isnan(y_test)], y_test[~np.isnan(y_test)].astype(int)

    encoder = FrameEncoder(invoice_model_features()).fit(train)
    buckets = bucket_of(train["customer_id"].to_numpy(), partition_count(path))
    out.mkdir(parents=True, exist_ok=True)
    matrix = encoder.transform(train).assign(y=y_train)
    for bucket in range(partition_count(path)):
        matrix[buckets == bucket].reset_index(drop=True).to_parquet(out / f"train-{bucket:05d}.parquet")
    encoder.transform(test).assign(y=y_test).reset_index(drop=True).to_parquet(out / "test.parquet")
    print(f"last origin {origin:%Y-%m-%d}: {len(train):,} late-payment training rows x {matrix.shape[1] - 1} "
          f"columns, {len(test):,} test rows")
    return origin, matrix.shape[1] - 1


def lgbm_settings(columns: list[str]) -> dict:
    """The late-payment trees' LightGBM settings (models.boosting), monotone constraints included."""
    from models.boosting import lgbm_params, monotone_vector
    from training.backtest import MONOTONE, ModelSettings

    settings = ModelSettings()
    return lgbm_params(settings.n_estimators, settings.learning_rate, 31, 40, settings.random_state) | {
        "monotone_constraints": monotone_vector(columns, MONOTONE), "monotone_constraints_method": "intermediate"}


def fit_on_one_worker(folder: str):
    """The sample path's fit (a task): read every file, fit LightGBM; returns the model and the seconds."""
    import lightgbm as lgb

    started = time.perf_counter()
    matrix = pd.concat([pd.read_parquet(file) for file in sorted(Path(folder).glob("train-*.parquet"))],
                       ignore_index=True)
    X, y = matrix.drop(columns="y"), matrix["y"]
    model = lgb.LGBMClassifier(**lgbm_settings(list(X.columns))).fit(X, y)
    return model, time.perf_counter() - started


def sample_path(folder: Path) -> dict:
    from ledger.cluster import dask_client

    with dask_client(workers=2, memory_limit=WORKER_MEMORY) as client:
        started = time.perf_counter()
        model, task_seconds = client.submit(fit_on_one_worker, str(folder), pure=False).result()
        seconds = time.perf_counter() - started
        peak = max(client.run(peak_worker_gb).values())
    return {"seconds": seconds, "task_seconds": task_seconds, "peak_gb": peak, "model": model}


def dask_path(folder: Path) -> dict:
    import dask.dataframe as dd
    from lightgbm.dask import DaskLGBMClassifier

    from ledger.cluster import dask_client

    with dask_client(workers=2, memory_limit=WORKER_MEMORY) as client:
        started = time.perf_counter()
        matrix = dd.read_parquet(sorted(str(file) for file in folder.glob("train-*.parquet"))).persist()
        X, y = matrix.drop(columns="y"), matrix["y"]
        model = DaskLGBMClassifier(client=client, **lgbm_settings(list(X.columns))).fit(X, y)
        seconds = time.perf_counter() - started
        peak = max(client.run(peak_worker_gb).values())
        local = model.to_local()
    return {"seconds": seconds, "peak_gb": peak, "model": local}


def main() -> None:
    from training.metrics import roc_auc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--reuse", action="store_true", help="Reuse the rows of an earlier run of the same size.")
    parser.add_argument("--dask-first", action="store_true", help="Measure lightgbm.dask before the sample path.")
    args = parser.parse_args()
    path = partitioned_ledger(args.customers, args.months, args.partitions)
    folder = ROOT / f"late_rows_{args.customers}x{args.months}_p{args.partitions}"
    if not (folder / "test.parquet").exists() or not args.reuse:
        late_rows(path, folder)
    test = pd.read_parquet(folder / "test.parquet")
    X_test, y_test = test.drop(columns="y"), test["y"]
    paths = {"sample (one worker)": sample_path, "lightgbm.dask (2 workers)": dask_path}
    for name in sorted(paths, reverse=args.dask_first):
        result = paths[name](folder)
        auc = roc_auc(y_test, result["model"].predict_proba(X_test)[:, 1])
        inside = f" (task {result['task_seconds']:.1f} s)" if "task_seconds" in result else ""
        print(f"{name:26s} fit {result['seconds']:5.1f} s{inside}   peak worker memory {result['peak_gb']:.2f} GB   "
              f"ROC AUC {auc:.4f}", flush=True)


if __name__ == "__main__":
    main()
