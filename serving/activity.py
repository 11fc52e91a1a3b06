"""The activity store joined to the ledger: what collectors recorded (promises, disputes, contacts,
dunning letters) becomes part of the ledger the worklist, dunning and features read, as of a date.

Records carry their business dates (made, opened, contact and issue dates), so `known_at` treats them
like any ledger event: a promise made after `as_of` does not exist at `as_of`, and whether it was kept
or broken is derived from the ledger's payments, never stored.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from configs.settings import Settings, business_date_window, sqlite_path
from ledger import Ledger, LedgerError, Problem

if TYPE_CHECKING:
    from activity import ActivityStore

DATABASE_ENV = "ARRISK_DATABASE_URL"
# What the store adds to the ledger: the collections records, and the payments and applications of confirmed
# (or automatic) cash applications.
ACTIVITY_TABLES = ("promises", "disputes", "contacts", "dunning_notices", "payments", "payment_applications",
                   "writeoffs", "credit_limits")


def database_url(environ: Mapping[str, str] | None = None) -> str:
    """`Settings.database_url` of `environ` (`ARRISK_DATABASE_URL`, else the SQLite file
    `HOME/out/activity.sqlite`, its folder created)."""
    url = Settings.from_environ(environ).database_url
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return url


def activity_store_exists(environ: Mapping[str, str] | None = None) -> bool:
    """Whether there is an activity store to read: `ARRISK_DATABASE_URL` names one, or the default SQLite
    file exists (reading never creates it)."""
    settings = Settings.from_environ(environ)
    path = sqlite_path(settings.database_url)
    return "database_url" in settings.model_fields_set or (path is not None and path.exists())


def open_store(url: str, settings: Settings | None = None,
               date_window: tuple[date, date] | None = None) -> ActivityStore:
    """The activity store at `url`, migrated to the latest schema, keyed with the audit key of
    `settings` (default: `Settings.from_environ()`); `date_window` bounds the business dates it accepts."""
    from activity import ActivityStore

    settings = Settings.from_environ() if settings is None else settings
    store = ActivityStore(url, audit_key=audit_key(settings), date_window=date_window,
                          max_text_chars=settings.max_text_chars)
    try:
        store.migrate()
    except Exception:
        store.close()
        raise
    return store


def audit_key(settings: Settings) -> bytes:
    """`Settings.audit_key`, else the content of `Settings.audit_key_file`, created (mode 0600, 32 random
    bytes as hex) when missing; the same text gives the same key either way."""
    if settings.audit_key:
        return settings.audit_key.encode("utf-8")
    path = Path(settings.audit_key_file)
    if not path.exists():
        _create_key_file(path)
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < 32:
        raise ValueError(f"{path}: the audit key must be at least 32 characters")
    return key.encode("utf-8")


def _create_key_file(path: Path) -> None:
    """Write 32 random bytes (hex) to `path`, readable by its owner only, unless another process got there first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32) + "\n")
    try:
        # A link is created whole or not at all: a process starting at the same time never reads half a key,
        # and never replaces one already in use.
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()


def ledger_date_window(ledger: Ledger, settings: Settings) -> tuple[date, date]:
    """The business dates records of this ledger may carry: from the years allowed before its first
    invoice to the years allowed after its last event."""
    from features.labels import last_event_date

    last = pd.Timestamp(last_event_date(ledger)).date()
    invoiced = ledger.invoices["invoice_date"]
    first = pd.Timestamp(invoiced.min()).date() if invoiced.notna().any() else last
    return business_date_window(first, last, settings)


def with_activity(ledger: Ledger, tables: dict[str, pd.DataFrame]) -> Ledger:
    """The ledger with the recorded activity appended to its collections tables."""
    from runs.actions import with_records

    return with_records(ledger, {name: tables.get(name) for name in ACTIVITY_TABLES})


def ledger_with_recorded_activity(ledger: Ledger, environ: dict | None = None) -> Ledger:
    """The ledger plus what was recorded in the activity store, when there is one (`ARRISK_DATABASE_URL`
    or an existing `HOME/out/activity.sqlite`); the ledger unchanged otherwise."""
    if not activity_store_exists(environ):
        return ledger
    settings = Settings.from_environ(environ)
    store = open_store(database_url(environ), settings, ledger_date_window(ledger, settings))
    try:
        return with_activity(ledger, store.ledger_tables())
    finally:
        store.close()


def recorded_activity(ledger: Ledger, environ: Mapping[str, str] | None = None) -> tuple[Ledger, int | None]:
    """The ledger plus what was recorded in the activity store, and the store's audit mark read first (None
    without a store): records written after the mark may or may not be in the ledger, never missed."""
    if not activity_store_exists(environ):
        return ledger, None
    settings = Settings.from_environ(environ)
    store = open_store(database_url(environ), settings, ledger_date_window(ledger, settings))
    try:
        mark = store.audit_mark()
        return with_activity(ledger, store.ledger_tables()), mark
    finally:
        store.close()


def recorded_tables(environ: Mapping[str, str] | None = None) -> tuple[dict[str, pd.DataFrame], int | None]:
    """What was recorded in the activity store, as ledger tables, and the audit mark read first (({}, None)
    without a store): the records a run on a cluster hands each bucket (`runs.distributed.records_of`)."""
    if not activity_store_exists(environ):
        return {}, None
    store = open_store(database_url(environ), Settings.from_environ(environ))
    try:
        mark = store.audit_mark()
        tables = store.ledger_tables()
        return {name: tables.get(name) for name in ACTIVITY_TABLES}, mark
    finally:
        store.close()


def recorded_portfolio(collector: str | None, environ: dict | None = None) -> list[str] | None:
    """The collector's portfolio in the activity store, or None (no store, no collector, or none recorded)."""
    if collector is None or not activity_store_exists(environ):
        return None
    store = open_store(database_url(environ), Settings.from_environ(environ))
    try:
        return store.portfolio(collector) or None
    finally:
        store.close()


def with_recorded_escalations(worklist: pd.DataFrame, environ: dict | None = None) -> pd.DataFrame:
    """The worklist with each customer's live escalation from the activity store, as the service shows it
    (`queues.escalations.with_escalation_column`); as it is without a store."""
    from queues.escalations import with_escalation_column

    if not activity_store_exists(environ):
        return worklist
    store = open_store(database_url(environ), Settings.from_environ(environ))
    try:
        return with_escalation_column(worklist, store.list_queue_items(queue="escalation"))
    finally:
        store.close()


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
