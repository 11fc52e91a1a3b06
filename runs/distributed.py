"""The daily run on a Dask cluster (`arrisk run --engine dask`): the same steps, one task per partition.

A partitioned ledger (`ledger.partitions`) holds every customer's whole history in one bucket, and every
per-customer step (validate, features, scores, explanations, dunning, the worklist's rows, aging) needs
only the customer's own history. So each bucket's day is one task: a worker reads its bucket, runs the
pandas steps of `runs.day` on it unchanged (`build_day`) and writes its part of each table as
`<table>/part-<bucket>.parquet` into the run's staging folder. What crosses customers is combined from the
tasks' small results:
- the worklist's global rank: every task returns its (unranked) worklist rows, one per customer with
  something overdue, and `rules.worklist.ranked` orders them all (score, overdue amount, customer id);
- the forecast: every task returns its `ForecastSums` (expected and simulated receipts per period), added
  up in a tree of Dask tasks; a bucket's draws use the seed `[seed, bucket]`, so the intervals are those
  of the same model with other random numbers (the expected receipts are the same sums);
- keys unique across the ledger: every task returns 64-bit hashes of its keys, checked together;
- the ledger's fingerprint: the buckets' fingerprints hashed in bucket order.
A worker holds one bucket's ledger and day at a time; the client holds the worklist and the forecast.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from features import FeatureConfig, added_peer_sums, features_at, peer_sums_at
from features.labels import last_event_date
from ledger import BadInput, Ledger, LedgerError, Problem
from ledger.partitions import UNIQUE_KEYS, part_name, partition_count, read_partition
from rules.forecast import ForecastSums, added_sums, customer_rho_of, forecast_table, period_edges
from rules.worklist import WORKLIST_COLUMNS, ranked
from runs.actions import with_records
from runs.day import FORECAST_FREQS, STEPS, DaySettings, Step, StepFailed, Work, build_day, peak_rss_mb
from runs.scoring import Champions, forecast_sums_of, score, score_table

# Tables written by the partitions, one file per bucket; the worklist and forecast are combined.
PARTITIONED_TABLES = ("scores", "customers", "contributions", "dunning", "aging")
PARTS_MARK = ".arrisk-parts"  # in a folder of bucket files ar-risk wrote: what may be replaced
DRIFT_CUSTOMERS = 10_000  # the drift verdict's sample of customers (the verdict compares 20,000 rows a side)


@dataclass
class PartitionResult:
    """What one bucket's task hands back: small things only (its tables are on disk)."""

    bucket: int
    rows: dict[str, int]
    worklist: pd.DataFrame
    forecast: dict[str, ForecastSums]
    fingerprint: str
    key_hashes: dict[str, np.ndarray]
    steps: list[dict]
    peak_rss_mb: float
    facts: dict = field(default_factory=dict)
    drift_rows: pd.DataFrame | None = None  # the bucket's scored documents, when it is in the drift sample


def without_forecast(result: PartitionResult) -> PartitionResult:
    return replace(result, forecast={})


def forecast_sums_step(bucket: int) -> Step:
    """The forecast step of a bucket: its sums per frequency (combined across buckets by the client)."""
    def forecast_sums(work: Work) -> None:
        settings = work.settings
        work.facts["forecast_sums"] = {
            freq: forecast_sums_of(work.ledger, work.as_of, work.champions, horizon_weeks=settings.horizon_weeks,
                                   freq=freq, draws=settings.draws, seed=[settings.seed, bucket],
                                   scores=work.scores)
            for freq in FORECAST_FREQS}
    return Step("forecast", forecast_sums, "the forecast's sums of the bucket")


def partition_steps(bucket: int, drift_rows: int = 0) -> tuple[Step, ...]:
    """The steps of one bucket: those of `runs.day` with the forecast's sums for its forecast; a bucket in
    the drift sample keeps up to `drift_rows` of its scored documents (features and predictions)."""
    steps = tuple(forecast_sums_step(bucket) if step.name == "forecast" else step for step in STEPS)
    if not drift_rows:
        return steps

    def keep(work: Work) -> None:
        items = work.scores.items
        work.facts["drift_rows"] = items if len(items) <= drift_rows else items.sample(drift_rows, random_state=bucket)
    return (*steps, Step("drift rows", keep, "the scored documents the drift verdict compares"))


