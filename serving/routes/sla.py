"""SLA clocks on every work queue over the API (issue 21, point 4): per record its due date, whether it is
breached at `as_of` (the day after its due date, while open or when closed late) and its turnaround, and a
report per owner or team (any role; a collector sees the records of its own portfolio)."""

from __future__ import annotations

import datetime

import pandas as pd
from fastapi import APIRouter, Query
from pydantic import BaseModel

from queues.sla import clock_records, sla_clocks, sla_report
from serving import access
from serving.auth import Principal
from serving.deps import QueueRole, ScopesFirstRoute, State
from serving.routes.deductions import policies
from serving.schemas import Row, records
from serving.views import ServingState

router = APIRouter(prefix="/sla", tags=["SLA clocks"], route_class=ScopesFirstRoute)


class SlaAnswer(BaseModel):
    """The turnaround report per owner or team and queue, and the clock of each record."""

    as_of: datetime.date
    by: str
    rows: list[Row]
    records: list[Row]
    count: int


def clocks_for(principal: Principal, state: ServingState, when: pd.Timestamp, queue: str | None = None) -> pd.DataFrame:
    """The SLA clock at `when` of every record of the principal's customers: the store's disputes and queue
    items (of `queue` only, when given)."""
    visible = access.visible_customers(principal, state)
    disputes = access.visible_records(state.store.list_disputes(), visible)
    items = access.visible_records(state.store.list_queue_items(), visible)
    clocks = sla_clocks(clock_records(disputes, items, policies()[1]), when, policies()[1])
    return clocks if queue is None else clocks[clocks["queue"] == queue]


def sla_answer(principal: Principal, state: ServingState, when: pd.Timestamp, by: str, queue: str | None) -> dict:
    clocks = clocks_for(principal, state, when, queue)
    return {"as_of": when.date(), "by": by, "rows": records(sla_report(clocks, by)), "records": records(clocks),
            "count": len(clocks)}


@router.get("", response_model=SlaAnswer, summary="SLA clocks and turnaround per owner or team (any role)")
def sla(principal: QueueRole, state: State, as_of: datetime.date | None = None,
        by: str = Query("owner", pattern="^(owner|team)$"),
        queue: str | None = Query(None, pattern="^(dispute|deduction|escalation|credit_review)$")) -> dict:
    """Per owner (or team) and queue: records, open, breached open, median turnaround days and the share
    closed within SLA; and each record's clock: due date, closed date, breached, days open."""
    return sla_answer(principal, state, state.checked_as_of(as_of), by, queue)
