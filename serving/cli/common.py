"""The one `arrisk` app, the stages its help is grouped by, and what several stages' commands share."""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import click
import pandas as pd
import typer
from rich.console import Console
from typer.core import TyperGroup

from ledger import Ledger, LedgerError, Problem
from ledger.errors import BadInput
from serving.cli.logs import log_to_file, quiet_libraries

# The stages in the README's order; `arrisk --help` lists the commands in one panel per stage.
LEDGER = "Ledger: generate, import, check"
TRAINING = "Training: backtest and train the models"
REPORTS = "Rules and reports: collections work and monitoring"
CASH = "Cash application: match payments to open items"
QUEUES = "Work queues: deductions, escalations, credit reviews, SLAs"
FINANCE = "Finance: the bad-debt provision for the month-end close"
ACTIVITY = "Collections activity: promises, disputes, contacts, audit"
SERVING = "Serving: the API and its tokens"
STAGES = (LEDGER, TRAINING, REPORTS, CASH, QUEUES, FINANCE, ACTIVITY, SERVING)


class ByStage(TyperGroup):
    """Lists commands stage by stage (typer would list sub-apps after every plain command)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)

        def stage(name: str) -> int:
            panel = getattr(self.commands[name], "rich_help_panel", None)
            return STAGES.index(panel) if panel in STAGES else len(STAGES)

        return sorted(names, key=stage)  # stable: creation order within a stage


app = typer.Typer(cls=ByStage, help="ar-risk: accounts-receivable risk, worklists and cash forecasts.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
console = Console()
errors = Console(stderr=True)

# Options several commands share, declared once.
LedgerDir = Annotated[Path, typer.Option("--ledger", help="Ledger directory to read.")]
OutFile = Annotated[Path | None, typer.Option(help="File to write: .csv, .xlsx, .parquet or .json.")]
TrackingUri = Annotated[str | None, typer.Option(help="MLflow tracking URI (default: local mlflow/).")]
Engine = Annotated[str, typer.Option(help="pandas (one process) or dask (one task per bucket of a partitioned "
                                          "ledger on a Dask cluster).")]
Scheduler = Annotated[str | None, typer.Option(help="With --engine dask: the scheduler's address (tcp://HOST:8786) "
                                                    "or scheduler file; default: a local cluster sized to the "
                                                    "machine.")]


def checked_engine(engine: str) -> str:
    from ledger.cluster import checked_engine as checked

    return checked(engine)


@app.callback()
def arrisk() -> None:
    """ar-risk: accounts-receivable risk, worklists and cash forecasts."""
    # Before any library is used, never at import (DESIGN.md §8).
    quiet_libraries()
    log_to_file()


def main() -> None:  # pragma: no cover - entry point for `python -m serving.cli`
    quiet_libraries()
    app()


def parse_date(value: str, option: str) -> pd.Timestamp:
    """A calendar date from YYYY-MM-DD, or a clear error naming the option."""
    try:
        return pd.Timestamp(datetime.date.fromisoformat(value))
    except ValueError:
        raise bad_option(option, f"expected a date as YYYY-MM-DD, got {value!r}") from None


def bad_option(option: str, message: str, title: str = "bad option") -> LedgerError:
    """The error for one bad option value: `error: bad option: --freq: expected ...`."""
    return LedgerError(Problem(option, None, None, message), title=title)


def checked_out(out: Path | None) -> None:
    """Fail before any work when `--out` has a suffix no writer knows, or is a folder or a link."""
    from rules.output import SUFFIXES, check_file_target

    if out is None:
        return
    if out.suffix.lower() not in SUFFIXES:
        raise bad_option("--out", f"expected a {', '.join(SUFFIXES)} file, got {out.name!r}")
    check_file_target(out)


def checked_out_folder(out: Path) -> None:
    """Fail before any work when the `--out` folder for report files is a file (or a broken link)."""
    from rules.output import OutputError

    if os.path.lexists(out) and not out.is_dir():
        raise OutputError(f"{out}: is not a folder; refusing to write report files into it (nothing was changed)")


def show_or_write(frame: pd.DataFrame, out: Path | None, title: str) -> None:
    """Write the report to `out` by its suffix, or print it as a table."""
    from rules.output import rich_table, write_frame

    if out is None:
        console.print(rich_table(frame, title=title))
        return
    with about_option("--out"):
        write_frame(frame, out)
    console.print(f"{out}: {len(frame):,} rows ({title})", highlight=False)


@contextlib.contextmanager
def about_option(option: str) -> Iterator[None]:
    """Within the block, a named bad-input error of the rules layer (a policy, an option's value) is reported
    as `bad input: OPTION: message`; a ledger or output error names its own file and is left as it is."""
    from rules.output import OutputError

    try:
        yield
    except (LedgerError, OutputError):
        raise
    except BadInput as error:
        raise bad_option(option, str(error), title="bad input") from None


def champions_from(tracking_uri: str | None):
    """The champion models from MLflow (the local store by default)."""
    from runs.scoring import load_champions
    from training.tracking import default_tracking_uri

    return load_champions(tracking_uri or default_tracking_uri())


def ledger_summary(ledger: Ledger, title: str):
    """A table of row counts, date ranges and amounts, one line per ledger table."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("table", "rows", "first date", "last date", f"amount ({ledger.base_currency})"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name, frame in ledger.tables().items():
        date_columns = [c for c in frame.columns if str(frame[c].dtype).startswith("datetime64")]
        dates = frame[date_columns].stack() if date_columns and len(frame) else None
        # Only tables with a base-currency amount can be summed: the others mix document currencies.
        amount = f"{frame['amount_base'].sum():,.2f}" if "amount_base" in frame and len(frame) else ""
        table.add_row(name, f"{len(frame):,}",
                      "" if dates is None or dates.empty else f"{dates.min():%Y-%m-%d}",
                      "" if dates is None or dates.empty else f"{dates.max():%Y-%m-%d}", amount)
    open_items = ledger.invoices["cleared_date"].isna().sum()
    table.caption = f"{ledger.customers.shape[0]:,} customers, {open_items:,} open documents, source: {ledger.source or '-'}"
    return table
