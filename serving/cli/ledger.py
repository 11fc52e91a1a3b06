"""Stage 1, the ledger: `arrisk generate | import | validate | features`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from ledger import read_ledger, write_ledger
from ledger.importing.sources import CHUNK_ROWS
from ledger.store import refuse_unless_replaceable
from serving.cli.common import (
    LEDGER,
    Engine,
    LedgerDir,
    Scheduler,
    app,
    checked_engine,
    checked_out,
    console,
    ledger_summary,
    parse_date,
)
from serving.cli.errors import reports_errors


@app.command(rich_help_panel=LEDGER)
@reports_errors
def generate(
    out: Annotated[Path, typer.Option(help="Ledger directory to write (ground truth goes to OUT/truth/).")],
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 1000,
    months: Annotated[int, typer.Option(min=1, max=240, help="Months of history.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same ledger.")] = 0,
    start: Annotated[str, typer.Option(help="First day of the history, YYYY-MM-DD.")] = "2022-01-01",
    partitions: Annotated[int | None, typer.Option(
        min=1, help="Write the ledger partitioned into N buckets by customer, drawn and written chunk by chunk "
                    "in bounded memory (a different ledger than the one-shot generator draws for the seed).")] = None,
    chunk_customers: Annotated[int | None, typer.Option(
        min=1, help="With --partitions: customers drawn per chunk (default 10,000); memory grows with it.")] = None,
) -> None:
    """Generate a synthetic B2B receivables ledger with its ground truth."""
    refuse_unless_replaceable(Path(os.path.abspath(out)))
    start_date = parse_date(start, "--start")
    if partitions is None:
        if chunk_customers is not None:
            raise typer.BadParameter("only with --partitions (the one-shot generator draws all customers at once)",
                                     param_hint="--chunk-customers")
        from ledger.synthetic import generate_ledger, write_synthetic

        ledger, truth = generate_ledger(customers=customers, months=months, seed=seed, start=start_date)
        write_synthetic(ledger, truth, out)
        console.print(ledger_summary(ledger, title=f"{out}: generated (seed {seed})"))
        return
    from ledger.synthetic import write_synthetic_chunks

    chunk = chunk_customers or DEFAULT_CHUNK_CUSTOMERS
    with chunk_progress(-(-customers // chunk)) as advance:
        rows = write_synthetic_chunks(out, customers=customers, months=months, seed=seed, start=start_date,
                                      partitions=partitions, chunk_customers=chunk, progress=advance)
    console.print(row_counts(rows, title=f"{out}: generated (seed {seed}) in {partitions} partitions, "
                                         f"{chunk:,} customers per chunk"))
    console.print("truth: OUT/truth/<table>/chunk-*.parquet per chunk (customers, risk_path, invoices) and "
                  "OUT/truth/fx_rates.parquet")


DEFAULT_CHUNK_CUSTOMERS = 10_000


@contextmanager
def chunk_progress(total: int) -> Iterator[Callable[[], None]]:
    """A transient progress bar over chunks; yields the function that advances it by one."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("chunks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("chunks", total=total)
        yield lambda: bar.advance(task)


