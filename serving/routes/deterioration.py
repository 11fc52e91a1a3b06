"""Customers flagged as deteriorating, with the evidence and the reasons."""

from __future__ import annotations

import datetime

from fastapi import APIRouter, Query

from serving.deps import Credit, ScopesFirstRoute, State
from serving.schemas import DeteriorationRow, Rows, records

router = APIRouter(prefix="/deterioration", tags=["deterioration"], route_class=ScopesFirstRoute)


@router.get("", response_model=Rows[DeteriorationRow], response_model_exclude_unset=True,
            summary="Deterioration flags with evidence (credit)")
def deterioration(principal: Credit, state: State, as_of: datetime.date | None = None, flagged_only: bool = True,
                  top: int | None = Query(None, ge=1, le=100_000)) -> Rows[DeteriorationRow]:
    when = state.checked_as_of(as_of)
    table = state.deterioration_flags(when, flagged_only=flagged_only, top=top)
    return Rows[DeteriorationRow](as_of=when.date(), rows=records(table), count=len(table))
