"""The activity store: what collectors record about customers, one audited transaction per write.

Every write commits its record, its audit entry and its idempotency key together or not at all.
Nothing here reads the clock: callers pass `now`, which stamps `recorded_at` and the audit entry.
Every value is checked before it is written (dates inside the store's and the ledger's window,
amounts that fit, bounded text); the database checks the same bounds again (migration 0002).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pandas as pd
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import (
    ColumnElement,
    Engine,
    String,
    and_,
    cast,
    create_engine,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from activity import audit
from activity.errors import (
    AuditBroken,
    IdempotencyMismatch,
    InvalidInput,
    NotFound,
    StoreError,
    VersionConflict,
)
from activity.models import (
    CENT,
    EARLIEST_DATE,
    ID_LENGTH,
    KEY_LENGTH,
    LATEST_DATE,
    MAX_AMOUNT,
    TEXT_LIMIT,
    AuditEntry,
    Base,
    CashApplication,
    Contact,
    Dispute,
    DunningLetter,
    IdempotencyKey,
    OutboxMessage,
    Portfolio,
    Promise,
    QueueItem,
    User,
    canonical_json,
    json_value,
    primary_key,
    record_dict,
)
from ledger.currencies import ISO_4217
from ledger.schema import CONTACT_CHANNELS, UNIDENTIFIED_PAYER

__all__ = [
    "MAX_AMOUNT",
    "ActivityStore",
    "AuditBroken",
    "IdempotencyMismatch",
    "InvalidInput",
    "NotFound",
    "StoreError",
    "VersionConflict",
]

MIGRATIONS = Path(__file__).parent / "migrations"
# Revisions before the audit log was keyed: migrating from one of them starts the audit head.
UNKEYED_REVISIONS = (None, "0001")
PROMISE_STATUSES = ("open", "cancelled")
DISPUTE_STATUSES = ("open", "resolved")
DUNNING_CHANNELS = ("email", "letter", "call", "legal")  # DESIGN.md §5
CASH_DECISIONS = ("auto", "confirmed", "changed", "rejected")  # how a payment's application came about
ROLES = ("collector", "credit", "treasury", "admin")
# The work queues (issue 21): statuses in their order, which end a record, and the decisions of each status.
QUEUES = ("deduction", "escalation", "credit_review")
QUEUE_STATUSES = {"deduction": ("open", "in_review", "valid", "invalid"), "escalation": ("open", "decided", "closed"),
                  "credit_review": ("open", "decided")}
CLOSED_STATUSES = {"deduction": ("valid", "invalid"), "escalation": ("closed",), "credit_review": ("decided",)}
QUEUE_DECISIONS = {("deduction", "valid"): ("credit_memo", "write_off"), ("deduction", "invalid"): ("rebilled",),
                   ("escalation", "decided"): ("keep_chasing", "legal", "credit_hold", "write_off_proposal"),
                   ("escalation", "closed"): ("keep_chasing", "legal", "credit_hold", "write_off_proposal"),
                   ("credit_review", "decided"): ("approve", "change", "credit_hold")}
MIN_KEY_BYTES = 16

PROMISE_CHANGES = frozenset({"amount", "promised_date", "note", "status"})
DISPUTE_CHANGES = frozenset({"status", "resolution", "resolved_date", "owner"})
CONTACT_CHANGES = frozenset({"outcome", "note", "next_action_date"})
QUEUE_CHANGES = frozenset({"status", "decision", "decided_amount", "decided_date", "owner", "note", "due_date"})


@dataclass(frozen=True)
class Limits:
    """What a record may hold beyond its types: the ledger's date window and the longest free text."""

    date_window: tuple[date, date] | None
    max_text_chars: int


