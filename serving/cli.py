"""The `arrisk` command line (DESIGN.md §9): one command per stage, each usable alone.

Bad input exits non-zero with the problems listed and no traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from ledger import Ledger, LedgerError, read_ledger

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

app = typer.Typer(help="ar-risk: accounts-receivable risk, worklists and cash forecasts.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
console = Console()
errors = Console(stderr=True)

F = TypeVar("F", bound=Callable)


@app.callback()
def arrisk() -> None:
    """ar-risk: accounts-receivable risk, worklists and cash forecasts."""


def reports_bad_input(command: F) -> F:
    """Turn `LedgerError` (and friends) into a readable message and exit code 1."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except LedgerError as error:
            errors.print(f"[red]error:[/red] {error.summary()}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@reports_bad_input
def validate(ledger_dir: Annotated[Path, typer.Argument(help="Ledger directory to check.")]) -> None:
    """Check a ledger against the data contract; print a summary when valid."""
    ledger = read_ledger(ledger_dir)
    console.print(ledger_summary(ledger, title=f"{ledger_dir}: valid"))


def ledger_summary(ledger: Ledger, title: str) -> Table:
    """A table of row counts, date ranges and amounts, one line per ledger table."""
    table = Table(title=title, title_justify="left")
    for column in ("table", "rows", "first date", "last date", f"amount ({ledger.base_currency})"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name, frame in ledger.tables().items():
        date_columns = [c for c in frame.columns if str(frame[c].dtype).startswith("datetime64")]
        dates = frame[date_columns].stack() if date_columns and len(frame) else None
        amount_column = "amount_base" if "amount_base" in frame else "amount" if "amount" in frame else None
        amount = f"{frame[amount_column].sum():,.2f}" if amount_column and len(frame) else ""
        table.add_row(name, f"{len(frame):,}",
                      "" if dates is None or dates.empty else f"{dates.min():%Y-%m-%d}",
                      "" if dates is None or dates.empty else f"{dates.max():%Y-%m-%d}", amount)
    open_items = ledger.invoices["cleared_date"].isna().sum()
    table.caption = f"{ledger.customers.shape[0]:,} customers, {open_items:,} open documents, source: {ledger.source or '-'}"
    return table


def main() -> None:  # pragma: no cover - entry point for `python -m serving.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
