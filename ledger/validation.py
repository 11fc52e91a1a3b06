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
    "email_address": "expected an e-mail address such as ap@example.com",
    "iso_639_1_language": "expected an ISO 639-1 language code such as en or de",
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
    ("email_contacts", "customer_id", "customers", "customer_id"),
)

# (table, earlier column, later column): later must not be before earlier.
DATE_ORDER = (
    ("invoices", "invoice_date", "due_date"),
    ("invoices", "invoice_date", "cleared_date"),
    ("disputes", "opened_date", "resolved_date"),
    ("promises", "made_date", "promised_date"),
    ("dunning_notices", "issued_date", "known_date"),
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
        table = _with_row_numbers(tables[name])
        table_problems, structurally_sound = schema_problems(name, table)
        problems += table_problems
        if structurally_sound:
            usable[name] = table
    keys = KeyLookup(usable)  # each reference looked up once, shared by the rules below
    problems += date_problems(usable)
    problems += foreign_key_problems(usable, keys)
    problems += sign_problems(usable)
    problems += application_problems(usable, keys)
    problems += clearing_problems(usable, keys)
    problems += email_contact_problems(usable)
    return problems


def _with_row_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """The table indexed 0..n-1, as problems name rows; not copied when it already is."""
    index = table.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return table
    return table.reset_index(drop=True)


class KeyLookup:
    """Where each reference points: for a child column, the parent row holding its value (-1 for
    none). Looking up string keys is the costliest step on a large ledger, so each column is looked
    up once and the positions shared by the foreign-key, application and clearing rules.

    Only parent keys that are unique, non-null strings are looked up this way (`None` otherwise);
    the rules then fall back to joining on the values, which reports duplicates as it always did."""

    def __init__(self, tables: Mapping[str, pd.DataFrame]) -> None:
        self.tables = tables
        self._parents: dict[tuple[str, str], pd.Index | None] = {}
        self._positions: dict[tuple[str, str, str, str], np.ndarray | None] = {}

    def positions(self, child: str, column: str, parent: str, parent_column: str) -> np.ndarray | None:
        """Per row of `child`: the row of `parent` whose `parent_column` equals its `column`, -1 where none."""
        key = (child, column, parent, parent_column)
        if key not in self._positions:
            index = self._parent_index(parent, parent_column)
            values = self.tables[child][column]
            usable = index is not None and values.dtype == object
            self._positions[key] = index.get_indexer(values) if usable else None
        return self._positions[key]

    def _parent_index(self, parent: str, column: str) -> pd.Index | None:
        if (parent, column) not in self._parents:
            values = self.tables[parent][column]
            index = pd.Index(values.to_numpy(), dtype=object)
            sound = values.dtype == object and index.is_unique and not index.hasnans
            self._parents[parent, column] = index if sound else None
        return self._parents[parent, column]


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
        if name in tables and later in tables[name]:
            table = tables[name]
            bad = table[later].notna() & (table[later] < table[earlier])
            problems += _row_problems(name, table, bad, later, f"{later} before {earlier}")
    problems += undated_notice_problems(tables)
    for name, table in tables.items():
        for column, col in SCHEMAS[name].columns.items():
            if str(col.dtype) == DATE and column in table:
                values = table[column]
                bad = values.notna() & (values != values.dt.normalize())
                problems += _row_problems(name, table, bad, column, "expected a calendar date, got a time of day")
    return problems


def undated_notice_problems(tables: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """A dunning notice without its issued date needs the date since which its level is known."""
    notices = tables.get("dunning_notices")
    if notices is None:
        return []
    known = notices["known_date"] if "known_date" in notices else pd.Series(pd.NaT, index=notices.index)
    bad = notices["issued_date"].isna() & known.isna()
    return _row_problems("dunning_notices", notices, bad, "issued_date",
                         "expected an issued_date, or a known_date for a level whose notice date is unknown")


def email_contact_problems(tables: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """A customer lists each e-mail address once (compared without case: mail servers do)."""
    contacts = tables.get("email_contacts")
    if contacts is None:
        return []
    duplicated = contacts.assign(email=contacts["email"].str.lower()).duplicated(["customer_id", "email"], keep=False)
    return _row_problems("email_contacts", contacts, duplicated, "email", "duplicate key (customer_id, email)")


def foreign_key_problems(tables: Mapping[str, pd.DataFrame], keys: KeyLookup | None = None) -> list[Problem]:
    """Every reference points to an existing row of the parent table."""
    keys = keys or KeyLookup(tables)
    problems = []
    for child, column, parent, parent_column in FOREIGN_KEYS:
        if child in tables and parent in tables:
            values = tables[child][column]
            found = keys.positions(child, column, parent, parent_column)
            if found is None:
                bad = values.notna() & ~values.isin(tables[parent][parent_column])
            else:
                bad = values.notna() & pd.Series(found < 0, index=values.index)
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


def application_problems(tables: Mapping[str, pd.DataFrame], keys: KeyLookup | None = None) -> list[Problem]:
    """Applications carry their invoice's sign, happen after both documents exist, and never
    apply more than the payment holds."""
    needed = {"payment_applications", "payments", "invoices"}
    if not needed <= tables.keys():
        return []
    keys = keys or KeyLookup(tables)
    applications, payments, invoices = (tables[name] for name in
                                        ("payment_applications", "payments", "invoices"))
    of_invoice = keys.positions("payment_applications", "invoice_id", "invoices", "invoice_id")
    of_payment = keys.positions("payment_applications", "payment_id", "payments", "payment_id")
    if of_invoice is None or of_payment is None:  # duplicate or missing keys: join on the values
        joined = applications.join(invoices.set_index("invoice_id")[["doc_type", "invoice_date"]], on="invoice_id")
        joined = joined.join(payments.set_index("payment_id")[["received_date"]], on="payment_id")
    else:
        joined = applications.assign(doc_type=_take(invoices["doc_type"], of_invoice, applications.index),
                                     invoice_date=_take(invoices["invoice_date"], of_invoice, applications.index),
                                     received_date=_take(payments["received_date"], of_payment, applications.index))
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

    if of_payment is None:
        applied_per_payment = applications.groupby("payment_id")["amount"].sum()
        payment_total = payments["payment_id"].map(applied_per_payment).fillna(0.0)
    else:
        payment_total = _sum_per_parent(applications["amount"], of_payment, payments.index)
    problems += _row_problems("payments", payments, payment_total > payments["amount"] + TOLERANCE, "amount",
                              "applications add up to more than the payment")
    return problems


def clearing_problems(tables: Mapping[str, pd.DataFrame], keys: KeyLookup | None = None) -> list[Problem]:
    """Applications and write-offs never settle more than the invoice is worth, and an invoice is
    cleared exactly when it is fully settled, on the date of its last settlement."""
    if not {"payment_applications", "invoices"} <= tables.keys():
        return []
    invoices = tables["invoices"]
    keys = keys or KeyLookup(tables)
    settled = settled_amounts(tables, keys)  # once: it is the costliest step on a large ledger
    over = settled.abs() > invoices["amount"].abs() + TOLERANCE
    problems = _row_problems("invoices", invoices, over, "amount",
                             "applications and write-off add up to more than the invoice")
    fully_settled = (invoices["amount"] - settled).abs() <= TOLERANCE
    cleared = invoices["cleared_date"].notna()
    problems += _row_problems("invoices", invoices, cleared & ~fully_settled, "cleared_date",
                             "cleared, but applications and write-off do not add up to the amount")
    problems += _row_problems("invoices", invoices, ~cleared & fully_settled, "cleared_date",
                              "fully settled, but cleared_date is empty")
    last = last_settlement_dates(tables, keys)
    wrong_date = cleared & fully_settled & (invoices["cleared_date"] != last)
    problems += _row_problems("invoices", invoices, wrong_date, "cleared_date",
                              "expected the date of the last application or write-off")
    return problems


def settled_amounts(tables: Mapping[str, pd.DataFrame], keys: KeyLookup | None = None) -> pd.Series:
    """Per invoice row: applications plus write-off, in document currency (signed like the invoice)."""
    keys = keys or KeyLookup(tables)
    invoices = tables["invoices"]
    settled = _per_invoice(tables, keys, "payment_applications", "amount", "sum").fillna(0.0)
    if "writeoffs" in tables and len(tables["writeoffs"]):
        written = _per_invoice(tables, keys, "writeoffs", "amount", "sum")
        settled = settled + written.fillna(0.0) * np.sign(invoices["amount"])
    return settled


def last_settlement_dates(tables: Mapping[str, pd.DataFrame], keys: KeyLookup | None = None) -> pd.Series:
    """Per invoice row: the date of its last application or write-off (NaT when none)."""
    keys = keys or KeyLookup(tables)
    invoices = tables["invoices"]
    sources = [("payment_applications", "applied_date")]
    if "writeoffs" in tables:
        sources.append(("writeoffs", "date"))
    found = [keys.positions(name, "invoice_id", "invoices", "invoice_id") for name, _ in sources]
    if any(positions is None for positions in found):
        events = [tables[name][["invoice_id", column]].rename(columns={column: "date"}) for name, column in sources]
        last = pd.concat(events).groupby("invoice_id")["date"].max()
        return invoices["invoice_id"].map(last).astype(DATE)
    dates = pd.concat([tables[name][column] for name, column in sources], ignore_index=True)
    last = _per_parent(dates, np.concatenate(found), invoices.index, "max")
    return last.astype(DATE)


def _per_invoice(tables: Mapping[str, pd.DataFrame], keys: KeyLookup, name: str, column: str,
                 how: str) -> pd.Series:
    """Per invoice row: `how` of `column` over the rows of table `name` that name the invoice (NaN when none)."""
    invoices = tables["invoices"]
    positions = keys.positions(name, "invoice_id", "invoices", "invoice_id")
    if positions is None:
        return invoices["invoice_id"].map(tables[name].groupby("invoice_id")[column].agg(how))
    return _per_parent(tables[name][column], positions, invoices.index, how)


def _per_parent(values: pd.Series, positions: np.ndarray, parent_index: pd.Index, how: str) -> pd.Series:
    """`how` of `values` grouped by the parent row they point to, aligned to the parent's rows
    (NaN/NaT where none); grouping small integers instead of string keys, in the same row order."""
    found = positions >= 0
    grouped = pd.Series(values.to_numpy()[found]).groupby(positions[found], sort=False).agg(how)
    return grouped.reindex(parent_index)


def _sum_per_parent(values: pd.Series, positions: np.ndarray, parent_index: pd.Index) -> pd.Series:
    return _per_parent(values, positions, parent_index, "sum").fillna(0.0)


def _take(values: pd.Series, positions: np.ndarray, index: pd.Index) -> pd.Series:
    """`values` at the given rows, null where the position is -1 (what a left join on the key gives)."""
    return pd.Series(values.array.take(positions, allow_fill=True), index=index)


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
