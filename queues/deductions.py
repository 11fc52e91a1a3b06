"""Deductions (issue 21, point 1): short payments found in the ledger, their reason code and owner, and the
reports on the deduction queue.

A short payment is a payment applied to an invoice that leaves a rest open on it: at most the policy's
`max_share` of the invoice, at least its `min_amount`, with no further payment for the invoice within
`wait_days` (a second instalment is not a deduction). The deduction opens the day the wait ends; it is a
candidate at `as_of` for the rest still open then (the short payment is the invoice's last payment, so only a
write-off can have lowered it since), unless the invoice is in open dispute or a deduction was recorded on it. The reason code comes from the payment's memo line (`remittance_text`), the owner
from the reason code and the customer's segment, the due date from the SLA of the reason code.

The records themselves live in the activity store (`queue_items`, queue "deduction"); the reports take them as
a DataFrame (`item_frame`) with the ledger, and read only what was known at `as_of`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from configs import config_path, validated_policy
from features.asof import known_at
from features.settlement import base_rate, document_state
from ledger import Ledger
from ledger.errors import BadInput
from ledger.validation import TOLERANCE
from queues.sla import SlaPolicy, due_date

DEFAULT_DEDUCTION_POLICY = config_path("deductions", "default.yaml")
UNKNOWN = "unknown"
# Statuses of a deduction record: open -> in_review -> valid (credit_memo | write_off) | invalid (rebilled).
LIVE_STATUSES = ("open", "in_review")
DECISIONS = {"credit_memo": "valid", "write_off": "valid", "rebilled": "invalid"}
AGE_LIMITS = (30, 60, 90)
AGE_BUCKETS = ("0-30", "31-60", "61-90", "90+")
# Days deduction outstanding looks at the deductions opened over this many days, like a DSO's period.
DDO_PERIOD_DAYS = 90
CANDIDATE_COLUMNS = ["invoice_id", "customer_id", "payment_id", "amount", "currency", "reason_code", "owner",
                     "opened_date", "due_date", "invoice_amount", "remittance_text"]
ITEM_COLUMNS = ["item_id", "customer_id", "invoice_id", "payment_id", "amount", "currency", "reason_code", "owner",
                "status", "decision", "opened_date", "due_date", "decided_date"]


class DeductionPolicyError(BadInput, ValueError):
    """A deductions policy file that cannot be read or does not validate."""


class OwnerRule(BaseModel):
    """Who works a deduction of `reason_code` (any when left out) of a customer of `segment` (any when left out)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason_code: str | None = None
    segment: str | None = None
    owner: str = Field(min_length=1)


