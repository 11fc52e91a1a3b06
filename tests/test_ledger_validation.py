"""The data contract rejects bad ledgers, naming table, row/key and column, all at once."""

from __future__ import annotations

import pandas as pd
import pytest

from ledger import LedgerError, ledger_problems
from tests.ledgers import dates, tiny_ledger


def problems_of(ledger) -> set[tuple[str, int | None, str | None]]:
    return {(p.where, p.row, p.column) for p in ledger_problems(ledger.tables())}


def with_changes(table: str, row: int, **values):
    ledger = tiny_ledger()
    frame = getattr(ledger, table).copy()
    for column, value in values.items():
        frame.loc[row, column] = value
    return ledger.replace(**{table: frame})


def test_tiny_ledger_is_valid():
    assert ledger_problems(tiny_ledger().tables()) == []


BAD_CELLS = [
    # (table, row, changes, the column that must be named)
    ("customers", 1, {"customer_id": "C1"}, "customer_id"),  # duplicate key
    ("customers", 0, {"currency": "EURO"}, "currency"),
    ("customers", 0, {"payment_terms_days": -5}, "payment_terms_days"),
    ("customers", 1, {"credit_limit": -1.0}, "credit_limit"),
    ("invoices", 2, {"doc_type": "memo"}, "doc_type"),
    ("invoices", 1, {"due_date": pd.Timestamp("2023-12-31")}, "due_date"),  # due before invoice date
    ("invoices", 2, {"customer_id": "C9"}, "customer_id"),  # foreign key
    ("invoices", 2, {"amount": -800.0}, "amount"),  # an invoice must be positive
    ("invoices", 2, {"amount_base": float("nan")}, "amount_base"),
    ("invoices", 1, {"invoice_date": pd.Timestamp("2024-02-01 13:45")}, "invoice_date"),  # not a calendar date
    ("invoices", 2, {"cleared_date": pd.Timestamp("2024-03-01")}, "cleared_date"),  # cleared but open
    ("payments", 2, {"amount": -50.0}, "amount"),
    ("payments", 0, {"currency": "usd"}, "currency"),
    ("payment_applications", 0, {"invoice_id": "NOPE"}, "invoice_id"),
    ("payment_applications", 1, {"payment_id": "P9"}, "payment_id"),
    ("payment_applications", 2, {"amount": 200.0}, "amount"),  # credit memo applications are negative
    ("payment_applications", 0, {"applied_date": pd.Timestamp("2024-02-19")}, "applied_date"),  # before receipt
    ("disputes", 0, {"resolved_date": pd.Timestamp("2024-02-01")}, "resolved_date"),
    ("promises", 0, {"promised_date": pd.Timestamp("2024-03-01")}, "promised_date"),
    ("promises", 0, {"amount": 0.0}, "amount"),
    ("writeoffs", 0, {"invoice_id": "I99"}, "invoice_id"),
]


@pytest.mark.parametrize(("table", "row", "changes", "column"), BAD_CELLS)
def test_bad_cell_is_named_by_table_row_and_column(table, row, changes, column):
    assert (table, row, column) in problems_of(with_changes(table, row, **changes))


def test_application_total_above_payment_names_the_payment():
    ledger = tiny_ledger()
    payments = ledger.payments.copy()
    payments.loc[1, ["amount", "amount_base"]] = 50.0  # P2 applies 300 - 200 = 100 net
    assert ("payments", 1, "amount") in problems_of(ledger.replace(payments=payments))


def test_applications_above_invoice_amount_name_the_invoice():
    ledger = tiny_ledger()
    applications = ledger.payment_applications.copy()
    applications.loc[1, "amount"] = 600.0  # I2 is worth 500
    payments = ledger.payments.copy()
    payments.loc[1, ["amount", "amount_base"]] = 400.0
    assert ("invoices", 1, "amount") in problems_of(ledger.replace(payment_applications=applications, payments=payments))


def test_cleared_date_must_be_the_last_settlement_date():
    ledger = with_changes("invoices", 0, cleared_date=pd.Timestamp("2024-02-25"))
    problem = next(p for p in ledger_problems(ledger.tables()) if p.column == "cleared_date")
    assert (problem.where, problem.row, problem.key) == ("invoices", 0, "invoice_id=I1")
    assert "last application" in problem.message


def test_missing_table_and_missing_column_are_reported():
    tables = tiny_ledger().tables()
    del tables["payments"]
    tables["customers"] = tables["customers"].drop(columns="segment")
    found = {(p.where, p.column, p.message) for p in ledger_problems(tables)}
    assert ("payments", None, "table missing") in found
    assert any(where == "customers" and column == "segment" and "missing" in message
               for where, column, message in found)


