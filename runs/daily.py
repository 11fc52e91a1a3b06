"""One daily run, end to end: the ledger with the day's records, the steps, the run folder, the pruning.

`execute_run` is what `arrisk run` and `POST /v1/runs` call. It writes each step's tables into the
staging folder as the step ends, so a run killed after its third step leaves the features and scores on
disk in staging and nothing in `RUNS_DIR/<as_of>/`; a failed step removes the staging folder and raises
`StepFailed` naming the step. The served run changes only when the complete one is renamed into place.
"""

from __future__ import annotations

import datetime
import secrets
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from features.labels import last_event_date
from ledger import Ledger
from runs.day import STEPS, DaySettings, Step, build_day, peak_rss_mb
from runs.folder import RunWriter, prune, run_lock
from runs.scoring import Champions

ENGINE = "pandas"


def execute_run(ledger: Ledger, as_of: pd.Timestamp, runs_dir: str | Path, champions: Champions, *,
                settings: DaySettings | None = None, steps: Sequence[Step] = STEPS, keep: int = 7,
                about: dict | None = None, activity_mark: int | None = None,
                on_step: Callable[[int, Step], None] | None = None) -> Path:
    """Build the day at `as_of` step by step into a staging folder of `runs_dir`, move it into place as
    `runs_dir/<as_of>/` with its manifest, prune all but the newest `keep` runs; returns the run's folder.
    `about` adds to the manifest (the ledger's location, who asked); `activity_mark` is the activity
    store's audit mark the ledger's records reflect (the service re-derives customers changed after it)."""
    as_of = pd.Timestamp(as_of).normalize()
    with run_lock(runs_dir):
        folder = _write_run(ledger, as_of, runs_dir, champions, settings, steps, about, activity_mark, on_step)
        prune(runs_dir, keep)
    return folder


def _write_run(ledger: Ledger, as_of: pd.Timestamp, runs_dir: str | Path, champions: Champions,
               settings: DaySettings | None, steps: Sequence[Step], about: dict | None, activity_mark: int | None,
               on_step: Callable[[int, Step], None] | None) -> Path:
    writer = RunWriter(runs_dir, as_of)
    try:
        day = build_day(ledger, as_of, champions, settings, steps, on_step=on_step,
                        on_done=lambda index, step, tables: writer.write_tables(tables))
        day.facts.update(first_invoice_date=f"{ledger.invoices['invoice_date'].min():%Y-%m-%d}",
                         last_event_date=f"{last_event_date(ledger):%Y-%m-%d}")
        manifest = {
            "run_id": secrets.token_hex(8),
            "ledger_fingerprint": day.facts.get("ledger_fingerprint"),
            "base_currency": ledger.base_currency,
            "models": model_manifest(champions),
            "package_version": package_version(),
            "engine": ENGINE,
            "activity_mark": activity_mark,
            "seconds": round(sum(step["seconds"] for step in day.steps), 3),
            "peak_rss_mb": peak_rss_mb(),
            **(about or {}),
        }
        return writer.finish(day, manifest)
    except BaseException:
        writer.abandon()
        raise


def execute_run_on_cluster(client, ledger_dir: str | Path, as_of: pd.Timestamp, runs_dir: str | Path,
                           champions: Champions, *, settings: DaySettings | None = None, keep: int = 7,
                           about: dict | None = None, records: dict[str, pd.DataFrame] | None = None,
                           activity_mark: int | None = None, base_currency: str = "EUR",
                           drift_sample: list[int] | None = None, more_facts: Callable | None = None,
                           on_progress: Callable[[int, int], None] | None = None) -> Path:
    """`execute_run` on a Dask cluster (`runs.distributed`): every bucket of the partitioned ledger in
    `ledger_dir` is a task writing its part of each table into the staging folder; the manifest records the
    engine, the cluster and the partitions. The folders must be ones every worker sees (a shared disk).
    `more_facts(client, day)` adds facts computed from the combined day (the drift verdict of the buckets in
    `drift_sample`), timed as a step of its own."""
    from ledger.cluster import cluster_facts
    from runs.day import Day
    from runs.distributed import build_day_on_cluster

    as_of = pd.Timestamp(as_of).normalize()
    with run_lock(runs_dir):
        writer = RunWriter(runs_dir, as_of)
        try:
            day = build_day_on_cluster(client, ledger_dir, as_of, champions, writer.staging, settings, records,
                                       base_currency, drift_sample, on_progress=on_progress)
            if more_facts is not None:
                started = time.perf_counter()
                day.facts.update(more_facts(client, day))
                day.steps.append({"name": "facts on the sample", "seconds": round(time.perf_counter() - started, 3),
                                  "peak_rss_mb": peak_rss_mb()})
                day.seconds = round(day.seconds + day.steps[-1]["seconds"], 3)
            writer.rows.update(day.rows)  # written by the workers, one file per bucket
            cluster = cluster_facts(client)
            manifest = {
                "run_id": secrets.token_hex(8),
                "ledger_fingerprint": day.facts["ledger_fingerprint"],
                "base_currency": base_currency,
                "models": model_manifest(champions),
                "package_version": package_version(),
                "engine": "dask",
                "workers": cluster["workers"],
                "threads": cluster["threads"],
                "scheduler": cluster["scheduler"],
                "partitions": day.partitions,
                "activity_mark": activity_mark,
                "seconds": day.seconds,
                "peak_rss_mb": peak_rss_mb(),
                "peak_worker_rss_mb": day.peak_worker_rss_mb,
                **(about or {}),
            }
            folder = writer.finish(Day(as_of, day.tables, day.facts, day.steps), manifest)
        except BaseException:
            writer.abandon()
            raise
        prune(runs_dir, keep)
    return folder


def model_manifest(champions: Champions) -> dict:
    """Per task: the registered model's name and the champion's version (None where there is none)."""
    from training.pipeline import MODEL_NAMES

    return {task: {"name": name, "version": champions.versions.get(task)} for task, name in MODEL_NAMES.items()}


def package_version() -> str:
    try:
        return version("ar-risk")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


def built_at() -> str:
    """When a run was built (UTC), for its manifest only: it feeds no computation."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
