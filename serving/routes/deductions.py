"""The deductions queue over the API (issue 21): the queue, the short payments still to open, opening them,
the decisions and the report (collector: its own portfolio, via `serving.access`; cash: every customer).

A deduction is recorded in the activity store (`queue_items`); while it is open or in review it holds its
invoice out of dunning and the worklist (the store's ledger view makes it a dispute), a valid one closes its
rest with a write-off, an invalid one (re-billed) sends the rest back to collections."""

from __future__ import annotations

import datetime
import json
from functools import cache
from typing import Literal

import pandas as pd
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ledger.errors import BadInput
from queues.deductions import (
    DeductionPolicy,
    candidate_deductions,
    decision_changes,
    deduction_summary,
    item_frame,
    load_deduction_policy,
    open_by_age_and_reason,
    open_deductions,
    queue_rows,
)
from queues.sla import SlaPolicy, load_sla_policy
from serving import access
from serving.auth import Principal
from serving.deps import CollectorOrCash, ScopesFirstRoute, State, recording_time
from serving.schemas import IdInPath, IdInQuery, Row, Rows, records
from serving.views import ServingState

router = APIRouter(prefix="/deductions", tags=["deductions"], route_class=ScopesFirstRoute)
ACTIONS = ("in_review", "credit_memo", "write_off", "rebilled")


@cache
def policies() -> tuple[DeductionPolicy, SlaPolicy]:
    """The deductions and SLA policies the service works with (the shipped defaults, read once)."""
    return load_deduction_policy(), load_sla_policy()


class DeductionRecord(Row):
    """A deduction record: invoice, payment, amount, reason code, owner, status, decision, SLA due date."""

    item_id: str | None = None
    customer_id: str | None = None
    invoice_id: str | None = None
    status: str | None = None
    version: int | None = None


class DeductionOpenIn(BaseModel):
    """Open a deduction for every short payment found at `as_of` (the service's day when left out)."""

    model_config = ConfigDict(extra="forbid")

    as_of: datetime.date | None = None
    note: str = Field("", max_length=2000)


class DeductionsOpened(BaseModel):
    as_of: datetime.date
    opened: list[DeductionRecord]
    skipped: list[dict[str, str]]
    count: int


class DecisionIn(BaseModel):
    """A step of a deduction: `in_review`, or the decision (valid: `credit_memo` or `write_off`; invalid:
    `rebilled`) on `decided_date`, given the version read."""

    model_config = ConfigDict(extra="forbid")

    expected_version: int = Field(ge=1)
    decision: Literal["in_review", "credit_memo", "write_off", "rebilled"]
    decided_date: datetime.date | None = Field(None, description="Required with a decision; YYYY-MM-DD.")
    note: str | None = Field(None, max_length=2000)


class DeductionReport(BaseModel):
    """The queue's headline figures and its open deductions by reason code and age."""

    as_of: datetime.date
    open_count: int
    open_amount_base: float
    days_deduction_outstanding: float | None
    share_resolved_within_sla: float | None
    invalid_recovery_rate: float | None
    by_age_and_reason: list[Row]


def readable(record: dict) -> dict:
    """A store record with its `details` JSON text as an object."""
    details = record.get("details")
    return {**record, "details": json.loads(details) if isinstance(details, str) and details else {}}


def visible_deductions(principal: Principal, state: ServingState, customer_id: str | None = None) -> list[dict]:
    """The deduction records the principal may see (403 for a customer it may not)."""
    if customer_id is not None:
        access.check_customer(principal, state, customer_id)
    return access.visible_records(state.store.list_queue_items(queue="deduction", customer_id=customer_id),
                                  access.visible_customers(principal, state))


def candidates_for(principal: Principal, state: ServingState, when: pd.Timestamp) -> pd.DataFrame:
    """The short payments at `when` not yet recorded as deductions, of the customers the principal sees."""
    deduction_policy, sla_policy = policies()
    table = candidate_deductions(state.ledger, when, deduction_policy, sla_policy)
    return access.visible_rows(table, access.visible_customers(principal, state))


def open_for(principal: Principal, state: ServingState, when: pd.Timestamp, note: str = "") -> tuple[list, list]:
    """Open the principal's candidates at `when`: (opened records, skipped with the reason)."""
    opened, skipped = open_deductions(state.store, principal.user, candidates_for(principal, state, when),
                                      now=recording_time(), note=note)
    if opened:
        state.recorded(opened[-1])
    return [readable(record) for record in opened], skipped