class DeductionPolicy(BaseModel):
    """Reason codes, memo-line keywords per code, owners and the short-payment thresholds. Unknown keys are
    rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    reason_codes: tuple[str, ...] = Field(min_length=1)
    keywords: dict[str, tuple[str, ...]] = Field(default_factory=dict, description="reason code -> keywords")
    owners: tuple[OwnerRule, ...] = ()
    default_owner: str = Field("Deductions Desk", min_length=1)
    max_share: float = Field(0.25, gt=0, le=1, description="Largest rest, as a share of the invoice.")
    min_amount: float = Field(10.0, ge=0, description="Smallest rest, in the document currency.")
    wait_days: int = Field(7, ge=0, le=365, description="Days without a further payment before it is one.")

    @model_validator(mode="after")
    def _codes_are_known(self) -> DeductionPolicy:
        if UNKNOWN not in self.reason_codes:
            raise ValueError(f"reason_codes must include {UNKNOWN!r}")
        named = set(self.keywords) | {rule.reason_code for rule in self.owners if rule.reason_code}
        stray = sorted(named - set(self.reason_codes))
        if stray:
            raise ValueError(f"reason codes not in reason_codes: {', '.join(stray)}")
        empty = sorted(code for code, words in self.keywords.items() if not all(word.strip() for word in words))
        if empty:
            raise ValueError(f"keywords of {', '.join(empty)}: a keyword must not be empty")
        return self


def load_deduction_policy(path: str | Path | None = None) -> DeductionPolicy:
    """Read and validate a deductions policy YAML (default `configs/deductions/default.yaml`)."""
    return validated_policy(path or DEFAULT_DEDUCTION_POLICY, DeductionPolicy, DeductionPolicyError)


def reason_code(policy: DeductionPolicy, remittance_text: str | None) -> str:
    """The reason code whose keyword starts a word of the memo line (first code in the policy's order wins);
    `unknown` when none does or there is no memo line."""
    if not isinstance(remittance_text, str) or not remittance_text.strip():
        return UNKNOWN
    for code, words in policy.keywords.items():
        if any(re.search(r"\b" + re.escape(word), remittance_text, flags=re.IGNORECASE) for word in words):
            return code
    return UNKNOWN


def owner(policy: DeductionPolicy, reason: str, segment: str | None) -> str:
    """The owner of the first rule matching the reason code and the customer's segment; else the default."""
    for rule in policy.owners:
        if rule.reason_code not in (None, reason):
            continue
        if rule.segment is not None and rule.segment != segment:
            continue
        return rule.owner
    return policy.default_owner


def short_payments(ledger: Ledger, as_of: pd.Timestamp, policy: DeductionPolicy) -> pd.DataFrame:
    """Per invoice open at `as_of` whose last known payment left a deduction-sized rest at least `wait_days`
    ago: invoice_id, customer_id, payment_id, amount (the rest still open at `as_of`), invoice_amount,
    currency and opened_date (the day the wait ended)."""
    as_of = pd.Timestamp(as_of).normalize()
    known = known_at(ledger, as_of)
    state = document_state(known, as_of, TOLERANCE)
    rest = state[state["is_invoice"] & state["is_open"] & (state["applications"] > 0) & (state["open_amount"] > 0)]
    rest = rest[(rest["open_amount"] <= policy.max_share * rest["amount"] + TOLERANCE)
                & (rest["open_amount"] >= policy.min_amount - TOLERANCE)]
    rest = rest[~rest["invoice_id"].isin(invoices_worked(known))]
    applications = known.payment_applications[known.payment_applications["invoice_id"].isin(rest["invoice_id"])]
    # The last application of an invoice is its short payment: no payment came after it by `as_of`.
    last = (applications.sort_values(["invoice_id", "applied_date", "payment_id"], kind="stable")
            .groupby("invoice_id", sort=False).tail(1)[["invoice_id", "payment_id", "applied_date"]])
    rows = rest.merge(last, on="invoice_id")
    rows["opened_date"] = rows["applied_date"] + pd.Timedelta(days=policy.wait_days)
    rows = rows[rows["opened_date"] <= as_of]
    currency = known.invoices.set_index("invoice_id")["currency"]
    return pd.DataFrame({
        "invoice_id": rows["invoice_id"].to_numpy(), "customer_id": rows["customer_id"].to_numpy(),
        "payment_id": rows["payment_id"].to_numpy(), "amount": rows["open_amount"].round(2).to_numpy(),
        "invoice_amount": rows["amount"].to_numpy(), "currency": rows["invoice_id"].map(currency).to_numpy(),
        "opened_date": rows["opened_date"].to_numpy(),
    })


def invoices_worked(known: Ledger) -> set[str]:
    """Invoices already worked at the date `known` was cut: an open dispute, or a deduction ever recorded
    (the activity store's deductions are `disputes` rows with reason `deduction: <code>`)."""
    disputes = known.disputes
    worked = disputes["resolved_date"].isna() | disputes["reason"].astype(str).str.startswith("deduction")
    return set(disputes.loc[worked, "invoice_id"])


def candidate_deductions(ledger: Ledger, as_of: pd.Timestamp, policy: DeductionPolicy,
                         sla_policy: SlaPolicy) -> pd.DataFrame:
    """The deductions to open at `as_of`: each short payment with its reason code (from the payment's memo
    line), owner (reason code and customer segment) and due date (the SLA of its reason code), oldest first."""
    as_of = pd.Timestamp(as_of).normalize()
    rows = short_payments(ledger, as_of, policy)
    memo = (ledger.payments.set_index("payment_id")["remittance_text"] if "remittance_text" in ledger.payments
            else pd.Series(dtype=object))
    segment = ledger.customers.set_index("customer_id")["segment"]
    rows["remittance_text"] = rows["payment_id"].map(memo).astype(object).to_numpy() if len(rows) else []
    fields = pd.DataFrame([deduction_fields(policy, sla_policy, text, segment.get(customer), opened)
                           for text, customer, opened in zip(rows["remittance_text"], rows["customer_id"],
                                                             rows["opened_date"], strict=True)],
                          columns=["reason_code", "owner", "due_date"], index=rows.index)
    rows[["reason_code", "owner"]] = fields[["reason_code", "owner"]]
    rows["due_date"] = pd.to_datetime(fields["due_date"])
    return rows[CANDIDATE_COLUMNS].sort_values(["opened_date", "invoice_id"], kind="stable").reset_index(drop=True)


# -- records ----------------------------------------------------------------------------------------------


def decision_changes(decision: str, decided_date: pd.Timestamp) -> dict:
    """The store changes that record `decision` on a deduction: in_review starts the review; credit_memo or
    write_off make it valid (its amount is closed), rebilled makes it invalid (the rest goes back to
    collections)."""
    if decision == "in_review":
        return {"status": "in_review"}
    if decision not in DECISIONS:
        raise BadInput(f"decision must be one of in_review, {', '.join(DECISIONS)}, got {decision!r}")
    return {"status": DECISIONS[decision], "decision": decision,
            "decided_date": pd.Timestamp(decided_date).date().isoformat()}


def queue_rows(records: list[dict], as_of: pd.Timestamp, status: str | None = None) -> list[dict]:
    """The deduction records opened by `as_of` (of `status`, or the live ones when None: open and in review),
    each with its age in days and whether its SLA is breached at `as_of` (the day after its due date), most
    overdue first."""
    as_of = pd.Timestamp(as_of).normalize()
    rows = []
    for item in records:
        if item["queue"] != "deduction" or pd.Timestamp(item["opened_date"]) > as_of:
            continue
        if (item["status"] not in LIVE_STATUSES) if status is None else (item["status"] != status):
            continue
        closed = pd.Timestamp(item["decided_date"]) if item.get("decided_date") else as_of
        rows.append({**item, "age_days": int((as_of - pd.Timestamp(item["opened_date"])).days),
                     "breached": bool(min(closed, as_of) > pd.Timestamp(item["due_date"]))})
    return sorted(rows, key=lambda row: (row["due_date"], row["item_id"]))


def deduction_fields(policy: DeductionPolicy, sla_policy: SlaPolicy, remittance_text: str | None,
                     segment: str | None, opened_date: pd.Timestamp) -> dict:
    """Reason code (from the memo line), owner and SLA due date of a deduction opened on `opened_date`,
    for a short payment found anywhere (the ledger, or a cash application confirmed short)."""
    reason = reason_code(policy, remittance_text)
    return {"reason_code": reason, "owner": owner(policy, reason, segment),
            "due_date": due_date(sla_policy, "deduction", opened_date, reason).date()}


def open_deductions(store, user: str, candidates: pd.DataFrame, *, now, note: str = "") -> tuple[list[dict], list[dict]]:
    """Open a deduction record in the activity store (`store`: an `activity.store.ActivityStore`) for each
    candidate without a live one on the same invoice and payment: (opened records, skipped with the reason).
    Running it twice opens nothing the second time."""
    live = {(item["invoice_id"], item["payment_id"]) for item in store.list_queue_items(queue="deduction")
            if item["status"] in LIVE_STATUSES}
    opened, skipped = [], []
    for row in candidates.itertuples(index=False):
        if (row.invoice_id, row.payment_id) in live:
            skipped.append({"invoice_id": row.invoice_id, "payment_id": row.payment_id,
                            "reason": "a live deduction is already recorded"})
            continue
        opened.append(store.open_queue_item(
            user, queue="deduction", customer_id=row.customer_id, invoice_id=row.invoice_id,
            payment_id=row.payment_id, opened_date=pd.Timestamp(row.opened_date).date(),
            due_date=pd.Timestamp(row.due_date).date(), owner=row.owner, reason_code=row.reason_code,
            amount=f"{float(row.amount):.2f}", currency=row.currency,
            details={"remittance_text": row.remittance_text if isinstance(row.remittance_text, str) else None,
                     "invoice_amount": float(row.invoice_amount)},
            note=note, now=now))
    return opened, skipped


# -- reports ----------------------------------------------------------------------------------------------


def item_frame(records: list[dict], ledger: Ledger | None = None) -> pd.DataFrame:
    """The store's deduction records as a typed table: dates as timestamps, amounts as floats, and
    `amount_base` in the company currency at the rate of the deduction's invoice in `ledger` (the amount
    itself without a ledger, or for an invoice the ledger lacks)."""
    rows = [record for record in records if record.get("queue", "deduction") == "deduction"]
    frame = pd.DataFrame(rows, columns=ITEM_COLUMNS) if rows else pd.DataFrame(columns=ITEM_COLUMNS)
    frame = frame[ITEM_COLUMNS].copy()
    for column in ("opened_date", "due_date", "decided_date"):
        frame[column] = pd.to_datetime(frame[column])
    frame["amount"] = pd.to_numeric(frame["amount"]).astype(float)
    rate = pd.Series(1.0, index=frame.index)
    if ledger is not None:
        invoices = ledger.invoices.set_index("invoice_id")
        rates = base_rate(invoices["amount"], invoices["amount_base"])
        rate = frame["invoice_id"].map(rates).fillna(1.0).astype(float)
    frame["amount_base"] = (frame["amount"] * rate).round(2)
    return frame


def known_items(items: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The deductions opened by `as_of`, with a decision taken after `as_of` not known yet (`decided` False)."""
    as_of = pd.Timestamp(as_of).normalize()
    known = items[items["opened_date"] <= as_of].copy()
    known["decided"] = known["decided_date"].notna() & (known["decided_date"] <= as_of)
    return known


def age_bucket(age_days: pd.Series) -> pd.Series:
    """0-30, 31-60, 61-90 or 90+ days since the deduction opened."""
    edges = [-np.inf, *AGE_LIMITS, np.inf]
    return pd.cut(age_days, bins=edges, labels=list(AGE_BUCKETS), right=True).astype(object)


def open_by_age_and_reason(items: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Open deductions at `as_of` per reason code and age bucket: count and amount (company currency)."""
    as_of = pd.Timestamp(as_of).normalize()
    known = known_items(items, as_of)
    still_open = known[~known["decided"]].copy()
    still_open["age_bucket"] = age_bucket((as_of - still_open["opened_date"]).dt.days)
    table = (still_open.groupby(["reason_code", "age_bucket"])
             .agg(count=("item_id", "size"), amount_base=("amount_base", "sum")).reset_index())
    table["amount_base"] = table["amount_base"].round(2)
    table["age_bucket"] = pd.Categorical(table["age_bucket"], categories=list(AGE_BUCKETS), ordered=True)
    return table.sort_values(["reason_code", "age_bucket"]).astype({"age_bucket": object}).reset_index(drop=True)


def days_deduction_outstanding(items: pd.DataFrame, as_of: pd.Timestamp, period_days: int = DDO_PERIOD_DAYS) -> float:
    """Days deduction outstanding, like a simple DSO: the amount of deductions open at `as_of` / the amount of
    deductions opened over the `period_days` days ending at `as_of` x `period_days`. NaN when none opened."""
    as_of = pd.Timestamp(as_of).normalize()
    known = known_items(items, as_of)
    open_amount = known.loc[~known["decided"], "amount_base"].sum()
    since = as_of - pd.Timedelta(days=period_days)
    opened = known.loc[known["opened_date"] > since, "amount_base"].sum()
    return float(open_amount / opened * period_days) if opened > 0 else float("nan")


def share_resolved_within_sla(items: pd.DataFrame, as_of: pd.Timestamp) -> float:
    """Of the deductions decided by `as_of`, the share decided on or before their due date (NaN when none)."""
    known = known_items(items, as_of)
    decided = known[known["decided"]]
    if decided.empty:
        return float("nan")
    return float((decided["decided_date"] <= decided["due_date"]).mean())


def invalid_recovery(items: pd.DataFrame, ledger: Ledger, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per deduction decided invalid (re-billed) by `as_of`: its amount and what the ledger applied to its
    invoice after the decision and by `as_of` (`recovered`, at most the amount), also in the company currency."""
    as_of = pd.Timestamp(as_of).normalize()
    known = known_items(items, as_of)
    invalid = known[known["decided"] & (known["status"] == "invalid")]
    applications = known_at(ledger, as_of).payment_applications
    recovered = []
    for row in invalid.itertuples(index=False):
        later = applications[(applications["invoice_id"] == row.invoice_id)
                             & (applications["applied_date"] > row.decided_date)]
        recovered.append(round(min(float(later["amount"].sum()), float(row.amount)), 2))
    recovery = invalid[["item_id", "invoice_id", "customer_id", "amount", "amount_base", "decided_date"]]
    return recovery.assign(recovered=recovered,
                           recovered_base=(recovery["amount_base"] * recovered / recovery["amount"]).round(2))


def invalid_recovery_rate(items: pd.DataFrame, ledger: Ledger, as_of: pd.Timestamp) -> float:
    """Recovery rate of invalid deductions: what the ledger received on their invoices after the invalid
    decision / the invalid amount, both in the company currency (NaN when no deduction was decided invalid)."""
    recovery = invalid_recovery(items, ledger, as_of)
    total = recovery["amount_base"].sum()
    return float(recovery["recovered_base"].sum() / total) if total > 0 else float("nan")


def deduction_summary(items: pd.DataFrame, ledger: Ledger, as_of: pd.Timestamp) -> dict:
    """The headline figures of the deduction queue at `as_of`."""
    known = known_items(items, as_of)
    still_open = known[~known["decided"]]
    return {
        "as_of": pd.Timestamp(as_of).normalize(),
        "open_count": len(still_open),
        "open_amount_base": round(float(still_open["amount_base"].sum()), 2),
        "days_deduction_outstanding": rounded(days_deduction_outstanding(items, as_of)),
        "share_resolved_within_sla": rounded(share_resolved_within_sla(items, as_of), 4),
        "invalid_recovery_rate": rounded(invalid_recovery_rate(items, ledger, as_of), 4),
    }


def rounded(value: float, digits: int = 1) -> float | None:
    """`value` rounded, or None where it is not a number (nothing to measure yet)."""
    return None if np.isnan(value) else round(value, digits)
