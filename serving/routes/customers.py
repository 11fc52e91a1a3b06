"""One customer: its open items scored, its deterioration risk, aging, KPIs and worklist row."""

from __future__ import annotations

import datetime

from fastapi import APIRouter

from serving import access
from serving.deps import CollectorOrCredit, ScopesFirstRoute, State
from serving.schemas import CustomerRisk, CustomerView, IdInPath, plain, records

router = APIRouter(prefix="/customers", tags=["customers"], route_class=ScopesFirstRoute)


@router.get("/{customer_id}/risk", response_model=CustomerRisk, response_model_exclude_unset=True,
            summary="One customer's open items scored with reasons, and its deterioration risk (collector, credit)")
def customer_risk(customer_id: IdInPath, principal: CollectorOrCredit, state: State,
                  as_of: datetime.date | None = None) -> CustomerRisk:
    access.check_customer(principal, state, customer_id)
    risk = state.customer_risk(customer_id, state.checked_as_of(as_of))
    return CustomerRisk(as_of=risk["as_of"].date(), customer_id=customer_id,
                        deterioration_probability=plain(risk["deterioration_probability"]),
                        deteriorating=risk["deteriorating"], deterioration_reasons=risk["deterioration_reasons"],
                        open_items=records(risk["open_items"]))


@router.get("/{customer_id}", response_model=CustomerView, response_model_exclude_unset=True,
            summary="One customer: open items, aging, risk, explanation, KPIs (collector, credit)")
def customer(customer_id: IdInPath, principal: CollectorOrCredit, state: State,
             as_of: datetime.date | None = None) -> CustomerView:
    access.check_customer(principal, state, customer_id)
    view = state.customer(customer_id, state.checked_as_of(as_of))
    row = view["worklist"]
    return CustomerView(
        **{key: plain(view[key]) for key in ("customer_id", "name", "segment", "collector", "credit_limit",
                                             "deterioration_probability", "deteriorating")},
        as_of=view["as_of"].date(), deterioration_reasons=view["deterioration_reasons"],
        deterioration_contributions=view["deterioration_contributions"],
        worklist=records(row)[0] if len(row) else None, open_items=records(view["open_items"]),
        aging=records(view["aging"]), kpis=records(view["kpis"]))
