"""Import of the ledger's own tables as CSV (generic_csv mapping): the template round-trips."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from ledger import LedgerError
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


def copy_with_promises(tmp_path: Path, promises: pd.DataFrame) -> Path:
    folder = tmp_path / "ledger"
    shutil.copytree(TEMPLATE, folder)
    promises.to_csv(folder / "promises.csv", index=False, date_format="%Y-%m-%d")
    return folder


def test_promises_without_kept_import_with_kept_derived_from_the_payments(tmp_path):
    # PR1 promises 200.00 on I2 from 2024-03-05 to 2024-03-15; I2's only payment came on 2024-03-01 and
    # the ledger runs to 2024-06-30: broken, kept False, as the template says.
    folder = copy_with_promises(tmp_path, tiny_ledger().promises.drop(columns="kept"))
    assert_same_tables(import_ledger([folder], "generic_csv"), tiny_ledger())


def test_a_kept_the_payments_contradict_is_named_per_row(tmp_path):
    promises = tiny_ledger().promises
    on_account = promises.assign(promise_id="PR2", invoice_id=None, made_date=pd.Timestamp("2024-02-15"),
                                 promised_date=pd.Timestamp("2024-02-25"), amount=900.0, kept=True)
    # PR1: nothing paid on I2 in its window, yet kept; PR2 on C1's account: P1 paid 1000.00 on 2024-02-20,
    # so it was kept; the third row is pending long after the ledger's last date: no contradiction.
    pending = on_account.assign(promise_id="PR3", promised_date=pd.Timestamp("2025-01-31"),
                                made_date=pd.Timestamp("2024-07-01"), kept=pd.NA)
    rows = pd.concat([promises.assign(kept=True), on_account, pending], ignore_index=True)
    with pytest.raises(LedgerError) as caught:
        import_ledger([copy_with_promises(tmp_path, rows)], "generic_csv")
    assert [(Path(p.where).name, p.row, p.column) for p in caught.value.problems] == [("promises.csv", 2, "kept")]
    assert caught.value.problems[0].message == ("expected false, found true: 0.00 of 200.00 paid from 2024-03-05 "
                                                "to 2024-03-15")


def test_a_missing_required_column_is_still_an_error(tmp_path):
    folder = copy_with_promises(tmp_path, tiny_ledger().promises.drop(columns="amount"))
    with pytest.raises(LedgerError) as caught:
        import_ledger([folder], "generic_csv")
    assert [(Path(p.where).name, p.row, p.column, p.message) for p in caught.value.problems] == [
        ("promises.csv", 1, "amount", "column missing")]


def rewritten_invoices(tmp_path: Path, change) -> Path:
    folder = tmp_path / "tables"
    shutil.copytree(TEMPLATE, folder)
    invoices = pd.read_csv(folder / "invoices.csv", dtype=str, keep_default_na=False)
    change(invoices).to_csv(folder / "invoices.csv", index=False)
    return folder


def test_invoices_without_cleared_date_import_with_it_derived_from_the_settlements(tmp_path):
    folder = rewritten_invoices(tmp_path, lambda invoices: invoices.drop(columns="cleared_date"))
    derived, given = import_ledger([folder], "generic_csv"), import_ledger([TEMPLATE], "generic_csv")
    pd.testing.assert_frame_equal(derived.invoices, given.invoices)
    assert derived.invoices["cleared_date"].notna().sum() == given.invoices["cleared_date"].notna().sum() > 0


def test_a_cleared_date_the_settlements_contradict_is_named_per_row(tmp_path):
    def moved(invoices: pd.DataFrame) -> pd.DataFrame:
        row = invoices.index[invoices["cleared_date"] != ""][0]
        invoices.loc[row, "cleared_date"] = "2024-06-30"
        return invoices

    with pytest.raises(LedgerError) as caught:
        import_ledger([rewritten_invoices(tmp_path, moved)], "generic_csv")
    assert [(problem.where, problem.column) for problem in caught.value.problems] == [("invoices", "cleared_date")]
    assert "expected the date of the last application or write-off" in caught.value.problems[0].message


def test_a_bank_payment_without_customer_or_application_is_unapplied_cash_with_its_remittance_data(tmp_path):
    shutil.copytree(TEMPLATE, tmp_path, dirs_exist_ok=True)
    payments = pd.read_csv(tmp_path / "payments.csv")
    line = {"payment_id": "BANK-X", "customer_id": None, "received_date": "2024-03-08", "amount": 75.0,
            "currency": "EUR", "amount_base": 75.0, "payer_name": "ACME GMBH", "payer_account": "DE02120300000000202051",
            "remittance_text": "Rechnung I2", "statement_ref": "ST-1/1"}
    pd.concat([payments, pd.DataFrame([line])]).to_csv(tmp_path / "payments.csv", index=False)
    ledger = import_ledger([tmp_path], "generic_csv")
    bank = ledger.payments.set_index("payment_id").loc["BANK-X"]
    assert pd.isna(bank["customer_id"]) and bank["payer_name"] == "ACME GMBH" and bank["remittance_text"] == "Rechnung I2"
    assert "BANK-X" not in set(ledger.payment_applications["payment_id"])
    assert ledger.payments.loc[ledger.payments["payment_id"] != "BANK-X", "payer_name"].isna().all()