def decide(principal: Principal, state: ServingState, item_id: str, expected_version: int, decision: str,
           decided_date: datetime.date | None, note: str | None) -> dict:
    """Record a step of the deduction `item_id` (403 outside the principal's customers); answers once the
    day's worklist shows it."""
    record = state.store.get_queue_item(item_id)
    if record["queue"] != "deduction":
        raise BadInput(f"{item_id} is a {record['queue'].replace('_', ' ')}, not a deduction")
    access.check_customer(principal, state, record["customer_id"])
    if decision != "in_review" and decided_date is None:
        raise BadInput("decided_date is required with a decision")
    day = state.checked_as_of(decided_date, "decided_date") if decided_date is not None else None
    changes = decision_changes(decision, day)
    if note is not None:
        changes["note"] = note
    return readable(state.recorded(state.store.update_queue_item(principal.user, item_id, expected_version,
                                                                 now=recording_time(), **changes)))


def report_for(principal: Principal, state: ServingState, when: pd.Timestamp) -> dict:
    """The report on the deductions of the principal's customers at `when`."""
    items = item_frame(visible_deductions(principal, state), state.ledger)
    return {**deduction_summary(items, state.ledger, when), "as_of": when.date(),
            "by_age_and_reason": records(open_by_age_and_reason(items, when))}


@router.get("", response_model=Rows[DeductionRecord], response_model_exclude_unset=True,
            summary="The deductions queue: live deductions, most overdue first (collector, cash)")
def deduction_queue(principal: CollectorOrCash, state: State, as_of: datetime.date | None = None,
                    status: str | None = Query(None, pattern="^(open|in_review|valid|invalid)$"),
                    customer_id: IdInQuery = None) -> Rows[DeductionRecord]:
    """The deductions opened by `as_of`: the live ones (open, in review), or those of `status`, each with its
    age and whether its SLA is breached at `as_of`."""
    when = state.checked_as_of(as_of)
    rows = [readable(row) for row in queue_rows(visible_deductions(principal, state, customer_id), when, status)]
    return Rows[DeductionRecord](as_of=when.date(), rows=rows, count=len(rows))


@router.get("/candidates", response_model=Rows[Row], response_model_exclude_unset=True,
            summary="Short payments not yet recorded as deductions (collector, cash)")
def deduction_candidates(principal: CollectorOrCash, state: State, as_of: datetime.date | None = None) -> Rows[Row]:
    """Each payment that left a deduction-sized rest on an invoice still open at `as_of`, with the reason
    code from its memo line, the owner and the SLA due date."""
    when = state.checked_as_of(as_of)
    rows = records(candidates_for(principal, state, when))
    return Rows[Row](as_of=when.date(), rows=rows, count=len(rows))


@router.post("/open", response_model=DeductionsOpened, status_code=201,
             summary="Open a deduction for every short payment found (collector, cash)")
def open_candidates(request: DeductionOpenIn, principal: CollectorOrCash, state: State) -> dict:
    """Idempotent: a short payment with a live deduction is skipped, so a second call opens nothing."""
    when = state.checked_as_of(request.as_of)
    opened, skipped = open_for(principal, state, when, request.note)
    return {"as_of": when.date(), "opened": opened, "skipped": skipped, "count": len(opened)}


@router.get("/report", response_model=DeductionReport,
            summary="Open deductions by age and reason, days outstanding, SLA and recovery (collector, cash)")
def deduction_report(principal: CollectorOrCash, state: State, as_of: datetime.date | None = None) -> dict:
    """Days deduction outstanding = open deduction amount / deductions opened over the 90 days to `as_of` x 90;
    the share decided within SLA; the recovery rate of invalid deductions (received on the invoice after the
    decision / the invalid amount)."""
    return report_for(principal, state, state.checked_as_of(as_of))


@router.get("/{item_id}", response_model=DeductionRecord, response_model_exclude_unset=True,
            summary="One deduction with its evidence (collector, cash)")
def deduction(item_id: IdInPath, principal: CollectorOrCash, state: State) -> dict:
    record = state.store.get_queue_item(item_id)
    access.check_customer(principal, state, record["customer_id"])
    return readable(record)


@router.post("/{item_id}/decision", response_model=DeductionRecord, response_model_exclude_unset=True,
             summary="Review a deduction, or decide it valid (credit memo, write-off) or invalid (re-billed)")
def deduction_decision(item_id: IdInPath, decision: DecisionIn, principal: CollectorOrCash, state: State) -> dict:
    """409 when the record changed since `expected_version` was read; 400 for a step its status does not
    allow (a decision on a decided deduction)."""
    return decide(principal, state, item_id, decision.expected_version, decision.decision, decision.decided_date,
                  decision.note)
