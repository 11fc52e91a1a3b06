"""SQLAlchemy models of the activity store; portable types so SQLite and PostgreSQL both work."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    LargeBinary,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

CENT = Decimal("0.01")

ID_LENGTH = 100
KEY_LENGTH = 200  # an idempotency key
# The largest amount Numeric(18, 2) holds; in cents it also fits a 64-bit integer (SQLite's INTEGER).
MAX_AMOUNT = Decimal("9999999999999999.99")
# The dates any record may carry, whatever the ledger: inside what pandas' datetime64[ns] represents
# (1677-09-21..2262-04-11), so one record can never make the ledger unreadable. Migration 0002 holds
# the same bounds in the database's own constraints.
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2199, 12, 31)
# The database's bound on free text; `max_text_chars` (settings) may only be lower.
TEXT_LIMIT = 10_000
# recorded_at is an instant; it is stored in UTC (SQLite keeps no offset, so we normalise on write).
Instant = DateTime(timezone=True)


class Money(TypeDecorator):
    """An exact amount with 2 decimals: Numeric(18, 2) on PostgreSQL, whole cents in a BIGINT on SQLite.

    SQLite has no decimal type: it keeps NUMERIC as a float, so 9999999999999999.99 came back as
    10000000000000000.00. Integer cents are exact there and still comparable in SQL (constraints)."""

    impl = Numeric(18, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine:
        return dialect.type_descriptor(BigInteger() if dialect.name == "sqlite" else Numeric(18, 2))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return int(Decimal(value).quantize(CENT) * 100)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name != "sqlite":
            return Decimal(value).quantize(CENT)
        return (Decimal(int(value)) / 100).quantize(CENT)


class Base(DeclarativeBase):
    """Declarative base of the activity store's tables."""


def _id(primary_key: bool = False, nullable: bool = False, index: bool = False) -> Mapped[str]:
    return mapped_column(String(ID_LENGTH), primary_key=primary_key, nullable=nullable, index=index)


class Promise(Base):
    """A promise to pay; kept/broken is derived from ledger payments elsewhere, never stored."""

    __tablename__ = "promises"

    promise_id: Mapped[str] = _id(primary_key=True)
    customer_id: Mapped[str] = _id(index=True)
    invoice_id: Mapped[str | None] = _id(nullable=True)
    made_date: Mapped[date] = mapped_column(Date)
    promised_date: Mapped[date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str | None] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = _id()
    recorded_at: Mapped[datetime] = mapped_column(Instant)
    version: Mapped[int] = mapped_column(Integer)
    voided_at: Mapped[datetime | None] = mapped_column(Instant)
    void_reason: Mapped[str | None] = mapped_column(Text)


class Dispute(Base):
    """A customer's dispute on an invoice, open until resolved."""

    __tablename__ = "disputes"

    dispute_id: Mapped[str] = _id(primary_key=True)
    invoice_id: Mapped[str] = _id(index=True)
    customer_id: Mapped[str] = _id(index=True)
    opened_date: Mapped[date] = mapped_column(Date)
    reason_code: Mapped[str] = _id()
    amount: Mapped[Decimal] = mapped_column(Money)
    owner: Mapped[str] = _id()
    status: Mapped[str] = mapped_column(String(16))
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_date: Mapped[date | None] = mapped_column(Date)
    created_by: Mapped[str] = _id()
    recorded_at: Mapped[datetime] = mapped_column(Instant)
    version: Mapped[int] = mapped_column(Integer)
    voided_at: Mapped[datetime | None] = mapped_column(Instant)
    void_reason: Mapped[str | None] = mapped_column(Text)


class Contact(Base):
    """A call, email, letter or meeting with a customer and what came of it."""

    __tablename__ = "contacts"

    contact_id: Mapped[str] = _id(primary_key=True)
    customer_id: Mapped[str] = _id(index=True)
    contact_date: Mapped[date] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text)
    next_action_date: Mapped[date | None] = mapped_column(Date)
    created_by: Mapped[str] = _id()
    recorded_at: Mapped[datetime] = mapped_column(Instant)
    version: Mapped[int] = mapped_column(Integer)
    voided_at: Mapped[datetime | None] = mapped_column(Instant)
    void_reason: Mapped[str | None] = mapped_column(Text)


