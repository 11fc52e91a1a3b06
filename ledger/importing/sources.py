"""Reading export files (CSV or .xlsx) and parsing their cells, with every problem named by file,
line (header = line 1) and column.

A `SourceTable` keeps the raw cells and the line each row came from; its parsers return typed
Series and collect problems instead of raising, so one run reports every bad cell at once.
"""

from __future__ import annotations

import codecs
import datetime
import itertools
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ledger.errors import LedgerError, Problem
from ledger.importing.mappings import SourceColumn, SourceFormat

DATE = "datetime64[ns]"
CSV_SUFFIXES = (".csv", ".txt")
XLSX_SUFFIXES = (".xlsx", ".xlsm")
TRUE_WORDS = frozenset({"true", "yes", "y", "1", "x"})
FALSE_WORDS = frozenset({"false", "no", "n", "0"})
CHUNK_ROWS = 200_000  # lines of an export parsed at a time: bounds memory, keeps the vectorised parsers fast


@dataclass(frozen=True)
class ColumnMatch:
    """Which header of a file feeds a mapped ledger field (None: the file has none of its names)."""

    field: str
    column: SourceColumn
    header: str | None

    @property
    def synonym(self) -> bool:
        """Whether a name other than the first one matched (e.g. the English header of a German mapping)."""
        return self.header is not None and self.header != self.column.names[0]


def matched_header(header: Sequence[str], names: Sequence[str]) -> str | None:
    """The first of `names` the header has: exactly, else ignoring case and runs of spaces."""
    for name in names:
        if name in header:
            return name
    loose = {_loose(column): column for column in reversed(header)}
    return next((loose[_loose(name)] for name in names if _loose(name) in loose), None)


def match_columns(header: Sequence[str], columns: Mapping[str, str | None]) -> list[ColumnMatch]:
    """Each mapped field (field -> `SourceColumn` or a plain header) matched against a file's header."""
    matches = []
    for key, column in columns.items():
        if column is None:
            continue
        if not isinstance(column, SourceColumn):
            column = SourceColumn([column])
        matches.append(ColumnMatch(key, column, matched_header(header, column.names)))
    return matches


def _loose(name: str) -> str:
    return " ".join(str(name).split()).casefold()


