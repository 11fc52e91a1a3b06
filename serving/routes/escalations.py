"""The escalations queue over the API (issue 21): the accounts the escalation rules send to a manager at a
date, ranked by the deterioration probability, with the escalations recorded; opening one (collector: its own
portfolio; manager) and the manager's decision (manager only: keep chasing, hand to legal, credit hold, write-off
proposal), recorded in the activity store (`queue_items`, queue `escalation`) with the audit chain. A live
(not closed) escalation shows on the customer page and in the worklist's `escalation` column."""

from __future__ import annotations

import datetime
import json
from functools import cache
from typing import Literal

import pandas as pd
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ledger.errors import BadInput, NotFound
from queues.escalations import (
    DECISIONS,
    QUEUE,
    EscalationPolicy,
    escalation_queue,
    live_escalations,
    load_escalation_policy,
    opening_fields,
)
from queues.sla import SlaPolicy, due_date, load_sla_policy
from serving import access
from serving.auth import Principal
from serving.deps import CollectorOrManager, Manager, ScopesFirstRoute, State, recording_time
from serving.schemas import IdInPath, IdInQuery, Row, Rows, plain
from serving.views import ServingState

router = APIRouter(prefix="/escalations", tags=["escalations"], route_class=ScopesFirstRoute)
RECORD_FIELDS = ("item_id", "status", "decision", "decided_date", "due_date", "opened_date", "version", "note")


@cache
def policies() -> tuple[EscalationPolicy, SlaPolicy]:
    """The escalation and SLA policies the service works with (the shipped defaults, read once)."""
    return load_escalation_policy(), load_sla_policy()


class EscalationRow(Row):
    """A customer the rules escalate (rank, reasons, evidence, probability) and/or its recorded escalation
    (item_id, status, decision, owner, SLA due date and whether it is breached)."""

    customer_id: str | None = None
    item_id: str | None = None
    status: str | None = None


class EscalationOpenIn(BaseModel):
    """Open the escalation of `customer_id` with the reasons the rules give at `opened_date` (the service's
    day when left out)."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=64)
    opened_date: datetime.date | None = None
    note: str = Field("", max_length=2000)


class EscalationDecisionIn(BaseModel):
    """The manager's decision on `decided_date`, given the version read; `close` also closes the escalation."""

    model_config = ConfigDict(extra="forbid")

    expected_version: int = Field(ge=1)
    decision: Literal["keep_chasing", "legal", "credit_hold", "write_off_proposal"]
    decided_date: datetime.date
    close: bool = False
    note: str | None = Field(None, max_length=2000)


def readable(record: dict) -> dict:
    """A store record with its `details` JSON text as an object."""
    details = record.get("details")
    return {**record, "details": json.loads(details) if isinstance(details, str) and details else {}}


_CANDIDATES: dict[tuple, pd.DataFrame] = {}


def candidates_at(state: ServingState, when: pd.Timestamp) -> pd.DataFrame:
    """The escalation candidates at `when` on the ledger with what was recorded, ranked by the day's
    deterioration probabilities; kept until something new is recorded (the last date asked only)."""
    key = (state, pd.Timestamp(when), state.audit_mark())  # the state itself: an id could be reused
    cached = _CANDIDATES.get(key)
    if cached is None:
        policy, _ = policies()
        cached = escalation_queue(state.ledger, when, state.view(when).customers, policy)
        _CANDIDATES.clear()
        _CANDIDATES[key] = cached
    return cached


def sla_breached(record: dict, when: pd.Timestamp) -> bool:
    """A live escalation is breached from the day after its due date."""
    return record.get("status") == "open" and pd.Timestamp(record["due_date"]) < when


def queue_rows(candidates: pd.DataFrame, records: list[dict], when: pd.Timestamp, recorded_only: bool = False) -> list[dict]:
    """The candidates in rank order, each with its live escalation's fields, then the live escalations whose
    customer no rule escalates any more (still the manager's to decide or close)."""
    live = live_escalations(records)
    rows = []
    if not recorded_only:
        for candidate in candidates.to_dict("records"):
            row = {key: plain(value) for key, value in candidate.items()}
            rows.append(with_record(row, live.get(candidate["customer_id"]), when))
    shown = {row["customer_id"] for row in rows}
    for customer_id, record in live.items():
        if customer_id not in shown:
            details = readable(dict(record))["details"]
            rows.append(with_record({"rank": None, "customer_id": customer_id, "reason_code": record["reason_code"],
                                     "reasons": details.get("reasons", []), "evidence": details.get("evidence", {}),
                                     "deterioration_probability": details.get("deterioration_probability"),
                                     "owner": record["owner"]}, record, when))
    return rows


def with_record(row: dict, record: dict | None, when: pd.Timestamp) -> dict:
    if record is None:
        return row
    return {**row, **{key: record.get(key) for key in RECORD_FIELDS}, "owner": record["owner"],
            "sla_breached": sla_breached(record, when)}


def visible_escalations(principal: Principal, state: ServingState, customer_id: str | None = None) -> list[dict]:
    """The escalation records the principal may see (403 for a customer it may not)."""
    if customer_id is not None:
        access.check_customer(principal, state, customer_id)
    return access.visible_records(state.store.list_queue_items(queue=QUEUE, customer_id=customer_id),
                                  access.visible_customers(principal, state))


