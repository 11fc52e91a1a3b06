"""Dunning reminders over the API (issue 22): draft the day's run into the outbox, list it, preview one
message as it goes out, approve a batch, send the approved ones over SMTP at most once (collector: its own
portfolio, via `serving.access`; a team lead: everyone's)."""

from __future__ import annotations

import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from activity.models import ID_LENGTH
from serving import access
from serving.deps import Collector, CurrentSettings, ScopesFirstRoute, State, recording_time
from serving.reminders import DEFAULT_SENDER, draft_run, preview, send_approved
from serving.schemas import IdInPath, Row, Rows

router = APIRouter(prefix="/reminders", tags=["reminders"], route_class=ScopesFirstRoute)


class OutboxRow(Row):
    """An outbox message: customer, level, run date, channel (email or letter), state and reason, subject."""

    message_id: str | None = None
    customer_id: str | None = None
    state: str | None = None


class DraftIn(BaseModel):
    """Draft the dunning run of `as_of` (the service's day when left out) into the outbox."""

    model_config = ConfigDict(extra="forbid")

    as_of: datetime.date | None = None


class Drafted(BaseModel):
    as_of: datetime.date
    drafted: list[OutboxRow]
    existing: list[OutboxRow]
    letters: list[OutboxRow]


class ApprovalIn(BaseModel):
    """The messages a collector read and approves, all or none."""

    model_config = ConfigDict(extra="forbid")

    message_ids: list[Annotated[str, Field(min_length=1, max_length=ID_LENGTH)]] = Field(min_length=1,
                                                                                          max_length=1_000)


class SendIn(BaseModel):
    """Send the approved e-mails of run date `as_of` (every run's when left out)."""

    model_config = ConfigDict(extra="forbid")

    as_of: datetime.date | None = None


class Sent(BaseModel):
    sent: list[OutboxRow]
    failed: list[OutboxRow]
    unconfirmed: list[OutboxRow]


class Preview(OutboxRow):
    """A message as it goes out: From, To, subject, the text and HTML bodies, the attachments."""

    text: str = ""
    html: str = ""
    attachments: list[dict] = Field(default_factory=list)


@router.post("/drafts", response_model=Drafted, status_code=201,
             summary="Draft the day's dunning reminders into the outbox (collector)")
def draft(body: DraftIn, principal: Collector, state: State, settings: CurrentSettings) -> dict:
    """One message per customer and level of the dunning proposal at `as_of` (held items left out, customers
    handed to legal excluded); a customer without an e-mail contact is drafted on the letter list. Drafting
    the same day again adds nothing."""
    when = state.checked_as_of(body.as_of)
    return draft_run(state.store, state.ledger, when, principal.user, now=recording_time(),
                     sender=settings.smtp_sender or DEFAULT_SENDER,
                     customers=access.visible_customers(principal, state))


@router.get("", response_model=Rows[OutboxRow], response_model_exclude_unset=True,
            summary="The outbox: messages with their state (collector)")
def list_messages(principal: Collector, state: State, as_of: datetime.date | None = None,
                  message_state: str | None = Query(None, alias="state",
                                                    pattern="^(drafted|approved|sending|sent|failed|bounced)$"),
                  channel: str | None = Query(None, pattern="^(email|letter)$")) -> Rows[OutboxRow]:
    """The messages of run date `as_of` (every run's when left out); `sending` ones are unconfirmed (a send
    was interrupted between the SMTP transaction and its record): a person checks and settles them."""
    rows = access.visible_records(state.store.list_outbox(as_of, state=message_state, channel=channel),
                                  access.visible_customers(principal, state))
    return Rows[OutboxRow](as_of=as_of, rows=rows, count=len(rows))


@router.get("/{message_id}", response_model=Preview, summary="One message as it goes out (collector)")
def show(message_id: IdInPath, principal: Collector, state: State) -> dict:
    message = state.store.get_outbox_message(message_id)
    access.check_customer(principal, state, message["customer_id"])
    return preview(message)


@router.post("/approvals", response_model=Rows[OutboxRow], summary="Approve a batch for sending (collector)")
def approve(body: ApprovalIn, principal: Collector, state: State) -> Rows[OutboxRow]:
    """Every message must be drafted (or failed, to try again), else 409 and none is approved."""
    for message_id in body.message_ids:
        access.check_customer(principal, state, state.store.get_outbox_message(message_id)["customer_id"])
    rows = state.store.approve_outbox_messages(principal.user, body.message_ids, now=recording_time())
    return Rows[OutboxRow](as_of=None, rows=rows, count=len(rows))


@router.post("/sends", response_model=Sent, summary="Send the approved e-mails over SMTP (collector)")
def send(body: SendIn, principal: Collector, state: State, settings: CurrentSettings) -> dict:
    """Each approved e-mail at most once (`ARRISK_SMTP_*`): temporary failures retried with backoff, permanent
    ones failed with the server's reason; unconfirmed ones listed, never resent. 400 without an SMTP server."""
    from reminders.smtp import smtp_server

    day = None if body.as_of is None else state.checked_as_of(body.as_of)
    result = send_approved(state.store, principal.user, smtp_server(settings), now=recording_time(), run_date=day,
                           customers=access.visible_customers(principal, state))
    state.recorded({})  # the contacts and letters of what was sent reach the day's views
    return result
