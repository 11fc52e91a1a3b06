"""Reports for people: a frame written by the `--out` suffix, or shown as a rich table.

Files are written to a temporary sibling and renamed into place, so a failed write never leaves a
half-written report where the previous one was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from rich.table import Table

from ledger.files import OutputError, check_file_target, write_file_atomically

__all__ = ["SUFFIXES", "OutputError", "check_file_target", "rich_table", "write_file_atomically", "write_frame"]

SUFFIXES = (".csv", ".xlsx", ".parquet", ".json")


def write_frame(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write `frame` to `out` in the format its suffix names, atomically; return the path."""
    out = Path(out)
    writer = _writer_for(out.suffix.lower())
    return write_file_atomically(out, lambda staging: writer(frame, staging))


def _writer_for(suffix: str) -> Callable[[pd.DataFrame, Path], None]:
    writers = {".csv": _write_csv, ".xlsx": _write_xlsx, ".parquet": _write_parquet, ".json": _write_json}
    if suffix not in writers:
        raise OutputError(f"unknown output format {suffix or '(no suffix)'!r}: expected one of {', '.join(SUFFIXES)}")
    return writers[suffix]


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, date_format="%Y-%m-%d")


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    frame.to_parquet(path, index=False)


def _write_json(frame: pd.DataFrame, path: Path) -> None:
    frame.to_json(path, orient="records", date_format="iso", indent=2)


def _write_xlsx(frame: pd.DataFrame, path: Path) -> None:
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        frame.to_excel(writer, index=False, sheet_name="report")
        format_sheet(writer.sheets["report"])


def format_sheet(sheet) -> None:
    """Bold header, frozen top row and columns wide enough for their values (capped)."""
    from openpyxl.styles import Font

    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"  # the header stays in view while scrolling
    for column_cells in sheet.columns:
        width = max(len(str(cell.value)) if cell.value is not None else 0 for cell in column_cells)
        sheet.column_dimensions[column_cells[0].column_letter].width = min(max(width + 2, 8), 60)


def rich_table(frame: pd.DataFrame, title: str = "", max_rows: int = 50) -> Table:
    """The first `max_rows` rows of a frame as a rich table, money with two decimals."""
    table = Table(title=title, title_justify="left")
    numeric = {column for column in frame.columns if pd.api.types.is_numeric_dtype(frame[column])
               and not pd.api.types.is_bool_dtype(frame[column])}
    for column in frame.columns:
        table.add_column(str(column), justify="right" if column in numeric else "left")
    truncated = len(frame) > max_rows
    # The last row stays in view when the table is cut: reports end with their totals.
    shown = pd.concat([frame.head(max_rows - 1), frame.tail(1)]) if truncated else frame
    for position, row in enumerate(shown.itertuples(index=False)):
        if truncated and position == len(shown) - 1:
            table.add_row(*("..." for _ in frame.columns))
        table.add_row(*(_cell(value, column in numeric) for column, value in zip(frame.columns, row, strict=True)))
    if truncated:
        table.caption = f"first {max_rows - 1} and last of {len(frame):,} rows; use --out FILE for all"
    return table


def _cell(value: object, numeric: bool) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "-"
    if isinstance(value, pd.Timestamp):
        return f"{value:%Y-%m-%d}"
    if numeric and isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)
