"""Import mappings: the shipped ones load; typos, unknown keys and bad values are named with the
YAML file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import LedgerError
from ledger.importing import load_mapping, shipped_mapping_names
from ledger.importing.mappings import LedgerTablesMapping, LineItemsMapping, SettledInvoicesMapping

MAPPINGS = Path(__file__).resolve().parents[1] / "configs" / "mappings"


def test_the_three_shipped_mappings_load_by_name():
    assert shipped_mapping_names() == ["generic_csv", "ibm_sample", "sap_fbl5n"]
    kinds = {name: type(load_mapping(name)[1]) for name in shipped_mapping_names()}
    assert kinds == {"generic_csv": LedgerTablesMapping, "ibm_sample": SettledInvoicesMapping,
                     "sap_fbl5n": LineItemsMapping}


def test_a_mapping_file_is_named_after_its_stem(tmp_path):
    copy = tmp_path / "my_erp.yaml"
    copy.write_text((MAPPINGS / "ibm_sample.yaml").read_text())
    name, mapping = load_mapping(copy)
    assert name == "my_erp" and mapping.columns.settled_date == "SettledDate"
    assert load_mapping(str(copy))[0] == "my_erp"


def mapping_error(tmp_path: Path, text: str) -> LedgerError:
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    with pytest.raises(LedgerError) as caught:
        load_mapping(path)
    return caught.value


def ibm_yaml(old: str, new: str) -> str:
    text = (MAPPINGS / "ibm_sample.yaml").read_text()
    assert old in text
    return text.replace(old, new)


def line_of(text: str, key: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if line.strip().startswith(f"{key}:"))


@pytest.mark.parametrize(("old", "new", "key", "words"), [
    ("dropped_columns:", "droped_columns:", "droped_columns", "unknown key 'droped_columns': expected one of"),
    ("  due_date: DueDate", "  due_dat: DueDate", "columns.due_dat", "unknown key 'due_dat'"),
    ("  opened_at: invoice_date", "  opened_at: whenever", "disputes.opened_at", "'invoice_date' or 'due_date'"),
    ("base_currency: USD", "base_currency: usd", "base_currency", "ISO 4217"),
    ("  currency: USD ", "  currency: DOLLAR ", "constants.currency", "ISO 4217"),
    ("  decimal: \".\"", "  decimal: \",\"", "format", "separators must differ"),
    ("  payment_terms_days: from_due_dates", "  payment_terms_days: thirty", "customers.payment_terms_days", ""),
])
def test_bad_keys_and_values_name_file_line_and_key(tmp_path, old, new, key, words):
    text = ibm_yaml(old, new)
    error = mapping_error(tmp_path, text)
    problems = [p for p in error.problems if p.column == key]
    assert problems, error.summary()
    assert problems[0].where.endswith("mapping.yaml") and problems[0].row == line_of(text, key.split(".")[-1])
    assert words in problems[0].message
    assert error.title == "bad mapping"


def test_unknown_nested_key_lists_the_keys_expected_there(tmp_path):
    error = mapping_error(tmp_path, ibm_yaml("  due_date: DueDate", "  due: DueDate"))
    message = next(p.message for p in error.problems if p.column == "columns.due")
    assert "customer_id" in message and "settled_date" in message
    assert {p.column for p in error.problems} == {"columns.due", "columns.due_date"}  # and the key it replaced


def test_a_missing_key_is_named(tmp_path):
    error = mapping_error(tmp_path, ibm_yaml("  settled_date: SettledDate\n", ""))
    assert [(p.column, p.message) for p in error.problems] == [("columns.settled_date", "missing key")]


def test_a_dropped_column_cannot_be_mapped(tmp_path):
    error = mapping_error(tmp_path, ibm_yaml("  settled_date: SettledDate", "  settled_date: DaysToSettle"))
    assert "dropped columns are mapped in columns: DaysToSettle" in str(error)


@pytest.mark.parametrize(("text", "row", "words"), [
    ("payments: {derive: cash}\nbase_currency: EUR\n", 1, "expected one of settled_date, clearing_documents, table"),
    ("base_currency: EUR\n", 1, "expected one of settled_date"),
    ("payments:\n  derive: table\nbase_currency: EUR: USD\n", 3, "not valid YAML"),
    ("- just\n- a list\n", 1, "expected a mapping of keys"),
])
def test_unreadable_mappings_are_named(tmp_path, text, row, words):
    error = mapping_error(tmp_path, text)
    assert [(Path(p.where).name, p.row) for p in error.problems] == [("mapping.yaml", row)]
    assert words in error.problems[0].message


def test_unknown_mapping_names_and_missing_files_are_named(tmp_path):
    with pytest.raises(LedgerError) as caught:
        load_mapping("sap_fbl5m")
    assert caught.value.problems[0].where == "sap_fbl5m"
    assert "expected one of generic_csv, ibm_sample, sap_fbl5n" in caught.value.problems[0].message
    with pytest.raises(LedgerError, match="no such mapping file"):
        load_mapping(tmp_path / "absent.yaml")


def test_an_invoice_list_without_base_amounts_must_be_in_the_base_currency(tmp_path):
    error = mapping_error(tmp_path, ibm_yaml("base_currency: USD", "base_currency: EUR"))
    assert "constants.currency must be the base_currency" in str(error)


def test_an_unknown_encoding_is_named(tmp_path):
    text = (MAPPINGS / "sap_fbl5n.yaml").read_text().replace("encoding: auto", "encoding: latin-9x")
    error = mapping_error(tmp_path, text)
    assert [(p.row, p.column) for p in error.problems] == [(line_of(text, "encoding"), "format.encoding")]


def fbl5n_yaml(old: str, new: str) -> str:
    text = (MAPPINGS / "sap_fbl5n.yaml").read_text()
    assert old in text
    return text.replace(old, new)


def test_columns_may_list_synonyms_and_say_what_is_required():
    columns = load_mapping("sap_fbl5n")[1].columns
    assert columns.document == "Belegnummer"  # the first name is the column the reader uses
    assert columns.document.names == ("Belegnummer", "Document Number", "DocumentNo")
    assert columns.document.required and columns.clearing_date.required
    optional = ("base_currency", "invoice_reference", "assignment", "reference", "dunning_level", "dunning_date",
                "dunning_block")
    assert not any(getattr(columns, field).required for field in optional)
    assert not load_mapping("ibm_sample")[1].columns.country.required


def test_a_dunning_level_without_a_dunning_date_is_accepted(tmp_path):
    path = tmp_path / "mapping.yaml"
    path.write_text(fbl5n_yaml("  dunning_date: [Letzte Mahnung, Last dunned]", ""))
    assert load_mapping(path)[1].columns.dunning_date is None


@pytest.mark.parametrize("value", ["[]", "['']", "{a: b}"])
def test_an_empty_or_odd_column_entry_is_named(tmp_path, value):
    error = mapping_error(tmp_path, fbl5n_yaml("  document: [Belegnummer, Document Number, DocumentNo]",
                                               f"  document: {value}"))
    assert {p.column for p in error.problems} == {"columns.document"}
