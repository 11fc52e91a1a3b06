"""SQLAlchemy models of the activity store; portable types so SQLite and PostgreSQL both work."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

CENT = Decimal("0.01")

ID_LENGTH = 100
# Money is exact: 18 digits with 2 decimals, read back as Decimal on every database.
Money = Numeric(18, 2)
# recorded_at is an instant; it is stored in UTC (SQLite keeps no offset, so we normalise on write).
Instant = DateTime(timezone=True)


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


class DunningLetter(Base):
    """A dunning notice sent for an invoice; a fact that is never edited."""

    __tablename__ = "dunning_letters"

    letter_id: Mapped[str] = _id(primary_key=True)
    invoice_id: Mapped[str] = _id(index=True)
    customer_id: Mapped[str] = _id(index=True)
    level: Mapped[int] = mapped_column(Integer)
    issued_date: Mapped[date] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = _id()
    recorded_at: Mapped[datetime] = mapped_column(Instant)


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
    """The response of a write, kept so a retried request returns it instead of writing twice."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    user_name: Mapped[str] = _id()
    fingerprint: Mapped[str] = mapped_column(String(64))
    response: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(Instant)


class AuditEntry(Base):
    """One entry of the append-only, hash-chained audit log."""

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
