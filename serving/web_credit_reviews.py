"""The credit reviews queue's web page (issue 21), under /v1/ui: the credit team's queue (recorded reviews,
then the day's candidates), each row with the recommended limit, its formula and inputs; a form to open a
review and a form per decision (approve, change to a typed limit, credit hold), with the session's CSRF
token like the cash page. The page only translates forms to `serving.routes.credit_reviews` calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from serving.deps import Service
from serving.routes.credit_reviews import decided, opened, queue_rows
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
REVIEW_ROWS = 500  # a page shows at most this many rows


@router.get("/credit-reviews")
@page
def credit_reviews(request: Request, service: Service, as_of: str | None = None, saved: str = "") -> Response:
    """The credit team's queue of the day, with the formula and inputs per row (credit)."""
    session = signed_in(service, request, "credit")
    return reviews_page(service, session, parse_as_of(service, as_of), saved=saved)


def reviews_page(service: Any, session: Session, when: pd.Timestamp, saved: str = "", error: str = "",
                 status: int = 200) -> Response:
    _, rows = queue_rows(service.state, when.date())
    recorded = [row for row in rows if row["kind"] == "recorded"]
    candidates = [row for row in rows if row["kind"] == "candidate"]
    return render("credit_reviews.html", status, **session_context(session), as_of=when, recorded=recorded[:REVIEW_ROWS],
                  candidates=candidates[:REVIEW_ROWS], limit=REVIEW_ROWS, saved=saved, error=error)


def review_action(request: Request, service: Any, subject: str, csrf: str, as_of: str,
                  act: Callable[[Any, Session, pd.Timestamp], str]) -> Response:
    """A credit-review form (`serving.web.form_action` on the reviews page)."""
    return form_action(request, service, ("credit",), csrf, as_of, act, reviews_page, "/credit-reviews", subject)


@router.post("/credit-reviews/open")
@page
def open_review(request: Request, service: Service, csrf: Annotated[str, Form()] = "",
                as_of: Annotated[str, Form()] = "", customer_id: Annotated[str, Form()] = "",
                note: Annotated[str, Form()] = "") -> Response:
    """Open a review for a candidate with the day's figures (credit)."""
    def act(state: Any, session: Session, when: pd.Timestamp) -> str:
        review = opened(state, session.principal.user, customer_id, when.date(), note, None)
        return f"review {review['item_id']} opened for {customer_id}"

    return review_action(request, service, customer_id, csrf, as_of, act)


@router.post("/credit-reviews/{item_id}/decide")
@page
def decide_review(request: Request, service: Service, item_id: str, csrf: Annotated[str, Form()] = "",
                  as_of: Annotated[str, Form()] = "", version: Annotated[str, Form()] = "",
                  decision: Annotated[str, Form()] = "", limit: Annotated[str, Form()] = "",
                  note: Annotated[str, Form()] = "") -> Response:
    """Record the analyst's decision: approve, change to the limit typed, or credit hold (credit)."""
    def act(state: Any, session: Session, when: pd.Timestamp) -> str:
        if not version.strip().isdigit():
            raise BadRequest(f"version {version[:20]!r} is not a number: reload the page")
        typed = limit.replace(",", "").replace(" ", "") or None
        review = decided(state, session.principal.user, item_id, int(version), decision, typed, when.date(),
                         note or None)
        return f"review {item_id}: {decision.replace('_', ' ')}, limit {float(review['decided_amount']):,.2f}"

    return review_action(request, service, item_id, csrf, as_of, act)
