"""Aging of open items as of a date, laid out as an ERP aging report (DESIGN.md §5).

An open document (invoice or credit memo) sits in the bucket of its age, credit memos as negative
amounts; cash received and not yet applied is its own column, negative. A customer's total is the
buckets plus the unapplied cash, which is the open-items balance of the account: document amounts
less payments received less write-offs, all as known at `as_of`.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

import numpy as np
import pandas as pd

from features.asof import known_at
from features.settlement import base_rate, days_between, document_state
from ledger import Ledger
from ledger.schema import UNIDENTIFIED_PAYER

AGING_LIMITS = (0, 30, 60, 90, 120)
MONEY_TOLERANCE = 0.005
UNAPPLIED = "Unapplied"
TOTAL = "Total"
COMPANY = "(all customers)"

Basis = Literal["due_date", "invoice_date"]
Currency = Literal["base", "document"]


def bucket_labels(limits: tuple[int, ...] = AGING_LIMITS) -> list[str]:
    """Bucket names for the limits: Current, 1-30, 31-60, ..., and `last+` (N limits give N+1 buckets)."""
    _check_limits(limits)
    return ["Current", *(f"{low + 1}-{high}" for low, high in pairwise(limits)), f"{limits[-1]}+"]


def overdue_bucket_ranges(limits: tuple[int, ...] = AGING_LIMITS) -> dict[str, tuple[float, float]]:
    """The days-past-due range (both ends included) of each overdue bucket, by its label:
    {"1-30": (1, 30), ..., "91-120": (91, 120), "120+": (121, inf)} for the default limits."""
    labels = bucket_labels(limits)[1:]
    lows = [low + 1 for low in limits]
    highs = [*limits[1:], np.inf]
    return dict(zip(labels, zip(lows, highs, strict=True), strict=True))


def aging_bucket(age_days: pd.Series, limits: tuple[int, ...] = AGING_LIMITS) -> pd.Series:
    """The bucket of each age in days: age <= first limit is Current (an item due today is current)."""
    labels = bucket_labels(limits)
    # Right-closed bins: age 30 belongs to 1-30, age 31 to 31-60, as ERP reports print them.
    bins = [-np.inf, *limits, np.inf]
    return pd.cut(age_days, bins=bins, labels=labels, right=True)


def aging_detail(ledger: Ledger, as_of: pd.Timestamp, limits: tuple[int, ...] = AGING_LIMITS,
                 basis: Basis = "due_date", currency: Currency = "base",
                 tolerance: float = MONEY_TOLERANCE) -> pd.DataFrame:
    """One row per open document and per payment with unapplied cash at `as_of`, with age and bucket."""
    if basis not in ("due_date", "invoice_date"):
        raise ValueError(f"basis must be 'due_date' or 'invoice_date', got {basis!r}")
    if currency not in ("base", "document"):
        raise ValueError(f"currency must be 'base' or 'document', got {currency!r}")
    as_of = pd.Timestamp(as_of).normalize()
    known = known_at(ledger, as_of)
    return _detail(known, document_state(known, as_of, tolerance), as_of, limits, basis, currency, tolerance)


def aging_views(ledger: Ledger, as_of: pd.Timestamp, views: list[tuple[Basis, Currency]],
                limits: tuple[int, ...] = AGING_LIMITS, tolerance: float = MONEY_TOLERANCE) -> dict:
    """`aging_report` in several views (basis, currency) from one pass over the ledger: the state of every
    document as of the date is computed once."""
    as_of = pd.Timestamp(as_of).normalize()
    known = known_at(ledger, as_of)
    state = document_state(known, as_of, tolerance)
    return {(basis, currency): aging_from_detail(_detail(known, state, as_of, limits, basis, currency, tolerance),
                                                 ledger.customers)
            for basis, currency in views}


def _detail(known: Ledger, state: pd.DataFrame, as_of: pd.Timestamp, limits: tuple[int, ...], basis: Basis,
            currency: Currency, tolerance: float) -> pd.DataFrame:
    if basis not in ("due_date", "invoice_date"):
        raise ValueError(f"basis must be 'due_date' or 'invoice_date', got {basis!r}")
    if currency not in ("base", "document"):
        raise ValueError(f"currency must be 'base' or 'document', got {currency!r}")
    documents = _open_documents(known, state, as_of, limits, basis, currency)
    cash = _unapplied_payments(known, as_of, currency, tolerance)
    detail = pd.concat([documents, cash], ignore_index=True) if len(cash) else documents
    detail["bucket"] = pd.Categorical(detail["bucket"], categories=[*bucket_labels(limits), UNAPPLIED])
    return detail.sort_values(["customer_id", "currency", "item_type", "item_id"], ignore_index=True)


def _open_documents(known: Ledger, state: pd.DataFrame, as_of: pd.Timestamp, limits: tuple[int, ...], basis: Basis,
                    currency: Currency) -> pd.DataFrame:
    is_open = state["is_open"].to_numpy()
    state = state[is_open]
    document_currency = known.invoices["currency"].to_numpy()[is_open]
    age = days_between(as_of, state[basis])
    return pd.DataFrame({
        "customer_id": state["customer_id"].to_numpy(),
        "currency": document_currency if currency == "document" else known.base_currency,
        "item_type": np.where(state["is_invoice"], "invoice", "credit_memo"),
        "item_id": state["invoice_id"].to_numpy(),
        "date": state["invoice_date"].to_numpy(),
        "due_date": state["due_date"].to_numpy(),
        "age_days": age.to_numpy(),
        "bucket": aging_bucket(age, limits).astype(object).to_numpy(),
        "open_amount": (state["open_amount"] if currency == "document" else state["open_amount_base"]).to_numpy(),
    })


def _unapplied_payments(known: Ledger, as_of: pd.Timestamp, currency: Currency, tolerance: float) -> pd.DataFrame:
    payments = known.payments
    applied = payments["payment_id"].map(
        known.payment_applications.groupby("payment_id", sort=False)["amount"].sum()).fillna(0.0)
    unapplied = payments["amount"] - applied
    if currency == "base":
        unapplied = unapplied * base_rate(payments["amount"], payments["amount_base"])
    keep = (unapplied.abs() > tolerance).to_numpy()
    payments = payments[keep]
    return pd.DataFrame({
        # Cash from a payer not identified yet: a row of its own, in the company total.
        "customer_id": payments["customer_id"].fillna(UNIDENTIFIED_PAYER).to_numpy(),
        "currency": payments["currency"].to_numpy() if currency == "document" else known.base_currency,
        "item_type": "payment",
        "item_id": payments["payment_id"].to_numpy(),
        "date": payments["received_date"].to_numpy(),
        "due_date": pd.NaT,
        "age_days": days_between(as_of, payments["received_date"]).to_numpy(),
        "bucket": UNAPPLIED,
        # Cash on account lowers what the customer owes.
        "open_amount": -unapplied[keep].to_numpy(),
    })


def aging_report(ledger: Ledger, as_of: pd.Timestamp, limits: tuple[int, ...] = AGING_LIMITS,
                 basis: Basis = "due_date", currency: Currency = "base",
                 tolerance: float = MONEY_TOLERANCE) -> pd.DataFrame:
    """Open amount per customer (and currency) and bucket, unapplied cash, and their total."""
    detail = aging_detail(ledger, as_of, limits, basis, currency, tolerance)
    return aging_from_detail(detail, ledger.customers)


def aging_from_detail(detail: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """Pivot an `aging_detail` frame to one row per customer and currency."""
    columns = list(detail["bucket"].cat.categories)
    report = detail.pivot_table(index=["customer_id", "currency"], columns="bucket", values="open_amount",
                                aggfunc="sum", fill_value=0.0, observed=False)
    report = report.reindex(columns=columns, fill_value=0.0)
    # A pivot over two keys gives every customer every currency of the book; keep the pairs that occur (a
    # customer's aging lists its own currencies, whatever else is in the ledger).
    pairs = pd.MultiIndex.from_frame(detail[["customer_id", "currency"]].drop_duplicates())
    report = report[report.index.isin(pairs)]
    report.columns = list(report.columns)
    report = report.reset_index()
    report[TOTAL] = report[columns].sum(axis=1)
    names = customers.set_index("customer_id")["name"]
    report.insert(1, "name", report["customer_id"].map(names))
    return report.sort_values(["customer_id", "currency"], ignore_index=True)


def company_total(report: pd.DataFrame) -> pd.DataFrame:
    """The company total of an aging report, one row per currency."""
    money = [column for column in report.columns if column not in ("customer_id", "name", "currency")]
    total = report.groupby("currency", as_index=False)[money].sum()
    total.insert(0, "customer_id", COMPANY)
    total.insert(1, "name", "")
    return total[report.columns]


def with_company_total(report: pd.DataFrame) -> pd.DataFrame:
    """The aging report with its company total row(s) appended."""
    if report.empty:
        return report
    return pd.concat([report, company_total(report)], ignore_index=True)


def _check_limits(limits: tuple[int, ...]) -> None:
    if not limits or any(high <= low for low, high in pairwise(limits)) or limits[0] < 0:
        raise ValueError(f"aging limits must be non-negative and strictly increasing, got {list(limits)}")