class ActivityStore:
    """Promises, disputes, contacts and dunning letters in a SQL database (SQLite or PostgreSQL).

    `audit_key` keys the audit log's HMAC and is never stored in the database; `date_window` is the
    ledger's window for business dates (None: only the store's own bounds); `max_text_chars` bounds
    free text (note, outcome, resolution, void reason)."""

    def __init__(self, url: str, *, audit_key: bytes, date_window: tuple[date, date] | None = None,
                 max_text_chars: int = 2000) -> None:
        if not isinstance(audit_key, bytes) or len(audit_key) < MIN_KEY_BYTES:
            raise ValueError(f"audit_key must be at least {MIN_KEY_BYTES} bytes")
        if not 1 <= max_text_chars <= TEXT_LIMIT:
            raise ValueError(f"max_text_chars must be from 1 to {TEXT_LIMIT} (the database's bound)")
        self.url = url
        self.audit_key = audit_key
        self.limits = Limits(date_window, max_text_chars)
        self.engine = _make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        """A new session on the store's database (the caller closes it)."""
        return self._sessions()

    def migrate(self, revision: str = "head") -> None:
        """Bring the database schema up to `revision` (the latest by default); safe to run again."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            before = MigrationContext.configure(connection).get_current_revision()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            after = MigrationContext.configure(connection).get_current_revision()
            # Only the upgrade that keys the log starts its head: a head deleted later stays missing.
            if before in UNKEYED_REVISIONS and after not in UNKEYED_REVISIONS:
                audit.start_head(connection, self.audit_key)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # -- promises -------------------------------------------------------------------------------

    def create_promise(self, user: str, *, customer_id: str, amount: Any, promised_date: date | str,
                       made_date: date | str, invoice_id: str | None = None, currency: str | None = None,
                       note: str = "", idempotency_key: str | None = None, now: datetime) -> dict:
        """Record a customer's promise to pay `amount` by `promised_date`."""
        values = _promise_values(self.limits, customer_id=customer_id, invoice_id=invoice_id, made_date=made_date,
                                 promised_date=promised_date, amount=amount, currency=currency,
                                 status="open", note=note)
        return self._create(user, Promise, "PTP", values, idempotency_key, now)

    def update_promise(self, user: str, promise_id: str, expected_version: int, *, now: datetime,
                       **changes: Any) -> dict:
        """Change a promise's amount, promised_date, note or status ("cancelled")."""
        return self._update(user, Promise, promise_id, expected_version, changes, PROMISE_CHANGES, now)

    def get_promise(self, promise_id: str) -> dict:
        """One promise by id (voided ones too)."""
        return self._get(Promise, promise_id)

    def list_promises(self, customer_id: str | None = None, *, include_voided: bool = False) -> list[dict]:
        """All promises, or a customer's, in the order they were made."""
        return self._list(Promise, customer_id, Promise.made_date, include_voided)

    # -- disputes -------------------------------------------------------------------------------

    def create_dispute(self, user: str, *, invoice_id: str, customer_id: str, opened_date: date | str,
                       reason_code: str, amount: Any, owner: str | None = None,
                       idempotency_key: str | None = None, now: datetime) -> dict:
        """Open a dispute on an invoice; its owner defaults to the user who opens it."""
        values = _dispute_values(self.limits, invoice_id=invoice_id, customer_id=customer_id,
                                 opened_date=opened_date, reason_code=reason_code, amount=amount,
                                 owner=owner or user, status="open", resolution=None, resolved_date=None)
        return self._create(user, Dispute, "DSP", values, idempotency_key, now)

    def update_dispute(self, user: str, dispute_id: str, expected_version: int, *, now: datetime,
                       **changes: Any) -> dict:
        """Change a dispute's status, resolution, resolved_date or owner."""
        return self._update(user, Dispute, dispute_id, expected_version, changes, DISPUTE_CHANGES, now)

    def get_dispute(self, dispute_id: str) -> dict:
        """One dispute by id (voided ones too)."""
        return self._get(Dispute, dispute_id)

    def list_disputes(self, customer_id: str | None = None, *, include_voided: bool = False) -> list[dict]:
        """All disputes, or a customer's, in the order they were opened."""
        return self._list(Dispute, customer_id, Dispute.opened_date, include_voided)

    # -- contacts -------------------------------------------------------------------------------

    def create_contact(self, user: str, *, customer_id: str, contact_date: date | str, channel: str,
                       outcome: str = "", note: str = "", next_action_date: date | str | None = None,
                       idempotency_key: str | None = None, now: datetime) -> dict:
        """Record a contact with a customer and what came of it."""
        values = _contact_values(self.limits, customer_id=customer_id, contact_date=contact_date,
                                 channel=channel, outcome=outcome, note=note, next_action_date=next_action_date)
        return self._create(user, Contact, "CNT", values, idempotency_key, now)

    def update_contact(self, user: str, contact_id: str, expected_version: int, *, now: datetime,
                       **changes: Any) -> dict:
        """Change a contact's outcome, note or next_action_date."""
        return self._update(user, Contact, contact_id, expected_version, changes, CONTACT_CHANGES, now)

    def get_contact(self, contact_id: str) -> dict:
        """One contact by id (voided ones too)."""
        return self._get(Contact, contact_id)

    def list_contacts(self, customer_id: str | None = None, *, include_voided: bool = False) -> list[dict]:
        """All contacts, or a customer's, in date order."""
        return self._list(Contact, customer_id, Contact.contact_date, include_voided)

    # -- dunning letters ------------------------------------------------------------------------

    def record_dunning_letter(self, user: str, *, invoice_id: str, customer_id: str, level: int,
                              issued_date: date | str, channel: str = "letter",
                              idempotency_key: str | None = None, now: datetime) -> dict:
        """Record a dunning notice sent for an invoice (never edited afterwards; an admin may void it)."""
        values = _letter_values(self.limits, invoice_id=invoice_id, customer_id=customer_id, level=level,
                                issued_date=issued_date, channel=channel)
        return self._create(user, DunningLetter, "DUN", values, idempotency_key, now)

    def list_letters(self, customer_id: str | None = None, *, include_voided: bool = False) -> list[dict]:
        """All dunning letters, or a customer's, in the order they were issued."""
        return self._list(DunningLetter, customer_id, DunningLetter.issued_date, include_voided)

    # -- work queues: deductions, escalations, credit reviews ----------------------------------

    def open_queue_item(self, user: str, *, queue: str, customer_id: str, opened_date: date | str,
                        due_date: date | str, owner: str, reason_code: str, invoice_id: str | None = None,
                        payment_id: str | None = None, amount: Any = None, currency: str | None = None,
                        details: dict | None = None, note: str = "", idempotency_key: str | None = None,
                        now: datetime) -> dict:
        """Open a record in a work queue; `VersionConflict` while one of the same queue, customer, invoice and
        payment is still live (not voided, not closed)."""
        values = _queue_values(self.limits, queue=queue, customer_id=customer_id, invoice_id=invoice_id,
                               payment_id=payment_id, opened_date=opened_date, due_date=due_date, owner=owner,
                               status="open", reason_code=reason_code, amount=amount, currency=currency,
                               decision=None, decided_amount=None, decided_date=None,
                               details=_details_text(self.limits, details), note=note)
        return self._create(user, QueueItem, QUEUE_PREFIXES[values["queue"]], values, idempotency_key, now,
                            refuse=_live_queue_twin)

    def update_queue_item(self, user: str, item_id: str, expected_version: int, *, now: datetime,
                          **changes: Any) -> dict:
        """Change a queue record's status, decision, decided_amount, decided_date, owner, note or due_date
        (validated with the whole record: a decision needs its status and date, a decided limit its amount; a
        review's credit hold sets the limit to 0)."""
        if changes.get("decision") == "credit_hold" and self.get_queue_item(item_id)["queue"] == "credit_review":
            changes.setdefault("decided_amount", 0)
        return self._update(user, QueueItem, item_id, expected_version, changes, QUEUE_CHANGES, now)

    def get_queue_item(self, item_id: str) -> dict:
        """One queue record by id (voided ones too)."""
        return self._get(QueueItem, item_id)

    def list_queue_items(self, queue: str | None = None, customer_id: str | None = None, *,
                         include_voided: bool = False) -> list[dict]:
        """The records of a queue (None: all queues), or of one customer, in the order they were opened."""
        of_queue = None if queue is None else QueueItem.queue == _choice("queue", queue, QUEUES)
        return self._list(QueueItem, customer_id, QueueItem.opened_date, include_voided, where=of_queue)

    # -- the reminders outbox (issue 22; not audited itself: a sent message becomes audited records) --

    def draft_outbox_message(self, user: str, *, key: str, customer_id: str, level: int, run_date: date | str,
                             channel: str, language: str, recipients: Iterable[str], subject: str, mime: bytes,
                             items: list[dict], totals: dict, now: datetime) -> tuple[dict, bool]:
        """Put a rendered message in the outbox as `drafted`: (the row, True); a message with the same key
        (customer, level, run date) adds nothing: (the row already there, False)."""
        user, now = _required_text("user", user), _instant(now)
        values = _outbox_values(self.limits, key=key, customer_id=customer_id, level=level, run_date=run_date,
                                channel=channel, language=language, recipients=recipients, subject=subject,
                                mime=mime, items=items, totals=totals)

        def insert(session: Session) -> dict:
            existing = session.scalars(select(OutboxMessage).where(OutboxMessage.key == values["key"])).first()
            if existing is not None:
                return {"row": outbox_dict(existing), "created": False}
            record = OutboxMessage(**values, message_id=_new_id("OUT"), state="drafted", reason=None, attempts=0,
                                   created_by=user, approved_by=None, created_at=now, recorded_at=now, sent_at=None,
                                   version=1)
            session.add(record)
            session.flush()
            session.refresh(record)
            return {"row": outbox_dict(record), "created": True}

        written = self._write(user, "", None, now, insert)
        return written["row"], written["created"]

    def list_outbox(self, run_date: date | str | None = None, *, state: str | None = None,
                    channel: str | None = None) -> list[dict]:
        """The outbox's messages (without the MIME text), of one run date, state or channel, by customer."""
        query = select(OutboxMessage).order_by(OutboxMessage.run_date, OutboxMessage.customer_id,
                                               OutboxMessage.level)
        if run_date is not None:
            query = query.where(OutboxMessage.run_date == _as_date("run_date", run_date))
        if state is not None:
            query = query.where(OutboxMessage.state == _choice("state", state, OUTBOX_STATES))
        if channel is not None:
            query = query.where(OutboxMessage.channel == _choice("channel", channel, OUTBOX_CHANNELS))
        with self._sessions() as session:
            return [outbox_dict(record) for record in session.scalars(query)]

    def get_outbox_message(self, message_id: str) -> dict:
        """One outbox message with its MIME bytes (`mime`)."""
        with self._sessions() as session:
            record = session.get(OutboxMessage, message_id)
            if record is None:
                raise NotFound(f"outbox message {message_id!r} not found")
            return outbox_dict(record) | {"mime": record.mime}

    def approve_outbox_messages(self, user: str, message_ids: Iterable[str], *, now: datetime) -> list[dict]:
        """Approve a batch for sending, all or none: each must be `drafted`, or `failed` (approved again to
        retry); `VersionConflict` names the first that is not."""
        ids = [_required_text("message_ids", message_id) for message_id in message_ids]
        if not ids:
            raise InvalidInput("message_ids", "at least one message is required")
        user = _required_text("user", user)
        return self._outbox_moves(user, ids, ("drafted", "failed"), now,
                                  lambda record: {"state": "approved", "approved_by": user, "reason": None})

    def claim_outbox_message(self, message_id: str, *, now: datetime) -> dict:
        """Move an `approved` message to `sending` (attempts + 1) and commit, before any SMTP transaction: a
        message is claimed once, so it is sent at most once. Answers the row with its MIME bytes."""
        self._outbox_moves("sender", [message_id], ("approved",), now,
                           lambda record: {"state": "sending", "attempts": record.attempts + 1})
        return self.get_outbox_message(message_id)

    def finish_outbox_message(self, user: str, message_id: str, *, sent: bool, reason: str | None = None,
                              retries: int = 0, now: datetime) -> dict:
        """Record how a `sending` message ended. Sent: `sent`, and in the same transaction an e-mail contact with
        the customer and a dunning letter (channel email, issued on the run date) per invoice it names, with
        their audit entries, so the next dunning level and the worklist see them. Not sent: `failed` with the
        reason. `retries`: the SMTP tries after the first (the claim counted that one). Also how a person settles
        a message left `sending` by a crash (unconfirmed)."""
        user, now = _required_text("user", user), _instant(now)
        reason = None if reason is None else _free_text(self.limits, "reason", reason)
        if not sent and not reason:
            raise InvalidInput("reason", "a failed message needs the reason")

        def apply(session: Session) -> dict:
            record = _outbox_record(session, message_id, ("sending",))
            changes = {"state": "sent" if sent else "failed", "reason": reason,
                       "sent_at": now if sent else None, "attempts": record.attempts + max(int(retries), 0)}
            row = _move_outbox(session, record, changes, now)
            if sent:
                items = json.loads(record.items)
                contact = _contact_values(self.limits, customer_id=record.customer_id, contact_date=record.run_date,
                                          channel="email", outcome=f"dunning reminder level {record.level} sent",
                                          note=f"{record.subject} ({len(items)} invoices; outbox {record.message_id})"
                                          [: self.limits.max_text_chars], next_action_date=None)
                self._insert_audited(session, user, Contact, "CNT", contact, now)
                for item in items:
                    letter = _letter_values(self.limits, invoice_id=item["invoice_id"], customer_id=record.customer_id,
                                            level=int(item.get("level") or record.level), issued_date=record.run_date,
                                            channel="email")
                    self._insert_audited(session, user, DunningLetter, "DUN", letter, now)
            return row

        return self._write(user, "", None, now, apply)

    def mark_outbox_bounced(self, user: str, message_id: str, *, reason: str, now: datetime) -> dict:
        """A `sent` message the recipient's server bounced, with the bounce's reason."""
        reason = _required_free_text(self.limits, "reason", reason)
        rows = self._outbox_moves(_required_text("user", user), [message_id], ("sent",), now,
                                  lambda record: {"state": "bounced", "reason": reason})
        return rows[0]

    def _outbox_moves(self, user: str, message_ids: list[str], allowed: tuple[str, ...], now: datetime,
                      changes: Callable[[OutboxMessage], dict]) -> list[dict]:
        now = _instant(now)

        def apply(session: Session) -> dict:
            rows = []
            for message_id in message_ids:
                record = _outbox_record(session, message_id, allowed)
                rows.append(_move_outbox(session, record, changes(record), now))
            return {"rows": rows}

        return self._write(user, "", None, now, apply)["rows"]

    def _insert_audited(self, session: Session, user: str, model: type[Base], id_prefix: str, values: dict,
                        now: datetime) -> dict:
        """Insert one record with its audit entry inside the caller's transaction; the record as stored."""
        record = model(**values, created_by=user, recorded_at=now, version=1)
        setattr(record, model.__mapper__.primary_key[0].key, _new_id(id_prefix))
        session.add(record)
        session.flush()
        # The answer is what the database holds, read back, not what we meant to write.
        session.refresh(record)
        after = record_dict(record)
        audit.append_entry(session, self.audit_key, user=user, action="create", table=record.__tablename__,
                           record_id=primary_key(record), before=None, after=after, now=now)
        return after

    # -- corrections (who may call these is the service's decision, not the store's) ------------

    def correct(self, user: str, table: str, record_id: str, expected_version: int, *, now: datetime,
                **changes: Any) -> dict:
        """Change any business field of a record, validated like a create; works on a record an older
        version stored with values the store now refuses."""
        model, validate = _audited_table(table)
        return self._update(user, model, record_id, expected_version, changes, business_fields(validate), now,
                            action="correct")

    def void(self, user: str, table: str, record_id: str, expected_version: int, *, reason: str,
             now: datetime) -> dict:
        """Void a record: it stays in the database with its reason, leaves the ledger and the lists
        (unless asked for), and the void is audited."""
        model, _ = _audited_table(table)
        reason = _required_free_text(self.limits, "reason", reason)
        now = _instant(now)
        return self._change(user, model, record_id, expected_version, now, "void",
                            lambda record: {"void_reason": reason, "voided_at": now})

    def unreadable_records(self, customer_id: str | None = None) -> list[dict]:
        """Records (of one customer, or all) holding what the store now refuses (written by an older
        version): table, record_id, field, problem and version (for `correct` or `void`). The ledger's view
        skips them."""
        found = []
        with self._sessions() as session:
            for model in audit.AUDITED_MODELS:
                id_column = model.__mapper__.primary_key[0]
                for field, column, condition, problem in _bad_value_conditions(model, session):
                    query = (select(id_column, model.version, cast(column, String).label("value")).where(condition)
                             .order_by(id_column))
                    if customer_id is not None:
                        query = query.where(model.customer_id == customer_id)
                    found += [{"table": model.__tablename__, "record_id": record_id, "field": field,
                               "problem": problem(value), "version": version}
                              for record_id, version, value in session.execute(query)]
        return found

    # -- users and portfolios (not audited: no record history, and no `now` to stamp) -----------

    def upsert_user(self, name: str, role: str) -> None:
        """Add a user or change their role."""
        name = _required_text("name", name)
        role = _choice("role", role, ROLES)
        with self._sessions() as session, session.begin():
            _serialise_writers(session)
            session.merge(User(name=name, role=role))

    def assign_portfolio(self, collector: str, customer_ids: Iterable[str]) -> None:
        """Add customers to a collector's portfolio (customers already in it are left alone)."""
        collector = _required_text("collector", collector)
        wanted = {_required_text("customer_ids", customer_id) for customer_id in customer_ids}
        with self._sessions() as session, session.begin():
            _serialise_writers(session)
            if session.get(User, collector) is None:
                raise NotFound(f"user {collector!r} not found")
            held = set(session.scalars(select(Portfolio.customer_id).where(Portfolio.collector == collector)))
            session.add_all(Portfolio(collector=collector, customer_id=c) for c in sorted(wanted - held))

    def portfolio(self, collector: str) -> list[str]:
        """The customer ids in a collector's portfolio, sorted."""
        with self._sessions() as session:
            query = select(Portfolio.customer_id).where(Portfolio.collector == collector)
            return sorted(session.scalars(query))

    def audit_mark(self) -> int:
        """The sequence number of the last audit entry (0 for none): what has been recorded so far."""
        with self._sessions() as session:
            return session.scalar(select(func.max(AuditEntry.seq))) or 0

    def customers_changed_since(self, mark: int) -> set[str]:
        """The customers of the records created, changed or voided after audit entry `mark`."""
        return set().union(*self.changes_since(mark).values())

    def changes_since(self, mark: int) -> dict[str, set[str]]:
        """Table -> the customers of its records created, changed or voided after audit entry `mark`."""
        with self._sessions() as session:
            changed = session.execute(select(AuditEntry.table_name, AuditEntry.record_id)
                                      .where(AuditEntry.seq > mark)).all()
            customers: dict[str, set[str]] = {}
            for model in audit.AUDITED_MODELS:
                ids = [record_id for table, record_id in changed if table == model.__tablename__]
                id_column = model.__mapper__.primary_key[0]
                for start in range(0, len(ids), 500):
                    customers.setdefault(model.__tablename__, set()).update(session.scalars(select(
                        model.customer_id).where(id_column.in_(ids[start:start + 500]))))
        return customers

    # -- cash applications -----------------------------------------------------------------------

    def record_cash_application(self, user: str, *, payment: dict, lines: list[dict], decision: str,
                                applied_date: date | str, note: str = "", idempotency_key: str | None = None,
                                now: datetime) -> dict:
        """Apply a payment to documents (`lines`: invoice_id, customer_id, amount signed like the ledger's
        applications), all lines in one transaction; or, with `decision` "rejected" and no lines, record that
        a user rejected the proposal. `payment`: payment_id, received_date, amount, amount_base, currency and
        optionally payer_customer_id, payer_name, payer_account. A payment with live applications in the
        store is refused (`VersionConflict`): void them first."""
        decision = _choice("decision", decision, CASH_DECISIONS)
        if (decision == "rejected") != (not lines):
            raise InvalidInput("lines", "a rejection has no lines" if lines else "at least one line is required")
        rows = [_cash_values(self.limits, **_cash_fields(payment, line, decision, applied_date, note))
                for line in (lines or [{"invoice_id": None, "customer_id": payment.get("payer_customer_id")
                                        or UNIDENTIFIED_PAYER, "amount": 0}])]
        user, now = _required_text("user", user), _instant(now)
        fingerprint = request_fingerprint({"operation": "create cash_applications", "user": user,
                                           "rows": [{key: json_value(value) for key, value in row.items()}
                                                    for row in rows]})
        payment_id = rows[0]["payment_id"]

        def insert(session: Session) -> dict:
            applied = session.scalars(select(CashApplication.application_id).where(
                CashApplication.payment_id == payment_id, CashApplication.void_reason.is_(None),
                CashApplication.decision != "rejected")).first()
            if applied is not None:
                raise VersionConflict(f"payment {payment_id!r} is already applied ({applied}); void its "
                                      "applications first")
            written = []
            for values in rows:
                record = CashApplication(**values, application_id=_new_id("CAP"), created_by=user, recorded_at=now,
                                         version=1)
                session.add(record)
                session.flush()
                session.refresh(record)
                after = record_dict(record)
                audit.append_entry(session, self.audit_key, user=user, action="create",
                                   table=CashApplication.__tablename__, record_id=primary_key(record), before=None,
                                   after=after, now=now)
                written.append(after)
            return {"payment_id": payment_id, "decision": decision, "lines": written}

        return self._write(user, fingerprint, idempotency_key, now, insert)

    def list_cash_applications(self, customer_id: str | None = None, *, payment_id: str | None = None,
                               include_voided: bool = False) -> list[dict]:
        """Recorded cash-application lines (and rejections), of a customer or a payment, oldest first."""
        rows = self._list(CashApplication, customer_id, CashApplication.applied_date, include_voided)
        return rows if payment_id is None else [row for row in rows if row["payment_id"] == payment_id]

    # -- the ledger's view ----------------------------------------------------------------------

    def ledger_tables(self, customer_id: str | None = None, cash_only: bool = False) -> dict[str, pd.DataFrame]:
        """The live records (of one customer, or all) in the ledger's table shapes (ledger/schema.py),
        ready to merge into a ledger; voided records and those `unreadable_records` names are left out.
        `cash_only`: the payments and payment_applications of the recorded cash applications alone."""
        unreadable: dict[str, set[str]] = {}
        for bad in self.unreadable_records(customer_id):
            unreadable.setdefault(bad["table"], set()).add(bad["record_id"])

        def usable(model: type[Base]) -> Any:
            id_column = model.__mapper__.primary_key[0]
            query = (select(model).where(model.void_reason.is_(None),
                                         id_column.not_in(unreadable.get(model.__tablename__, set())))
                     .order_by(id_column))
            return query if customer_id is None else query.where(model.customer_id == customer_id)

        with self._sessions() as session:
            applied = session.scalars(usable(CashApplication).where(CashApplication.decision != "rejected")).all()
            cash = {"payments": _ledger_payments(applied), "payment_applications": _ledger_applications(applied)}
            if cash_only:
                return cash
            promises = session.scalars(usable(Promise).where(Promise.status == "open")).all()
            disputes = session.scalars(usable(Dispute)).all()
            contacts = session.scalars(usable(Contact)).all()
            letters = session.scalars(usable(DunningLetter).order_by(None).order_by(
                DunningLetter.issued_date, DunningLetter.letter_id)).all()
            queued = session.scalars(usable(QueueItem).where(QueueItem.queue.in_(("deduction", "credit_review")))).all()
        deductions = [item for item in queued if item.queue == "deduction"]
        return {
            **cash,
            "promises": _ledger_promises(promises),
            "disputes": _stacked(_ledger_disputes(disputes), _deduction_disputes(deductions)),
            "contacts": _ledger_contacts(contacts),
            "dunning_notices": _ledger_dunning_notices(letters),
            "writeoffs": _deduction_writeoffs(deductions),
            "credit_limits": _decided_limits([item for item in queued if item.queue == "credit_review"]),
        }

    # -- the write path -------------------------------------------------------------------------

    def _create(self, user: str, model: type[Base], id_prefix: str, values: dict,
                idempotency_key: str | None, now: datetime,
                refuse: Callable[[Session, dict], None] | None = None) -> dict:
        """Insert a new record with its audit entry, once per user and idempotency key; `refuse` may raise
        inside the transaction (a record that must not exist twice)."""
        user, now = _required_text("user", user), _instant(now)
        # Fingerprint the validated values, so 5000, "5000" and Decimal("5000.00") are one request.
        fingerprint = request_fingerprint({"operation": f"create {model.__tablename__}", "user": user, **values})

        def insert(session: Session) -> dict:
            if refuse is not None:
                refuse(session, values)
            return self._insert_audited(session, user, model, id_prefix, values, now)

        return self._write(user, fingerprint, idempotency_key, now, insert)

    def _update(self, user: str, model: type[Base], record_id: str, expected_version: int, changes: dict,
                allowed: frozenset[str], now: datetime, action: str = "update") -> dict:
        """Apply `changes` (validated with the whole record) if the record is still at `expected_version`."""
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise InvalidInput(unknown[0], f"cannot be changed (allowed: {', '.join(sorted(allowed))})")
        if not changes:
            raise InvalidInput("changes", "nothing to change")
        validate = VALIDATORS[model]

        def changed_values(record: Base) -> dict:
            current = {name: getattr(record, name) for name in business_fields(validate)}
            values = validate(self.limits, **(current | changes))
            return {name: values[name] for name in changes}

        return self._change(user, model, record_id, expected_version, now, action, changed_values)

    def _change(self, user: str, model: type[Base], record_id: str, expected_version: int, now: datetime,
                action: str, changed_values: Callable[[Base], dict]) -> dict:
        """Set `changed_values(record)` on a live record still at `expected_version`, with its audit entry."""
        user, now = _required_text("user", user), _instant(now)
        id_column = model.__mapper__.primary_key[0]

        def apply(session: Session) -> dict:
            record = session.get(model, record_id)
            if record is None:
                raise NotFound(f"{model.__tablename__} {record_id!r} not found")
            if record.version != expected_version:
                raise VersionConflict(f"{model.__tablename__} {record_id!r} is at version {record.version}, "
                                      f"not {expected_version}")
            if record.void_reason is not None:
                raise VersionConflict(f"{model.__tablename__} {record_id!r} is voided")
            before = record_dict(record)
            # The version in the WHERE clause is what makes two concurrent writers unable to both win.
            statement = (
                update(model)
                .where(id_column == record_id, model.version == expected_version)
                .values(changed_values(record) | {"version": expected_version + 1, "recorded_at": now})
                .execution_options(synchronize_session=False)
            )
            if session.execute(statement).rowcount != 1:
                raise VersionConflict(f"{model.__tablename__} {record_id!r} changed concurrently")
            session.refresh(record)
            after = record_dict(record)
            audit.append_entry(session, self.audit_key, user=user, action=action, table=model.__tablename__,
                               record_id=record_id, before=before, after=after, now=now)
            return after

        # No idempotency key: a repeated change fails on the version instead of applying twice.
        return self._write(user, "", None, now, apply)

    def _write(self, user: str, fingerprint: str, idempotency_key: str | None, now: datetime,
               apply: Callable[[Session], dict]) -> dict:
        """Run `apply` in one transaction, replaying the stored response for the user's repeated key."""
        key = None if idempotency_key is None else _idempotency_key(idempotency_key)
        with self._sessions() as session, session.begin():
            _serialise_writers(session)
            if key is not None:
                stored = session.get(IdempotencyKey, (user, key))
                if stored is not None:
                    return self._replay(stored, fingerprint)
            response = apply(session)
            if key is not None:
                row = IdempotencyKey(user_name=user, key=key, fingerprint=fingerprint,
                                     response=canonical_json(response), recorded_at=now)
                row.mac = audit.idempotency_mac(self.audit_key, row)
                session.add(row)
                session.flush()
            return response

    def _replay(self, stored: IdempotencyKey, fingerprint: str) -> dict:
        """The stored response of a retried request, after checking it is the same request and unedited."""
        if stored.fingerprint != fingerprint:
            raise IdempotencyMismatch(f"idempotency key {stored.key!r} was used for a different request")
        if stored.mac is not None and not hmac.compare_digest(stored.mac, audit.idempotency_mac(self.audit_key, stored)):
            raise AuditBroken(f"the stored response of idempotency key {stored.key!r} fails its MAC "
                              "(edited in the database): run `arrisk audit verify`")
        return json.loads(stored.response)

    def _get(self, model: type[Base], record_id: str) -> dict:
        with self._sessions() as session:
            record = session.get(model, record_id)
            if record is None:
                raise NotFound(f"{model.__tablename__} {record_id!r} not found")
            return record_dict(record)

    def field_problems(self, kind: str, values: dict[str, Any]) -> dict[str, str]:
        """The store's message for each field of a `kind` record ("promise", "dispute", "contact") that its
        own rule refuses, all at once for a form; the rules across fields (a promised date before the made
        date) run on the write. The one place these rules live: the API and the web pages show its words."""
        rules = _field_rules(self.limits, kind)
        problems = {}
        for field, value in values.items():
            if field in rules:
                try:
                    rules[field](value)
                except InvalidInput as error:
                    problems[error.field] = error.problem
        return problems

    def _list(self, model: type[Base], customer_id: str | None, date_column: Any, include_voided: bool,
              where: ColumnElement | None = None) -> list[dict]:
        id_column = model.__mapper__.primary_key[0]
        query = select(model).order_by(date_column, id_column)
        if where is not None:
            query = query.where(where)
        if customer_id is not None:
            query = query.where(model.customer_id == customer_id)
        if not include_voided:
            query = query.where(model.void_reason.is_(None))
        with self._sessions() as session:
            return [record_dict(record) for record in session.scalars(query)]


