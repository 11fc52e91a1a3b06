"""Stage 2, training: `arrisk backtest | train`, with a progress bar over the backtest origins and the fits."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from ledger import read_ledger
from serving.cli.common import (
    TRAINING,
    Engine,
    Scheduler,
    TrackingUri,
    app,
    checked_engine,
    checked_out_folder,
    console,
    parse_date,
)
from serving.cli.errors import reports_errors
from serving.cli.logs import stderr_to_log

# Kept in step with training.distributed.DEFAULT_SAMPLE_ROWS (tested); not imported, so `arrisk --help`
# does not load the training stack.
DEFAULT_SAMPLE_ROWS = 1_000_000
SchedulerTimeout = Annotated[float, typer.Option(min=1, help="Seconds to wait for the Dask scheduler.")]
SampleRows = Annotated[int, typer.Option(min=1000, help="With --engine dask: the most invoice rows (and customer "
                                                        "rows) fitted on, a sample stratified by cutoff and label.")]
WORKLIST_VALUE_NOTE = ("the worklist value check was not run: it ranks the whole book at each origin, which "
                       "the dask engine never holds in memory (run the backtest with --engine pandas for it)")


@app.command(rich_help_panel=TRAINING)
@reports_errors
def backtest(
    ledger_dir: Annotated[Path, typer.Option("--ledger", help="Ledger directory.")],
    out: Annotated[Path, typer.Option(help="Folder for metrics.json and report.html.")],
    origins: Annotated[int, typer.Option(min=1, max=12, help="Number of rolling origins (test months).")] = 3,
    engine: Engine = "pandas",
    scheduler: Scheduler = None,
    scheduler_timeout: SchedulerTimeout = 30,
    sample_rows: SampleRows = DEFAULT_SAMPLE_ROWS,
    at_issue: Annotated[bool, typer.Option(
        "--at-issue", help="Score each invoice once, on its invoice date, with models trained on the earliest "
                           "--train-share of invoices (labels as known at the split): the protocol published "
                           "figures use. The month-end backtest (default) is the one the promotion gate uses.")] = False,
    train_share: Annotated[float, typer.Option(min=0.1, max=0.9, help="With --at-issue: the share of invoices, "
                                                                      "earliest first, that train.")] = 0.7,
    late_grace_days: Annotated[int, typer.Option(min=0, max=60, help="Paid more than this many days after due is "
                                                                     "late (DESIGN: 5).")] = 5,
) -> None:
    """Rolling-origin backtest of the three models against their baselines (or, with --at-issue, one
    time-ordered split scoring each invoice on its invoice date)."""
    from training.backtest import ModelSettings
    from training.pipeline import backtest_ledger, write_backtest

    checked_out_folder(out)
    settings = ModelSettings(late_grace_days=late_grace_days)
    if at_issue:
        from training.at_issue import backtest_at_issue

        if checked_engine(engine) == "dask":
            raise typer.BadParameter("--at-issue runs on the pandas engine only", param_hint="--engine")
        ledger = read_ledger(ledger_dir)
        with progress_bar("At-issue backtest", steps=1) as progress, stderr_to_log():
            # Its steps (rows built, the fit) are notices above the bar: one split, one step.
            run = backtest_at_issue(ledger, train_share=train_share, settings=settings, progress=progress)
        metrics_path, report_path = write_backtest(run, out)
        console.print(headline_table(run.result.metrics))
        console.print(f"wrote {metrics_path} and {report_path}")
        return
    if checked_engine(engine) == "dask":
        from ledger.cluster import dask_client
        from training.distributed import backtest_partitioned

        with (dask_client(scheduler, timeout=scheduler_timeout) as client,
              progress_bar("Backtest", steps=origins) as progress, stderr_to_log()):
            run = backtest_partitioned(client, ledger_dir, origins=origins, settings=settings,
                                       sample_rows=sample_rows, progress=progress)
    else:
        ledger = read_ledger(ledger_dir)
        with progress_bar("Backtest", steps=origins) as progress, stderr_to_log():
            run = backtest_ledger(ledger, origins=origins, settings=settings, progress=progress)
    metrics_path, report_path = write_backtest(run, out)
    console.print(headline_table(run.result.metrics))
    if run.ledger is None:
        console.print(f"wrote {metrics_path} and {report_path} ({sample_text(run.result.metrics)}); "
                      f"{WORKLIST_VALUE_NOTE}", highlight=False)
        return
    value_path = report_worklist_value(run, out)
    console.print(f"wrote {metrics_path}, {report_path} and {value_path}")


@app.command(rich_help_panel=TRAINING)
@reports_errors
def train(
    ledger_dir: Annotated[Path, typer.Option("--ledger", help="Ledger directory.")],
    until: Annotated[str | None, typer.Option(help="Use only what was known by this date (YYYY-MM-DD).")] = None,
    tracking_uri: TrackingUri = None,
    report_dir: Annotated[Path | None, typer.Option(help="Also write the backtest report here.")] = None,
    engine: Engine = "pandas",
    scheduler: Scheduler = None,
    scheduler_timeout: SchedulerTimeout = 30,
    sample_rows: SampleRows = DEFAULT_SAMPLE_ROWS,
) -> None:
    """Backtest, fit the three models on all data, log them to MLflow and promote those that pass the gate."""
    from training.pipeline import train_and_register
    from training.tracking import default_tracking_uri

    if report_dir is not None:
        checked_out_folder(report_dir)
    until_date = parse_date(until, "--until") if until else None
    uri = tracking_uri or default_tracking_uri()
    origins = 3
    # The candidate's origins and its final fit; a champion's recipe re-backtested adds its origins.
    if checked_engine(engine) == "dask":
        from ledger.cluster import dask_client
        from training.distributed import train_partitioned

        with (dask_client(scheduler, timeout=scheduler_timeout) as client,
              progress_bar("Train", steps=origins + 1) as progress, stderr_to_log()):
            outcome = train_partitioned(client, ledger_dir, uri, until=until_date, report_dir=report_dir,
                                        origins=origins, sample_rows=sample_rows, progress=progress)
    else:
        ledger = read_ledger(ledger_dir)
        with progress_bar("Train", steps=origins + 1) as progress, stderr_to_log():
            outcome = train_and_register(ledger, uri, until=until_date, report_dir=report_dir, origins=origins,
                                         progress=progress)
    console.print(headline_table(outcome.metrics))
    if "sample" in outcome.metrics:
        console.print(sample_text(outcome.metrics), highlight=False)
    if report_dir is not None and outcome.run is not None:
        if outcome.run.ledger is None:
            console.print(WORKLIST_VALUE_NOTE, highlight=False)
        else:
            report_worklist_value(outcome.run, report_dir)
    for task, decision in outcome.decisions.items():
        verdict = "promoted to champion" if decision.promote else "not promoted"
        version = f"version {outcome.versions[task]} " if task in outcome.versions else ""
        console.print(f"{task}: {version}{verdict}: {decision.reason}", highlight=False)
    console.print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in outcome.seconds.items()))


def sample_text(metrics: dict) -> str:
    """What the dask engine fitted on: `fitted on N of M invoice rows and n of m customer rows`."""
    sample = metrics["sample"]
    return ("fitted on " + " and ".join(f"{facts['rows']:,} of {facts['of']:,} {kind[:-1]} rows"
                                        for kind, facts in sample.items()))


STEPS = ("origin ", "final fit")  # what training's `progress` says when a step starts; anything else is a notice


@contextlib.contextmanager
def progress_bar(title: str, steps: int) -> Iterator[Callable[[str], None]]:
    """A rich progress bar for training's `progress(text)` callback. A step (a backtest origin, the final fit)
    advances the bar and is named beside it; a step beyond `steps` (a champion's recipe re-backtested)
    extends it. Any other text is a notice, printed above the bar. The bar is gone when done."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.fields[title]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("", total=steps, title=title)
        started = False

        def step(text: str) -> None:
            nonlocal started
            if not text.startswith(STEPS):
                bar.console.print(text, style="dim", markup=False, highlight=False)
                return
            if started:
                bar.advance(task)
            started = True
            done = bar.tasks[0].completed
            bar.update(task, description=text, total=max(bar.tasks[0].total or 0, done + 1))

        yield step


def report_worklist_value(run, out: Path) -> Path:
    """The check of the worklist's value at each backtest origin: printed, and written to
    `out/worklist_value.json`."""
    from monitoring.worklist_value import worklist_value
    from rules.output import write_frame

    value = worklist_value(run)
    table = Table(title="Worklist value: share of the money still unpaid 30 days later held by the top 20% "
                        "of customers", title_justify="left")
    for column in ("origin", "customers", "money at risk", "worklist", "model only", "overdue amount",
                   "not held: worklist", "not held: overdue"):
        table.add_column(column, justify="left" if column == "origin" else "right")
    for row in value.itertuples():
        table.add_row(f"{row.origin:%Y-%m-%d}", f"{row.customers:,}", f"{row.money_at_risk_base:,.0f}",
                      f"{row.share_worklist:.3f}", f"{row.share_model_only:.3f}", f"{row.share_overdue_amount:.3f}",
                      f"{row.share_worklist_actionable:.3f}", f"{row.share_overdue_actionable:.3f}")
    console.print(table)
    return write_frame(value, out / "worklist_value.json")


def headline_table(metrics: dict) -> Table:
    """The backtest's key figures, model against each baseline."""
    table = Table(title="Backtest (pooled over origins " + ", ".join(metrics["cutoffs"]) + ")", title_justify="left")
    for column in ("task", "who", "metric", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    shown = {"late_payment": ("roc_auc", "brier", "ece"),
             "receipt_timing": ("mae_days", "coverage_p10_p90", "wape_13w"),
             "deterioration": ("roc_auc", "pr_auc", "precision_at_k", "recall", "median_lead_days")}
    for task, names in shown.items():
        rows = {"model": metrics[task]["model"], **metrics[task]["baselines"]}
        for who, values in rows.items():
            for name in names:
                value = values.get(name)
                table.add_row(task, who, name, "-" if value is None or pd.isna(value) else f"{value:.3f}")
    for task, reason in metrics.get("skipped", {}).items():
        table.add_row(task, "model", "not trained", reason)
    return table
