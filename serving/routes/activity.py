"""The collectors' records (issue 8): promises, disputes, contacts and dunning letters. Every write is
audited with the token's user, and the next worklist sees it (the activity is merged, caches dropped)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Header

from activity.store import InvalidInput
from serving import access
from serving.activity import check_known
from serving.auth import Principal
from serving.deps import Collector, CollectorOrCredit, ScopesFirstRoute, State, recording_time
from serving.schemas import (
    ActivityRecord,
    ContactIn,
    ContactRecord,
    ContactUpdate,
    DisputeIn,
    DisputeRecord,
    DisputeUpdate,
    IdInPath,
    IdInQuery,
    LetterIn,
    LetterRecord,
    PromiseIn,
    PromiseRecord,
    PromiseUpdate,
    Rows,
)
from serving.views import ServingState

IdempotencyKey = Annotated[str | None, Header(max_length=200, description=(
    "Repeat a write with the same key to get the first answer again instead of a second record."))]

promises = APIRouter(prefix="/promises", tags=["activity: promises"], route_class=ScopesFirstRoute)
disputes = APIRouter(prefix="/disputes", tags=["activity: disputes"], route_class=ScopesFirstRoute)
contacts = APIRouter(prefix="/contacts", tags=["activity: contacts"], route_class=ScopesFirstRoute)
letters = APIRouter(prefix="/dunning-letters", tags=["activity: dunning letters"], route_class=ScopesFirstRoute)
routers = (promises, disputes, contacts, letters)
WRITTEN = {"status_code": 201, "response_model_exclude_unset": True}
CHANGED = {"response_model_exclude_unset": True}


def checked_idempotency_key(key: str | None) -> str | None:
    """The Idempotency-Key header, refused when present but blank (it would be one key for everyone)."""
    if key is not None and not key.strip():
        raise InvalidInput("idempotency_key", "must not be empty; leave the header out for no key")
    return key


def recorded(state: ServingState, record: dict) -> dict:
    """A write's answer, once the day's worklist shows it (only the record's customer is re-derived)."""
    return state.recorded(record)


def check_change(principal: Principal, state: ServingState, record: dict) -> None:
    """403 unless `principal` may see the record's customer and change the record."""
    access.check_customer(principal, state, record["customer_id"])
    access.check_record_change(principal, record)


def listed(principal: Principal, state: ServingState, customer_id: str | None,
           rows_of: Callable[[str | None], list[dict]]) -> dict:
    """The records `rows_of(customer_id)` the principal may see (403 for a customer it may not)."""
    if customer_id is not None:
        access.check_customer(principal, state, customer_id)
    rows = access.visible_records(rows_of(customer_id), access.visible_customers(principal, state))
    return {"as_of": None, "rows": rows, "count": len(rows)}


# ---- promises -------------------------------------------------------------------------------------------

@promises.post("", response_model=PromiseRecord, summary="Record a promise to pay (collector)", **WRITTEN)
def create_promise(promise: PromiseIn, principal: Collector, state: State,
                   idempotency_key: IdempotencyKey = None) -> dict:
    key = checked_idempotency_key(idempotency_key)
    customer = check_known(state.base_ledger, promise.customer_id, promise.invoice_id)
    access.check_customer(principal, state, customer)
    return recorded(state, state.store.create_promise(
        principal.user, customer_id=customer, invoice_id=promise.invoice_id, amount=promise.amount,
        made_date=promise.made_date, promised_date=promise.promised_date, currency=promise.currency,
        note=promise.note, idempotency_key=key, now=recording_time()))


@promises.patch("/{promise_id}", response_model=PromiseRecord,
                summary="Change or cancel a promise, given the version read (collector)", **CHANGED)
def update_promise(promise_id: IdInPath, change: PromiseUpdate, principal: Collector, state: State) -> dict:
    check_change(principal, state, state.store.get_promise(promise_id))
    changes = change.model_dump(exclude_none=True, exclude={"expected_version"})
    return recorded(state, state.store.update_promise(principal.user, promise_id, change.expected_version,
                                                      now=recording_time(), **changes))


@promises.get("", response_model=Rows[PromiseRecord], summary="Promises to pay (collector, credit)", **CHANGED)
def list_promises(principal: CollectorOrCredit, state: State, customer_id: IdInQuery = None) -> dict:
    return listed(principal, state, customer_id, state.store.list_promises)


# ---- disputes -------------------------------------------------------------------------------------------

@disputes.post("", response_model=DisputeRecord, summary="Open a dispute on an invoice (collector, credit)",
               **WRITTEN)
def create_dispute(dispute: DisputeIn, principal: CollectorOrCredit, state: State,
                   idempotency_key: IdempotencyKey = None) -> dict:
    key = checked_idempotency_key(idempotency_key)
    customer = check_known(state.base_ledger, None, dispute.invoice_id)
    access.check_customer(principal, state, customer)
    return recorded(state, state.store.create_dispute(
        principal.user, invoice_id=dispute.invoice_id, customer_id=customer, opened_date=dispute.opened_date,
        reason_code=dispute.reason_code, amount=dispute.amount, owner=dispute.owner,
        idempotency_key=key, now=recording_time()))


@disputes.patch("/{dispute_id}", response_model=DisputeRecord,
                summary="Resolve or reassign a dispute (collector, credit)", **CHANGED)
def update_dispute(dispute_id: IdInPath, change: DisputeUpdate, principal: CollectorOrCredit, state: State) -> dict:
    check_change(principal, state, state.store.get_dispute(dispute_id))
    changes = change.model_dump(exclude_none=True, exclude={"expected_version"})
    return recorded(state, state.store.update_dispute(principal.user, dispute_id, change.expected_version,
                                                      now=recording_time(), **changes))


@disputes.get("", response_model=Rows[DisputeRecord], summary="Disputes (collector, credit)", **CHANGED)
def list_disputes(principal: CollectorOrCredit, state: State, customer_id: IdInQuery = None) -> dict:
    return listed(principal, state, customer_id, state.store.list_disputes)


# ---- contacts -------------------------------------------------------------------------------------------

@contacts.post("", response_model=ContactRecord, summary="Log a call, e-mail or letter (collector)", **WRITTEN)
def create_contact(contact: ContactIn, principal: Collector, state: State,
                   idempotency_key: IdempotencyKey = None) -> dict:
    key = checked_idempotency_key(idempotency_key)
    customer = check_known(state.base_ledger, contact.customer_id)
    access.check_customer(principal, state, customer)
    return recorded(state, state.store.create_contact(
        principal.user, customer_id=customer, contact_date=contact.contact_date, channel=contact.channel,
        outcome=contact.outcome, note=contact.note, next_action_date=contact.next_action_date,
        idempotency_key=key, now=recording_time()))


@contacts.patch("/{contact_id}", response_model=ContactRecord, summary="Correct a contact log entry (collector)",
                **CHANGED)
def update_contact(contact_id: IdInPath, change: ContactUpdate, principal: Collector, state: State) -> dict:
    check_change(principal, state, state.store.get_contact(contact_id))
    changes = change.model_dump(exclude_none=True, exclude={"expected_version"})
    return recorded(state, state.store.update_contact(principal.user, contact_id, change.expected_version,
                                                      now=recording_time(), **changes))


@contacts.get("", response_model=Rows[ContactRecord], summary="Contact log (collector, credit)", **CHANGED)
def list_contacts(principal: CollectorOrCredit, state: State, customer_id: IdInQuery = None) -> dict:
    return listed(principal, state, customer_id, state.store.list_contacts)


# ---- dunning letters ------------------------------------------------------------------------------------

@letters.post("", response_model=LetterRecord,
              summary="Record a dunning letter sent, so levels advance (collector)", **WRITTEN)
def create_letter(letter: LetterIn, principal: Collector, state: State, idempotency_key: IdempotencyKey = None) -> dict:
    key = checked_idempotency_key(idempotency_key)
    customer = check_known(state.base_ledger, None, letter.invoice_id)
    access.check_customer(principal, state, customer)
    return recorded(state, state.store.record_dunning_letter(
        principal.user, invoice_id=letter.invoice_id, customer_id=customer, level=letter.level,
        issued_date=letter.issued_date, channel=letter.channel, idempotency_key=key, now=recording_time()))


@letters.get("", response_model=Rows[LetterRecord], summary="Dunning letters recorded (collector, credit)",
             **CHANGED)
def list_letters(principal: CollectorOrCredit, state: State, customer_id: IdInQuery = None) -> dict:
    return listed(principal, state, customer_id, state.store.list_letters)


__all__ = ["ActivityRecord", "routers"]
