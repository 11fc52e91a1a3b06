"""The daily run as the command line and the service start it: the ledger with the activity store's
records, the champions, the steps of `runs.day` and the drift verdict of `monitoring` (wired here, the
one layer that may import both), then `runs.daily.execute_run`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from configs.settings import Settings
from ledger import read_ledger
from runs.daily import built_at, execute_run
from runs.day import PROVISION_STEP, STEPS, Step, Work

DRIFT_CACHE = ".cache"  # under RUNS_DIR: the drift reference rows, computed once per champion


def run_steps(tracking_uri: str, cache_dir: Path) -> tuple[Step, ...]:
    """The run's steps: those of `runs.day`, the bad-debt provision, then the drift verdict against the
    champion's training months."""
    return (*STEPS, PROVISION_STEP,
            Step("drift", drift_step(tracking_uri, cache_dir), "the drift verdict against training"))


def drift_step(tracking_uri: str, cache_dir: Path) -> Callable[[Work], None]:
    def drift(work: Work) -> None:
        from monitoring.drift import drift_verdict
        from training.pipeline import MODEL_NAMES
        from training.tracking import champion_trained_until

        trained_until = champion_trained_until(tracking_uri, MODEL_NAMES["late"])
        work.facts["drift"] = drift_verdict(work.ledger, work.as_of, work.scores.items, work.champions,
                                            trained_until, cache_dir=cache_dir)
    return drift


def daily_run(ledger_dir: Path, as_of: pd.Timestamp, runs_dir: Path, *, tracking_uri: str | None = None,
              environ: Mapping[str, str] | None = None, keep: int | None = None, requested_by: str | None = None,
              on_step: Callable[[int, Step], None] | None = None, engine: str = "pandas",
              scheduler: str | None = None, on_progress: Callable[[int, int], None] | None = None) -> Path:
    """Run the day at `as_of` for the ledger in `ledger_dir` (with the activity store's records) into
    `runs_dir`; returns the run's folder. `engine="dask"` runs it on the Dask cluster at `scheduler` (a
    local one without), one task per bucket of a partitioned ledger (`on_progress(done, buckets)`)."""
    from runs.scoring import load_champions
    from serving.activity import recorded_activity
    from training.tracking import default_tracking_uri

    settings = Settings.from_environ(environ)
    tracking_uri = tracking_uri or default_tracking_uri(settings)
    about = {"ledger": str(Path(ledger_dir).resolve()), "tracking_uri": tracking_uri, "built_at": built_at(),
             "requested_by": requested_by}
    if engine == "dask":
        return _daily_run_on_cluster(ledger_dir, as_of, runs_dir, tracking_uri, environ, keep or settings.runs_keep,
                                     about, scheduler, on_progress)
    ledger = read_ledger(ledger_dir, validate=False)  # the run's first step validates it, records included
    ledger, mark = recorded_activity(ledger, environ)
    champions = load_champions(tracking_uri)
    return execute_run(ledger, as_of, runs_dir, champions, steps=run_steps(tracking_uri, Path(runs_dir) / DRIFT_CACHE),
                       keep=keep or settings.runs_keep, about=about, activity_mark=mark, on_step=on_step)


def _daily_run_on_cluster(ledger_dir: Path, as_of: pd.Timestamp, runs_dir: Path, tracking_uri: str,
                          environ: Mapping[str, str] | None, keep: int, about: dict, scheduler: str | None,
                          on_progress: Callable[[int, int], None] | None) -> Path:
    from ledger.cluster import dask_client
    from ledger.partitions import read_meta, require_partitioned
    from runs.daily import execute_run_on_cluster
    from runs.distributed import drift_buckets
    from runs.scoring import load_champions
    from serving.activity import recorded_tables

    require_partitioned(ledger_dir)
    records, mark = recorded_tables(environ)
    champions = load_champions(tracking_uri)
    meta = read_meta(ledger_dir)
    sample = drift_buckets(int(meta["partitions"]), int(meta.get("rows", {}).get("customers", 0)))
    ledger_dir = Path(ledger_dir).resolve()
    with dask_client(scheduler) as client:
        return execute_run_on_cluster(client, ledger_dir, as_of, Path(runs_dir).resolve(), champions,
                                      keep=keep, about=about, records=records, activity_mark=mark,
                                      base_currency=meta.get("base_currency", "EUR"), drift_sample=sample,
                                      more_facts=sample_drift(ledger_dir, tracking_uri, Path(runs_dir) / DRIFT_CACHE,
                                                              champions),
                                      on_progress=on_progress)


def sample_drift(ledger_dir: Path, tracking_uri: str, cache_dir: Path, champions) -> Callable:
    """The drift verdict of a run on a cluster, computed on a worker for the customers of the drift buckets
    (`runs.distributed.drift_buckets`): their scored documents against their training reference."""
    def facts(client, day) -> dict:
        from training.pipeline import MODEL_NAMES
        from training.tracking import champion_trained_until

        if day.drift_rows is None:
            return {}
        trained_until = champion_trained_until(tracking_uri, MODEL_NAMES["late"])
        verdict = client.submit(drift_of_buckets, str(ledger_dir), day.drift_buckets, day.as_of, day.drift_rows,
                                champions, trained_until, str(cache_dir), pure=False).result()
        return {"drift": {**verdict, "sample": f"the customers of buckets {day.drift_buckets[0]}.."
                                               f"{day.drift_buckets[-1]} of {day.partitions}"}}
    return facts


def drift_of_buckets(ledger_dir: str, buckets: list[int], as_of: pd.Timestamp, rows: pd.DataFrame, champions,
                     trained_until: pd.Timestamp | None, cache_dir: str) -> dict:
    """`monitoring.drift.drift_verdict` on the ledger of some buckets (run on a worker)."""
    from monitoring.drift import drift_verdict
    from runs.distributed import sample_ledger

    return drift_verdict(sample_ledger(ledger_dir, buckets), as_of, rows, champions, trained_until,
                         cache_dir=Path(cache_dir))
