"""The prioritised collection worklist."""

from __future__ import annotations

import datetime

from fastapi import APIRouter, Query

from serving import access
from serving.deps import Collector, ScopesFirstRoute, State
from serving.schemas import IdInQuery, Rows, WorklistRow, records

router = APIRouter(prefix="/worklist", tags=["worklist"], route_class=ScopesFirstRoute)


@router.get("", response_model=Rows[WorklistRow], response_model_exclude_unset=True,
            summary="The prioritised collection worklist (collector)")
def worklist(principal: Collector, state: State, as_of: datetime.date | None = None, collector: IdInQuery = None,
             segment: IdInQuery = None, top: int | None = Query(None, ge=1, le=100_000)) -> Rows[WorklistRow]:
    """Customers to chase with money at risk, next dunning action and reasons. A collector's token
    sees its own portfolio; a team lead's (or `all_portfolios`) any `collector`'s, its own by default."""
    access.check_collector(principal, collector)
    when = state.checked_as_of(as_of)
    visible = access.visible_customers(principal, state)
    collector = (collector or principal.collector) if visible is None else None
    table = state.worklist(when, collector=collector, segment=segment, top=top, customers=visible)
    return Rows[WorklistRow](as_of=when.date(), rows=records(table), count=len(table))
