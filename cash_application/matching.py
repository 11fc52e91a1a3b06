"""`apply_cash`: a proposal, a confidence and a decision for every payment not yet applied on `as_of`.

In order: the payments (the ledger's, plus any bank statements given) received on or before `as_of` with
no application are the cash to apply; a copy of an earlier payment (same payer, amount and memo line
within `DUPLICATE_DAYS`) is left unmatched as a possible duplicate; the payer is identified
(`cash_application.payers`); its group's open items in the payment's currency give candidate sets
(`cash_application.candidates`), which the ranker learnt from the ledger's past applications scores
(`cash_application.ranker`). Payments are then resolved in the order they were received: each takes its
best-scored set whose items earlier payments have not used up, and its confidence decides `auto`,
`proposed` or `unmatched` (policy thresholds). The payment is spread over the set's items oldest due first
(credit memos taken in full); what it leaves short is the residual with a suggested deduction reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from cash_application.candidates import (
    FEATURES,
    RULES,
    OpenItems,
    cents_of,
    feature_frame,
    is_discount,
    open_items_by,
)
from cash_application.payers import group_of, identified_customers
from cash_application.policy import MatchPolicy, load_match_policy
from cash_application.ranker import (
    Payment,
    customer_habits,
    habits_of,
    payment_candidates,
    trained_ranker,
    training_sets,
)
from cash_application.references import referenced_customers, text_numbers
from features.asof import known_at
from features.settlement import document_state
from ledger import Ledger
from ledger.statements import new_payments, read_statements
from ledger.validation import TOLERANCE

DECISIONS = ("auto", "proposed", "unmatched")
COLUMNS = ("payment_id", "received_date", "payment_amount", "currency", "customer_id", "identified_by",
           "invoice_id", "amount", "confidence", "decision", "rule", "residual", "deduction_reason", "reason")
DUPLICATE_DAYS = 5
BANK_CHARGE_LIMIT = 50.0  # a short payment up to this many currency units is suggested as bank charges


def with_statements(ledger: Ledger, statements: Iterable[str | Path]) -> Ledger:
    """The ledger with the payments of the statement files it does not hold yet (a file read twice adds
    nothing twice)."""
    paths = list(statements)
    if not paths:
        return ledger
    read = new_payments(ledger.payments, read_statements(paths))
    payments = pd.concat([ledger.payments, read.astype({"customer_id": object})], ignore_index=True)
    return ledger.replace(payments=payments)


def apply_cash(ledger: Ledger, as_of: pd.Timestamp | str, policy: MatchPolicy | None = None,
               statements: Iterable[str | Path] = (), aliases: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per proposed application (payment, document) and one per unmatched payment, COLUMNS in
    order, payments in the order received. `aliases` (payer_name, customer_id) are payer names a user
    confirmed before."""
    policy = policy or load_match_policy()
    as_of = pd.Timestamp(as_of).normalize()
    known = known_at(with_statements(ledger, statements), as_of)
    groups = group_of(known.customers)
    open_items = open_documents(known, as_of, groups)
    applied = set(known.payment_applications["payment_id"])
    payments = known.payments[~known.payments["payment_id"].isin(applied)]
    payments = payments.sort_values(["received_date", "payment_id"], kind="stable").reset_index(drop=True)
    if payments.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    numbers = text_numbers(_column(payments, "remittance_text"))
    referenced = pd.Series(referenced_customers(numbers, open_items), index=payments.index, dtype=object)
    history = known.payments[known.payments["payment_id"].isin(applied)]
    who = identified_customers(payments, history, known.customers, referenced, policy.name_score_threshold,
                               aliases)
    habits = customer_habits(known)
    model = trained_ranker(*training_sets(known, groups, habits, policy))
    duplicates = duplicate_of(payments, known.payments)
    by_group = open_items_by(open_items, ["group", "currency"])
    remaining = dict(zip(open_items["invoice_id"], cents_of(open_items["open_amount"].to_numpy()).tolist(),
                         strict=True))
    bases, searched, rows = [], [], []
    for position, payment in enumerate(payments.itertuples(index=False)):
        customer = who["customer_id"].iat[position]
        bases.append({"payment_id": payment.payment_id, "received_date": payment.received_date,
                      "payment_amount": payment.amount, "currency": payment.currency, "customer_id": customer,
                      "identified_by": who["identified_by"].iat[position]})
        reason = _unmatched_reason(duplicates.iat[position], customer)
        items = None if reason else by_group.get((groups.get(customer, customer), payment.currency))
        if items is None:
            searched.append(reason or f"no open items of customer {customer}'s group in {payment.currency}")
            continue
        cents = int(cents_of(float(payment.amount)))
        details = Payment(cents, numbers[position], np.datetime64(payment.received_date, "D"), customer,
                          habits_of(habits, customer))
        sets, features = payment_candidates(details, items, policy)
        searched.append((details, items, sets, len(rows), len(rows) + len(features)))
        rows += features
    features = feature_frame(rows)
    scores = set_scores(model, features, policy)
    rules = features["rule"].to_numpy()
    out: list[dict] = []
    for base, found in zip(bases, searched, strict=True):
        if isinstance(found, str):
            out.append(base | _unmatched(found))
            continue
        details, items, sets, start, end = found
        now = items_left(items, remaining)
        if now is not items:  # an earlier payment paid part of an item: search again on what is left
            sets, rescored = payment_candidates(details, now, policy) if len(now) else ([], [])
            rescored = feature_frame(rescored)
            out += resolved_rows(base, details.cents, now, sets,
                                 set_scores(model, rescored, policy),
                                 rescored["rule"].to_numpy(), remaining, policy)
            continue
        out += resolved_rows(base, details.cents, items, sets, scores[start:end], rules[start:end], remaining, policy)
    return pd.DataFrame(out, columns=list(COLUMNS))


