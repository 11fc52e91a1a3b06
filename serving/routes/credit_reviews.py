"""The credit reviews queue over the API (issue 21): the queue with each row's recommended limit, its formula
and inputs; opening a review; the analyst's decision (credit). The pure logic is `queues.credit_reviews`;
the functions below the routes are what the API and the web page share: the day's review table from the
ledger served (with what the store recorded: a decided limit is the customer's limit from then on) and the
day's deterioration scores, and the writes, checked and answered once the day's views show them."""

from __future__ import annotations

import datetime
import functools
import json
from typing import Literal

import pandas as pd
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ledger.errors import BadInput, NotFound
from queues.credit_reviews import (
    QUEUE,
    CreditReviewPolicy,
    credit_review_table,
    decision_changes,
    load_credit_review_policy,
    opening_fields,
    review_candidates,
    review_queue,
)
from queues.sla import SlaPolicy, load_sla_policy
from serving.deps import Credit, ScopesFirstRoute, State, recording_time
from serving.routes.activity import IdempotencyKey, checked_idempotency_key
from serving.schemas import Id, IdInPath, Row, Rows, Text
from serving.views import ServingState

router = APIRouter(prefix="/credit-reviews", tags=["credit reviews"], route_class=ScopesFirstRoute)


class CreditReviewIn(BaseModel):
    """Open a review for a customer with a trigger on `opened_date` (default: the service's day)."""

    model_config = ConfigDict(extra="forbid")
    customer_id: Id
    opened_date: datetime.date | None = None
    note: Text = ""


class CreditDecisionIn(BaseModel):
    """The analyst's decision: approve the recommended limit, change it to `limit`, or put on credit hold."""

    model_config = ConfigDict(extra="forbid")
    expected_version: int = Field(ge=1, description="The version you read; a newer one answers 409.")
    decision: Literal["approve", "change", "credit_hold"]
    limit: float | None = Field(None, ge=0, description="The limit set, with `change` only.")
    decided_date: datetime.date | None = None
    note: Text | None = None


@router.get("", response_model=Rows[Row], response_model_exclude_unset=True,
            summary="The credit team's queue: recorded reviews, then candidates, with the recommended limit (credit)")
def queue(principal: Credit, state: State, as_of: datetime.date | None = None,
          kind: str | None = Query(None, pattern="^(recorded|candidate)$")) -> Rows[Row]:
    """Every recorded review (newest first) with its candidate figures of the day under `today`, then each
    customer with a trigger on `as_of` (deteriorating, near its limit, new) and no open review, most likely
    to deteriorate first; each with the recommended limit, the formula with its numbers and its inputs."""
    when, rows = queue_rows(state, as_of)
    rows = [row for row in rows if kind is None or row["kind"] == kind]
    return Rows[Row](as_of=when.date(), rows=rows, count=len(rows))


@router.get("/{item_id}", response_model=Row, summary="One credit review with its audit fields (credit)")
def get_review(item_id: IdInPath, principal: Credit, state: State) -> dict:
    return shown(checked_review(state, item_id))


@router.post("", response_model=Row, status_code=201, summary="Open a credit review for a customer (credit)")
def open_review(review: CreditReviewIn, principal: Credit, state: State,
                idempotency_key: IdempotencyKey = None) -> dict:
    """The customer's reason code (its first trigger), recommended limit and formula inputs of `opened_date`
    are recorded, due by the SLA; 400 when the customer has no trigger that day, 409 while one is open."""
    key = checked_idempotency_key(idempotency_key)
    return shown(opened(state, principal.user, review.customer_id, review.opened_date, review.note, key))


@router.post("/{item_id}/decision", response_model=Row, summary="Decide a credit review (credit)")
def decide_review(item_id: IdInPath, decision: CreditDecisionIn, principal: Credit, state: State) -> dict:
    """approve sets the recommended limit, change the `limit` given, credit_hold a limit of 0; the decided
    limit is the customer's credit limit in the features and the worklist from the next read on."""
    return shown(decided(state, principal.user, item_id, decision.expected_version, decision.decision,
                         decision.limit, decision.decided_date, decision.note))


# ---- shared with the web page ---------------------------------------------------------------------------

@functools.cache
def policies() -> tuple[CreditReviewPolicy, SlaPolicy]:
    """The shipped credit-review and SLA policies, read once."""
    return load_credit_review_policy(), load_sla_policy()


def review_table(state: ServingState, as_of: datetime.date | None) -> tuple[pd.Timestamp, pd.DataFrame]:
    """The day's review table (`queues.credit_reviews.credit_review_table`): the ledger served with its
    recorded activity, and the day's deterioration scores."""
    when = state.checked_as_of(as_of)
    risk = state.view(when, actions=False).customers
    return when, credit_review_table(state.ledger, when, risk, policies()[0])


def queue_rows(state: ServingState, as_of: datetime.date | None) -> tuple[pd.Timestamp, list[dict]]:
    """The queue of `as_of`: recorded reviews with their details read, then the candidates."""
    when, table = review_table(state, as_of)
    rows = review_queue(review_candidates(table), state.store.list_queue_items(QUEUE))
    return when, [shown(row) if row["kind"] == "recorded" else row for row in rows]


def shown(record: dict) -> dict:
    """A recorded review with its details as an object, not JSON text."""
    details = record.get("details")
    return {**record, "details": json.loads(details) if isinstance(details, str) and details else details or {}}


def checked_review(state: ServingState, item_id: str) -> dict:
    """The record `item_id`, if it is a credit review (404 otherwise)."""
    record = state.store.get_queue_item(item_id)
    if record["queue"] != QUEUE:
        raise NotFound(f"{item_id} is not a credit review")
    return record


def opened(state: ServingState, user: str, customer_id: str, opened_date: datetime.date | None, note: str,
           key: str | None) -> dict:
    """Open the customer's review with the figures of `opened_date` (the service's day when None)."""
    when, table = review_table(state, opened_date)
    row = table[table["customer_id"] == customer_id]
    if row.empty:
        raise NotFound(f"customer {customer_id!r} is not known on {when:%Y-%m-%d}")
    fields = opening_fields(row.iloc[0].to_dict(), when, policies()[0], policies()[1], state.base_currency)
    return state.recorded(state.store.open_queue_item(user, **fields, note=note, idempotency_key=key,
                                                      now=recording_time()))


def decided(state: ServingState, user: str, item_id: str, expected_version: int, decision: str,
            limit: float | str | None, decided_date: datetime.date | None, note: str | None) -> dict:
    """Record the decision on an open review, dated `decided_date` (the service's day when None)."""
    review = checked_review(state, item_id)
    when = state.checked_as_of(decided_date, "decided_date")
    if when.date() < datetime.date.fromisoformat(str(review["opened_date"])):
        raise BadInput(f"decided_date: {when:%Y-%m-%d} is before the review was opened ({review['opened_date']})")
    changes = decision_changes(review, decision, when, limit=limit, note=note)
    return state.recorded(state.store.update_queue_item(user, item_id, expected_version, now=recording_time(),
                                                        **changes))
