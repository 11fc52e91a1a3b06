"""Cash application (issue 20): the matcher's proposals for unapplied payments, and a cash-application
user's confirmations, changes and rejections, recorded in the activity store with the audit chain. A recorded
application joins the ledger the service answers from: the next worklist, aging and scores see the invoice
paid, and the payer's name and account identify the customer next time."""

from __future__ import annotations

import datetime

from fastapi import APIRouter, Query

from cash_application.confirm import automatic_payments, payment_facts, proposal_lines
from ledger.errors import ArRiskError, NotFound
from serving.cash import proposal_rows, record, with_rejections
from serving.deps import Cash, CashOrFinance, ScopesFirstRoute, State, recording_time
from serving.routes.activity import IdempotencyKey, checked_idempotency_key
from serving.schemas import (
    CashApplicationIn,
    CashAutoResult,
    CashProposal,
    CashRecorded,
    CashRejectionIn,
    IdInQuery,
    Row,
    Rows,
    records,
)

router = APIRouter(prefix="/cash", tags=["cash application"], route_class=ScopesFirstRoute)
@router.get("/proposals", response_model=Rows[CashProposal], response_model_exclude_unset=True,
            summary="Unapplied payments with the matcher's proposals, largest first (cash)")
def proposals(principal: Cash, state: State, as_of: datetime.date | None = None,
              decision: str | None = Query(None, pattern="^(auto|proposed|unmatched)$"),
              top: int | None = Query(None, ge=1, le=100_000)) -> Rows[CashProposal]:
    """Every payment received by `as_of` and not yet applied (in the ledger or the activity store), with the
    documents it pays, the confidence and the decision (`auto`, `proposed`, `unmatched` with the reason)."""
    when, table = state.cash_proposals(as_of)
    rows = with_rejections(proposal_rows(table, decision), state.store.list_cash_applications())[:top]
    return Rows[CashProposal](as_of=when.date(), rows=rows, count=len(rows))


@router.post("/applications", response_model=CashRecorded, status_code=201,
             summary="Confirm a proposal, or apply a payment to the documents given (cash)")
def apply_payment(application: CashApplicationIn, principal: Cash, state: State,
                  idempotency_key: IdempotencyKey = None) -> dict:
    """Without `lines`, the matcher's current proposal for the payment is confirmed as it is (404 when it has
    none); with them, they are recorded as a change. Refused (400) when a document owes less than applied or
    the lines apply more than the payment; 409 when the payment is already applied."""
    key = checked_idempotency_key(idempotency_key)
    when = state.checked_as_of(application.applied_date, "applied_date")
    table = None
    if application.lines is None:
        _, table = state.cash_proposals(when.date())
        lines, decision = proposal_lines(table, application.payment_id), "confirmed"
        if not lines:
            raise NotFound(f"payment {application.payment_id!r} has no proposal on {when:%Y-%m-%d}; give the lines")
    else:
        lines, decision = [(line.invoice_id, float(line.amount)) for line in application.lines], "changed"
    return record(state, principal.user, application.payment_id, lines, decision, when, application.note, key, table)


@router.post("/auto", response_model=CashAutoResult, status_code=201,
             summary="Record every `auto` decision of the day as applied (cash)")
def apply_automatic(principal: Cash, state: State, as_of: datetime.date | None = None) -> dict:
    """The payments the matcher clears without review (confidence from the policy's `auto_threshold`) are
    recorded as applied, audited under the caller's name with decision `auto`, one payment per transaction;
    a payment whose proposal a user rejected is left alone, and one the ledger or the store no longer allows
    is listed under `refused` with the reason."""
    when, table = state.cash_proposals(as_of)
    written, refused = [], []
    for payment_id in automatic_payments(table, state.store.list_cash_applications()):
        try:
            written.append(record(state, principal.user, payment_id, proposal_lines(table, payment_id), "auto",
                                  when, "applied automatically by the matcher", None, table))
        except ArRiskError as error:  # reported in the answer, one payment each
            refused.append({"payment_id": payment_id, "reason": str(error)})
    return {"as_of": when.date(), "rows": written, "count": len(written), "refused": refused}


@router.post("/rejections", response_model=CashRecorded, status_code=201,
             summary="Reject the matcher's proposal for a payment, with the reason (cash)")
def reject_proposal(rejection: CashRejectionIn, principal: Cash, state: State,
                    idempotency_key: IdempotencyKey = None) -> dict:
    key = checked_idempotency_key(idempotency_key)
    when = state.checked_as_of(rejection.applied_date, "applied_date")
    payment = payment_facts(state.ledger, rejection.payment_id)
    written = state.store.record_cash_application(principal.user, payment=payment, lines=[], decision="rejected",
                                                  applied_date=when.date(), note=rejection.note,
                                                  idempotency_key=key, now=recording_time())
    return state.recorded(written)


@router.get("/unapplied", response_model=Rows[Row], response_model_exclude_unset=True,
            summary="Unapplied cash: amount, age and reason per payment (cash, credit, treasury)")
def unapplied(principal: CashOrFinance, state: State, as_of: datetime.date | None = None) -> Rows[Row]:
    """Every payment, or rest of one, received by `as_of` and not applied to a document, oldest first, with
    the matcher's reason (would apply it, awaiting review, or why it is unmatched)."""
    from cash_application.unapplied import unapplied_cash

    when, table = state.cash_proposals(as_of)
    rows = records(unapplied_cash(state.ledger, when, table))
    return Rows[Row](as_of=when.date(), rows=rows, count=len(rows))


@router.get("/applications", response_model=Rows[CashProposal], response_model_exclude_unset=True,
            summary="Recorded cash applications and rejections (cash)")
def list_applications(principal: Cash, state: State, payment_id: IdInQuery = None,
                      customer_id: IdInQuery = None) -> Rows[CashProposal]:
    rows = state.store.list_cash_applications(customer_id, payment_id=payment_id)
    return Rows[CashProposal](as_of=None, rows=rows, count=len(rows))