def set_scores(model, features: pd.DataFrame, policy: MatchPolicy) -> np.ndarray:
    """The confidence that each set is the one paid: the ranker's probability (the booster itself: one
    payment's few sets at a time is too small a batch for the scikit-learn wrapper's checks to be worth their
    cost; none without a ranker), raised to the policy's floor for the quoted-reference rules."""
    if features.empty:
        return np.empty(0)
    learnt = (model.booster_.predict(features[list(FEATURES)].to_numpy(dtype=float)) if model is not None
              else np.zeros(len(features)))
    return np.maximum(learnt, rule_floors(features, policy))


def rule_floors(features: pd.DataFrame, policy: MatchPolicy) -> np.ndarray:
    """Per set: the least confidence the rules give it. A set of exactly the open items the memo line quotes
    (every item quoted without a typo, no quoted item left out) gets `reference_exact_confidence` when it is
    exactly the amount and `reference_short_confidence` when it is paid short; the one item of exactly the
    amount, when no other candidate set is exactly it, `amount_unique_confidence`; any other set none."""
    quoted = ((features["exact_refs"] == features["items"]) & (features["fuzzy_refs"] == 0)
              & (features["quoted_elsewhere"] == 0)).to_numpy()
    exact = features["exact_amount"].to_numpy(dtype=bool)
    short = features["short"].to_numpy(dtype=bool)
    unique = exact & (features["items"] == 1).to_numpy() & (features["exact_sets"] == 1).to_numpy()
    return np.where(quoted & exact, policy.reference_exact_confidence,
                    np.where(quoted & short, policy.reference_short_confidence,
                             np.where(unique, policy.amount_unique_confidence, 0.0)))


def items_left(items: OpenItems, remaining: dict[str, int]) -> OpenItems:
    """The items with what earlier payments of this run left open (the same object when they left all of
    it); items paid in full drop out."""
    left = np.array([remaining[document] for document in items.ids], dtype=np.int64)
    if np.array_equal(left, items.cents):
        return items
    keep = left != 0
    return OpenItems(items.ids[keep], items.customers[keep], [number for number, kept in zip(items.numbers, keep, strict=True) if kept],
                     left[keep], items.due[keep], items.issued[keep])


def open_documents(known: Ledger, as_of: pd.Timestamp, groups: pd.Series) -> pd.DataFrame:
    """Open invoices and credit memos on `as_of` with their currency and customer group."""
    state = document_state(known, as_of, TOLERANCE)
    state = state[state["is_open"]]
    currency = known.invoices.set_index("invoice_id")["currency"]
    return pd.DataFrame({
        "invoice_id": state["invoice_id"], "customer_id": state["customer_id"],
        "currency": state["invoice_id"].map(currency), "group": state["customer_id"].map(groups),
        "invoice_date": state["invoice_date"], "due_date": state["due_date"], "open_amount": state["open_amount"],
    }).reset_index(drop=True)