def request_fingerprint(request: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a request: equal requests, equal fingerprints."""
    as_json = {key: json_value(value) for key, value in request.items()}
    return hashlib.sha256(canonical_json(as_json).encode("utf-8")).hexdigest()


def _make_engine(url: str) -> Engine:
    """An engine; on SQLite, transactions start with BEGIN IMMEDIATE so writers queue, not fail."""
    if not url.startswith("sqlite"):
        return create_engine(url)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module so we can emit BEGIN IMMEDIATE ourselves.
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _serialise_writers(session: Session) -> None:
    """One writer at a time, so the audit chain never forks (SQLite already does this on BEGIN)."""
    if session.get_bind().dialect.name == "postgresql":
        # Readers are not blocked; writers queue here until the one before them commits.
        session.execute(text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))


def _new_id(prefix: str) -> str:
    # Random, not a counter: no clock, no sequence to contend on, unique across databases.
    return f"{prefix}-{uuid.uuid4().hex}"


# -- validation: each returns the normalised values of a whole record --------------------------------


def _promise_values(limits: Limits, *, customer_id: str, invoice_id: str | None, made_date: Any,
                    promised_date: Any, amount: Any, currency: str | None, status: str, note: str) -> dict:
    made = _business_date(limits, "made_date", made_date)
    promised = _business_date(limits, "promised_date", promised_date)
    if promised < made:
        raise InvalidInput("promised_date", f"{promised} is before made_date {made}")
    return {
        "customer_id": _required_text("customer_id", customer_id),
        "invoice_id": _optional_text("invoice_id", invoice_id),
        "made_date": made,
        "promised_date": promised,
        "amount": _money("amount", amount, allow_zero=False),
        "currency": _currency(currency),
        "status": _choice("status", status, PROMISE_STATUSES),
        "note": _free_text(limits, "note", note),
    }


def _dispute_values(limits: Limits, *, invoice_id: str, customer_id: str, opened_date: Any, reason_code: str,
                    amount: Any, owner: str, status: str, resolution: str | None, resolved_date: Any) -> dict:
    opened = _business_date(limits, "opened_date", opened_date)
    status = _choice("status", status, DISPUTE_STATUSES)
    resolved = None if resolved_date is None else _business_date(limits, "resolved_date", resolved_date)
    if status == "resolved" and resolved is None:
        raise InvalidInput("resolved_date", "is required when status is resolved")
    if status == "open" and resolved is not None:
        raise InvalidInput("resolved_date", "must be empty while the dispute is open")
    if resolved is not None and resolved < opened:
        raise InvalidInput("resolved_date", f"{resolved} is before opened_date {opened}")
    return {
        "invoice_id": _required_text("invoice_id", invoice_id),
        "customer_id": _required_text("customer_id", customer_id),
        "opened_date": opened,
        "reason_code": _required_text("reason_code", reason_code),
        "amount": _money("amount", amount, allow_zero=True),
        "owner": _required_text("owner", owner),
        "status": status,
        "resolution": None if resolution is None else _free_text(limits, "resolution", resolution),
        "resolved_date": resolved,
    }


def _contact_values(limits: Limits, *, customer_id: str, contact_date: Any, channel: str, outcome: str,
                    note: str, next_action_date: Any) -> dict:
    contacted = _business_date(limits, "contact_date", contact_date)
    next_action = (None if next_action_date is None
                   else _business_date(limits, "next_action_date", next_action_date))
    if next_action is not None and next_action < contacted:
        raise InvalidInput("next_action_date", f"{next_action} is before contact_date {contacted}")
    return {
        "customer_id": _required_text("customer_id", customer_id),
        "contact_date": contacted,
        "channel": _choice("channel", channel, CONTACT_CHANNELS),
        "outcome": _free_text(limits, "outcome", outcome),
        "note": _free_text(limits, "note", note),
        "next_action_date": next_action,
    }


def _letter_values(limits: Limits, *, invoice_id: str, customer_id: str, level: Any, issued_date: Any,
                   channel: str) -> dict:
    # bool is an int in Python; True is not a dunning level.
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 9:
        raise InvalidInput("level", f"must be a whole number from 1 to 9, got {level!r}")
    return {
        "invoice_id": _required_text("invoice_id", invoice_id),
        "customer_id": _required_text("customer_id", customer_id),
        "level": level,
        "issued_date": _business_date(limits, "issued_date", issued_date),
        "channel": _choice("channel", channel, DUNNING_CHANNELS),
    }


def _cash_values(limits: Limits, *, payment_id: str, customer_id: str, invoice_id: str | None, applied_amount: Any,
                 applied_date: Any, decision: str, received_date: Any, payment_amount: Any, payment_amount_base: Any,
                 currency: str, payer_customer_id: str | None, payer_name: str | None, payer_account: str | None,
                 note: str) -> dict:
    decision = _choice("decision", decision, CASH_DECISIONS)
    received = _business_date(limits, "received_date", received_date)
    applied = _business_date(limits, "applied_date", applied_date)
    if applied < received:
        raise InvalidInput("applied_date", f"{applied} is before the payment's received_date {received}")
    amount = _signed_money("applied_amount", applied_amount)
    if (decision == "rejected") != (invoice_id is None) or (decision == "rejected") != (amount == 0):
        raise InvalidInput("invoice_id", "a rejection names no document and applies nothing; an application "
                                         "names its document and a non-zero amount")
    return {
        "payment_id": _required_text("payment_id", payment_id),
        "customer_id": _required_text("customer_id", customer_id),
        "invoice_id": _optional_text("invoice_id", invoice_id),
        "applied_amount": amount,
        "applied_date": applied,
        "decision": decision,
        "received_date": received,
        "payment_amount": _money("payment_amount", payment_amount, allow_zero=True),
        "payment_amount_base": _money("payment_amount_base", payment_amount_base, allow_zero=True),
        "currency": _currency(currency) or _required_text("currency", currency),
        "payer_customer_id": _optional_text("payer_customer_id", payer_customer_id),
        "payer_name": _optional_text("payer_name", payer_name),
        "payer_account": _optional_text("payer_account", payer_account),
        "note": _free_text(limits, "note", note),
    }


def _cash_fields(payment: dict, line: dict, decision: str, applied_date: Any, note: str) -> dict:
    """The fields of one cash-application row from the payment, one line and the decision."""
    return {"payment_id": payment.get("payment_id"), "customer_id": line.get("customer_id"),
            "invoice_id": line.get("invoice_id"), "applied_amount": line.get("amount"), "applied_date": applied_date,
            "decision": decision, "received_date": payment.get("received_date"),
            "payment_amount": payment.get("amount"), "payment_amount_base": payment.get("amount_base"),
            "currency": payment.get("currency"), "payer_customer_id": payment.get("payer_customer_id"),
            "payer_name": payment.get("payer_name"), "payer_account": payment.get("payer_account"), "note": note}


def _signed_money(field: str, value: Any) -> Decimal:
    """An amount of either sign (an application to a credit memo is negative), bounded like `_money`."""
    if isinstance(value, int | float | Decimal | str) and not isinstance(value, bool):
        try:
            negative = Decimal(str(value).strip()) < 0
        except InvalidOperation:
            negative = False  # `_money` names what is wrong with it
        if negative:
            return -_money(field, -Decimal(str(value).strip()), allow_zero=False)
    return _money(field, value, allow_zero=True)


QUEUE_PREFIXES = {"deduction": "DED", "escalation": "ESC", "credit_review": "CRV"}


def _queue_values(limits: Limits, *, queue: str, customer_id: str, invoice_id: str | None, payment_id: str | None,
                  opened_date: Any, due_date: Any, owner: str, status: str, reason_code: str, amount: Any,
                  currency: str | None, decision: str | None, decided_amount: Any, decided_date: Any, details: str,
                  note: str) -> dict:
    queue = _choice("queue", queue, QUEUES)
    status = _choice("status", status, QUEUE_STATUSES[queue])
    opened = _business_date(limits, "opened_date", opened_date)
    due = _business_date(limits, "due_date", due_date)
    if due < opened:
        raise InvalidInput("due_date", f"{due} is before opened_date {opened}")
    decided = None if decided_date is None else _business_date(limits, "decided_date", decided_date)
    decisions = QUEUE_DECISIONS.get((queue, status), ())
    if decisions:
        decision = _choice("decision", decision, decisions)
        if decided is None:
            raise InvalidInput("decided_date", f"is required when status is {status}")
    elif decision is not None or decided is not None:
        field = "decision" if decision is not None else "decided_date"
        raise InvalidInput(field, f"must be empty while the {queue.replace('_', ' ')} is {status}")
    if decided is not None and decided < opened:
        raise InvalidInput("decided_date", f"{decided} is before opened_date {opened}")
    limit = None if decided_amount is None else _money("decided_amount", decided_amount, allow_zero=True)
    if queue == "credit_review" and decision == "credit_hold":
        limit = _money("decided_amount", 0, allow_zero=True) if limit is None else limit
        if limit != 0:
            raise InvalidInput("decided_amount", "a credit hold sets the limit to 0")
    elif queue == "credit_review" and decision is not None and limit is None:
        raise InvalidInput("decided_amount", f"is required when the review's decision is {decision}")
    elif queue != "credit_review" and limit is not None:
        raise InvalidInput("decided_amount", "only a credit review decides an amount (the limit)")
    if queue == "deduction" and (invoice_id is None or amount is None):
        raise InvalidInput("invoice_id" if invoice_id is None else "amount", "a deduction names its invoice and amount")
    return {
        "queue": queue,
        "customer_id": _required_text("customer_id", customer_id),
        "invoice_id": _optional_text("invoice_id", invoice_id),
        "payment_id": _optional_text("payment_id", payment_id),
        "opened_date": opened,
        "due_date": due,
        "owner": _required_text("owner", owner),
        "status": status,
        "reason_code": _required_text("reason_code", reason_code),
        "amount": None if amount is None else _money("amount", amount, allow_zero=True),
        "currency": _currency(currency),
        "decision": decision,
        "decided_amount": limit,
        "decided_date": decided,
        "details": _free_text(limits, "details", details),
        "note": _free_text(limits, "note", note),
    }


def _details_text(limits: Limits, details: dict | None) -> str:
    """A queue record's evidence as canonical JSON text (an object, or empty)."""
    if details is None:
        return "{}"
    if not isinstance(details, dict):
        raise InvalidInput("details", "must be an object")
    try:
        return canonical_json(details)
    except (TypeError, ValueError) as problem:
        raise InvalidInput("details", f"cannot be written as JSON ({problem})") from None


def _live_queue_twin(session: Session, values: dict) -> None:
    """`VersionConflict` when a live record of the same queue, customer, invoice and payment exists."""
    query = select(QueueItem.item_id).where(
        QueueItem.queue == values["queue"], QueueItem.customer_id == values["customer_id"],
        QueueItem.void_reason.is_(None), QueueItem.status.not_in(CLOSED_STATUSES[values["queue"]]),
        QueueItem.invoice_id.is_(None) if values["invoice_id"] is None else QueueItem.invoice_id == values["invoice_id"],
        QueueItem.payment_id.is_(None) if values["payment_id"] is None else QueueItem.payment_id == values["payment_id"])
    twin = session.scalars(query.limit(1)).first()
    if twin is not None:
        raise VersionConflict(f"{values['queue'].replace('_', ' ')} {twin} is still open for customer "
                              f"{values['customer_id']}" + (f", invoice {values['invoice_id']}" if values["invoice_id"] else ""))


VALIDATORS: dict[type[Base], Callable[..., dict]] = {
    Promise: _promise_values, Dispute: _dispute_values, Contact: _contact_values, DunningLetter: _letter_values,
    CashApplication: _cash_values, QueueItem: _queue_values,
}


def business_fields(validate: Callable[..., dict]) -> frozenset[str]:
    """The fields a validator checks: the business fields of its table (what `correct` may change)."""
    return frozenset(name for name in inspect.signature(validate).parameters if name != "limits")


def _audited_table(table: Any) -> tuple[type[Base], Callable[..., dict]]:
    model = audit.MODELS_BY_TABLE.get(table)
    if model is None:
        raise InvalidInput("table", f"{table!r} is not one of {', '.join(audit.MODELS_BY_TABLE)}")
    return model, VALIDATORS[model]


def _field_rules(limits: Limits, kind: str) -> dict[str, Callable[[Any], Any]]:
    """The rule of each field of a `kind` record that can be checked on its own, as the write applies it."""
    def business_date(field: str) -> Callable[[Any], Any]:
        return lambda value: _business_date(limits, field, value)

    def optional_date(field: str) -> Callable[[Any], Any]:
        return lambda value: None if value is None else _business_date(limits, field, value)

    common = {"customer_id": lambda value: _required_text("customer_id", value),
              "invoice_id": lambda value: _optional_text("invoice_id", value)}
    rules = {
        "promise": {"made_date": business_date("made_date"), "promised_date": business_date("promised_date"),
                    "amount": lambda value: _money("amount", value, allow_zero=False),
                    "currency": _currency, "note": lambda value: _free_text(limits, "note", value)},
        "dispute": {"opened_date": business_date("opened_date"),
                    "reason_code": lambda value: _required_text("reason_code", value),
                    "amount": lambda value: _money("amount", value, allow_zero=True),
                    "invoice_id": lambda value: _required_text("invoice_id", value)},
        "contact": {"contact_date": business_date("contact_date"),
                    "next_action_date": optional_date("next_action_date"),
                    "channel": lambda value: _choice("channel", value, CONTACT_CHANNELS),
                    "outcome": lambda value: _free_text(limits, "outcome", value),
                    "note": lambda value: _free_text(limits, "note", value)},
    }
    return common | rules[kind]


def _required_text(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "must be a non-empty string")
    if len(value) > ID_LENGTH:
        raise InvalidInput(field, f"is longer than {ID_LENGTH} characters")
    return value


def _optional_text(field: str, value: Any) -> str | None:
    return None if value is None else _required_text(field, value)


def _free_text(limits: Limits, field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if len(value) > limits.max_text_chars:
        raise InvalidInput(field, f"is longer than {limits.max_text_chars} characters")
    return value


def _required_free_text(limits: Limits, field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "must be a non-empty string")
    return _free_text(limits, field, value)


def _idempotency_key(value: Any) -> str:
    # An empty key would be one key shared by every request that sends an empty header.
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("idempotency_key", "must not be empty (leave it out to write without one)")
    if len(value) > KEY_LENGTH:
        raise InvalidInput("idempotency_key", f"is longer than {KEY_LENGTH} characters")
    return value


def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidInput(field, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _currency(value: Any) -> str | None:
    if value is not None and value not in ISO_4217:
        raise InvalidInput("currency", f"{value!r} is not an ISO 4217 currency code")
    return value


def _money(field: str, value: Any, *, allow_zero: bool) -> Decimal:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidInput(field, "is required (an amount such as 1250.00)")
    if isinstance(value, bool):
        raise InvalidInput(field, "must be a number")
    try:
        # Through str: a float 0.1 means 0.1, not its binary approximation.
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput(field, f"{value!r} is not a number") from None
    if not amount.is_finite():
        raise InvalidInput(field, "must be finite")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidInput(field, "must be positive" if not allow_zero else "must not be negative")
    if amount > MAX_AMOUNT:
        raise InvalidInput(field, f"is larger than {MAX_AMOUNT}, the most the store holds exactly")
    if amount != amount.quantize(CENT):
        raise InvalidInput(field, "has more than 2 decimal places")
    return amount.quantize(CENT)


def _business_date(limits: Limits, field: str, value: Any) -> date:
    """A date inside the store's bounds and, when the store has one, the ledger's window."""
    day = _as_date(field, value)
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise InvalidInput(field, f"{day} is outside {EARLIEST_DATE}..{LATEST_DATE} (the dates the store holds)")
    if limits.date_window is not None:
        first, last = limits.date_window
        if not first <= day <= last:
            raise InvalidInput(field, f"{day} is outside {first}..{last} (the ledger's dates, with the years "
                                      "allowed before its first and after its last)")
    return day


def _as_date(field: str, value: Any) -> date:
    # A datetime is a date in Python; refuse it so a time of day never hides in a business date.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        if not value.strip():
            raise InvalidInput(field, "is required (YYYY-MM-DD)")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise InvalidInput(field, f"{value!r} is not a date (YYYY-MM-DD)") from None
    raise InvalidInput(field, f"must be a date, got {value!r}")


def _instant(now: Any) -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise InvalidInput("now", "must be a timezone-aware datetime")
    return now.astimezone(UTC)


# -- records an older version stored with values the store now refuses ----------------------------------


def _bad_value_conditions(model: type[Base], session: Session) -> list[tuple[str, Any, ColumnElement, Callable]]:
    """(field, column, SQL condition true for a bad value, problem of the value) for each bounded column
    of `model`: the bounds migration 0002 makes the database enforce on new rows."""
    live = model.void_reason.is_(None)  # voided records may keep what they held (migration 0002)
    sqlite = session.get_bind().dialect.name == "sqlite"
    conditions = []
    for column in model.__table__.columns:
        attribute = getattr(model, column.key)
        if column.key in DATE_COLUMNS[model]:
            conditions.append((column.key, attribute, and_(live, or_(attribute < EARLIEST_DATE, attribute > LATEST_DATE)),
                               lambda value: f"{value} is outside {EARLIEST_DATE}..{LATEST_DATE}"))
        elif column.key == "amount":
            wrong = or_(attribute < 0, attribute > MAX_AMOUNT)
            if sqlite:
                wrong = or_(wrong, func.typeof(attribute) != "integer")
            conditions.append((column.key, attribute, and_(live, wrong),
                               lambda value: f"{value} (as stored) is not an amount from 0 to {MAX_AMOUNT} "
                                             "in whole cents"))
        elif isinstance(column.type, String):
            limit = column.type.length or TEXT_LIMIT
            conditions.append((column.key, attribute, func.length(attribute) > limit,
                               lambda value, limit=limit: f"is {len(value)} characters, more than {limit}"))
    return conditions


DATE_COLUMNS: dict[type[Base], tuple[str, ...]] = {
    Promise: ("made_date", "promised_date"),
    Dispute: ("opened_date", "resolved_date"),
    Contact: ("contact_date", "next_action_date"),
    DunningLetter: ("issued_date",),
    CashApplication: ("applied_date", "received_date"),
    QueueItem: ("opened_date", "due_date", "decided_date"),
}


# -- the ledger's table shapes ------------------------------------------------------------------------


def _frame(rows: list[dict], columns: list[str], dates: tuple[str, ...] = (),
           floats: tuple[str, ...] = ()) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns).astype(object)
    for column in dates:
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
    for column in floats:
        frame[column] = frame[column].astype("float64")
    return frame


def _ledger_promises(promises: list[Promise]) -> pd.DataFrame:
    rows = [{"promise_id": p.promise_id, "customer_id": p.customer_id, "invoice_id": p.invoice_id,
             "made_date": p.made_date, "promised_date": p.promised_date, "amount": float(p.amount)}
            for p in promises]
    frame = _frame(rows, ["promise_id", "customer_id", "invoice_id", "made_date", "promised_date", "amount"],
                   dates=("made_date", "promised_date"), floats=("amount",))
    # kept is derived from ledger payments downstream; here it is unknown.
    frame["kept"] = pd.array([pd.NA] * len(frame), dtype="boolean")
    return frame


def _ledger_disputes(disputes: list[Dispute]) -> pd.DataFrame:
    rows = [{"dispute_id": d.dispute_id, "invoice_id": d.invoice_id, "opened_date": d.opened_date,
             "resolved_date": d.resolved_date, "reason": d.reason_code, "amount": float(d.amount)}
            for d in disputes]
    return _frame(rows, ["dispute_id", "invoice_id", "opened_date", "resolved_date", "reason", "amount"],
                  dates=("opened_date", "resolved_date"), floats=("amount",))


def _stacked(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Two frames of one shape, one below the other (either alone when the other is empty)."""
    if first.empty or second.empty:
        return second if first.empty else first
    return pd.concat([first, second], ignore_index=True)


def _deduction_disputes(deductions: list[QueueItem]) -> pd.DataFrame:
    """A deduction holds its invoice like a dispute of its amount until it is decided valid or invalid."""
    rows = [{"dispute_id": d.item_id, "invoice_id": d.invoice_id, "opened_date": d.opened_date,
             "resolved_date": d.decided_date if d.status in CLOSED_STATUSES["deduction"] else None,
             "reason": f"deduction: {d.reason_code}", "amount": float(d.amount)} for d in deductions]
    return _frame(rows, ["dispute_id", "invoice_id", "opened_date", "resolved_date", "reason", "amount"],
                  dates=("opened_date", "resolved_date"), floats=("amount",))


def _deduction_writeoffs(deductions: list[QueueItem]) -> pd.DataFrame:
    """A deduction found valid closes its residual: a credit memo or a write-off of its amount, on its date."""
    rows = [{"invoice_id": d.invoice_id, "date": d.decided_date, "amount": float(d.amount)} for d in deductions
            if d.status == "valid" and d.amount > 0]
    return _frame(rows, ["invoice_id", "date", "amount"], dates=("date",), floats=("amount",))


def _decided_limits(reviews: list[QueueItem]) -> pd.DataFrame:
    """The credit limit each decided review set, the latest decision per customer."""
    latest: dict[str, QueueItem] = {}
    for review in sorted((r for r in reviews if r.status == "decided" and r.decided_amount is not None),
                         key=lambda r: (r.decided_date, r.recorded_at, r.item_id)):
        latest[review.customer_id] = review
    rows = [{"customer_id": customer, "credit_limit": float(review.decided_amount), "decided_date": review.decided_date}
            for customer, review in latest.items()]
    return _frame(rows, ["customer_id", "credit_limit", "decided_date"], dates=("decided_date",),
                  floats=("credit_limit",))


def _ledger_contacts(contacts: list[Contact]) -> pd.DataFrame:
    rows = [{"contact_id": c.contact_id, "customer_id": c.customer_id, "contact_date": c.contact_date,
             "channel": c.channel, "outcome": c.outcome} for c in contacts]
    return _frame(rows, ["contact_id", "customer_id", "contact_date", "channel", "outcome"],
                  dates=("contact_date",))


def _ledger_dunning_notices(letters: list[DunningLetter]) -> pd.DataFrame:
    # The ledger keys notices by (invoice_id, level): a level resent counts from its first notice.
    first = {}
    for letter in letters:
        first.setdefault((letter.invoice_id, letter.level), letter.issued_date)
    rows = [{"invoice_id": invoice_id, "level": level, "issued_date": issued}
            for (invoice_id, level), issued in first.items()]
    frame = _frame(rows, ["invoice_id", "level", "issued_date"], dates=("issued_date",))
    frame["level"] = frame["level"].astype("int64")
    return frame


def _ledger_payments(applied: list[CashApplication]) -> pd.DataFrame:
    """One `payments` row per applied payment, as the store knows it (for a customer's slice of the ledger,
    which may not hold a payment whose payer was not identified); `with_records` keeps the ledger's own."""
    first = {}
    for line in applied:
        first.setdefault(line.payment_id, line)
    rows = [{"payment_id": line.payment_id, "customer_id": line.payer_customer_id or line.customer_id,
             "received_date": line.received_date, "amount": line.payment_amount, "currency": line.currency,
             "amount_base": line.payment_amount_base, "reference": None, "payer_name": line.payer_name,
             "payer_account": line.payer_account, "remittance_text": None, "statement_ref": None}
            for line in first.values()]
    return _frame(rows, ["payment_id", "customer_id", "received_date", "amount", "currency", "amount_base", "reference",
                         "payer_name", "payer_account", "remittance_text", "statement_ref"], dates=("received_date",),
                  floats=("amount", "amount_base"))


def _ledger_applications(applied: list[CashApplication]) -> pd.DataFrame:
    rows = [{"payment_id": line.payment_id, "invoice_id": line.invoice_id, "applied_date": line.applied_date,
             "amount": line.applied_amount} for line in applied]
    return _frame(rows, ["payment_id", "invoice_id", "applied_date", "amount"], dates=("applied_date",),
                  floats=("amount",))


# -- the reminders outbox ------------------------------------------------------------------------------

OUTBOX_STATES = ("drafted", "approved", "sending", "sent", "failed", "bounced")
OUTBOX_CHANNELS = ("email", "letter")
OUTBOX_JSON = ("recipients", "items", "totals")


def outbox_dict(record: OutboxMessage) -> dict:
    """An outbox row as JSON-ready data, its JSON texts parsed, without the MIME bytes."""
    row = {column.key: json_value(getattr(record, column.key)) for column in record.__mapper__.column_attrs
           if column.key != "mime"}
    return row | {name: json.loads(row[name]) for name in OUTBOX_JSON}


def _outbox_values(limits: Limits, *, key: str, customer_id: str, level: Any, run_date: Any, channel: str,
                   language: str, recipients: Iterable[str], subject: str, mime: bytes, items: list[dict],
                   totals: dict) -> dict:
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 9:
        raise InvalidInput("level", f"must be a whole number from 1 to 9, got {level!r}")
    if not isinstance(mime, bytes) or not mime:
        raise InvalidInput("mime", "must be the message's bytes")
    addresses = [_required_text("recipients", address) for address in recipients]
    channel = _choice("channel", channel, OUTBOX_CHANNELS)
    if (channel == "email") != bool(addresses):
        raise InvalidInput("recipients", "an e-mail needs recipients; a letter has none")
    if not all(isinstance(item, dict) and item.get("invoice_id") for item in items):
        raise InvalidInput("items", "each item needs its invoice_id")
    subject = _required_text("subject", subject)
    if len(subject) > TEXT_LIMIT:
        raise InvalidInput("subject", f"is {len(subject)} characters, more than {TEXT_LIMIT}")
    return {
        "key": _idempotency_key(key),
        "customer_id": _required_text("customer_id", customer_id),
        "level": level,
        "run_date": _business_date(limits, "run_date", run_date),
        "channel": channel,
        "language": _required_text("language", language)[:16],
        "recipients": canonical_json(addresses),
        "subject": subject,
        "mime": mime,
        "items": canonical_json([{name: json_value(value) for name, value in item.items()} for item in items]),
        "totals": canonical_json({currency: float(total) for currency, total in totals.items()}),
    }


def _outbox_record(session: Session, message_id: str, allowed: tuple[str, ...]) -> OutboxMessage:
    record = session.get(OutboxMessage, message_id)
    if record is None:
        raise NotFound(f"outbox message {message_id!r} not found")
    if record.state not in allowed:
        raise VersionConflict(f"outbox message {message_id!r} is {record.state}, not {' or '.join(allowed)}")
    return record


def _move_outbox(session: Session, record: OutboxMessage, changes: dict, now: datetime) -> dict:
    """Apply `changes` to the record still at its version and state (two senders can never both claim it)."""
    statement = (update(OutboxMessage)
                 .where(OutboxMessage.message_id == record.message_id, OutboxMessage.version == record.version,
                        OutboxMessage.state == record.state)
                 .values(changes | {"version": record.version + 1, "recorded_at": now})
                 .execution_options(synchronize_session=False))
    if session.execute(statement).rowcount != 1:
        raise VersionConflict(f"outbox message {record.message_id!r} changed concurrently")
    session.refresh(record)
    return outbox_dict(record)
