"""The escalations queue's web page (issue 21): the manager's queue, ranked by the deterioration probability,
with an Open form per customer the rules escalate (collector or manager) and a decision form per recorded
escalation (manager), under /v1/ui; CSRF-checked like the cash page."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from queues.escalations import DECISIONS
from serving.deps import Service
from serving.routes.escalations import decide, open_escalation, rows_for
from serving.sessions import Session
from serving.web import (
    BadRequest,
    form_action,
    page,
    parse_as_of,
    render,
    session_context,
    signed_in,
)

router = APIRouter(prefix="/ui", include_in_schema=False)
ROWS = 500


@router.get("/escalations")
@page
def escalations(request: Request, service: Service, as_of: str | None = None, saved: str = "") -> Response:
    """The escalations queue at a date: who the rules escalate and why, and the escalations recorded."""
    session = signed_in(service, request, "manager", "collector")
    return escalations_page(service, session, parse_as_of(service, as_of), saved=saved)


def escalations_page(service: Any, session: Session, when: pd.Timestamp, saved: str = "", error: str = "",
                     status: int = 200) -> Response:
    rows = rows_for(session.principal, service.state, when)
    return render("escalations.html", status, **session_context(session), as_of=when, rows=rows[:ROWS],
                  count=len(rows), limit=ROWS, saved=saved, error=error, decisions=DECISIONS,
                  manager=session.principal.has("manager"), currency=service.state.base_currency)


def escalation_action(request: Request, service: Any, csrf: str, as_of: str, scopes: tuple[str, ...],
                      act: Callable[[Any, Session, pd.Timestamp], str]) -> Response:
    """An escalation form (`serving.web.form_action` on the escalations page)."""
    return form_action(request, service, scopes, csrf, as_of, act, escalations_page, "/escalations")


@router.post("/escalations/open")
@page
def open_one(request: Request, service: Service, csrf: Annotated[str, Form()] = "",
             as_of: Annotated[str, Form()] = "", customer_id: Annotated[str, Form()] = "",
             note: Annotated[str, Form()] = "") -> Response:
    """Open the escalation of a customer the rules escalate (collector, manager)."""
    def act(_state: Any, session: Session, when: pd.Timestamp) -> str:
        record = open_escalation(session.principal, service.state, customer_id.strip(), when, note)
        return f"{record['item_id']} opened for {record['customer_id']}"

    return escalation_action(request, service, csrf, as_of, ("manager", "collector"), act)


@router.post("/escalations/{item_id}/decision")
@page
def decide_one(request: Request, service: Service, item_id: str, csrf: Annotated[str, Form()] = "",
               as_of: Annotated[str, Form()] = "", expected_version: Annotated[str, Form()] = "",
               decision: Annotated[str, Form()] = "", close: Annotated[str, Form()] = "",
               note: Annotated[str, Form()] = "") -> Response:
    """Record the manager's decision, on the page's date (manager)."""
    def act(_state: Any, session: Session, when: pd.Timestamp) -> str:
        if not expected_version.isdigit():
            raise BadRequest("the form lost the record's version: reload the page")
        record = decide(session.principal, service.state, item_id, int(expected_version), decision,
                        datetime.date.fromisoformat(f"{when:%Y-%m-%d}"), close == "1", note or None)
        return f"{item_id}: {record['decision']} ({record['status']})"

    return escalation_action(request, service, csrf, as_of, ("manager",), act)
