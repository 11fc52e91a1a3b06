"""Stage 4b, the daily run: `arrisk run` builds `RUNS_DIR/<as_of>/`, the tables the service answers from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from configs.settings import Settings
from serving.cli.common import (
    SERVING,
    Engine,
    LedgerDir,
    Scheduler,
    TrackingUri,
    app,
    checked_engine,
    console,
    parse_date,
)
from serving.cli.errors import INTERNAL_ERROR_EXIT, NAMED_ERRORS, error_text, fail, log_file, reports_errors

logger = logging.getLogger("arrisk.cli")


@app.command(rich_help_panel=SERVING)
@reports_errors
def run(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="The day to run, YYYY-MM-DD: only what was known then is used.")],
    out: Annotated[Path | None, typer.Option(help="Runs folder; the run goes to OUT/<as_of>/ "
                                                  "(default: ARRISK_RUNS, else HOME/out/runs).")] = None,
    keep: Annotated[int | None, typer.Option(min=1, help="Keep this many newest runs (default: ARRISK_RUNS_KEEP, "
                                                         "7).")] = None,
    tracking_uri: TrackingUri = None,
    engine: Engine = "pandas",
    scheduler: Scheduler = None,
) -> None:
    """The daily run: validate, features, scores and explanations for every open document and customer,
    dunning, worklist, forecast, aging and KPIs, drift; written atomically with its manifest. With
    `--engine dask`, one task per bucket of a partitioned ledger on a Dask cluster."""
    from runs.day import StepFailed
    from serving.daily import daily_run, run_steps

    settings = Settings.from_environ()
    runs_dir = out or settings.runs or settings.home / "out" / "runs"
    cutoff = parse_date(as_of, "--as-of")
    if checked_engine(engine) == "dask":
        folder = _run_on_cluster(ledger_dir, cutoff, runs_dir, tracking_uri, keep, scheduler)
        show_manifest(folder)
        return
    total = len(run_steps("", Path()))
    with Progress(TextColumn("{task.description:<14}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("starting", total=total)

        def on_step(index: int, step) -> None:
            progress.update(task, description=step.name, completed=index)

        try:
            folder = daily_run(ledger_dir, cutoff, runs_dir, tracking_uri=tracking_uri, keep=keep, on_step=on_step)
        except StepFailed as failed:
            progress.stop()
            fail_step(cutoff, failed)
        progress.update(task, description="done", completed=total)
    show_manifest(folder)
    from serving.report_pack import scheduled_pack

    pack = scheduled_pack(ledger_dir, cutoff, runs_dir)
    if pack is not None:
        console.print(pack, highlight=False)


def _run_on_cluster(ledger_dir: Path, cutoff, runs_dir: Path, tracking_uri: str | None, keep: int | None,
                    scheduler: str | None) -> Path:
    """The run on a Dask cluster, with a progress bar over the buckets."""
    from runs.day import StepFailed
    from serving.daily import daily_run

    with Progress(TextColumn("{task.description:<14}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("buckets", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            return daily_run(ledger_dir, cutoff, runs_dir, tracking_uri=tracking_uri, keep=keep, engine="dask",
                             scheduler=scheduler, on_progress=on_progress)
        except StepFailed as failed:
            progress.stop()
            fail_step(cutoff, failed)


def fail_step(cutoff, failed) -> None:
    """A one-line error for a failed step: the user's error as it is, our bug with where its traceback is."""
    if isinstance(failed.error, NAMED_ERRORS):
        fail(f"run for {cutoff:%Y-%m-%d} failed at step {failed.step!r}, nothing was replaced: "
             f"{error_text(failed.error)}")
    logger.error("run failed at step %s", failed.step, exc_info=failed.error)
    fail(f"run for {cutoff:%Y-%m-%d} failed at step {failed.step!r} (internal error "
         f"{type(failed.error).__name__}: {failed.error}); nothing was replaced; the traceback is in "
         f"{log_file()}", code=INTERNAL_ERROR_EXIT)


def show_manifest(folder: Path) -> None:
    """The run's steps with their seconds and memory, and its tables with their rows."""
    from rich.table import Table

    from runs.folder import read_manifest

    manifest = read_manifest(folder)
    table = Table(title=f"run {manifest['as_of']} in {folder}")
    for column in ("step", "seconds", "peak memory MB"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for step in manifest["steps"]:
        table.add_row(step["name"], f"{step['seconds']:.1f}", f"{step['peak_rss_mb']:,.0f}")
    table.add_row("total", f"{manifest['seconds']:.1f}", f"{manifest['peak_rss_mb']:,.0f}")
    if manifest.get("engine") == "dask":
        table.caption = (f"dask: {manifest['partitions']} partitions on {manifest['workers']} workers "
                         f"({manifest['scheduler']}); peak worker memory {manifest['peak_worker_rss_mb']:,.0f} MB")
    console.print(table)
    console.print("tables: " + ", ".join(f"{name} {rows:,}" for name, rows in manifest["tables"].items()),
                  highlight=False)
    drift = manifest.get("facts", {}).get("drift") or {}
    if drift.get("retrain"):
        console.print("drift: retrain: " + "; ".join(drift.get("reasons", [])), highlight=False)
    elif drift:
        console.print(f"drift: {drift.get('drifted_share', 0):.0%} of features drifted, no retraining needed",
                      highlight=False)
