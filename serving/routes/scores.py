"""Invoice scores: P(late), bucket probabilities, expected days late, pay dates and reasons."""

from __future__ import annotations

from fastapi import APIRouter

from serving import access
from serving.deps import CollectorOrCredit, ScopesFirstRoute, State
from serving.schemas import Rows, ScoreRequest, ScoreRow, records

router = APIRouter(prefix="/score", tags=["scores"], route_class=ScopesFirstRoute)


@router.post("", response_model=Rows[ScoreRow], response_model_exclude_unset=True,
             summary="Score open invoices (collector, credit)")
def score(request: ScoreRequest, principal: CollectorOrCredit, state: State) -> Rows[ScoreRow]:
    """P(late), bucket probabilities, expected days late, pay date p10/p50/p90, P(unpaid in 30 days)
    and three reasons per open invoice."""
    as_of = state.checked_as_of(request.as_of)
    if request.invoice_ids is not None:
        access.check_invoices(principal, state, request.invoice_ids)
    table = state.score_invoices(as_of, request.invoice_ids, access.visible_customers(principal, state))
    return Rows[ScoreRow](as_of=as_of.date(), rows=records(table), count=len(table))