class DunningLetter(Base):
    """A dunning notice sent for an invoice; a fact that is never edited, only voided (or corrected)."""

    __tablename__ = "dunning_letters"

    letter_id: Mapped[str] = _id(primary_key=True)
    invoice_id: Mapped[str] = _id(index=True)
    customer_id: Mapped[str] = _id(index=True)
    level: Mapped[int] = mapped_column(Integer)
    issued_date: Mapped[date] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = _id()
    recorded_at: Mapped[datetime] = mapped_column(Instant)
    version: Mapped[int] = mapped_column(Integer)
    voided_at: Mapped[datetime | None] = mapped_column(Instant)
    void_reason: Mapped[str | None] = mapped_column(Text)


class CashApplication(Base):
    """One line of a payment's cash application: a document it settles, as a user confirmed or changed the
    matcher's proposal, or as the matcher applied it (`auto`); or a rejected proposal (no document).

    The payment's own facts (received date, amount, currency, payer) are kept with each line, so the line
    reaches a customer's slice of the ledger together with the payment it belongs to. `applied_amount` is
    signed like the ledger's applications (negative on a credit memo); `customer_id` is the document's
    customer (for a rejection, the payer's when known)."""

    __tablename__ = "cash_applications"

    application_id: Mapped[str] = _id(primary_key=True)
    payment_id: Mapped[str] = _id(index=True)
    customer_id: Mapped[str] = _id(index=True)
    invoice_id: Mapped[str | None] = _id(nullable=True)
    applied_amount: Mapped[Decimal] = mapped_column(Money)
    applied_date: Mapped[date] = mapped_column(Date)
    decision: Mapped[str] = mapped_column(String(16))
    received_date: Mapped[date] = mapped_column(Date)
    payment_amount: Mapped[Decimal] = mapped_column(Money)
    payment_amount_base: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    payer_customer_id: Mapped[str | None] = _id(nullable=True)
    payer_name: Mapped[str | None] = mapped_column(String(200))
    payer_account: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = _id()
    recorded_at: Mapped[datetime] = mapped_column(Instant)
    version: Mapped[int] = mapped_column(Integer)
    voided_at: Mapped[datetime | None] = mapped_column(Instant)
    void_reason: Mapped[str | None] = mapped_column(Text)


class QueueItem(Base):
    """A record of one of the work queues beyond the call list (issue 21): a deduction (a short payment's
    residual on an invoice), an escalation of an account to a manager, or a credit review, with its owner,
    SLA due date, status and decision. `amount` is the deduction's residual, the escalation's exposure or the
    review's recommended limit; `decided_amount` the limit a review decided; `details` a JSON text of the
    evidence (an escalation's reasons, a review's formula inputs)."""

    __tablename__ = "queue_items"

    item_id: Mapped[str] = _id(primary_key=True)
    queue: Mapped[str] = mapped_column(String(16), index=True)
    customer_id: Mapped[str] = _id(index=True)
    invoice_id: Mapped[str | None] = _id(nullable=True)
    payment_id: Mapped[str | None] = _id(nullable=True)
    opened_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    owner: Mapped[str] = _id()
    status: Mapped[str] = mapped_column(String(16))
    reason_code: Mapped[str] = _id()
    amount: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3))
    decision: Mapped[str | None] = mapped_column(String(32))
    decided_amount: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    decided_date: Mapped[date | None] = mapped_column(Date)
    details: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = _id()
    recorded_at: Mapped[datetime] = mapped_column(Instant)
    version: Mapped[int] = mapped_column(Integer)
    voided_at: Mapped[datetime | None] = mapped_column(Instant)
    void_reason: Mapped[str | None] = mapped_column(Text)