@dataclass
class SourceTable:
    """The cells of one export file (strings from CSV; strings, numbers or datetimes from .xlsx)."""

    file: str
    cells: pd.DataFrame
    lines: np.ndarray
    format: SourceFormat
    typed: bool = False  # cells may hold numbers and dates (.xlsx), not only strings (CSV)
    problems: list[Problem] = field(default_factory=list)
    # Mapped columns the file lacks (their cells read as empty, never as missing values), and the
    # file's own header for a column read under its mapping's first name (used in messages).
    absent: set[str] = field(default_factory=set)
    headers: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.cells)

    def require_columns(self, columns: Mapping[str, str | None]) -> list[ColumnMatch]:
        """Match the mapped columns (field -> `SourceColumn` or header) to the file's header and put each
        matched header's cells under the column's first name; a missing optional column reads as empty.
        `LedgerError` naming every missing required column."""
        matches = match_columns(list(self.cells.columns), columns)
        missing = [match for match in matches if match.header is None and match.column.required]
        if missing and len(self.cells.columns) == 1:
            expected = ", ".join(match.column for match in matches)
            raise LedgerError(Problem(self.file, 1, None, f"the header has a single column: is the delimiter "
                                                          f"{self.format.delimiter!r} right? Expected columns "
                                                          f"{expected}"), title="bad import source")
        if missing:
            raise LedgerError([Problem(self.file, 1, match.column, f"column missing (mapped as {match.field})"
                                       + (f": expected one of {', '.join(match.column.names)}"
                                          if len(match.column.names) > 1 else ""))
                               for match in missing], title="bad import source")
        for match in matches:
            name = str(match.column)
            if match.header is None and name not in self.cells:
                empty = pd.Series(None, index=self.cells.index, dtype=object if self.typed else "string[pyarrow]")
                self.cells[name] = empty
                self.absent.add(name)
            elif match.header is not None and match.header != name:
                self.cells[name] = self.cells[match.header]  # a copy: one header may feed several fields
                self.headers[name] = match.header
        return matches

    def text(self, column: str, *, required: bool = False) -> pd.Series:
        """Cells as stripped strings; empty cells (or the format's null values) become None."""
        raw = self.cells[column]
        as_text = raw.map(_cell_text, na_action="ignore") if self.typed else raw.str.strip()
        empty = as_text.isna() | as_text.isin(self.format.null_values)
        as_text = as_text.astype(object).where(~empty.to_numpy(dtype=bool), None)
        if required and column not in self.absent:
            self.flag(as_text.isna(), column, "missing value (expected a value)")
        return as_text

    def dates(self, column: str, *, required: bool = False) -> pd.Series:
        """Cells as calendar dates: text in the format's date format, or real dates from .xlsx."""
        raw = self.cells[column]
        is_date = self._cells_of_type(column, datetime.date)
        from_cells = pd.to_datetime(raw.where(is_date), errors="coerce")
        text = self.text(column).where(~is_date, None)
        from_text = pd.to_datetime(text, format=self.format.date_format, errors="coerce")
        parsed = from_cells.fillna(from_text).astype(DATE).dt.normalize()
        example = pd.Timestamp("2024-12-31").strftime(self.format.date_format)
        self.flag(text.notna() & parsed.isna(), column,
                  f"expected a date like {example} ({self.format.date_format}){self._other_layout(column)}", raw)
        if required and column not in self.absent:
            self.flag(text.isna() & ~is_date, column, "missing value (expected a date)")
        return parsed

    def numbers(self, column: str, *, required: bool = False) -> pd.Series:
        """Cells as floats: text with the format's separators (a trailing minus, as SAP writes
        credits, counts as negative), or real numbers from .xlsx."""
        raw = self.cells[column]
        is_number = self._cells_of_type(column, int | float) & ~self._cells_of_type(column, bool)
        from_cells = pd.to_numeric(raw.where(is_number), errors="coerce")
        text = self.text(column).where(~is_number, None)
        from_text = _parsed_numbers(text, self.format.decimal, self.format.thousands)
        parsed = from_cells.fillna(from_text).astype(float)
        example = _number_example(self.format.decimal, self.format.thousands)
        self.flag(text.notna() & parsed.isna(), column,
                  f"expected a number like {example}{self._other_layout(column)}", raw)
        self.flag(is_number & ~np.isfinite(parsed.fillna(0.0)), column, "expected a finite number", raw)
        if required and column not in self.absent:
            self.flag(text.isna() & ~is_number, column, "missing value (expected a number)")
        return parsed

    def money(self, column: str, *, required: bool = False) -> pd.Series:
        """Numbers rounded to cents."""
        return self.numbers(column, required=required).round(2)

    def whole_numbers(self, column: str, *, required: bool = False) -> pd.Series:
        """Numbers that must be whole (levels, days); nullable Int64."""
        values = self.numbers(column, required=required)
        fractional = values.notna() & (values != values.round())
        self.flag(fractional, column, "expected a whole number", self.cells[column])
        return values.where(~fractional).round().astype("Int64")

    def flags(self, column: str, *, required: bool = False) -> pd.Series:
        """Yes/no cells (true/false, yes/no, 1/0, x) as a nullable boolean."""
        words = self.text(column, required=required).str.lower()
        result = pd.Series(pd.NA, index=words.index, dtype="boolean")
        result[words.isin(TRUE_WORDS)] = True
        result[words.isin(FALSE_WORDS)] = False
        self.flag(words.notna() & result.isna(), column, "expected true or false", self.cells[column])
        return result

    def _other_layout(self, column: str) -> str:
        """A hint when the column was found under a synonym: the export may come from another language's
        layout, which writes dates and numbers its own way; never guessed, the format must say it."""
        if column not in self.headers:
            return ""
        return (f" (read from {self.headers[column]!r}, a synonym of {column!r}: if this export writes dates "
                f"or numbers differently, set format.date_format, decimal and thousands in a copy of the mapping)")

    def _cells_of_type(self, column: str, kind: type) -> pd.Series:
        if not self.typed:
            return pd.Series(False, index=self.cells.index)
        return self.cells[column].map(lambda cell: isinstance(cell, kind)).astype(bool)

    def flag(self, bad: pd.Series, column: str | None, message: str, raw: pd.Series | None = None) -> None:
        """Record a problem on the line of each row where `bad` is True (quoting the raw cell if given)."""
        named = self.headers.get(column, column) if column is not None else None
        for row in np.flatnonzero(bad.fillna(False).to_numpy(dtype=bool)):
            got = f", got {raw.iloc[row]!r}" if raw is not None else ""
            self.problems.append(Problem(self.file, int(self.lines[row]), named, message + got))


