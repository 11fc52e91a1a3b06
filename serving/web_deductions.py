"""The deductions queue's web page (issue 21): the live deductions with a form per decision, the short
payments still to open and the queue's report (collector: its portfolio; cash: everyone); and the SLA page
(every queue's clocks per owner or team, any role). Under /v1/ui, forms with the session's CSRF token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from queues.deductions import queue_rows
from queues.sla import sla_report
from serving.deps import Service
from serving.routes.deductions import (
    ACTIONS,
    candidates_for,
    decide,
    open_for,
    readable,
    report_for,
    visible_deductions,
)
from serving.routes.sla import clocks_for
from serving.schemas import records
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
DEDUCTION_SCOPES = ("collector", "cash")
SLA_SCOPES = ("collector", "credit", "treasury", "cash", "manager")
DEDUCTION_ROWS = 500
STATUSES = ("open", "in_review", "valid", "invalid")


@router.get("/deductions")
@page
def deductions(request: Request, service: Service, as_of: str | None = None, status: str = "", saved: str = "") -> Response:
    """The live deductions (or those of `status`), most overdue first, with the short payments still to open."""
    session = signed_in(service, request, *DEDUCTION_SCOPES)
    return deductions_page(service, session, parse_as_of(service, as_of), status, saved=saved)


def deductions_page(service: Any, session: Session, when: pd.Timestamp, of_status: str = "", saved: str = "",
                    error: str = "", status: int = 200) -> Response:
    if of_status not in ("", *STATUSES):
        raise BadRequest(f"status {of_status[:20]!r} is not one of {', '.join(STATUSES)}")
    state, principal = service.state, session.principal
    rows = [readable(row) for row in queue_rows(visible_deductions(principal, state), when, of_status or None)]
    candidates = records(candidates_for(principal, state, when))
    return render("deductions.html", status, **session_context(session), as_of=when, status=of_status,
                  statuses=STATUSES, rows=rows[:DEDUCTION_ROWS], count=len(rows), limit=DEDUCTION_ROWS,
                  candidates=candidates[:DEDUCTION_ROWS], report=report_for(principal, state, when),
                  currency=state.base_currency,
                  actions=ACTIONS, saved=saved, error=error)


def deduction_action(request: Request, service: Any, csrf: str, as_of: str,
                     act: Callable[[Any, Session, pd.Timestamp], str]) -> Response:
    """A deduction form (`serving.web.form_action` on the deductions page)."""
    return form_action(request, service, DEDUCTION_SCOPES, csrf, as_of, act, deductions_page, "/deductions")


@router.post("/deductions/open")
@page
def open_deductions(request: Request, service: Service, csrf: Annotated[str, Form()] = "",
                    as_of: Annotated[str, Form()] = "") -> Response:
    """Open a deduction for every short payment shown."""
    def act(state: Any, session: Session, when: pd.Timestamp) -> str:
        opened, skipped = open_for(session.principal, state, when)
        return f"{len(opened)} deduction{'' if len(opened) == 1 else 's'} opened" + (
            f", {len(skipped)} already recorded" if skipped else "")

    return deduction_action(request, service, csrf, as_of, act)


@router.post("/deductions/{item_id}/decision")
@page
def decide_deduction(request: Request, service: Service, item_id: str, csrf: Annotated[str, Form()] = "",
                     as_of: Annotated[str, Form()] = "", decision: Annotated[str, Form()] = "",
                     version: Annotated[str, Form()] = "", note: Annotated[str, Form()] = "") -> Response:
    """Review a deduction, or decide it (credit memo, write-off, re-billed) on the page's date."""
    if decision not in ACTIONS:
        raise BadRequest(f"decision {decision[:20]!r} is not one of {', '.join(ACTIONS)}")
    if not version.isdigit():
        raise BadRequest("the form's version is missing: reload the page")

    def act(state: Any, session: Session, when: pd.Timestamp) -> str:
        decided = None if decision == "in_review" else when.date()
        decide(session.principal, state, item_id, int(version), decision, decided, note or None)
        return f"{item_id}: {decision.replace('_', ' ')}"

    return deduction_action(request, service, csrf, as_of, act)


@router.get("/sla")
@page
def sla(request: Request, service: Service, as_of: str | None = None, by: str = "owner") -> Response:
    """SLA clocks of every queue: the turnaround per owner or team and the breached records."""
    session = signed_in(service, request, *SLA_SCOPES)
    if by not in ("owner", "team"):
        raise BadRequest(f"by {by[:20]!r} is not owner or team")
    when = parse_as_of(service, as_of)
    clocks = clocks_for(session.principal, service.state, when)
    breached = clocks[clocks["is_open"] & clocks["breached"]]
    return render("sla.html", **session_context(session), as_of=when, by=by, rows=records(sla_report(clocks, by)),
                  breached=records(breached.head(DEDUCTION_ROWS)), breached_count=len(breached))