def test_wrong_dtype_is_named_without_crashing_cross_table_checks():
    ledger = tiny_ledger()
    invoices = ledger.invoices.copy()
    invoices["due_date"] = invoices["due_date"].dt.strftime("%d.%m.%Y")  # text, not dates
    found = problems_of(ledger.replace(invoices=invoices))
    assert ("invoices", None, "due_date") in found or any(t == "invoices" and c == "due_date" for t, _, c in found)


def test_all_failures_are_reported_at_once():
    ledger = tiny_ledger()
    invoices = ledger.invoices.copy()
    invoices.loc[0, "currency"] = "XXX1"
    invoices.loc[2, "due_date"] = pd.Timestamp("2020-01-01")
    customers = ledger.customers.copy()
    customers.loc[1, "payment_terms_days"] = 999
    with pytest.raises(LedgerError) as raised:
        ledger.replace(invoices=invoices, customers=customers).validate()
    named = {(p.where, p.row, p.column) for p in raised.value.problems}
    assert {("invoices", 0, "currency"), ("invoices", 2, "due_date"),
            ("customers", 1, "payment_terms_days")} <= named
    assert "invoices row 2 (invoice_id=I3) column due_date" in str(raised.value)


def test_optional_tables_may_be_absent_but_required_ones_not():
    tables = tiny_ledger().tables()
    for name in ("disputes", "promises", "writeoffs", "dunning_notices", "contacts"):
        tables.pop(name)
    # I4 was settled by its write-off; without it the ledger says cleared but unpaid.
    found = {(p.where, p.row, p.column) for p in ledger_problems(tables)}
    assert found == {("invoices", 4, "cleared_date")}


def test_an_open_dispute_needs_no_resolution_date():
    ledger = tiny_ledger()
    disputes = ledger.disputes.copy()
    disputes["resolved_date"] = dates(None)
    assert ledger_problems(ledger.replace(disputes=disputes).tables()) == []


def test_problems_with_and_without_a_row_are_reported_together():
    ledger = tiny_ledger()
    customers = ledger.customers.drop(columns="segment").assign(payment_terms_days=[30, -1])
    with pytest.raises(LedgerError) as raised:
        ledger.replace(customers=customers).validate()
    text = str(raised.value)
    assert text.index("column segment: column missing") < text.index("customers row 1")


# The vectorised checks (identifiers, currency codes, amounts) report each kind of bad value
# with the same message as pandera's element-wise checks did.
BAD_VALUES = [
    # (table, row, changes, column, message)
    ("invoices", 1, {"invoice_id": ""}, "invoice_id", "expected a non-empty identifier, got ''"),
    ("payment_applications", 2, {"payment_id": ""}, "payment_id", "expected a non-empty identifier, got ''"),
    ("customers", 1, {"currency": "EURO"}, "currency", "expected an ISO 4217 currency code such as EUR, got 'EURO'"),
    ("payments", 0, {"currency": "eur"}, "currency", "expected an ISO 4217 currency code such as EUR, got 'eur'"),
    ("invoices", 0, {"amount": float("inf")}, "amount", "expected a finite number, got inf"),
    ("payments", 1, {"amount_base": float("-inf")}, "amount_base", "expected a finite number, got -inf"),
    ("invoices", 2, {"amount_base": float("nan")}, "amount_base", "missing value (expected a value), got nan"),
    ("customers", 0, {"name": None}, "name", "missing value (expected a value), got None"),
]


@pytest.mark.parametrize(("table", "row", "changes", "column", "message"), BAD_VALUES)
def test_bad_value_is_reported_with_its_message(table, row, changes, column, message):
    ledger = with_changes(table, row, **changes)
    found = {(p.where, p.row, p.column, p.message) for p in ledger_problems(ledger.tables())}
    assert (table, row, column, message) in found


def test_a_value_that_is_not_text_in_an_id_column_is_a_wrong_type():
    ledger = tiny_ledger()
    invoices = ledger.invoices.astype({"invoice_id": object})
    invoices.loc[1, "invoice_id"] = 5
    problems = ledger_problems(ledger.replace(invoices=invoices).tables())
    assert [(p.where, p.row, p.column, p.message) for p in problems if p.column == "invoice_id"] == [
        ("invoices", 1, "invoice_id", "wrong type: expected 'str', got 5"),
        ("invoices", 1, "invoice_id", "expected a non-empty identifier, got 5")]


def test_an_empty_id_in_a_large_table_is_found_at_its_row():
    ledger = tiny_ledger()
    customers = pd.concat([ledger.customers] * 500, ignore_index=True)
    customers["customer_id"] = [f"C{i}" for i in range(1, len(customers) + 1)]
    customers.loc[777, "customer_id"] = ""
    problems = [p for p in ledger_problems(ledger.replace(customers=customers).tables())
                if p.where == "customers"]
    assert [(p.row, p.column, p.message) for p in problems] == [
        (777, "customer_id", "expected a non-empty identifier, got ''")]