def drift_buckets(partitions: int, customers: int, sample_customers: int = DRIFT_CUSTOMERS) -> list[int]:
    """The buckets whose customers the drift verdict looks at: about `sample_customers` customers, at least one
    bucket. Buckets are drawn by a hash of the customer id, so the first k are a random sample of customers."""
    share = 1.0 if customers <= sample_customers else sample_customers / customers
    return list(range(max(1, math.ceil(partitions * share))))


def records_of(ledger: Ledger, records: dict[str, pd.DataFrame] | None) -> dict[str, pd.DataFrame]:
    """The recorded activity that belongs to the bucket's customers and documents."""
    customers = set(ledger.customers["customer_id"])
    invoices = set(ledger.invoices["invoice_id"])
    mine = {}
    for name, table in (records or {}).items():
        if table is None or table.empty:
            continue
        keep = (table["customer_id"].isin(customers) if "customer_id" in table
                else table["invoice_id"].isin(invoices))
        mine[name] = table[keep]
    applications = mine.get("payment_applications")
    if applications is not None and (records or {}).get("payments") is not None:
        # A payment goes with the documents it pays, whoever's bucket its payer is in (a parent paying).
        payments = records["payments"]
        mine["payments"] = payments[payments["customer_id"].isin(customers)
                                    | payments["payment_id"].isin(applications["payment_id"])]
    return mine


def partition_day(ledger_dir: str, bucket: int, as_of: pd.Timestamp, champions: Champions,
                  settings: DaySettings, records: dict[str, pd.DataFrame] | None, out: str,
                  drift_rows: int = 0) -> PartitionResult:
    """One bucket's day, run on a worker: its tables written to `out/<table>/part-<bucket>.parquet`."""
    ledger = read_partition(ledger_dir, bucket, validate=False)  # the validate step checks it, records included
    ledger = with_records(ledger, records_of(ledger, records))
    try:
        day = build_day(ledger, as_of, champions, settings, partition_steps(bucket, drift_rows))
    except StepFailed as failed:
        if isinstance(failed.error, LedgerError):  # name the bucket: its rows count within it
            problems = [replace(problem, where=f"{ledger_dir}/{problem.where}/{part_name(bucket)}")
                        for problem in failed.error.problems]
            raise StepFailed(failed.step, LedgerError(problems, failed.error.title)) from None
        raise
    rows = {}
    for name in PARTITIONED_TABLES:
        folder = Path(out) / name
        folder.mkdir(exist_ok=True)
        day.tables[name].reset_index(drop=True).to_parquet(folder / f"{part_name(bucket)}.parquet", index=False)
        rows[name] = len(day.tables[name])
    first = ledger.invoices["invoice_date"].min()
    return PartitionResult(
        bucket, rows, day.tables["worklist"], day.facts.pop("forecast_sums"),
        fingerprint=day.facts["ledger_fingerprint"], key_hashes=key_hashes(ledger), steps=day.steps,
        peak_rss_mb=peak_rss_mb(),
        facts={"first_invoice_date": None if pd.isna(first) else first,
               "last_event_date": last_event_date(ledger) if len(ledger.invoices) else None},
        drift_rows=day.facts.pop("drift_rows", None))


def key_hashes(ledger: Ledger) -> dict[str, np.ndarray]:
    """64-bit hashes of the keys the contract makes unique, per `table.column`."""
    return {f"{table}.{column}": pd.util.hash_array(getattr(ledger, table)[column].to_numpy(dtype=object))
            for table, column in UNIQUE_KEYS}


def duplicate_key_problems(results: Sequence[PartitionResult]) -> list[Problem]:
    """Keys that occur in more than one bucket (within a bucket, the validate step has already refused them)."""
    problems = []
    for table, column in UNIQUE_KEYS:
        name = f"{table}.{column}"
        hashes = np.concatenate([result.key_hashes[name] for result in results])
        values, counts = np.unique(hashes, return_counts=True)
        repeated = values[counts > 1]
        if len(repeated):
            buckets = [result.bucket for result in results if np.isin(result.key_hashes[name], repeated).any()]
            problems.append(Problem(table, None, column, f"{len(repeated)} key(s) occur in more than one bucket "
                                                         f"(buckets {', '.join(map(str, buckets[:10]))})"))
    return problems


