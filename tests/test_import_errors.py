"""Bad import input gets a `LedgerError` naming file, line (header = line 1) and column, and the
CLI leaves the target ledger as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger import LedgerError, write_ledger
from ledger.importing import import_ledger
from serving.cli import app
from tests.ledgers import tiny_ledger

ROOT = Path(__file__).resolve().parents[1]
IBM = ROOT / "samples" / "ibm" / "ibm_wa_accounts_receivable.csv"
FBL5N = ROOT / "tests" / "fixtures" / "fbl5n" / "fbl5n_export.csv"
GENERIC = ROOT / "tests" / "fixtures" / "generic_csv"


def ibm_lines() -> list[str]:
    return IBM.read_text().splitlines()


def fbl5n_lines() -> list[str]:
    return FBL5N.read_bytes().decode("cp1252").splitlines()


def with_cell(lines: list[str], line: int, column: str, value: str, separator: str) -> list[str]:
    """The lines with one cell replaced: line number `line` (header = 1), column named `column`."""
    header = lines[0].split(separator)
    cells = lines[line - 1].split(separator)
    cells[header.index(column)] = value
    return [*lines[: line - 1], separator.join(cells), *lines[line:]]


def ibm_with(line: int, column: str, value: str) -> list[str]:
    return with_cell(ibm_lines(), line, column, value, ",")


def fbl5n_with(line: int, column: str, value: str) -> list[str]:
    return with_cell(fbl5n_lines(), line, column, value, ";")


def import_error(sources: list[Path], mapping: str | Path) -> LedgerError:
    with pytest.raises(LedgerError) as caught:
        import_ledger(sources, mapping)
    return caught.value


def named(error: LedgerError) -> set[tuple[str, int | None, str | None]]:
    return {(Path(p.where).name, p.row, p.column) for p in error.problems}


def message_of(error: LedgerError, column: str | None) -> str:
    return next(p.message for p in error.problems if p.column == column)


# (name, lines of the bad file, (line, column) named, words of the message)
IBM_CASES = [
    ("missing_column", lambda: [ibm_lines()[0].replace("DueDate", "Due_Date"), *ibm_lines()[1:]],
     (1, "DueDate"), "column missing"),
    ("unparseable_date", lambda: ibm_with(5, "InvoiceDate", "2/30/2013"),
     (5, "InvoiceDate"), "expected a date like 12/31/2024"),
    ("iso_date", lambda: ibm_with(6, "SettledDate", "2012-11-28"),
     (6, "SettledDate"), "expected a date"),
    ("bad_number", lambda: ibm_with(4, "InvoiceAmount", "65.8.8"),
     (4, "InvoiceAmount"), "expected a number like 1,234.56"),
    ("empty_amount", lambda: ibm_with(9, "InvoiceAmount", ""),
     (9, "InvoiceAmount"), "missing value"),
    ("negative_amount", lambda: ibm_with(3, "InvoiceAmount", "-61.74"),
     (3, "InvoiceAmount"), "positive"),
    ("header_only", lambda: ibm_lines()[:1], (2, None), "no data rows"),
]


@pytest.mark.parametrize(("name", "lines", "where", "words"), IBM_CASES, ids=[case[0] for case in IBM_CASES])
def test_bad_ibm_files_name_file_line_and_column(tmp_path, name, lines, where, words):
    bad = tmp_path / f"{name}.csv"
    bad.write_text("\n".join(lines()) + "\n")
    error = import_error([bad], "ibm_sample")
    assert named(error) == {(bad.name, *where)}
    assert words in message_of(error, where[1])


FBL5N_CASES = [
    ("unknown_document_type", lambda: fbl5n_with(9, "Belegart", "XY"),
     {(9, "Belegart")}, "unknown document type: expected one of AB, DG, DR, DZ, RV"),
    ("bad_number", lambda: fbl5n_with(4, "Betrag in Belegwährung", "5.95,00"),
     {(4, "Betrag in Belegwährung")}, "expected a number like 1.234,56"),
    ("both_minus_signs", lambda: fbl5n_with(3, "Betrag in Belegwährung", "-11.900,00-"),
     {(3, "Betrag in Belegwährung")}, "expected a number"),
    ("unparseable_date", lambda: fbl5n_with(6, "Buchungsdatum", "31.02.2024"),
     {(6, "Buchungsdatum")}, "expected a date like 31.12.2024"),
    ("missing_column", lambda: [fbl5n_lines()[0].replace("Ausgleichsbeleg", "Ausgleich"), *fbl5n_lines()[1:]],
     {(1, "Ausgleichsbeleg")}, "column missing (mapped as clearing_document)"),
    ("unbalanced_clearing", lambda: [line for n, line in enumerate(fbl5n_lines(), 1) if n != 3],
     {(2, "Ausgleichsbeleg")}, "add up to 11900.00 EUR, expected 0"),
    ("unknown_reference", lambda: fbl5n_with(22, "Rechnungsbezug", "1600009999"),
     {(22, "Rechnungsbezug")}, "refers to 1600009999"),
    ("other_local_currency", lambda: fbl5n_with(2, "Hauswährung", "CHF"),
     {(2, "Hauswährung")}, "expected the mapping's base_currency EUR"),
    ("credit_memo_as_debit", lambda: with_cell(fbl5n_with(32, "Betrag in Belegwährung", "500,00"), 32,
                                             "Betrag in Hauswährung", "460,00", ";"),
     {(32, "Betrag in Belegwährung")}, "a credit memo must be a credit"),
    ("mixed_currencies", lambda: fbl5n_with(3, "Belegwährung", "USD"),
     {(2, "Ausgleichsbeleg"), (3, "Ausgleichsbeleg")}, "mixes document currencies"),
    ("wrong_delimiter", lambda: [line.replace(";", "|") for line in fbl5n_lines()],
     {(1, None)}, "is the delimiter ';' right?"),
]


@pytest.mark.parametrize(("name", "lines", "where", "words"), FBL5N_CASES, ids=[case[0] for case in FBL5N_CASES])
def test_bad_fbl5n_files_name_file_line_and_column(tmp_path, name, lines, where, words):
    bad = tmp_path / f"{name}.csv"
    bad.write_text("\n".join(lines()) + "\n", encoding="cp1252")
    error = import_error([bad], "sap_fbl5n")
    assert named(error) == {(bad.name, *line_column) for line_column in where}
    assert words in message_of(error, next(iter(where))[1])


def test_every_bad_cell_is_reported_at_once(tmp_path):
    lines = with_cell(fbl5n_with(9, "Belegart", "XY"), 20, "Buchungsdatum", "1.3.24", ";")
    bad = tmp_path / "two_problems.csv"
    bad.write_text("\n".join(lines), encoding="cp1252")
    assert named(import_error([bad], "sap_fbl5n")) == {(bad.name, 9, "Belegart"), (bad.name, 20, "Buchungsdatum")}


def test_a_bad_cell_in_the_second_file_names_that_file(tmp_path):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("\n".join(ibm_lines()[:100]))
    bad.write_text("\n".join([ibm_lines()[0], *ibm_with(300, "InvoiceDate", "2013-01-05")[200:400]]))
    problems = named(import_error([good, bad], "ibm_sample"))
    assert problems == {("bad.csv", 101, "InvoiceDate")}


@pytest.mark.parametrize(("content", "words"), [
    (b"", "empty file"),
    (b"\n\n  \n", "empty file"),
    (b"PK\x03\x04 not really a workbook", "not a readable .xlsx file"),
])
def test_unreadable_files_are_named(tmp_path, content, words):
    suffix = ".xlsx" if content.startswith(b"PK") else ".csv"
    bad = tmp_path / f"export{suffix}"
    bad.write_bytes(content)
    error = import_error([bad], "sap_fbl5n")
    assert [(p.where, p.row) for p in error.problems] == [(str(bad), None)]
    assert words in error.problems[0].message


def test_missing_sources_folders_and_unknown_suffixes_are_named(tmp_path):
    assert "no such file" in import_error([tmp_path / "nowhere.csv"], "ibm_sample").problems[0].message
    assert "is a folder" in import_error([tmp_path], "ibm_sample").problems[0].message
    (tmp_path / "export.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    error = import_error([tmp_path / "export.xls"], "sap_fbl5n")
    assert error.problems[0].where == str(tmp_path / "export.xls") and "expected .csv or .xlsx" in str(error)
    assert "no export file" in str(import_error([], "ibm_sample"))


def test_a_row_that_parses_but_breaks_the_contract_gets_the_validators_error(tmp_path):
    bad = tmp_path / "due_before_invoice.csv"
    bad.write_text("\n".join(ibm_with(3, "DueDate", "1/20/2013")))
    error = import_error([bad], "ibm_sample")
    assert [(p.where, p.row, p.key, p.column) for p in error.problems] == [
        ("invoices", 1, "invoice_id=0007900770", "due_date")]
    assert "due_date before invoice_date" in error.problems[0].message


def copy_of_generic(tmp_path: Path) -> Path:
    folder = tmp_path / "ledger_csv"
    folder.mkdir()
    for file in GENERIC.glob("*.csv"):
        (folder / file.name).write_text(file.read_text())
    return folder


def test_generic_csv_problems_name_file_line_and_column(tmp_path):
    folder = copy_of_generic(tmp_path)
    invoices = (folder / "invoices.csv").read_text().splitlines()
    invoices[0] = invoices[0].replace("amount_base", "amount_bse")
    (folder / "invoices.csv").write_text("\n".join(invoices))
    payments = (folder / "payments.csv").read_text().replace("2024-03-01", "2024-03-32")
    (folder / "payments.csv").write_text(payments)
    customers = (folder / "customers.csv").read_text().replace(",45,", ",forty-five,")
    (folder / "customers.csv").write_text(customers)
    error = import_error([folder], "generic_csv")
    assert named(error) == {("invoices.csv", 1, "amount_base"), ("invoices.csv", 1, "amount_bse"),
                            ("payments.csv", 3, "received_date"), ("customers.csv", 3, "payment_terms_days")}
    assert message_of(error, "amount_bse").startswith("unknown column")


def test_generic_csv_missing_tables_and_stray_files_are_named(tmp_path):
    folder = copy_of_generic(tmp_path)
    (folder / "customers.csv").unlink()
    (folder / "invoice.csv").write_text("invoice_id\n")
    error = import_error([folder], "generic_csv")
    assert {(Path(p.where).name, p.message.split(":")[0]) for p in error.problems} == {
        ("customers.csv", "required table missing"), ("invoice.csv", "not a ledger table name")}


def test_generic_csv_contract_breaks_get_the_validators_error(tmp_path):
    folder = copy_of_generic(tmp_path)
    applications = (folder / "payment_applications.csv").read_text().replace("P2,I2,", "P2,I9,")
    (folder / "payment_applications.csv").write_text(applications)
    error = import_error([folder], "generic_csv")
    assert ("payment_applications", 1, "invoice_id") in {(p.where, p.row, p.column) for p in error.problems}


# --- the CLI: one readable error, exit 1, target untouched ---------------------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def existing_ledger(tmp_path) -> Path:
    out = tmp_path / "ledger"
    write_ledger(tiny_ledger(), out)
    return out


def run_import(*arguments: str):
    result = CliRunner().invoke(app, ["import", *arguments])
    assert "Traceback" not in result.output
    return result


def test_cli_bad_file_exits_1_naming_it_and_leaves_the_ledger_untouched(tmp_path, existing_ledger):
    before = snapshot(existing_ledger)
    bad = tmp_path / "bad_dates.csv"
    bad.write_text("\n".join(ibm_with(5, "InvoiceDate", "2/30/2013")))
    result = run_import(str(bad), "--mapping", "ibm_sample", "--out", str(existing_ledger))
    assert result.exit_code == 1
    assert "bad_dates.csv" in result.output and "InvoiceDate" in result.output and "row 5" in result.output
    assert snapshot(existing_ledger) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad_dates.csv", "ledger"]  # no leftovers


def test_cli_bad_mapping_exits_1_and_leaves_the_ledger_untouched(tmp_path, existing_ledger):
    before = snapshot(existing_ledger)
    result = run_import(str(IBM), "--mapping", "ibm_sampel", "--out", str(existing_ledger))
    assert result.exit_code == 1 and "unknown mapping name" in result.output and "ibm_sample" in result.output
    mapping = tmp_path / "typo.yaml"
    mapping.write_text((ROOT / "configs" / "mappings" / "ibm_sample.yaml").read_text().replace("dropped_columns",
                                                                                               "drop_columns"))
    result = run_import(str(IBM), "--mapping", str(mapping), "--out", str(existing_ledger))
    assert result.exit_code == 1 and "typo.yaml" in result.output and "drop_columns" in result.output
    assert snapshot(existing_ledger) == before


def test_cli_contract_break_exits_1_and_leaves_the_ledger_untouched(tmp_path, existing_ledger):
    before = snapshot(existing_ledger)
    bad = tmp_path / "due_before_invoice.csv"
    bad.write_text("\n".join(ibm_with(3, "DueDate", "1/20/2013")))
    result = run_import(str(bad), "--mapping", "ibm_sample", "--out", str(existing_ledger))
    assert result.exit_code == 1 and "due_date before invoice_date" in result.output
    assert snapshot(existing_ledger) == before


def test_cli_missing_source_exits_1_without_creating_the_target(tmp_path):
    result = run_import(str(tmp_path / "nowhere.csv"), "--mapping", "sap_fbl5n", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and "nowhere.csv" in result.output and "no such file" in result.output
    assert not (tmp_path / "out").exists()