def rows_for(principal: Principal, state: ServingState, when: pd.Timestamp, recorded_only: bool = False,
             customer_id: str | None = None) -> list[dict]:
    """The principal's escalations queue at `when`."""
    visible = access.visible_customers(principal, state)
    candidates = access.visible_rows(candidates_at(state, when), visible)
    if customer_id is not None:
        candidates = candidates[candidates["customer_id"] == customer_id]
    return queue_rows(candidates, visible_escalations(principal, state, customer_id), when, recorded_only)


def open_escalation(principal: Principal, state: ServingState, customer_id: str, when: pd.Timestamp,
                    note: str = "", idempotency_key: str | None = None) -> dict:
    """Record the escalation of `customer_id` at `when` with every reason the rules give that day (404 for a
    customer the ledger lacks, 400 when no rule fires; 409 while one is live)."""
    access.check_customer(principal, state, customer_id)
    if not state.base_ledger.customers["customer_id"].eq(customer_id).any():
        raise NotFound(f"customer {customer_id!r} is not in the ledger")
    _, sla = policies()
    candidates = candidates_at(state, when)
    row = candidates[candidates["customer_id"] == customer_id]
    if row.empty:
        raise BadInput(f"no escalation rule fires for {customer_id} on {when:%Y-%m-%d}")
    fields = opening_fields(row.iloc[0].to_dict(), when, due_date(sla, QUEUE, when), state.base_currency)
    written = state.store.open_queue_item(principal.user, **fields, note=note, idempotency_key=idempotency_key,
                                          now=recording_time())
    return readable(state.recorded(written))


def decide(principal: Principal, state: ServingState, item_id: str, expected_version: int, decision: str,
           decided_date: datetime.date, close: bool = False, note: str | None = None) -> dict:
    """Record the manager's decision on the escalation `item_id`; answers once the day's worklist shows it."""
    record = state.store.get_queue_item(item_id)
    if record["queue"] != QUEUE:
        raise BadInput(f"{item_id} is a {record['queue'].replace('_', ' ')}, not an escalation")
    if decision not in DECISIONS:
        raise BadInput(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    day = state.checked_date(decided_date, "decided_date")
    changes = {"status": "closed" if close else "decided", "decision": decision, "decided_date": day.date()}
    if note is not None:
        changes["note"] = note
    return readable(state.recorded(state.store.update_queue_item(principal.user, item_id, expected_version,
                                                                 now=recording_time(), **changes)))


@router.get("", response_model=Rows[EscalationRow], response_model_exclude_unset=True,
            summary="The escalations queue: candidates by deterioration probability, and those recorded "
                    "(collector, manager)")
def escalations(principal: CollectorOrManager, state: State, as_of: datetime.date | None = None,
                recorded_only: bool = Query(False, description="Only the live escalations recorded."),
                customer_id: IdInQuery = None) -> Rows[EscalationRow]:
    """Every customer an escalation rule sends to a manager at `as_of` (non-responsive, second broken promise,
    deteriorating with exposure, over the credit limit, an old item), highest deterioration probability first,
    with every reason and its evidence; a customer with a live escalation has its record's fields."""
    when = state.checked_as_of(as_of)
    rows = rows_for(principal, state, when, recorded_only, customer_id)
    return Rows[EscalationRow](as_of=when.date(), rows=rows, count=len(rows))


@router.post("", response_model=EscalationRow, response_model_exclude_unset=True, status_code=201,
             summary="Open the escalation of a customer the rules escalate (collector, manager)")
def open_one(request: EscalationOpenIn, principal: CollectorOrManager, state: State) -> dict:
    """The record names the manager of the customer's segment as owner, the first rule as reason code and
    every reason with its evidence in `details`; its SLA due date is from `configs/sla`. 400 when no rule
    fires for the customer that day, 409 while an escalation of it is live."""
    when = state.checked_as_of(request.opened_date, "opened_date")
    return open_escalation(principal, state, request.customer_id, when, request.note)


@router.post("/{item_id}/decision", response_model=EscalationRow, response_model_exclude_unset=True,
             summary="The manager's decision: keep chasing, legal, credit hold, write-off proposal (manager)")
def decision(item_id: IdInPath, request: EscalationDecisionIn, principal: Manager, state: State) -> dict:
    """409 when the record changed since `expected_version` was read; `close` closes it with the decision."""
    return decide(principal, state, item_id, request.expected_version, request.decision, request.decided_date,
                  request.close, request.note)


@router.get("/{item_id}", response_model=EscalationRow, response_model_exclude_unset=True,
            summary="One escalation with its reasons and evidence (collector, manager)")
def escalation(item_id: IdInPath, principal: CollectorOrManager, state: State) -> dict:
    record = state.store.get_queue_item(item_id)
    if record["queue"] != QUEUE:
        raise BadInput(f"{item_id} is a {record['queue'].replace('_', ' ')}, not an escalation")
    access.check_customer(principal, state, record["customer_id"])
    return readable(record)
