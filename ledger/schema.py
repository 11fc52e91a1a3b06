"""The ledger data contract (DESIGN.md §3): one pandera schema per table.

Per-column rules (type, nulls, unique keys, allowed values, signs) live in the schemas here;
rules that span columns or tables live in `ledger.validation`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandas.api.types import infer_dtype
from pandera.engines import pandas_engine

from ledger.currencies import ISO_4217

DATE = "datetime64[ns]"
DOC_TYPES = ("invoice", "credit_memo")
CONTACT_CHANNELS = ("call", "email", "letter", "meeting", "portal", "other")
# How the invoice reached the customer: e-invoices are known to be paid sooner than paper ones.
DELIVERY_CHANNELS = ("paper", "electronic")

REQUIRED_TABLES = ("customers", "invoices", "payments", "payment_applications")
# Where reports put cash from a payment whose payer is not identified yet (no customer_id).
UNIDENTIFIED_PAYER = "(unidentified payer)"
OPTIONAL_TABLES = ("disputes", "promises", "writeoffs", "dunning_notices", "contacts", "email_contacts")
# Who receives a customer's reminders (issue 22): what a contact's role may be, and a loose address check
# (one @, no spaces, a dot in the domain): enough to refuse a name or a phone number typed into the column.
EMAIL_ROLES = ("billing", "accounts_payable", "owner", "sales", "other")
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
TABLES = REQUIRED_TABLES + OPTIONAL_TABLES

# The key that names a row in error messages (and must be unique where `unique=True` below).
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id",),
    "invoices": ("invoice_id",),
    "payments": ("payment_id",),
    "payment_applications": ("payment_id", "invoice_id"),
    "disputes": ("dispute_id",),
    "promises": ("promise_id",),
    "writeoffs": ("invoice_id",),
    "dunning_notices": ("invoice_id", "level"),
    "contacts": ("contact_id",),
    "email_contacts": ("customer_id", "email"),
}


def _all_strings(values: pd.Series) -> bool:
    """Whether every non-null value is a `str`, checked in one C loop rather than per element in Python."""
    return values.dtype == object and infer_dtype(values, skipna=True) in ("string", "empty")


class _Str(pandas_engine.NpString):
    """pandera's `str` dtype (same name, same failure cases), with a vectorised check for the usual
    case of a column that holds only strings and nulls; anything else goes through pandera's own
    element-wise check, so what is reported for bad values does not change."""

    def check(self, pandera_dtype: object, data_container: pd.Series | None = None) -> object:
        if data_container is not None and _all_strings(data_container):
            return True
        return super().check(pandera_dtype, data_container)


STR = _Str()


def _non_empty(values: pd.Series) -> pd.Series:
    """`str_length(min_value=1)` without measuring every string: a string is non-empty when it is not ''."""
    if _all_strings(values):
        return pd.Series(values.to_numpy() != "", index=values.index)
    return values.str.len() >= 1  # mixed values: exactly pandera's builtin check


def _id(unique: bool = False) -> pa.Column:
    return pa.Column(STR, pa.Check(_non_empty, name="str_length"), unique=unique)


def _currency() -> pa.Column:
    return pa.Column(STR, pa.Check(lambda s: s.isin(ISO_4217), name="iso_4217_currency"))


def _date(nullable: bool = False) -> pa.Column:
    return pa.Column(DATE, nullable=nullable)


def _money(*checks: pa.Check) -> pa.Column:
    return pa.Column(float, [pa.Check(lambda s: np.isfinite(s), name="finite"), *checks])


def _text(nullable: bool = True, required: bool = True) -> pa.Column:
    return pa.Column(STR, nullable=nullable, required=required)


SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "customers": pa.DataFrameSchema(
        {
            "customer_id": _id(unique=True),
            "name": _text(nullable=False),
            "segment": _text(nullable=False),
            "country": _text(nullable=False),
            "currency": _currency(),
            "payment_terms_days": pa.Column("int64", pa.Check.in_range(0, 366)),
            "credit_limit": pa.Column(float, pa.Check.ge(0), nullable=True),
            "created_date": _date(),
            "collector": _text(required=False),
            "dunning_block": pa.Column(bool, required=False),
            "industry": _text(required=False),
            # The customer's parent company (a customer_id of this table), when a group pays centrally.
            "parent_id": _text(required=False),
        },
        name="customers",
    ),
    "invoices": pa.DataFrameSchema(
        {
            "invoice_id": _id(unique=True),
            "customer_id": _id(),
            "doc_type": pa.Column(STR, pa.Check.isin(DOC_TYPES)),
            "invoice_date": _date(),
            "due_date": _date(),
            "amount": _money(pa.Check.ne(0)),
            "currency": _currency(),
            "amount_base": _money(pa.Check.ne(0)),
            "cleared_date": _date(nullable=True),
            "reference": _text(required=False),
            "dunning_block": pa.Column(bool, required=False),
            "delivery_channel": pa.Column(STR, pa.Check.isin(DELIVERY_CHANNELS), nullable=True, required=False),
        },
        name="invoices",
    ),
    "payments": pa.DataFrameSchema(
        {
            "payment_id": _id(unique=True),
            # Missing for a bank statement line whose payer is not identified yet (cash application finds
            # the customer from `payer_account`, `payer_name` and `remittance_text`).
            "customer_id": pa.Column(STR, pa.Check(_non_empty, name="str_length"), nullable=True),
            "received_date": _date(),
            "amount": _money(pa.Check.ge(0)),
            "currency": _currency(),
            "amount_base": _money(pa.Check.ge(0)),
            "reference": _text(required=False),
            # Remittance data, as the bank statement gives it (all optional): the payer's name and account
            # (IBAN or account number), the memo line, and the statement and entry the line came from.
            "payer_name": _text(required=False),
            "payer_account": _text(required=False),
            "remittance_text": _text(required=False),
            "statement_ref": _text(required=False),
        },
        name="payments",
    ),
    "payment_applications": pa.DataFrameSchema(
        {
            "payment_id": _id(),
            "invoice_id": _id(),
            "applied_date": _date(),
            "amount": _money(pa.Check.ne(0)),
        },
        name="payment_applications",
    ),
    "disputes": pa.DataFrameSchema(
        {
            "dispute_id": _id(unique=True),
            "invoice_id": _id(),
            "opened_date": _date(),
            "resolved_date": _date(nullable=True),
            "reason": _text(nullable=False),
            "amount": _money(pa.Check.ge(0)),
        },
        name="disputes",
    ),
    "promises": pa.DataFrameSchema(
        {
            "promise_id": _id(unique=True),
            "customer_id": _id(),
            "invoice_id": pa.Column(STR, nullable=True),
            "made_date": _date(),
            "promised_date": _date(),
            "amount": _money(pa.Check.gt(0)),
            "kept": pa.Column("boolean", nullable=True),
        },
        name="promises",
    ),
    "writeoffs": pa.DataFrameSchema(
        {
            "invoice_id": _id(unique=True),
            "date": _date(),
            "amount": _money(pa.Check.gt(0)),
        },
        name="writeoffs",
    ),
    "dunning_notices": pa.DataFrameSchema(
        {
            "invoice_id": _id(),
            "level": pa.Column("int64", pa.Check.in_range(1, 9)),
            # Missing for a level imported without the date of its notice (FBL5N without Letzte Mahnung):
            # the level is known, the day it was sent is not; `known_date` then says since when it is known.
            "issued_date": _date(nullable=True),
            "known_date": pa.Column(DATE, nullable=True, required=False),
        },
        name="dunning_notices",
    ),
    "contacts": pa.DataFrameSchema(
        {
            "contact_id": _id(unique=True),
            "customer_id": _id(),
            "contact_date": _date(),
            "channel": pa.Column(STR, pa.Check.isin(CONTACT_CHANNELS)),
            "outcome": _text(),
        },
        name="contacts",
    ),
    # Master data like `customers`: no date, known at every as_of. (customer_id, email) is unique
    # (`ledger.validation`). `language` is ISO 639-1 ("en", "de"); missing: the customer's country decides.
    "email_contacts": pa.DataFrameSchema(
        {
            "customer_id": _id(),
            "email": pa.Column(STR, pa.Check(lambda s: s.str.match(EMAIL_PATTERN), name="email_address")),
            "name": _text(),
            "role": pa.Column(STR, pa.Check.isin(EMAIL_ROLES)),
            "language": pa.Column(STR, pa.Check(lambda s: s.str.fullmatch(r"[a-z]{2}"), name="iso_639_1_language"),
                                  nullable=True, required=False),
        },
        name="email_contacts",
    ),
}


def columns_of(table: str, *, required_only: bool = False) -> list[str]:
    """Column names of a ledger table, in contract order."""
    return [name for name, col in SCHEMAS[table].columns.items() if col.required or not required_only]


def empty_table(table: str) -> pd.DataFrame:
    """A table with the contract's required columns and dtypes and no rows."""
    schema = SCHEMAS[table]
    return pd.DataFrame(
        {name: pd.Series(dtype=_pandas_dtype(col)) for name, col in schema.columns.items() if col.required}
    )


def _pandas_dtype(column: pa.Column) -> str:
    dtype = str(column.dtype)
    return {"str": "object", "float64": "float64", "bool": "bool"}.get(dtype, dtype)
