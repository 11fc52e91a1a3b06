"""Reader for the ledger's own tables as CSV files (generic_csv): the template users copy.

SOURCE is a folder holding `customers.csv`, `invoices.csv`, ... (one file per ledger table, named
after it), or the list of those files. Columns carry the ledger's names and types; optional tables
and optional columns may be left out; anything else is an error rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ledger.errors import LedgerError, Problem
from ledger.importing.mappings import LedgerTablesMapping
from ledger.importing.sources import CHUNK_ROWS, SourceTable, read_source_chunks
from ledger.schema import DATE, REQUIRED_TABLES, SCHEMAS, TABLES, columns_of
from ledger.store import Ledger


def ledger_tables_ledger(sources: Sequence[Path], mapping: LedgerTablesMapping, name: str,
                         chunk_rows: int = CHUNK_ROWS) -> Ledger:
    """A validated ledger from a folder of table CSVs (or the files themselves).

    Each file is read and parsed `chunk_rows` lines at a time, but the parsed tables are held whole: the
    tables refer to each other by id (an application names its payment and invoice), so rows can only be
    placed and checked with all tables at hand."""
    files = table_files(sources)
    problems: list[Problem] = []
    frames = {}
    for table, path in files.items():
        chunks = []
        for source in read_source_chunks(path, mapping.format, chunk_rows):
            chunks.append(parsed_table(table, source))
            problems += source.problems
            if chunks[-1].columns.empty:  # the header is wrong: said once, for the first chunk
                break
        frames[table] = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
    if problems:
        raise LedgerError(problems, title="bad import source")
    return Ledger(**frames, base_currency=mapping.base_currency, source=f"import:{name}").validate()


def table_files(sources: Sequence[Path]) -> dict[str, Path]:
    """Each ledger table's CSV file; `LedgerError` for unknown file names or missing required tables."""
    if len(sources) == 1 and sources[0].is_dir():
        folder = sources[0]
        paths = sorted(folder.glob("*.csv"))
    else:
        folder = sources[0].parent
        paths = list(sources)
    problems = [Problem(str(path), None, None, "no such file") for path in paths if not path.exists()]
    problems += [Problem(str(path), None, None, f"not a ledger table name: expected one of "
                                                f"{', '.join(f'{t}.csv' for t in TABLES)}")
                 for path in paths if path.stem not in TABLES]
    by_table = {path.stem: path for path in paths if path.stem in TABLES}
    problems += [Problem(str(folder / f"{table}.csv"), None, None, "required table missing")
                 for table in REQUIRED_TABLES if table not in by_table]
    if problems:
        raise LedgerError(problems, title="bad import source")
    return by_table


def parsed_table(table: str, source: SourceTable) -> pd.DataFrame:
    """The file's columns parsed to the contract's types; bad cells are recorded in `source.problems`."""
    schema = SCHEMAS[table].columns
    required = columns_of(table, required_only=True)
    missing = [column for column in required if column not in source.cells]
    unknown = [column for column in source.cells.columns if column not in schema]
    source.problems += [Problem(source.file, 1, column, "column missing") for column in missing]
    source.problems += [Problem(source.file, 1, column, f"unknown column: expected one of "
                                                        f"{', '.join(schema)}") for column in unknown]
    if missing or unknown:
        return pd.DataFrame()
    return pd.DataFrame({column: parsed_column(source, column, str(schema[column].dtype),
                                               schema[column].nullable)
                         for column in schema if column in source.cells})


def parsed_column(source: SourceTable, column: str, dtype: str, nullable: bool) -> pd.Series:
    """One column parsed to the contract's dtype (empty cells become missing values)."""
    if dtype == DATE:
        return source.dates(column)
    if dtype == "float64":
        return source.numbers(column)
    if dtype == "int64":
        return source.whole_numbers(column, required=True).fillna(0).astype("int64")  # missing: flagged
    if dtype in ("bool", "boolean"):
        flags = source.flags(column, required=not nullable)
        return flags if nullable else flags.fillna(False).astype(bool)
    return source.text(column)
