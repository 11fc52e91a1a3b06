"""The rules' reports: aging, the dunning proposal and the KPIs."""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from ledger.errors import BadInput
from serving import access
from serving.deps import AnyRole, Collector, CreditOrTreasury, ScopesFirstRoute, State
from serving.schemas import AgingRow, DunningRow, IdInQuery, KpiRow, Rows, records

router = APIRouter(tags=["rule reports"], route_class=ScopesFirstRoute)


@router.get("/aging", response_model=Rows[AgingRow], response_model_exclude_unset=True,
            summary="Aging by customer and bucket (collector, credit, treasury)")
def aging(principal: AnyRole, state: State, as_of: datetime.date | None = None,
          basis: Literal["due_date", "invoice_date"] = "due_date",
          currency: Literal["base", "document"] = "base") -> Rows[AgingRow]:
    from rules.aging import with_company_total

    when = state.checked_as_of(as_of)
    table = state.aging(when, basis=basis, currency=currency)
    # A collector's total is its portfolio's, not the company's.
    table = with_company_total(access.visible_rows(table, access.visible_customers(principal, state)))
    return Rows[AgingRow](as_of=when.date(), rows=records(table), count=len(table))


@router.get("/dunning", response_model=Rows[DunningRow], response_model_exclude_unset=True,
            summary="Dunning proposal (collector)")
def dunning(principal: Collector, state: State, as_of: datetime.date | None = None) -> Rows[DunningRow]:
    when = state.checked_as_of(as_of)
    table = state.dunning(when)
    table = access.visible_rows(table, access.visible_customers(principal, state))
    return Rows[DunningRow](as_of=when.date(), rows=records(table), count=len(table))


@router.get("/kpis", response_model=Rows[KpiRow], response_model_exclude_unset=True,
            summary="DSO, BPDSO, ADD, CEI and collection KPIs (credit, treasury)")
def kpis(principal: CreditOrTreasury, state: State, start: Annotated[datetime.date, Query(alias="from")],
         end: Annotated[datetime.date, Query(alias="to")], freq: Literal["month", "quarter"] = "month",
         customer_id: IdInQuery = None) -> Rows[KpiRow]:
    from rules.kpis import COMPANY, kpi_report

    start, end = state.checked_date(start, "from"), state.checked_date(end, "to")
    if end < start:
        raise BadInput("'to' must not be before 'from'")
    table = kpi_report(state.ledger, start, end, freq)
    table = table[table["customer_id"] == (customer_id or COMPANY)]
    return Rows[KpiRow](as_of=end.date(), rows=records(table), count=len(table))
