"""The `arrisk` command line (DESIGN.md §9): one command per stage, each usable alone.

Bad input exits non-zero with the problems listed and no traceback.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, TypeVar

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from ledger import Ledger, LedgerError, Problem, read_ledger, write_ledger

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
            errors.print(f"error: {error.summary()}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@reports_bad_input
def generate(
    out: Annotated[Path, typer.Option(help="Ledger directory to write (ground truth goes to OUT/truth/).")],
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 1000,
    months: Annotated[int, typer.Option(min=1, max=240, help="Months of history.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same ledger.")] = 0,
    start: Annotated[str, typer.Option(help="First day of the history, YYYY-MM-DD.")] = "2022-01-01",
) -> None:
    """Generate a synthetic B2B receivables ledger with its ground truth."""
    start_date = parse_date(start, "--start")
    from ledger.synthetic import generate_ledger, write_synthetic

    ledger, truth = generate_ledger(customers=customers, months=months, seed=seed, start=start_date)
    write_synthetic(ledger, truth, out)
    console.print(ledger_summary(ledger, title=f"{out}: generated (seed {seed})"))


@app.command("import")
@reports_bad_input
def import_(
    sources: Annotated[list[Path], typer.Argument(help="ERP export file(s), or one folder for generic_csv.")],
    mapping: Annotated[str, typer.Option(help="Mapping name (ibm_sample, sap_fbl5n, generic_csv) or YAML file.")],
    out: Annotated[Path, typer.Option(help="Ledger directory to write; left untouched on any error.")],
) -> None:
    """Import ERP exports into a validated ledger using a column mapping."""
    from ledger.importing import import_ledger

    ledger = import_ledger(sources, mapping)
    write_ledger(ledger, out)
    console.print(ledger_summary(ledger, title=f"{out}: imported with {mapping}"))


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


def parse_date(value: str, option: str) -> pd.Timestamp:
    """A calendar date from YYYY-MM-DD, or a clear error naming the option."""
    try:
        return pd.Timestamp(datetime.date.fromisoformat(value))
    except ValueError:
        raise LedgerError(Problem(option, None, None, f"expected a date as YYYY-MM-DD, got {value!r}"),
                          title="bad option") from None


def main() -> None:  # pragma: no cover - entry point for `python -m serving.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
