"""Validate a whole ledger: per-table schemas, then rules across columns and tables.

Every failure becomes a `Problem` naming table, row, key and column; all are collected before
anything is raised, so one run shows everything that is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pandera.pandas as pa

from ledger.errors import LedgerError, Problem
from ledger.schema import DATE, REQUIRED_TABLES, SCHEMAS, TABLE_KEYS, TABLES

# Money compared after sums: half a cent plus float noise.
TOLERANCE = 0.005

_CHECK_WORDS = {
    "field_uniqueness": "duplicate key",
    "not_nullable": "missing value (expected a value)",
    "column_in_dataframe": "column missing",
    "finite": "expected a finite number",
    "iso_4217_currency": "expected an ISO 4217 currency code such as EUR",
    "str_length": "expected a non-empty identifier",
}

# (child table, child column, parent table, parent column)
FOREIGN_KEYS = (
    ("invoices", "customer_id", "customers", "customer_id"),
    ("payments", "customer_id", "customers", "customer_id"),
    ("payment_applications", "payment_id", "payments", "payment_id"),
    ("payment_applications", "invoice_id", "invoices", "invoice_id"),
    ("disputes", "invoice_id", "invoices", "invoice_id"),
    ("promises", "customer_id", "customers", "customer_id"),
    ("promises", "invoice_id", "invoices", "invoice_id"),
    ("writeoffs", "invoice_id", "invoices", "invoice_id"),
    ("dunning_notices", "invoice_id", "invoices", "invoice_id"),
    ("contacts", "customer_id", "customers", "customer_id"),
)

# (table, earlier column, later column): later must not be before earlier.
DATE_ORDER = (
    ("invoices", "invoice_date", "due_date"),
    ("invoices", "invoice_date", "cleared_date"),
    ("disputes", "opened_date", "resolved_date"),
    ("promises", "made_date", "promised_date"),
)


def validate_tables(tables: Mapping[str, pd.DataFrame]) -> None:
    """Raise `LedgerError` listing every problem in the ledger's tables; return None when valid."""
    problems = ledger_problems(tables)
    if problems:
        raise LedgerError(problems)