def row_counts(rows: dict[str, int], title: str):
    """A table of rows written per ledger table."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in rows.items():
        table.add_row(name, f"{count:,}")
    return table


@app.command("import", rich_help_panel=LEDGER)
@reports_errors
def import_(
    sources: Annotated[list[Path], typer.Argument(help="ERP export file(s), or one folder for generic_csv.")],
    mapping: Annotated[str, typer.Option(help="Mapping name (ibm_sample, sap_fbl5n, generic_csv) or YAML file.")],
    out: Annotated[Path | None, typer.Option(help="Ledger directory to write; left untouched on any error.")] = None,
    partitions: Annotated[int | None, typer.Option(
        min=1, help="Write the ledger partitioned into N buckets by customer (large exports are streamed to it "
                    "chunk by chunk where the mapping allows).")] = None,
    chunk_rows: Annotated[int, typer.Option(min=1, help="Rows of an export read at a time.")] = CHUNK_ROWS,
    check_mapping: Annotated[bool, typer.Option(
        "--check-mapping", help="Only check the mapping against each file's header and first rows: print which "
                                "column feeds each ledger field, what is missing and what is ignored; write "
                                "nothing. Exit 1 when a required column is missing.")] = False,
) -> None:
    """Import ERP exports into a validated ledger using a column mapping."""
    from ledger.errors import BadInput
    from ledger.importing import check_mapping as checked_files
    from ledger.importing import import_ledger_with_report, import_notes, import_partitioned

    if check_mapping:
        checks = checked_files(sources, mapping)
        for check in checks:
            console.print(mapping_check_table(check, mapping))
        if reasons := [check.reason() for check in checks if not check.can_import]:
            raise BadInput(f"the import with {mapping} cannot run: {'; '.join(reasons)}")
        console.print(f"the import with {mapping} can run ({len(checks)} file(s) checked)")
        return
    if out is None:
        raise BadInput("--out is required unless --check-mapping is given")
    refuse_unless_replaceable(Path(os.path.abspath(out)))
    notes = import_notes(checked_files(sources, mapping, rows=1))
    if partitions is not None:
        rows, report = import_partitioned(sources, mapping, out, partitions, chunk_rows=chunk_rows)
        console.print(row_counts(rows, title=f"{out}: imported with {mapping} in {partitions} partitions"))
    else:
        ledger, report = import_ledger_with_report(sources, mapping, chunk_rows=chunk_rows)
        write_ledger(ledger, out)
        console.print(ledger_summary(ledger, title=f"{out}: imported with {mapping}"))
    notes = [*report, *notes]
    for note in notes:
        console.print(note, markup=False, highlight=False, soft_wrap=True)


def mapping_check_table(check, mapping: str):
    """One file's mapping check (`ledger.importing.FileCheck`) as a table: a row per ledger field, then
    the ignored source columns."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{escape(check.file)}: {mapping}, header and first {check.rows} rows", title_justify="left")
    for column in ("ledger field", "source column", "names tried", "status", "first rows"):
        table.add_column(column)
    for field in check.fields:
        problems = "; ".join(field.problems[:2]) + (f" (+{len(field.problems) - 2})" if len(field.problems) > 2 else "")
        parsed = "" if field.missing else (problems or "parses")
        table.add_row(field.field, escape(field.header or "-"), escape(" / ".join(field.names)), field.status,
                      escape(parsed))
    for name in check.unknown:
        table.add_row("-", escape(name), "", "unknown column: error", "")
    for name in check.ignored:
        table.add_row("-", escape(name), "", "ignored", "")
    return table


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
    out: Annotated[Path, typer.Option(help="File to write: .parquet, .csv, .xlsx or .json; with --engine dask, a "
                                           "folder of one Parquet file per bucket.")],
    engine: Engine = "pandas",
    scheduler: Scheduler = None,
) -> None:
    """Write the features of every document open at a date (one row per invoice, customer features joined)."""
    from features import features_at
    from rules.output import write_frame

    cutoff = parse_date(as_of, "--as-of")
    if checked_engine(engine) == "dask":
        from ledger.cluster import dask_client
        from ledger.partitions import require_partitioned
        from runs.distributed import features_on_cluster

        require_partitioned(ledger_dir)
        with dask_client(scheduler) as client:
            rows = features_on_cluster(client, ledger_dir, cutoff, out)
        console.print(f"{out}/: {rows:,} open documents as of {cutoff:%Y-%m-%d}, one file per bucket")
        return
    checked_out(out)
    frame = features_at(read_ledger(ledger_dir), cutoff)
    write_frame(frame, out)
    console.print(f"{out}: {len(frame):,} open documents of {frame['customer_id'].nunique():,} customers "
                  f"as of {cutoff:%Y-%m-%d}, {frame.shape[1] - 2} features")
