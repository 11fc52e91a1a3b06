"""The reminders page (issue 22): the outbox of a run date, each message's subject, recipients, text and HTML
body and attachments shown before a collector approves the batch; forms to draft the day's run, approve the
messages ticked and send the approved ones. Under /v1/ui, forms with the session's CSRF token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from serving import access
from serving.deps import Service, recording_time
from serving.reminders import DEFAULT_SENDER, draft_run, preview, send_approved
from serving.sessions import Session
from serving.web import BadRequest, form_action, page, parse_as_of, render, session_context, signed_in

router = APIRouter(prefix="/ui", include_in_schema=False)
REMINDER_SCOPES = ("collector",)
SHOWN_MESSAGES = 200
STATES = ("drafted", "approved", "sending", "sent", "failed", "bounced")


@router.get("/reminders")
@page
def reminders(request: Request, service: Service, as_of: str | None = None, state: str = "", saved: str = "") -> Response:
    """The outbox of the run date `as_of` with every message's preview (collector)."""
    session = signed_in(service, request, *REMINDER_SCOPES)
    return reminders_page(service, session, parse_as_of(service, as_of), state, saved=saved)


def reminders_page(service: Any, session: Session, when: pd.Timestamp, of_state: str = "", saved: str = "",
                   error: str = "", status: int = 200) -> Response:
    if of_state not in ("", *STATES):
        raise BadRequest(f"state {of_state[:20]!r} is not one of {', '.join(STATES)}")
    store = service.state.store
    rows = access.visible_records(store.list_outbox(when.date(), state=of_state or None),
                                  access.visible_customers(session.principal, service.state))
    messages = [preview(store.get_outbox_message(row["message_id"])) for row in rows[:SHOWN_MESSAGES]]
    counts = {name: sum(row["state"] == name for row in rows) for name in STATES}
    return render("reminders.html", status, **session_context(session), as_of=when, state=of_state, states=STATES,
                  messages=messages, count=len(rows), limit=SHOWN_MESSAGES, counts=counts, saved=saved, error=error)


def reminder_action(request: Request, service: Any, csrf: str, as_of: str,
                    act: Callable[[Any, Session, pd.Timestamp], str]) -> Response:
    """A reminders form (`serving.web.form_action` on the reminders page)."""
    return form_action(request, service, REMINDER_SCOPES, csrf, as_of, act, reminders_page, "/reminders")


@router.post("/reminders/draft")
@page
def draft(request: Request, service: Service, csrf: Annotated[str, Form()] = "",
          as_of: Annotated[str, Form()] = "") -> Response:
    """Draft the dunning run of the day into the outbox."""
    def act(state: Any, session: Session, when: pd.Timestamp) -> str:
        result = draft_run(state.store, state.ledger, when, session.principal.user, now=recording_time(),
                           sender=service.settings.smtp_sender or DEFAULT_SENDER,
                           customers=access.visible_customers(session.principal, state))
        return (f"{len(result['drafted'])} drafted, {len(result['existing'])} already in the outbox, "
                f"{len(result['letters'])} on the letter list")

    return reminder_action(request, service, csrf, as_of, act)


@router.post("/reminders/approve")
@page
def approve(request: Request, service: Service, csrf: Annotated[str, Form()] = "",
            as_of: Annotated[str, Form()] = "", message_id: Annotated[list[str] | None, Form()] = None) -> Response:
    """Approve the messages ticked, all or none."""
    def act(state: Any, session: Session, when: pd.Timestamp) -> str:
        if not message_id:
            raise BadRequest("no message ticked: tick the messages you read and approve")
        for one in message_id:
            access.check_customer(session.principal, state, state.store.get_outbox_message(one)["customer_id"])
        rows = state.store.approve_outbox_messages(session.principal.user, message_id, now=recording_time())
        return f"{len(rows)} approved"

    return reminder_action(request, service, csrf, as_of, act)


@router.post("/reminders/send")
@page
def send(request: Request, service: Service, csrf: Annotated[str, Form()] = "",
         as_of: Annotated[str, Form()] = "") -> Response:
    """Send the approved e-mails of the day over SMTP, each at most once."""
    from reminders.smtp import smtp_server

    def act(state: Any, session: Session, when: pd.Timestamp) -> str:
        result = send_approved(state.store, session.principal.user, smtp_server(service.settings),
                               now=recording_time(), run_date=when,
                               customers=access.visible_customers(session.principal, state))
        state.recorded({})
        return (f"{len(result['sent'])} sent, {len(result['failed'])} failed, "
                f"{len(result['unconfirmed'])} unconfirmed")

    return reminder_action(request, service, csrf, as_of, act)
