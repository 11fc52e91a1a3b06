"""Reader for the ledger's own tables as CSV files (generic_csv): the template users copy.

SOURCE is a folder holding `customers.csv`, `invoices.csv`, ... (one file per ledger table, named
after it), or the list of those files. Columns carry the ledger's names and types; optional tables
and optional columns may be left out; anything else is an error rather than silently ignored.
Derived columns (`DERIVED_COLUMNS`: a promise's `kept`, an invoice's `cleared_date`) are never required:
computed when absent, checked row by row against the derivation when given (`cleared_date` by the
ledger's own validation: set exactly when fully settled, on the date of the last settlement).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ledger.errors import LedgerError, Problem
from ledger.importing.mappings import LedgerTablesMapping
from ledger.importing.sources import CHUNK_ROWS, SourceTable, read_source_chunks
from ledger.promises import promise_paid_amount
from ledger.schema import DATE, REQUIRED_TABLES, SCHEMAS, TABLES, columns_of
from ledger.store import Ledger

# Columns the ledger derives from other tables: what a file may leave out, and what it says is checked.
DERIVED_COLUMNS = {"promises": ("kept",), "invoices": ("cleared_date",)}
MONEY_TOLERANCE = 0.005  # a promise is kept once paid within this of its amount (features.config.money_tolerance)


def ledger_tables_ledger(sources: Sequence[Path], mapping: LedgerTablesMapping, name: str,
                         chunk_rows: int = CHUNK_ROWS) -> Ledger:
    """A validated ledger from a folder of table CSVs (or the files themselves).

    Each file is read and parsed `chunk_rows` lines at a time, but the parsed tables are held whole: the
    tables refer to each other by id (an application names its payment and invoice), so rows can only be
    placed and checked with all tables at hand."""
    files = table_files(sources)
    problems: list[Problem] = []
    frames, lines = {}, {}
    for table, path in files.items():
        chunks, chunk_lines = [], []
        for source in read_source_chunks(path, mapping.format, chunk_rows):
            chunks.append(parsed_table(table, source))
            chunk_lines.append(pd.Series(source.lines))
            problems += source.problems
            if chunks[-1].columns.empty:  # the header is wrong: said once, for the first chunk
                break
        frames[table] = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
        lines[table] = pd.concat(chunk_lines, ignore_index=True)
    if problems:
        raise LedgerError(problems, title="bad import source")
    if "cleared_date" not in frames["invoices"]:
        frames["invoices"] = with_cleared_dates(frames)
    if "promises" in frames:
        frames["promises"] = with_kept(frames, lines["promises"], str(files["promises"]))
    return Ledger(**frames, base_currency=mapping.base_currency, source=f"import:{name}").validate()


def with_cleared_dates(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The invoices with `cleared_date` derived as the contract defines it: the date of the last application
    or write-off of an invoice whose applications and write-off add up to its amount; empty otherwise."""
    from ledger.validation import TOLERANCE, last_settlement_dates, settled_amounts

    invoices = frames["invoices"]
    settled = settled_amounts(frames)
    fully = (invoices["amount"] - settled).abs() <= TOLERANCE
    return invoices.assign(cleared_date=last_settlement_dates(frames).where(fully).astype(DATE))


def with_kept(frames: dict[str, pd.DataFrame], lines: pd.Series, file: str) -> pd.DataFrame:
    """The promises with `kept` derived when the file has none; `LedgerError` naming file, line and column
    of each given `kept` the derivation contradicts (found true while not paid, or a definite mismatch)."""
    promises = frames["promises"]
    paid = paid_from_tables(promises, frames)
    derived = derived_kept(promises, paid, latest_date(frames))
    if "kept" not in promises:
        return promises.assign(kept=derived)
    found = promises["kept"].astype("boolean")
    wrong = (found.notna() & derived.notna() & (found != derived)) | (found.fillna(False) & derived.isna())
    wrong = wrong.fillna(False).to_numpy(dtype=bool)
    problems = [
        Problem(file, int(lines.iloc[row]), "kept",
                f"expected {_flag_word(derived.iloc[row])}, found {_flag_word(found.iloc[row])}: "
                f"{paid.iloc[row]:.2f} of {promises['amount'].iloc[row]:.2f} paid from "
                f"{promises['made_date'].iloc[row]:%Y-%m-%d} to {promises['promised_date'].iloc[row]:%Y-%m-%d}")
        for row in np.flatnonzero(wrong)]
    if problems:
        raise LedgerError(problems, title="bad import source")
    return promises


def derived_kept(promises: pd.DataFrame, paid: pd.Series, as_of: pd.Timestamp | None) -> pd.Series:
    """Kept (True) once paid in full, broken (False) once its promised date passed before the ledger's
    last date unpaid, unknown while pending: the rule of features.collections.promise_status."""
    kept = paid >= promises["amount"] - MONEY_TOLERANCE
    broken = ~kept & (promises["promised_date"] < as_of) if as_of is not None else pd.Series(False, index=kept.index)
    return pd.Series(pd.NA, index=promises.index, dtype="boolean").mask(kept, True).mask(broken, False)


def paid_from_tables(promises: pd.DataFrame, frames: dict[str, pd.DataFrame]) -> pd.Series:
    """Per promise: what was paid towards it from its made to its promised date (`ledger.promises`), from the
    tables the import has (an optional table left out counts as empty)."""
    from ledger.schema import empty_table

    tables = {name: frames.get(name, empty_table(name)) for name in ("payment_applications", "payments", "writeoffs")}
    return promise_paid_amount(promises, tables["payment_applications"], tables["payments"], tables["writeoffs"])


def latest_date(frames: dict[str, pd.DataFrame]) -> pd.Timestamp | None:
    """The last date anywhere in the tables: what the ledger knows up to."""
    dates = [frame[column].max() for frame in frames.values() for column in frame
             if str(frame[column].dtype) == DATE and frame[column].notna().any()]
    return max(dates) if dates else None


def _flag_word(value: object) -> str:
    return "unknown (pending)" if pd.isna(value) else str(bool(value)).lower()


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
    required = [column for column in columns_of(table, required_only=True)
                if column not in DERIVED_COLUMNS.get(table, ())]
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
