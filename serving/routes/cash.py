"""Cash application (issue 20): the matcher's proposals for unapplied payments, and a cash-application
user's confirmations, changes and rejections, recorded in the activity store with the audit chain. A recorded
application joins the ledger the service answers from: the next worklist, aging and scores see the invoice
paid, and the payer's name and account identify the customer next time."""

from __future__ import annotations

import datetime

import pandas as pd
from fastapi import APIRouter, Query

from cash_application.confirm import checked_lines, payment_facts, proposal_lines
from ledger.errors import ArRiskError, NotFound
from serving.deps import Cash, ScopesFirstRoute, State, recording_time
from serving.routes.activity import IdempotencyKey, checked_idempotency_key
from serving.schemas import (
    CashApplicationIn,
    CashAutoResult,
    CashProposal,
    CashRecorded,
    CashRejectionIn,
    IdInQuery,
    Rows,
    plain,
)
from serving.views import ServingState

router = APIRouter(prefix="/cash", tags=["cash application"], route_class=ScopesFirstRoute)
DECISIONS = ("auto", "proposed", "unmatched")


def proposal_rows(proposals: pd.DataFrame, decision: str | None) -> list[dict]:
    """One row per payment, its lines nested, largest payment first."""
    rows = []
    for payment_id, lines in proposals.groupby("payment_id", sort=False):
        first = lines.iloc[0]
        if decision is not None and first["decision"] != decision:
            continue
        applied = lines.dropna(subset=["invoice_id"])
        rows.append({
            "payment_id": payment_id, "received_date": plain(first["received_date"]),
            "payment_amount": plain(first["payment_amount"]), "currency": first["currency"],
            "customer_id": plain(first["customer_id"]), "identified_by": first["identified_by"],
            "decision": first["decision"], "confidence": plain(first["confidence"]), "rule": plain(first["rule"]),
            "residual": plain(first["residual"]), "deduction_reason": plain(first["deduction_reason"]),
            "reason": plain(first["reason"]),
            "lines": [{"invoice_id": row.invoice_id, "customer_id": row.customer_id, "amount": plain(row.amount)}
                      for row in applied.itertuples(index=False)],
        })
    return sorted(rows, key=lambda row: -(row["payment_amount"] or 0.0))


def with_rejections(rows: list[dict], recorded: list[dict]) -> list[dict]:
    """The rows with `rejected_by` and `rejection_note` where a user rejected the payment's proposal."""
    rejected = {line["payment_id"]: line for line in recorded if line["decision"] == "rejected"}
    for row in rows:
        if row["payment_id"] in rejected:
            row["rejected_by"] = rejected[row["payment_id"]]["created_by"]
            row["rejection_note"] = rejected[row["payment_id"]]["note"]
    return rows


def record(state: ServingState, user: str, payment_id: str, lines: list[tuple[str, float]], decision: str,
           when: pd.Timestamp, note: str, key: str | None) -> dict:
    """Check the lines against the ledger served, record them, and answer once the day's views show them."""
    payment, checked = checked_lines(state.ledger, payment_id, lines, when)
    written = state.store.record_cash_application(user, payment=payment, lines=checked, decision=decision,
                                                  applied_date=when.date(), note=note, idempotency_key=key,
                                                  now=recording_time())
    return state.recorded(written)


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
    if application.lines is None:
        _, table = state.cash_proposals(when.date())
        lines, decision = proposal_lines(table, application.payment_id), "confirmed"
        if not lines:
            raise NotFound(f"payment {application.payment_id!r} has no proposal on {when:%Y-%m-%d}; give the lines")
    else:
        lines, decision = [(line.invoice_id, float(line.amount)) for line in application.lines], "changed"
    return record(state, principal.user, application.payment_id, lines, decision, when, application.note, key)


@router.post("/auto", response_model=CashAutoResult, status_code=201,
             summary="Record every `auto` decision of the day as applied (cash)")
def apply_automatic(principal: Cash, state: State, as_of: datetime.date | None = None) -> dict:
    """The payments the matcher clears without review (confidence from the policy's `auto_threshold`) are
    recorded as applied, audited under the caller's name with decision `auto`, one payment per transaction;
    a payment the ledger or the store no longer allows is listed under `refused` with the reason."""
    when, table = state.cash_proposals(as_of)
    written, refused = [], []
    for payment_id in table.loc[table["decision"] == "auto", "payment_id"].unique():
        try:
            written.append(record(state, principal.user, payment_id, proposal_lines(table, payment_id), "auto",
                                  when, "applied automatically by the matcher", None))
        except ArRiskError as error:
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
    return written


@router.get("/applications", response_model=Rows[CashProposal], response_model_exclude_unset=True,
            summary="Recorded cash applications and rejections (cash)")
def list_applications(principal: Cash, state: State, payment_id: IdInQuery = None,
                      customer_id: IdInQuery = None) -> Rows[CashProposal]:
    rows = state.store.list_cash_applications(customer_id, payment_id=payment_id)
    return Rows[CashProposal](as_of=None, rows=rows, count=len(rows))