class OutboxMessage(Base):
    """A rendered dunning reminder in the outbox (issue 22): one per customer, level and run date (`key`, unique),
    its state (drafted, approved, sending, sent, failed, bounced) with the reason, and the full MIME message as it
    goes out. Not audited itself: a sent message is recorded as an audited contact and dunning letters.
    `recipients`, `items` and `totals` are JSON texts."""

    __tablename__ = "outbox"

    message_id: Mapped[str] = _id(primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_LENGTH), unique=True)
    customer_id: Mapped[str] = _id(index=True)
    level: Mapped[int] = mapped_column(Integer)
    run_date: Mapped[date] = mapped_column(Date, index=True)
    channel: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(16))
    recipients: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    mime: Mapped[bytes] = mapped_column(LargeBinary)
    items: Mapped[str] = mapped_column(Text)
    totals: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = _id()
    approved_by: Mapped[str | None] = _id(nullable=True)
    created_at: Mapped[datetime] = mapped_column(Instant)
    recorded_at: Mapped[datetime] = mapped_column(Instant)
    sent_at: Mapped[datetime | None] = mapped_column(Instant)
    version: Mapped[int] = mapped_column(Integer)


class User(Base):
    """A person who uses the store and their role."""

    __tablename__ = "users"

    name: Mapped[str] = _id(primary_key=True)
    role: Mapped[str] = mapped_column(String(16))


class Portfolio(Base):
    """One customer in a collector's portfolio."""

    __tablename__ = "portfolios"
    __table_args__ = (UniqueConstraint("collector", "customer_id", name="uq_portfolios_collector_customer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collector: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.name"))
    customer_id: Mapped[str] = _id()


class IdempotencyKey(Base):
    """The response of a write, kept so a retried request returns it instead of writing twice.

    Keys belong to their user: two users' "k1" are two requests. `mac` is the HMAC of the row under
    the audit key (NULL on rows written before migration 0002)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (PrimaryKeyConstraint("user_name", "key", name="pk_idempotency_keys"),)

    user_name: Mapped[str] = _id()
    key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    fingerprint: Mapped[str] = mapped_column(String(64))
    response: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(Instant)
    mac: Mapped[str | None] = mapped_column(String(64))


class AuditEntry(Base):
    """One entry of the append-only, hash-chained audit log (see activity/audit.py)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recorded_at: Mapped[datetime] = mapped_column(Instant)
    user_name: Mapped[str] = _id()
    action: Mapped[str] = mapped_column(String(16))
    table_name: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[str] = _id()
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # "sha256" (entries written before migration 0002) or "hmac-sha256" (keyed with the audit key).
    algorithm: Mapped[str] = mapped_column(String(16))
    # The number of rows of `table_name` after this write (NULL before migration 0002).
    table_count: Mapped[int | None] = mapped_column(Integer)


class AuditHead(Base):
    """The one row that says where the audit log ends, HMAC'd with the audit key.

    `legacy_seq` is the last entry written before the log was keyed (migration 0002): entries up to it
    are plain sha256, every later one HMAC-SHA256."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    legacy_seq: Mapped[int] = mapped_column(Integer)
    mac: Mapped[str] = mapped_column(String(64))


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same data always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def utc_iso(instant: datetime) -> str:
    """An instant as ISO 8601 in UTC; naive values (SQLite reads them back so) are taken as UTC."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC).isoformat()


def json_value(value: Any) -> Any:
    """A column value in its JSON form: ISO dates and instants, money as an exact decimal string."""
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value.quantize(CENT))
    return value


def record_dict(record: Base) -> dict[str, Any]:
    """A row as the JSON-ready dict the store returns, logs in the audit and replays on retries."""
    return {column.key: json_value(getattr(record, column.key)) for column in record.__mapper__.column_attrs}


def primary_key(record: Base) -> str:
    """The primary key of a single-key row, as text."""
    return str(record.__mapper__.primary_key_from_instance(record)[0])