def duplicate_of(payments: pd.DataFrame, known_payments: pd.DataFrame, days: int = DUPLICATE_DAYS) -> pd.Series:
    """Per payment (same index): the id of an earlier payment it copies (same payer account or customer,
    amount, currency and memo line, received at most `days` before), or None."""
    keys = ["amount", "currency", "remittance_text", "payer"]
    every = known_payments.assign(payer=_payer(known_payments), remittance_text=_column(known_payments, "remittance_text"))
    every = every.sort_values(["received_date", "payment_id"], kind="stable")
    mine = payments.assign(payer=_payer(payments), remittance_text=_column(payments, "remittance_text"),
                           position=payments.index)
    pairs = mine[["position", "payment_id", "received_date", *keys]].merge(
        every[["payment_id", "received_date", *keys]].rename(
            columns={"payment_id": "original", "received_date": "original_date"}),
        on=keys)
    earlier = ((pairs["original_date"] < pairs["received_date"])
               | ((pairs["original_date"] == pairs["received_date"]) & (pairs["original"] < pairs["payment_id"])))
    pairs = pairs[earlier & (pairs["received_date"] - pairs["original_date"] <= pd.Timedelta(days=days))
                  & pairs["payer"].notna()]
    first = pairs.drop_duplicates("position").set_index("position")["original"]
    return pd.Series(first.reindex(payments.index).to_numpy(dtype=object), index=payments.index)


def _payer(payments: pd.DataFrame) -> pd.Series:
    account = _column(payments, "payer_account")
    return account.where(account.notna(), payments["customer_id"])


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series(None, index=frame.index, dtype=object)


def _unmatched_reason(duplicate: object, customer: object) -> str | None:
    if isinstance(duplicate, str):
        return f"possible duplicate of payment {duplicate}"
    if not isinstance(customer, str):
        return "payer not identified (account, name and memo line match no customer)"
    return None


def _unmatched(reason: str, confidence: float = np.nan, rule: str | None = None) -> dict:
    return {"invoice_id": None, "amount": np.nan, "confidence": confidence, "decision": "unmatched", "rule": rule,
            "residual": np.nan, "deduction_reason": None, "reason": reason}


def resolved_rows(base: dict, cents: int, items: OpenItems, sets: list[tuple[int, ...]], scores: np.ndarray,
                  rules: np.ndarray, remaining: dict[str, int], policy: MatchPolicy) -> list[dict]:
    """The payment's rows: its best-scored set whose items are still open, spread over them, or unmatched.
    `remaining` (open cents per document) is updated for the payments after it."""
    if not sets:
        return [base | _unmatched("no candidate set (no reference, amount or set of open items fits)")]
    ranked = np.argsort(-scores, kind="stable")
    for index in ranked:
        chosen = [items.ids[position] for position in sets[index]]
        if all(remaining[document] != 0 for document in chosen):
            break
    else:
        return [base | _unmatched("every candidate set's items are paid by earlier payments")]
    confidence, rule = float(scores[index]), RULES[int(rules[index])]
    if confidence < policy.proposal_threshold:
        return [base | _unmatched(f"best candidate ({rule}) only {confidence:.2f} confident", confidence, rule)]
    # A set scored with items that an earlier payment has since taken is never cleared without review.
    decision = "auto" if confidence >= policy.auto_threshold and index == ranked[0] else "proposed"
    spread = spread_over(cents, [remaining[document] for document in chosen])
    for document, taken in zip(chosen, spread, strict=True):
        remaining[document] -= taken
    total = int(items.cents[list(sets[index])].sum())
    residual = (cents - total) / 100
    reason = deduction_reason(total - cents, total, policy) if residual < -policy.amount_tolerance else None
    return [base | {"customer_id": items.customers[position], "invoice_id": document, "amount": taken / 100,
                    "confidence": confidence, "decision": decision, "rule": rule, "residual": residual,
                    "deduction_reason": reason, "reason": None}
            for position, document, taken in zip(sets[index], chosen, spread, strict=True) if taken]


def spread_over(cents: int, open_cents: list[int]) -> list[int]:
    """Cents applied to each item (oldest due first): credit memos in full, then invoices in order while the
    payment (plus the credit memos) lasts; what is left over stays unapplied."""
    left = cents - sum(value for value in open_cents if value < 0)
    taken = []
    for value in open_cents:
        if value < 0:
            taken.append(value)
            continue
        part = min(value, max(left, 0))
        taken.append(part)
        left -= part
    return taken


def deduction_reason(short: int, total: int, policy: MatchPolicy) -> str:
    """A suggested reason for a payment `short` cents below the `total` of the items it pays."""
    if is_discount(short, total, policy):
        return "cash discount"
    if short <= BANK_CHARGE_LIMIT * 100:
        return "bank charges"
    if short >= total / 2:
        return "partial payment"
    return "short payment"