def read_source(path: Path, fmt: SourceFormat) -> SourceTable:
    """An export file's cells by suffix (.csv/.txt or .xlsx), whole; `LedgerError` naming the file when it
    cannot be read."""
    chunks = list(read_source_chunks(path, fmt))
    if len(chunks) == 1:
        return chunks[0]
    return SourceTable(chunks[0].file, pd.concat([chunk.cells for chunk in chunks], ignore_index=True),
                       np.concatenate([chunk.lines for chunk in chunks]), fmt, typed=chunks[0].typed)


def read_first_rows(path: Path, fmt: SourceFormat, rows: int = 20) -> SourceTable:
    """The header and the first `rows` data rows of an export file (for checking a mapping)."""
    return next(read_source_chunks(path, fmt, rows))


def read_source_chunks(path: Path, fmt: SourceFormat, chunk_rows: int = CHUNK_ROWS) -> Iterator[SourceTable]:
    """An export file's cells `chunk_rows` lines at a time (at least one chunk, maybe empty, with the
    header's columns), each row keeping the line number it has in the whole file; `LedgerError` naming the
    file when it cannot be read. Memory holds one chunk, not the file."""
    where = str(path)
    if not path.exists():
        raise _unreadable(where, "no such file")
    if path.is_dir():
        raise _unreadable(where, "is a folder: expected a file")
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        chunks = _csv_chunks(path, fmt, chunk_rows)
    elif suffix in XLSX_SUFFIXES:
        chunks = _xlsx_chunks(path, fmt, chunk_rows)
    else:
        raise _unreadable(where, f"unsupported file type {suffix or '(none)'!r}: expected .csv or .xlsx")
    for cells, lines in chunks:
        yield SourceTable(where, cells, lines, fmt, typed=suffix in XLSX_SUFFIXES)