def combined_fingerprint(results: Sequence[PartitionResult]) -> str:
    digest = hashlib.sha256()
    for result in sorted(results, key=lambda result: result.bucket):
        digest.update(result.fingerprint.encode())
    return digest.hexdigest()[:16]


def global_worklist(results: Sequence[PartitionResult]) -> pd.DataFrame:
    """Every bucket's worklist rows in one ranking (the same order `rules.worklist.ranked` gives the book)."""
    rows = [result.worklist for result in results if len(result.worklist)]
    if not rows:
        return results[0].worklist if results else pd.DataFrame(columns=WORKLIST_COLUMNS)
    table = pd.concat(rows, ignore_index=True).drop(columns="rank")
    return ranked(table)[WORKLIST_COLUMNS]


def tree_sum(client, futures: list, add: Callable) -> object:
    """The futures' values added pairwise on the cluster (a reduction tree of depth log2(n))."""
    while len(futures) > 1:
        pairs = [client.submit(add, futures[i], futures[i + 1], pure=False) for i in range(0, len(futures) - 1, 2)]
        futures = pairs + ([futures[-1]] if len(futures) % 2 else [])
    return futures[0].result()


def added_forecasts(first: dict[str, ForecastSums], second: dict[str, ForecastSums]) -> dict[str, ForecastSums]:
    return {freq: added_sums(first[freq], second[freq]) for freq in first}


def forecast_of(sums: dict[str, ForecastSums], as_of: pd.Timestamp, settings: DaySettings,
                base_currency: str) -> pd.DataFrame:
    return pd.concat([forecast_table(as_of, period_edges(settings.horizon_weeks, freq), sums[freq], base_currency)
                      .assign(freq=freq) for freq in FORECAST_FREQS], ignore_index=True)


@dataclass
class DistributedDay:
    """A run's combined results (the partitioned tables are already in the staging folder)."""

    as_of: pd.Timestamp
    tables: dict[str, pd.DataFrame]  # worklist and forecast
    rows: dict[str, int]
    facts: dict
    steps: list[dict]
    partitions: int
    peak_worker_rss_mb: float
    seconds: float  # wall-clock, from the first task submitted to the reductions done
    drift_buckets: list[int] = field(default_factory=list)
    drift_rows: pd.DataFrame | None = None  # the scored documents of the drift buckets


def build_day_on_cluster(client, ledger_dir: str | Path, as_of: pd.Timestamp, champions: Champions, out: Path,
                         settings: DaySettings | None = None, records: dict[str, pd.DataFrame] | None = None,
                         base_currency: str = "EUR", drift_sample: list[int] | None = None,
                         drift_rows: int = 20_000,
                         on_progress: Callable[[int, int], None] | None = None) -> DistributedDay:
    """Every bucket's day as one task on `client`'s cluster, written under `out`; then the reductions. The
    buckets in `drift_sample` keep up to `drift_rows` scored documents each for the drift verdict."""
    from distributed import as_completed

    settings = settings or DaySettings()
    as_of = pd.Timestamp(as_of).normalize()
    partitions = partition_count(ledger_dir)
    started = time.perf_counter()
    settings = replace(settings, peers=peer_sums_on_cluster(client, ledger_dir, as_of, settings.feature_config))
    shared_champions, shared_settings, shared_records = client.scatter([champions, settings, records or {}],
                                                                       broadcast=True, hash=False)
    drift_sample = drift_sample or []
    futures = [client.submit(partition_day, str(ledger_dir), bucket, as_of, shared_champions, shared_settings,
                             shared_records, str(out), drift_rows if bucket in drift_sample else 0,
                             key=f"partition-day-{bucket}-{time.time_ns()}")
               for bucket in range(partitions)]
    # The client gathers each result without its forecast sums (megabytes per bucket), which are added up on
    # the cluster below.
    light = [client.submit(without_forecast, future, pure=False) for future in futures]
    results: list[PartitionResult] = []
    for done, future in enumerate(as_completed(light), start=1):
        results.append(future.result())  # a task's own exception (StepFailed naming the step) is raised here
        if on_progress is not None:
            on_progress(done, partitions)
    partitions_seconds = time.perf_counter() - started
    results.sort(key=lambda result: result.bucket)  # they complete in any order
    problems = duplicate_key_problems(results)
    if problems:
        raise LedgerError(problems)

    reduce_started = time.perf_counter()
    sums = tree_sum(client, [client.submit(lambda result: result.forecast, future) for future in futures],
                    added_forecasts)
    forecast = forecast_of(sums, as_of, settings, base_currency)
    worklist = global_worklist(results)
    reduce_seconds = time.perf_counter() - reduce_started
    rows = {name: sum(result.rows[name] for result in results) for name in PARTITIONED_TABLES}
    firsts = [result.facts["first_invoice_date"] for result in results if result.facts["first_invoice_date"] is not None]
    lasts = [result.facts["last_event_date"] for result in results if result.facts["last_event_date"] is not None]
    facts = {"ledger_fingerprint": combined_fingerprint(results),
             "first_invoice_date": f"{min(firsts):%Y-%m-%d}" if firsts else None,
             "last_event_date": f"{max(lasts):%Y-%m-%d}" if lasts else None,
             "horizon_weeks": settings.horizon_weeks, "forecast_draws": settings.draws,
             "forecast_seed": settings.seed, "forecast_seeds": "[seed, bucket] per bucket",
             "forecast_customer_rho": customer_rho_of(champions.require("timing"))}
    driver_steps = [{"name": "partitions (wall)", "seconds": round(partitions_seconds, 3), "peak_rss_mb": peak_rss_mb()},
                    {"name": "worklist rank, forecast sum", "seconds": round(reduce_seconds, 3),
                     "peak_rss_mb": peak_rss_mb()}]
    return DistributedDay(as_of, {"worklist": worklist, "forecast": forecast}, rows, facts,
                          [*step_totals(results), *driver_steps], partitions,
                          max(result.peak_rss_mb for result in results),
                          round(time.perf_counter() - started, 3), drift_sample, drift_frame(results))


