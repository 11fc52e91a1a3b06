"""Imports of the exports users really have: FBL5N with English headers (column synonyms), optional
columns a file may lack (a note, not an error), and `arrisk import --check-mapping`, which reads only
the header and first rows, says which column feeds each ledger field and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ledger import LedgerError, read_ledger
from ledger.importing import check_mapping, import_ledger
from serving.cli import app
from serving.cli.common import console

FBL5N = Path(__file__).parent / "fixtures" / "fbl5n" / "fbl5n_export.csv"
GENERIC = Path(__file__).parent / "fixtures" / "generic_csv"
ENGLISH = {"Buchungskreis": "Company Code", "Konto": "Account", "Belegnummer": "Document Number",
           "Belegart": "Document Type", "Belegdatum": "Document Date", "Buchungsdatum": "Posting Date",
           "Nettofälligkeit": "Net Due Date", "Betrag in Belegwährung": "Amount in doc. curr.",
           "Belegwährung": "Document currency", "Betrag in Hauswährung": "Amount in local currency",
           "Hauswährung": "Local Currency", "Ausgleichsbeleg": "Clearing Document", "Ausgleichsdatum": "Clearing date",
           "Rechnungsbezug": "Invoice reference", "Zuordnung": "Assignment", "Referenz": "Reference",
           "Mahnstufe": "Dunning level", "Letzte Mahnung": "Last dunned", "Mahnsperre": "Dunning block",
           "Text": "Text", "Zahlungsbedingung": "Terms of Payment"}
runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(console, "width", 300)  # table cells are not cut short


def fbl5n_rows() -> list[list[str]]:
    return [line.split(";") for line in FBL5N.read_bytes().decode("cp1252").splitlines()]


def write_fbl5n(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("\n".join(";".join(row) for row in rows) + "\n", encoding="utf-8")
    return path


def english_fbl5n(tmp_path: Path) -> Path:
    header, *body = fbl5n_rows()
    return write_fbl5n(tmp_path / "fbl5n_english.csv", [[ENGLISH[name] for name in header], *body])


def without_columns(tmp_path: Path, *names: str) -> Path:
    header, *body = fbl5n_rows()
    keep = [index for index, name in enumerate(header) if name not in names]
    assert len(keep) == len(header) - len(names)
    return write_fbl5n(tmp_path / "fbl5n_lean.csv", [[row[index] for index in keep] for row in [header, *body]])


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert result.stderr.endswith(line + "\n")
    return line


def test_an_english_header_imports_to_the_same_ledger_as_the_german_one(tmp_path):
    german = import_ledger([FBL5N], "sap_fbl5n")
    english = import_ledger([english_fbl5n(tmp_path)], "sap_fbl5n")
    for name, table in german.tables().items():
        pd.testing.assert_frame_equal(english.tables()[name], table, obj=name)


def test_headers_match_ignoring_case_and_spaces(tmp_path):
    header, *body = fbl5n_rows()
    loose = ["  " + ENGLISH[name].upper().replace(" ", "  ") for name in header]
    path = write_fbl5n(tmp_path / "loose.csv", [loose, *body])
    [check] = check_mapping([path], "sap_fbl5n")
    assert check.can_import
    assert next(f for f in check.fields if f.field == "due_date").header == "NET  DUE  DATE"


def test_english_dates_in_a_german_format_are_named_not_guessed(tmp_path):
    header, *body = fbl5n_rows()
    column = header.index("Belegdatum")
    body[0][column] = "01/05/2024"  # 05.01.2024 as an English export writes it
    path = write_fbl5n(tmp_path / "us_dates.csv", [[ENGLISH[name] for name in header], *body])
    with pytest.raises(LedgerError) as caught:
        import_ledger([path], "sap_fbl5n")
    [problem] = caught.value.problems
    assert (Path(problem.where).name, problem.row, problem.column) == ("us_dates.csv", 2, "Document Date")
    assert "expected a date like 31.12.2024" in problem.message and "format.date_format" in problem.message


def test_a_missing_optional_column_gives_a_note_and_the_ledger(tmp_path):
    lean = without_columns(tmp_path, "Mahnsperre", "Hauswährung")
    result = runner.invoke(app, ["import", str(lean), "--mapping", "sap_fbl5n", "--out", str(tmp_path / "ledger")])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stdout.splitlines() if line.startswith("note:")]
    # One line per mapped column the file lacks, in the mapping's order (the fixture may lack others).
    assert notes[0] == "note: fbl5n_lean.csv has no Hauswährung / Local Currency column: base_currency stays empty"
    assert "note: fbl5n_lean.csv has no Mahnsperre / Dunning block column: dunning_block stays empty" in notes
    assert len(notes) == len(set(notes)) and not any("customer_id" in note for note in notes)
    ledger = read_ledger(tmp_path / "ledger")
    pd.testing.assert_frame_equal(ledger.payment_applications, import_ledger([FBL5N], "sap_fbl5n").payment_applications)
    assert "dunning_block" not in ledger.invoices


def test_a_missing_required_column_is_a_one_line_error(tmp_path):
    lean = without_columns(tmp_path, "Ausgleichsbeleg")
    result = runner.invoke(app, ["import", str(lean), "--mapping", "sap_fbl5n", "--out", str(tmp_path / "ledger")])
    line = one_line_error(result)
    assert "fbl5n_lean.csv row 1 column Ausgleichsbeleg: column missing (mapped as clearing_document)" in line
    assert not (tmp_path / "ledger").exists()


def test_check_mapping_prints_each_field_and_writes_nothing(tmp_path):
    english = english_fbl5n(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    result = runner.invoke(app, ["import", str(english), "--mapping", "sap_fbl5n", "--check-mapping"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
            for line in result.stdout.splitlines() if line.count("│") > 2 and line.split("│")[1].strip()}
    # ledger field: source column, names tried, status, first rows
    assert rows["clearing_document"] == ["Clearing Document", "Ausgleichsbeleg / Clearing Document", "ok (synonym)",
                                         "parses"]
    assert rows["assignment"][0] == "Assignment" and rows["payment_terms"][2] == "missing: note"
    assert rows["-"] == ["Company Code", "", "ignored", ""]
    assert "the import with sap_fbl5n can run (1 file(s) checked)" in result.stdout
    assert sorted(tmp_path.rglob("*")) == before


def test_check_mapping_names_bad_cells_of_the_first_rows(tmp_path):
    header, *body = fbl5n_rows()
    body[2][header.index("Betrag in Belegwährung")] = "1,234.56"
    path = write_fbl5n(tmp_path / "odd.csv", [header, *body])
    [check] = check_mapping([path], "sap_fbl5n")
    amount = next(f for f in check.fields if f.field == "amount")
    assert amount.status == "ok, 1 bad cell(s)" and amount.problems[0].startswith("line 4: expected a number")
    assert check.can_import  # the header allows the import; the import itself names the cell


def test_check_mapping_exits_1_when_a_required_column_is_missing(tmp_path):
    lean = without_columns(tmp_path, "Ausgleichsbeleg", "Konto")
    result = runner.invoke(app, ["import", str(lean), "--mapping", "sap_fbl5n", "--check-mapping"])
    line = one_line_error(result)
    assert line == ("error: the import with sap_fbl5n cannot run: fbl5n_lean.csv lacks the required column(s) "
                    "Konto / Account (customer_id), Ausgleichsbeleg / Clearing Document (clearing_document)")
    assert "missing: error" in result.stdout


def test_check_mapping_of_generic_csv_without_kept_can_run(tmp_path):
    folder = tmp_path / "ledger_csv"
    folder.mkdir()
    for path in GENERIC.glob("*.csv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.drop(columns=["kept"], errors="ignore").to_csv(folder / path.name, index=False)
    result = runner.invoke(app, ["import", str(folder), "--mapping", "generic_csv", "--check-mapping"])
    assert result.exit_code == 0, result.output
    assert "derived" in result.stdout
    result = runner.invoke(app, ["import", str(folder), "--mapping", "generic_csv", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "note: promises.csv has no kept column: kept is derived from the payments" in result.stdout
    assert read_ledger(tmp_path / "out").promises["kept"].tolist() == [False]


def test_import_without_out_or_check_mapping_is_refused(tmp_path):
    result = runner.invoke(app, ["import", str(FBL5N), "--mapping", "sap_fbl5n"])
    assert "--out is required unless --check-mapping is given" in one_line_error(result)
