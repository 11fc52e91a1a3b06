"""One customer: its open items scored, its deterioration risk, aging, KPIs and worklist row."""

from __future__ import annotations

import datetime
import json

from fastapi import APIRouter, Response

from serving import access
from serving.deps import CollectorOrCredit, ScopesFirstRoute, State
from serving.schemas import CustomerRisk, CustomerView, IdInPath, plain, records

router = APIRouter(prefix="/customers", tags=["customers"], route_class=ScopesFirstRoute)


@router.get("/{customer_id}/risk", response_model=CustomerRisk, response_model_exclude_unset=True,
            summary="One customer's open items scored with reasons, and its deterioration risk (collector, credit)")
def customer_risk(customer_id: IdInPath, principal: CollectorOrCredit, state: State,
                  as_of: datetime.date | None = None) -> Response:
    access.check_customer(principal, state, customer_id)
    # The day's answer, less what recorded cash paid since: encoded once per customer and view.
    view = state.view(state.checked_as_of(as_of))
    body = view.encoded.get(("risk", customer_id))
    if body is None:
        body = json.dumps(view.risk_document(customer_id), allow_nan=False).encode()
        view.encoded[("risk", customer_id)] = body
    return Response(body, media_type="application/json")


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
