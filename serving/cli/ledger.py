"""Stage 1, the ledger: `arrisk generate | import | validate | features`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ledger import read_ledger, write_ledger
from ledger.store import refuse_unless_replaceable
from serving.cli.common import LEDGER, LedgerDir, app, checked_out, console, ledger_summary, parse_date
from serving.cli.errors import reports_errors


@app.command(rich_help_panel=LEDGER)
@reports_errors
def generate(
    out: Annotated[Path, typer.Option(help="Ledger directory to write (ground truth goes to OUT/truth/).")],
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 1000,
    months: Annotated[int, typer.Option(min=1, max=240, help="Months of history.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same ledger.")] = 0,
    start: Annotated[str, typer.Option(help="First day of the history, YYYY-MM-DD.")] = "2022-01-01",
) -> None:
    """Generate a synthetic B2B receivables ledger with its ground truth."""
    refuse_unless_replaceable(Path(os.path.abspath(out)))
    start_date = parse_date(start, "--start")
    from ledger.synthetic import generate_ledger, write_synthetic

    ledger, truth = generate_ledger(customers=customers, months=months, seed=seed, start=start_date)
    write_synthetic(ledger, truth, out)
    console.print(ledger_summary(ledger, title=f"{out}: generated (seed {seed})"))


@app.command("import", rich_help_panel=LEDGER)
@reports_errors
def import_(
    sources: Annotated[list[Path], typer.Argument(help="ERP export file(s), or one folder for generic_csv.")],
    mapping: Annotated[str, typer.Option(help="Mapping name (ibm_sample, sap_fbl5n, generic_csv) or YAML file.")],
    out: Annotated[Path, typer.Option(help="Ledger directory to write; left untouched on any error.")],
) -> None:
    """Import ERP exports into a validated ledger using a column mapping."""
    from ledger.importing import import_ledger

    refuse_unless_replaceable(Path(os.path.abspath(out)))
    ledger = import_ledger(sources, mapping)
    write_ledger(ledger, out)
    console.print(ledger_summary(ledger, title=f"{out}: imported with {mapping}"))


@app.command(rich_help_panel=LEDGER)
@reports_errors
def validate(ledger_dir: Annotated[Path, typer.Argument(help="Ledger directory to check.")]) -> None:
    """Check a ledger against the data contract; print a summary when valid."""
    ledger = read_ledger(ledger_dir)
    console.print(ledger_summary(ledger, title=f"{ledger_dir}: valid"))


@app.command(rich_help_panel=LEDGER)
@reports_errors
def features(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="Cutoff date, YYYY-MM-DD: only what was known then is used.")],
    out: Annotated[Path, typer.Option(help="File to write: .parquet, .csv, .xlsx or .json.")],
) -> None:
    """Write the features of every document open at a date (one row per invoice, customer features joined)."""
    from features import features_at
    from rules.output import write_frame

    checked_out(out)
    cutoff = parse_date(as_of, "--as-of")
    frame = features_at(read_ledger(ledger_dir), cutoff)
    write_frame(frame, out)
    console.print(f"{out}: {len(frame):,} open documents of {frame['customer_id'].nunique():,} customers "
                  f"as of {cutoff:%Y-%m-%d}, {frame.shape[1] - 2} features")
