"""Report files by suffix, written atomically; the rich table keeps the total row in view."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from rich.console import Console

from rules.output import OutputError, rich_table, write_frame

FRAME = pd.DataFrame({"customer_id": ["A", "B"], "Total": [1300.0, -250.5],
                      "due_date": pd.to_datetime(["2024-02-29", None])})


def test_csv_parquet_and_json_round_trip(tmp_path: Path):
    assert pd.read_csv(write_frame(FRAME, tmp_path / "r.csv"))["Total"].tolist() == [1300.0, -250.5]
    assert pd.read_parquet(write_frame(FRAME, tmp_path / "r.parquet")).equals(FRAME)
    records = json.loads(write_frame(FRAME, tmp_path / "r.JSON").read_text())
    assert records[0]["customer_id"] == "A" and records[1]["Total"] == -250.5
    assert records[0]["due_date"].startswith("2024-02-29")


def test_xlsx_has_a_bold_frozen_header(tmp_path: Path):
    sheet = openpyxl.load_workbook(write_frame(FRAME, tmp_path / "r.xlsx")).active
    assert [cell.value for cell in sheet[1]] == ["customer_id", "Total", "due_date"]
    assert all(cell.font.bold for cell in sheet[1]) and not sheet["A2"].font.bold
    assert sheet.freeze_panes == "A2"
    assert sheet["B3"].value == -250.5


def test_unknown_suffix_is_a_clear_error_and_writes_nothing(tmp_path: Path):
    with pytest.raises(OutputError, match=r"'\.txt'.*\.csv, \.xlsx, \.parquet, \.json"):
        write_frame(FRAME, tmp_path / "r.txt")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path):
    out = write_frame(FRAME, tmp_path / "r.parquet")
    before = out.read_bytes()
    unwritable = pd.DataFrame({"mixed": [1, "a"]})  # Arrow refuses a column of int and str
    with pytest.raises(Exception):  # noqa: B017 - whatever Arrow raises, the old file must survive
        write_frame(unwritable, out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]  # no temp file left behind


def test_rich_table_keeps_the_last_row():
    frame = pd.DataFrame({"customer_id": [f"C{i}" for i in range(10)] + ["TOTAL"], "Total": range(11)})
    console = Console(width=80, record=True)
    console.print(rich_table(frame.astype({"Total": float}), max_rows=4))
    text = console.export_text()
    assert "C2" in text and "C3" not in text and "TOTAL" in text and "10.00" in text
