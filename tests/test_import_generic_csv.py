"""Import of the ledger's own tables as CSV (generic_csv mapping): the template round-trips."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from ledger.importing import import_ledger
from tests.ledgers import tiny_ledger

TEMPLATE = Path(__file__).parent / "fixtures" / "generic_csv"


def assert_same_tables(ledger, expected) -> None:
    for name, table in expected.tables().items():
        pd.testing.assert_frame_equal(ledger.tables()[name], table, obj=name)


def test_the_shipped_example_is_the_tiny_ledger():
    ledger = import_ledger([TEMPLATE], "generic_csv")
    assert_same_tables(ledger, tiny_ledger())
    assert ledger.source == "import:generic_csv" and ledger.base_currency == "EUR"


def test_a_ledger_written_as_csv_reads_back_identical(tmp_path):
    expected = tiny_ledger()
    for name, table in expected.tables().items():
        table.to_csv(tmp_path / f"{name}.csv", index=False, date_format="%Y-%m-%d")
    assert_same_tables(import_ledger([tmp_path], "generic_csv"), expected)


def test_files_may_be_listed_and_optional_tables_left_out(tmp_path):
    chosen = ("customers", "invoices", "payments", "payment_applications", "writeoffs")
    files = [shutil.copy(TEMPLATE / f"{name}.csv", tmp_path) for name in chosen]
    ledger = import_ledger([Path(file) for file in files], "generic_csv")
    assert ledger.disputes.empty and ledger.promises.empty and ledger.contacts.empty
    pd.testing.assert_frame_equal(ledger.invoices, tiny_ledger().invoices)


def test_optional_columns_are_read_with_their_types(tmp_path):
    shutil.copytree(TEMPLATE, tmp_path / "ledger")
    customers = tiny_ledger().customers.assign(collector=["anna", None], dunning_block=[False, True])
    customers.to_csv(tmp_path / "ledger" / "customers.csv", index=False, date_format="%Y-%m-%d")
    (tmp_path / "ledger" / "dunning_notices.csv").write_text("invoice_id,level,issued_date\nI2,1,2024-03-10\n")
    ledger = import_ledger([tmp_path / "ledger"], "generic_csv")
    pd.testing.assert_frame_equal(ledger.customers, customers)
    assert ledger.dunning_notices.to_dict("records") == [
        {"invoice_id": "I2", "level": 1, "issued_date": pd.Timestamp("2024-03-10")}]
    assert ledger.dunning_notices["level"].dtype == "int64"