def drift_frame(results: Sequence[PartitionResult]) -> pd.DataFrame | None:
    frames = [result.drift_rows for result in sorted(results, key=lambda result: result.bucket)
              if result.drift_rows is not None]
    return pd.concat(frames, ignore_index=True) if frames else None


def sample_ledger(ledger_dir: str | Path, buckets: Sequence[int]) -> Ledger:
    """The ledger of some buckets together (a random sample of customers, all their history), its source
    naming the sample."""
    parts = [read_partition(ledger_dir, bucket, validate=False) for bucket in buckets]
    tables = {name: pd.concat([getattr(part, name) for part in parts], ignore_index=True)
              for name in parts[0].tables()}
    source = f"{parts[0].source} (buckets {', '.join(map(str, buckets))} of {partition_count(ledger_dir)})"
    return Ledger(**tables, base_currency=parts[0].base_currency, source=source)


def step_totals(results: Sequence[PartitionResult]) -> list[dict]:
    """Per step: the seconds all tasks spent in it (worker-seconds) and the largest worker peak memory."""
    totals: dict[str, dict] = {}
    for result in results:
        for step in result.steps:
            total = totals.setdefault(step["name"], {"name": step["name"], "seconds": 0.0, "peak_rss_mb": 0.0})
            total["seconds"] = round(total["seconds"] + step["seconds"], 3)
            total["peak_rss_mb"] = max(total["peak_rss_mb"], step["peak_rss_mb"])
    return [{**total, "name": f"{total['name']} (worker-seconds)"} for total in totals.values()]



def partition_peer_sums(ledger_dir: str, bucket: int, as_of: pd.Timestamp,
                        config: FeatureConfig | None = None) -> pd.DataFrame:
    """One bucket's peer sums at `as_of` (`features.peer_sums_at`): added over the buckets, the whole ledger's."""
    return peer_sums_at(read_partition(ledger_dir, bucket, validate=False), as_of, config)


def peer_sums_on_cluster(client, ledger_dir: str | Path, as_of: pd.Timestamp,
                         config: FeatureConfig | None = None) -> pd.DataFrame:
    """The peer sums of every customer at `as_of`: each bucket's as one task, added up (integer sums, so
    exactly those of the whole ledger); the peer features of each bucket are computed from them."""
    buckets = range(partition_count(ledger_dir))
    futures = client.map(partition_peer_sums, [str(ledger_dir)] * len(buckets), buckets, as_of=pd.Timestamp(as_of),
                         config=config, pure=False)
    return added_peer_sums(client.gather(futures))


