"""The escalations queue's web page (issue 21): the manager's queue, ranked by the deterioration probability,
with an Open form per customer the rules escalate (collector or manager) and a decision form per recorded
escalation (manager), under /v1/ui; CSRF-checked like the cash page."""

from __future__ import annotations

import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import pandas as pd
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from activity.store import InvalidInput
from ledger.errors import ArRiskError
from queues.escalations import DECISIONS
from serving.deps import Service
from serving.routes.escalations import decide, open_escalation, rows_for
from serving.sessions import Session
from serving.web import (
    BadRequest,
    check_csrf,
    page,
    parse_as_of,
    redirect,
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


def escalation_action(request: Request, service: Any, csrf: str, as_of: str, scopes: tuple[str, ...], act) -> Response:
    """Check the session, scope and CSRF token, run `act` (which records and says what it did), and go back to
    the queue; what the store refuses is shown above the queue (422)."""
    session = signed_in(service, request, *scopes)
    check_csrf(session.csrf, csrf)
    when = parse_as_of(service, as_of)
    try:
        done = act(session, when)
    except (ArRiskError, InvalidInput) as error:
        return escalations_page(service, session, when, error=str(error), status=422)
    return redirect("/escalations?" + urlencode({"as_of": f"{when:%Y-%m-%d}", "saved": done}))


@router.post("/escalations/open")
@page
def open_one(request: Request, service: Service, csrf: Annotated[str, Form()] = "",
             as_of: Annotated[str, Form()] = "", customer_id: Annotated[str, Form()] = "",
             note: Annotated[str, Form()] = "") -> Response:
    """Open the escalation of a customer the rules escalate (collector, manager)."""
    def act(session: Session, when: pd.Timestamp) -> str:
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
    def act(session: Session, when: pd.Timestamp) -> str:
        if not expected_version.isdigit():
            raise BadRequest("the form lost the record's version: reload the page")
        record = decide(session.principal, service.state, item_id, int(expected_version), decision,
                        datetime.date.fromisoformat(f"{when:%Y-%m-%d}"), close == "1", note or None)
        return f"{item_id}: {record['decision']} ({record['status']})"

    return escalation_action(request, service, csrf, as_of, ("manager",), act)
