"""A user's cash application checked against the ledger before it is recorded: the payment exists and is
still unapplied, every document exists, is in the payment's currency and still owes at least what is applied
to it, and the lines together apply no more than the payment brought.

The answer is what the activity store records (`ActivityStore.record_cash_application`): the payment's facts
and one line per document with its customer and the amount signed like the ledger's applications.
"""

from __future__ import annotations

import pandas as pd

from features.asof import known_at
from features.settlement import document_state
from ledger import Ledger
from ledger.errors import BadInput, Conflict, NotFound
from ledger.validation import TOLERANCE

# Short payments that are deductions to work (not a partial payment, which is simply still owed).
DEDUCTION_REASONS = ("short payment", "bank charges", "cash discount")


class ApplicationRefused(BadInput, ValueError):
    """A cash application the ledger does not allow (names the payment, document and what is wrong)."""


def payment_facts(ledger: Ledger, payment_id: str) -> dict:
    """What the store keeps of a payment: id, received date, amounts, currency and payer."""
    payments = ledger.payments[ledger.payments["payment_id"] == payment_id]
    if payments.empty:
        raise NotFound(f"payment {payment_id!r} is not in the ledger")
    row = payments.iloc[0]
    optional = {name: (row[name] if name in row and isinstance(row[name], str) else None)
                for name in ("payer_name", "payer_account")}
    return {"payment_id": payment_id, "received_date": pd.Timestamp(row["received_date"]).date(),
            "amount": round(float(row["amount"]), 2), "amount_base": round(float(row["amount_base"]), 2),
            "currency": row["currency"],
            "payer_customer_id": row["customer_id"] if isinstance(row["customer_id"], str) else None, **optional}


def checked_lines(ledger: Ledger, payment_id: str, lines: list[tuple[str, float]],
                  applied_date: pd.Timestamp) -> tuple[dict, list[dict]]:
    """The payment's facts and the lines (invoice_id, amount) as the store records them, after the checks
    of the module; `NotFound` for an unknown payment or document, `Conflict` for a payment the ledger has
    already applied, `ApplicationRefused` for the rest."""
    payment = payment_facts(ledger, payment_id)
    applied_date = pd.Timestamp(applied_date).normalize()
    if applied_date < pd.Timestamp(payment["received_date"]):
        raise ApplicationRefused(f"applied_date {applied_date:%Y-%m-%d} is before payment {payment_id}'s "
                                 f"received date {payment['received_date']}")
    if (ledger.payment_applications["payment_id"] == payment_id).any():
        raise Conflict(f"payment {payment_id!r} is already applied in the ledger")
    if not lines:
        raise ApplicationRefused("at least one line (invoice_id, amount) is required")
    invoice_ids = [invoice_id for invoice_id, _ in lines]
    repeated = sorted({invoice_id for invoice_id in invoice_ids if invoice_ids.count(invoice_id) > 1})
    if repeated:
        raise ApplicationRefused(f"documents named twice: {', '.join(repeated)}")
    state = document_state(known_at(ledger, applied_date), applied_date, TOLERANCE).set_index("invoice_id")
    currency = ledger.invoices.set_index("invoice_id")["currency"]
    checked = []
    for invoice_id, amount in lines:
        if invoice_id not in state.index:
            raise NotFound(f"document {invoice_id!r} is not in the ledger on {applied_date:%Y-%m-%d}")
        owed = float(state.at[invoice_id, "open_amount"])
        if currency[invoice_id] != payment["currency"]:
            raise ApplicationRefused(f"{invoice_id} is in {currency[invoice_id]}, payment {payment_id} in "
                                     f"{payment['currency']}")
        signed = abs(float(amount)) * (1 if owed >= 0 else -1)
        if abs(float(amount)) < 0.005 or abs(signed) > abs(owed) + TOLERANCE:
            raise ApplicationRefused(f"{invoice_id}: {abs(float(amount)):,.2f} applied, but it owes "
                                     f"{abs(owed):,.2f} on {applied_date:%Y-%m-%d}")
        checked.append({"invoice_id": invoice_id, "customer_id": state.at[invoice_id, "customer_id"],
                        "amount": round(signed, 2)})
    total = sum(line["amount"] for line in checked)
    if total > payment["amount"] + TOLERANCE:
        raise ApplicationRefused(f"the lines apply {total:,.2f}, more than payment {payment_id}'s "
                                 f"{payment['amount']:,.2f}")
    return payment, checked


def proposal_lines(proposals: pd.DataFrame, payment_id: str) -> list[tuple[str, float]]:
    """The (invoice_id, amount) lines of a payment's proposal from `apply_cash`'s output (empty when the
    payment is unmatched or not in it)."""
    rows = proposals[(proposals["payment_id"] == payment_id) & proposals["invoice_id"].notna()]
    return list(zip(rows["invoice_id"], rows["amount"].abs(), strict=True))


def automatic_payments(proposals: pd.DataFrame, recorded: list[dict]) -> list[str]:
    """The payments decided `auto` whose proposal no user has rejected (a live rejection in `recorded`)."""
    rejected = {line["payment_id"] for line in recorded if line["decision"] == "rejected"}
    automatic = proposals.loc[proposals["decision"] == "auto", "payment_id"].unique()
    return [payment_id for payment_id in automatic if payment_id not in rejected]


def proposed_deduction(proposals: pd.DataFrame, payment_id: str) -> tuple[str, float] | None:
    """(reason, amount) when the matcher found the payment short by a deduction; None otherwise."""
    rows = proposals[proposals["payment_id"] == payment_id]
    if rows.empty or rows["deduction_reason"].iat[0] not in DEDUCTION_REASONS:
        return None
    return rows["deduction_reason"].iat[0], round(-float(rows["residual"].iat[0]), 2)