def partition_features(ledger_dir: str, bucket: int, as_of: pd.Timestamp, config: FeatureConfig | None = None,
                       records: dict[str, pd.DataFrame] | None = None,
                       peers: pd.DataFrame | None = None) -> pd.DataFrame:
    """One bucket's features of every open document (`features.features_at`, with every bucket's `peers`)."""
    return features_at(read_partition(ledger_dir, bucket), as_of, config, peers)


def partition_scores(ledger_dir: str, bucket: int, as_of: pd.Timestamp, champions: Champions,
                     records: dict[str, pd.DataFrame] | None = None,
                     peers: pd.DataFrame | None = None) -> pd.DataFrame:
    """One bucket's scores of every open document (`runs.scoring.score_table`), its recorded activity included."""
    ledger = read_partition(ledger_dir, bucket)
    ledger = with_records(ledger, records_of(ledger, records))
    return score_table(score(ledger, as_of, champions, peers=peers), champions)


def bucket_tables_on_cluster(client, table_of: Callable[..., pd.DataFrame], ledger_dir: str | Path,
                             out: str | Path, **arguments) -> int:
    """`table_of(ledger_dir, bucket, **arguments)` for every bucket, one task each, written by the workers as
    `out/part-<bucket>.parquet` (into a staging folder beside `out`, renamed into place when every bucket is
    done); returns the rows written. `out` must be absent or such a folder."""
    out = Path(out)
    check_parts_folder(out)
    staging = out.with_name(f".{out.name}.{os.getpid()}.{time.time_ns()}.tmp")
    staging.mkdir(parents=True)
    (staging / PARTS_MARK).write_text("written by ar-risk: one Parquet file per bucket\n")
    try:
        shared = {name: client.scatter(value, broadcast=True, hash=False) if name in ("champions", "records") else value
                  for name, value in arguments.items()}
        futures = [client.submit(write_bucket_table, table_of, str(ledger_dir), bucket, str(staging), pure=False,
                                 **shared)
                   for bucket in range(partition_count(ledger_dir))]
        rows = sum(client.gather(futures))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rows


def write_bucket_table(table_of: Callable[..., pd.DataFrame], ledger_dir: str, bucket: int, out: str,
                       **arguments) -> int:
    frame = table_of(ledger_dir, bucket, **arguments)
    frame.to_parquet(Path(out) / f"{part_name(bucket)}.parquet", index=False)
    return len(frame)


def features_on_cluster(client, ledger_dir: str | Path, as_of: pd.Timestamp, out: str | Path,
                        config: FeatureConfig | None = None) -> int:
    """The features of every open document at `as_of` as a folder of one Parquet file per bucket."""
    return bucket_tables_on_cluster(client, partition_features, ledger_dir, out, as_of=pd.Timestamp(as_of),
                                    config=config, peers=peer_sums_on_cluster(client, ledger_dir, as_of, config))


def scores_on_cluster(client, ledger_dir: str | Path, as_of: pd.Timestamp, champions: Champions,
                      out: str | Path, records: dict[str, pd.DataFrame] | None = None) -> int:
    """The scores of every open document at `as_of` as a folder of one Parquet file per bucket."""
    return bucket_tables_on_cluster(client, partition_scores, ledger_dir, out, as_of=pd.Timestamp(as_of),
                                    champions=champions, records=records or {},
                                    peers=peer_sums_on_cluster(client, ledger_dir, as_of))


def check_parts_folder(out: Path) -> None:
    """`BadInput` unless `out` is absent or a folder of bucket files ar-risk wrote (its `PARTS_MARK` and
    part-NNNNN.parquet files, nothing else): nothing else is ever replaced."""
    if not os.path.lexists(out):
        return
    ours = (not out.is_symlink() and out.is_dir() and (out / PARTS_MARK).is_file()
            and all(entry.name == PARTS_MARK or re.fullmatch(r"part-\d{5}\.parquet", entry.name)
                    for entry in out.iterdir()))
    if not ours:
        raise BadInput(f"{out}: exists and is not a folder of bucket files written by ar-risk; refusing to replace "
                       "it (nothing was changed): pass a new folder")