def _csv_chunks(path: Path, fmt: SourceFormat, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    where = str(path)
    encoding, errors = _encoding_of(path, fmt.encoding)
    try:
        with open(path, encoding=encoding, errors=errors, newline="") as handle:
            # Blank lines are kept (and dropped below) so that row i of the file is always line i + 2.
            # Arrow-backed strings: the text parsers run in Arrow compute, not per Python object.
            reader = pd.read_csv(handle, sep=fmt.delimiter, dtype="string[pyarrow]", keep_default_na=False,
                                 na_filter=False, skip_blank_lines=False, chunksize=chunk_rows)
            first_line = 2
            for cells in reader:
                cells.columns = [str(name).strip() for name in cells.columns]
                lines = np.arange(len(cells)) + first_line
                first_line += len(cells)
                yield _without_blank_rows(cells.reset_index(drop=True), lines)
    except OSError as error:
        raise _unreadable(where, f"cannot read ({error.strerror or error})") from None
    except (pd.errors.ParserError, ValueError) as error:
        line = re.search(r"line (\d+)", str(error))
        raise LedgerError(Problem(where, int(line.group(1)) if line else None, None,
                                  f"not a readable CSV file: {error}"), title="bad import source") from None


def _encoding_of(path: Path, encoding: str) -> tuple[str, str]:
    """The text encoding (and error handling) to read a CSV file with, found by one streaming pass that
    also refuses a file that is empty or only blank; `LedgerError` when the named encoding does not fit."""
    where = str(path)
    candidates = [(encoding, "strict")] if encoding != "auto" else [("utf-8-sig", "strict"), ("cp1252", "replace")]
    for index, (name, errors) in enumerate(candidates):
        try:
            decoder = codecs.getincrementaldecoder(name)(errors)
        except LookupError as error:
            raise _unreadable(where, f"cannot decode as {name} ({error})") from None
        offset, blank = 0, True
        try:
            with open(path, "rb") as handle:
                while block := handle.read(1 << 20):
                    blank = blank and not decoder.decode(block).strip()
                    offset += len(block)
                blank = blank and not decoder.decode(b"", final=True).strip()
        except OSError as error:
            raise _unreadable(where, f"cannot read ({error.strerror or error})") from None
        except UnicodeDecodeError as error:
            if index + 1 < len(candidates):
                continue  # German Excel's "CSV (Trennzeichen-getrennt)" writes Windows-1252.
            position = offset + error.start  # bytes of earlier blocks plus the place in this one
            raise _unreadable(where, f"cannot decode as {name} ('{error.encoding}' codec can't decode byte "
                                     f"0x{error.object[error.start]:02x} in position {position}: "
                                     f"{error.reason})") from None
        if blank:
            raise _unreadable(where, "empty file: expected a header line")
        return name, errors
    raise AssertionError("unreachable")  # pragma: no cover - the last candidate returns or raises


def _xlsx_chunks(path: Path, fmt: SourceFormat, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    where = str(path)
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (OSError, InvalidFileException, zipfile.BadZipFile, KeyError, ValueError) as error:
        raise _unreadable(where, f"not a readable .xlsx file ({error})") from None
    try:
        if fmt.sheet is not None and fmt.sheet not in workbook.sheetnames:
            raise _unreadable(where, f"no sheet {fmt.sheet!r}: the workbook has {', '.join(workbook.sheetnames)}")
        sheet = workbook[fmt.sheet] if fmt.sheet else workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        first = next(rows, None)
        if first is None or all(cell is None for cell in first):
            raise _unreadable(where, "empty sheet: expected a header row")
        header = [str(cell).strip() if cell is not None else f"(column {i + 1})" for i, cell in enumerate(first)]
        width, first_line = len(header), 2
        while True:
            body = [tuple(row[:width]) + (None,) * (width - len(row)) for row in itertools.islice(rows, chunk_rows)]
            if body or first_line == 2:
                cells = pd.DataFrame(body, columns=header, dtype=object)
                lines = np.arange(len(cells)) + first_line
                first_line += len(cells)
                yield _without_blank_rows(cells, lines)
            if len(body) < chunk_rows:
                break
    finally:
        workbook.close()


def _without_blank_rows(cells: pd.DataFrame, lines: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    blank = np.ones(len(cells), dtype=bool)
    for column in cells.columns:
        values = cells[column]
        text = values if isinstance(values.dtype, pd.StringDtype) else values.astype(str)
        blank &= (values.isna() | text.str.strip().eq("")).to_numpy(dtype=bool)
    keep = ~blank
    return cells[keep].reset_index(drop=True), lines[keep]


def _cell_text(cell: object) -> str:
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))  # an account number read from .xlsx as 100001.0
    if isinstance(cell, datetime.datetime | datetime.date):
        return cell.isoformat()
    return str(cell).strip()


def _parsed_numbers(text: pd.Series, decimal: str, thousands: str | None) -> pd.Series:
    """Text like `1.234,56-` or `-1,234.56` as floats; NaN where it does not read as a number."""
    grouped = rf"\d{{1,3}}(?:{re.escape(thousands)}\d{{3}})+|" if thousands else ""
    pattern = rf"[-+]?(?:{grouped}\d+)(?:{re.escape(decimal)}\d*)?-?"
    compact = text.astype("string[pyarrow]").str.replace("[\\s\u00a0]", "", regex=True)
    trailing_minus = compact.str.endswith("-").fillna(False).astype(bool)
    valid = compact.str.fullmatch(pattern).fillna(False).astype(bool)
    valid &= ~(trailing_minus & compact.str.match("[-+]").fillna(False).astype(bool))
    digits = compact.where(valid).str.rstrip("-")
    if thousands:
        digits = digits.str.replace(thousands, "", regex=False)
    if decimal != ".":
        digits = digits.str.replace(decimal, ".", regex=False)
    values = pd.to_numeric(digits, errors="coerce").astype(float)
    return values.where(~trailing_minus, -values).set_axis(text.index)


def _number_example(decimal: str, thousands: str | None) -> str:
    return f"1{thousands or ''}234{decimal}56"


def _unreadable(where: str, message: str) -> LedgerError:
    return LedgerError(Problem(where, None, None, message), title="bad import source")
