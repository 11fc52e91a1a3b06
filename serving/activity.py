"""The activity store joined to the ledger: what collectors recorded (promises, disputes, contacts,
dunning letters) becomes part of the ledger the worklist, dunning and features read, as of a date.

Records carry their business dates (made, opened, contact and issue dates), so `known_at` treats them
like any ledger event: a promise made after `as_of` does not exist at `as_of`, and whether it was kept
or broken is derived from the ledger's payments, never stored.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ledger import Ledger, LedgerError, Problem

DATABASE_ENV = "ARRISK_DATABASE_URL"
DEFAULT_DATABASE = Path(__file__).resolve().parents[1] / "out" / "activity.sqlite"
ACTIVITY_TABLES = ("promises", "disputes", "contacts", "dunning_notices")


def database_url(environ: dict | None = None) -> str:
    """`ARRISK_DATABASE_URL`, or the embedded SQLite file `out/activity.sqlite`."""
    environ = os.environ if environ is None else environ
    url = environ.get(DATABASE_ENV)
    if url:
        return url
    DEFAULT_DATABASE.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_DATABASE}"


def open_store(url: str):
    """The activity store at `url`, migrated to the latest schema."""
    from activity import ActivityStore

    store = ActivityStore(url)
    store.migrate()
    return store


def with_activity(ledger: Ledger, tables: dict[str, pd.DataFrame]) -> Ledger:
    """The ledger with the recorded activity appended to its collections tables."""
    merged = {}
    for name in ACTIVITY_TABLES:
        recorded = tables.get(name)
        if recorded is None or recorded.empty:
            continue
        current = getattr(ledger, name)
        merged[name] = recorded if current.empty else pd.concat([current, recorded[current.columns]],
                                                                ignore_index=True)
    return ledger.replace(**merged) if merged else ledger


def ledger_with_recorded_activity(ledger: Ledger, environ: dict | None = None) -> Ledger:
    """The ledger plus what was recorded in the activity store, when there is one (`ARRISK_DATABASE_URL`
    or an existing `out/activity.sqlite`); the ledger unchanged otherwise."""
    environ = os.environ if environ is None else environ
    if not environ.get(DATABASE_ENV) and not DEFAULT_DATABASE.exists():
        return ledger
    return with_activity(ledger, open_store(database_url(environ)).ledger_tables())


def recorded_portfolio(collector: str | None, environ: dict | None = None) -> list[str] | None:
    """The collector's portfolio in the activity store, or None (no store, no collector, or none recorded)."""
    environ = os.environ if environ is None else environ
    if collector is None or (not environ.get(DATABASE_ENV) and not DEFAULT_DATABASE.exists()):
        return None
    return open_store(database_url(environ)).portfolio(collector) or None


def check_known(ledger: Ledger, customer_id: str | None = None, invoice_id: str | None = None) -> str:
    """The customer of the record, after checking the customer and invoice exist (and belong together)."""
    invoices = ledger.invoices.set_index("invoice_id")["customer_id"]
    if invoice_id is not None:
        if invoice_id not in invoices.index:
            raise LedgerError(Problem("invoice_id", None, None, f"unknown invoice {invoice_id!r}"), title="not found")
        owner = invoices[invoice_id]
        if customer_id is not None and customer_id != owner:
            raise LedgerError(Problem("customer_id", None, None, f"invoice {invoice_id} belongs to {owner}, "
                                      f"not {customer_id}"), title="bad input")
        return owner
    if customer_id is None or customer_id not in set(ledger.customers["customer_id"]):
        raise LedgerError(Problem("customer_id", None, None, f"unknown customer {customer_id!r}"), title="not found")
    return customer_id