def ledger_problems(tables: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """All problems in the tables, schema checks first, then cross-column and cross-table rules."""
    problems: list[Problem] = []
    usable: dict[str, pd.DataFrame] = {}
    for name in TABLES:
        if name not in tables:
            if name in REQUIRED_TABLES:
                problems.append(Problem(name, None, None, "table missing"))
            continue
        table = tables[name].reset_index(drop=True)
        table_problems, structurally_sound = schema_problems(name, table)
        problems += table_problems
        if structurally_sound:
            usable[name] = table
    for check in (date_problems, foreign_key_problems, sign_problems, application_problems, clearing_problems):
        problems += check(usable)
    return problems


def schema_problems(name: str, table: pd.DataFrame) -> tuple[list[Problem], bool]:
    """Problems the table's pandera schema finds, and whether its columns and dtypes are sound
    enough for the cross-table rules to read them."""
    try:
        SCHEMAS[name].validate(table, lazy=True)
        return [], True
    except pa.errors.SchemaErrors as error:
        cases = error.failure_cases
    problems = []
    structural = False
    for case in cases.itertuples(index=False):
        check = str(case.check)
        structural |= check.startswith(("dtype(", "column_in_dataframe")) or case.index is None
        row = None if case.index is None or pd.isna(case.index) else int(case.index)
        if check == "column_in_dataframe":  # pandera names the table in `column` and the column in the case
            problems.append(Problem(name, None, str(case.failure_case), "column missing"))
            continue
        problems.append(
            Problem(name, row, _none_if_na(case.column), _describe_check(check, case.failure_case),
                    _key_of(name, table, row))
        )
    return problems, not structural


def date_problems(tables: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """Dates in order within a row, and calendar dates with no time of day."""
    problems = []
    for name, earlier, later in DATE_ORDER:
        if name in tables:
            table = tables[name]
            bad = table[later].notna() & (table[later] < table[earlier])
            problems += _row_problems(name, table, bad, later, f"{later} before {earlier}")
    for name, table in tables.items():
        for column, col in SCHEMAS[name].columns.items():
            if str(col.dtype) == DATE and column in table:
                values = table[column]
                bad = values.notna() & (values != values.dt.normalize())
                problems += _row_problems(name, table, bad, column, "expected a calendar date, got a time of day")
    return problems


def foreign_key_problems(tables: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """Every reference points to an existing row of the parent table."""
    problems = []
    for child, column, parent, parent_column in FOREIGN_KEYS:
        if child in tables and parent in tables:
            values = tables[child][column]
            bad = values.notna() & ~values.isin(tables[parent][parent_column])
            problems += _row_problems(child, tables[child], bad, column, f"no such {parent_column} in {parent}")
    return problems


def sign_problems(tables: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """Invoices are positive, credit memos negative, in document and base currency alike."""
    if "invoices" not in tables:
        return []
    invoices = tables["invoices"]
    expected = np.where(invoices["doc_type"] == "credit_memo", -1.0, 1.0)
    problems = []
    for column in ("amount", "amount_base"):
        bad = pd.Series(np.sign(invoices[column]) != expected, index=invoices.index)
        problems += _row_problems("invoices", invoices, bad, column,
                                  "expected > 0 for an invoice and < 0 for a credit memo")
    return problems


def application_problems(tables: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """Applications carry their invoice's sign, happen after both documents exist, and never
    apply more than the payment holds."""
    needed = {"payment_applications", "payments", "invoices"}
    if not needed <= tables.keys():
        return []
    applications, payments, invoices = (tables[name] for name in
                                        ("payment_applications", "payments", "invoices"))
    joined = applications.join(invoices.set_index("invoice_id")[["doc_type", "invoice_date"]], on="invoice_id")
    joined = joined.join(payments.set_index("payment_id")[["received_date"]], on="payment_id")
    expected_sign = np.where(joined["doc_type"] == "credit_memo", -1.0, 1.0)
    problems = _row_problems("payment_applications", applications,
                             joined["doc_type"].notna() & (np.sign(joined["amount"]) != expected_sign),
                             "amount", "sign differs from the invoice's (credit memos take negative amounts)")
    problems += _row_problems("payment_applications", applications,
                              joined["applied_date"] < joined["received_date"], "applied_date",
                              "applied before the payment was received")
    problems += _row_problems("payment_applications", applications,
                              joined["applied_date"] < joined["invoice_date"], "applied_date",
                              "applied before the invoice date")
    duplicated = applications.duplicated(["payment_id", "invoice_id"], keep=False)
    problems += _row_problems("payment_applications", applications, duplicated, "invoice_id",
                              "duplicate key (payment_id, invoice_id)")

    applied_per_payment = applications.groupby("payment_id")["amount"].sum()
    payment_total = payments["payment_id"].map(applied_per_payment).fillna(0.0)
    problems += _row_problems("payments", payments, payment_total > payments["amount"] + TOLERANCE, "amount",
                              "applications add up to more than the payment")
    return problems


def clearing_problems(tables: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """Applications and write-offs never settle more than the invoice is worth, and an invoice is
    cleared exactly when it is fully settled, on the date of its last settlement."""
    if not {"payment_applications", "invoices"} <= tables.keys():
        return []
    invoices = tables["invoices"]
    settled = settled_amounts(tables)  # once: it is the costliest step on a large ledger
    over = settled.abs() > invoices["amount"].abs() + TOLERANCE
    problems = _row_problems("invoices", invoices, over, "amount",
                             "applications and write-off add up to more than the invoice")
    fully_settled = (invoices["amount"] - settled).abs() <= TOLERANCE
    cleared = invoices["cleared_date"].notna()
    problems += _row_problems("invoices", invoices, cleared & ~fully_settled, "cleared_date",
                             "cleared, but applications and write-off do not add up to the amount")
    problems += _row_problems("invoices", invoices, ~cleared & fully_settled, "cleared_date",
                              "fully settled, but cleared_date is empty")
    last = last_settlement_dates(tables)
    wrong_date = cleared & fully_settled & (invoices["cleared_date"] != last)
    problems += _row_problems("invoices", invoices, wrong_date, "cleared_date",
                              "expected the date of the last application or write-off")
    return problems


def settled_amounts(tables: Mapping[str, pd.DataFrame]) -> pd.Series:
    """Per invoice row: applications plus write-off, in document currency (signed like the invoice)."""
    invoices = tables["invoices"]
    applied = invoices["invoice_id"].map(tables["payment_applications"].groupby("invoice_id")["amount"].sum())
    settled = applied.fillna(0.0)
    if "writeoffs" in tables and len(tables["writeoffs"]):
        written = invoices["invoice_id"].map(tables["writeoffs"].groupby("invoice_id")["amount"].sum())
        settled = settled + written.fillna(0.0) * np.sign(invoices["amount"])
    return settled


def last_settlement_dates(tables: Mapping[str, pd.DataFrame]) -> pd.Series:
    """Per invoice row: the date of its last application or write-off (NaT when none)."""
    invoices = tables["invoices"]
    events = [tables["payment_applications"][["invoice_id", "applied_date"]].rename(columns={"applied_date": "date"})]
    if "writeoffs" in tables:
        events.append(tables["writeoffs"][["invoice_id", "date"]])
    last = pd.concat(events).groupby("invoice_id")["date"].max()
    return invoices["invoice_id"].map(last).astype(DATE)


def _row_problems(table_name: str, table: pd.DataFrame, bad: pd.Series, column: str, message: str) -> list[Problem]:
    rows = np.flatnonzero(np.asarray(bad.fillna(False), dtype=bool))
    return [Problem(table_name, int(row), column, message, _key_of(table_name, table, int(row))) for row in rows]


def _key_of(table_name: str, table: pd.DataFrame, row: int | None) -> str | None:
    if row is None or row >= len(table):
        return None
    parts = [f"{column}={table[column].iloc[row]}" for column in TABLE_KEYS[table_name] if column in table]
    return ", ".join(parts) or None


def _describe_check(check: str, failure_case: object) -> str:
    name = check.split("(")[0]
    if name.startswith("dtype"):
        return f"wrong type: expected {check.removeprefix('dtype(').rstrip(')')}, got {failure_case!r}"
    if name == "isin":
        allowed = check[len("isin(") : -1]
        return f"expected one of {allowed}, got {failure_case!r}"
    words = _CHECK_WORDS.get(name)
    readable = words or f"expected {check.replace('_', ' ')}"
    return f"{readable}, got {failure_case!r}"


def _none_if_na(value: object) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
