"""Cash application for the API and the web pages alike: the matcher's proposals as one row per payment,
with the rejections users recorded, and a user's application checked against the ledger served, then
recorded in the activity store."""

from __future__ import annotations

import pandas as pd

from cash_application.confirm import checked_lines, proposed_deduction
from serving.deps import recording_time
from serving.schemas import plain
from serving.views import ServingState


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
           when: pd.Timestamp, note: str, key: str | None, proposals: pd.DataFrame | None = None) -> dict:
    """Check the lines against the ledger served, record them, and answer once the day's views show them.
    Applying the matcher's proposal (`proposals` given) for a payment it found short by a deduction also
    opens a deduction (issue 21) for what the last document is left short, its reason code from the memo
    line's keywords, so the rest is worked, not chased."""
    payment, checked = checked_lines(state.ledger, payment_id, lines, when)
    written = state.store.record_cash_application(user, payment=payment, lines=checked, decision=decision,
                                                  applied_date=when.date(), note=note, idempotency_key=key,
                                                  now=recording_time())
    deduction = proposed_deduction(proposals, payment_id) if proposals is not None else None
    if deduction is not None:
        reason, short = deduction
        last = checked[-1]
        written["deduction"] = open_short_payment(state, user, payment, last, reason, short, when)
    return state.recorded(written)


def open_short_payment(state: ServingState, user: str, payment: dict, last: dict, matcher_reason: str,
                       short: float, when: pd.Timestamp) -> dict:
    """The deduction opened for the rest a confirmed short payment leaves on its last document: reason code
    from the payment's memo line, owner by reason and segment, due by the SLA of the reason code."""
    from queues.deductions import deduction_fields, load_deduction_policy
    from queues.sla import load_sla_policy

    payments = state.ledger.payments.set_index("payment_id")
    memo = payments["remittance_text"].get(payment["payment_id"]) if "remittance_text" in payments else None
    segment = state.ledger.customers.set_index("customer_id")["segment"].get(last["customer_id"])
    fields = deduction_fields(load_deduction_policy(), load_sla_policy(), memo, segment, when)
    return state.store.open_queue_item(
        user, queue="deduction", customer_id=last["customer_id"], invoice_id=last["invoice_id"],
        payment_id=payment["payment_id"], opened_date=when.date(), amount=f"{short:.2f}",
        currency=payment["currency"], details={"remittance_text": memo if isinstance(memo, str) else None,
                                               "matcher_reason": matcher_reason},
        now=recording_time(), **fields)
