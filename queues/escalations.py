"""Escalations (issue 21 point 2): which accounts go to a manager, each with its reasons, ranked by the
deterioration model's probability; the fields of the record that opens one; and the backtest's pure part.

Every rule reads the ledger as known at the end of `as_of` (`features.asof.known_at`), so the queue of a past
date is the queue a manager would have seen that day. The rules and their reason texts are in
`configs/escalations/default.yaml`; the first rule that fires (in `REASON_CODES` order) is the record's
reason code, and all of them, with their evidence, go into its details.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from configs import config_path, validated_policy
from features.asof import known_at
from features.collections import promise_status
from features.config import FeatureConfig
from features.customer import broken_promises, open_ar_base, overdue_amount_base
from features.labels import customer_labels
from features.settlement import DAY, days_between, document_state
from ledger import Ledger
from ledger.errors import BadInput

DEFAULT_ESCALATION_POLICY = config_path("escalations", "default.yaml")
# The triggers, in the order that picks a record's reason code (the first that fires).
REASON_CODES = ("non_responsive", "broken_promises", "deterioration", "over_limit", "old_item")
DECISIONS = ("keep_chasing", "legal", "credit_hold", "write_off_proposal")
QUEUE = "escalation"
MONEY_TOLERANCE = 0.01


class EscalationPolicyError(BadInput, ValueError):
    """An escalation policy file that cannot be read or does not validate."""


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="False: the rule never fires.")
    reason: str = Field(description="The reason in words, a template filled with the rule's evidence.")


class NonResponsiveRule(_Rule):
    attempts: int = Field(3, ge=1, description="Unanswered contact attempts that make a customer non-responsive.")
    days: int = Field(30, ge=1, description="Window of the attempts counted.")
    no_answer_keywords: tuple[str, ...] = Field(min_length=1, description="An outcome with one is an attempt.")
    answered_keywords: tuple[str, ...] = Field((), description="An outcome with one is an answer: the count restarts.")


class BrokenPromisesRule(_Rule):
    count: int = Field(2, ge=1, description="Broken promises that escalate.")
    days: int = Field(180, ge=1, description="Window (by promised date) of the broken promises counted.")


class DeteriorationRule(_Rule):
    min_exposure_base: float = Field(10_000, ge=0, description="Open AR a flagged customer must exceed.")


class OverLimitRule(_Rule):
    over_share: float = Field(0.10, ge=0, description="Share above the credit limit the open AR must exceed.")


class OldItemRule(_Rule):
    days_past_due: int = Field(90, ge=0, description="Days past due an open item must exceed.")
    min_amount_base: float = Field(5_000, ge=0, description="Open amount the item must exceed.")


# Evidence of each rule, with sample values: a reason template is checked against them when the policy loads.
SAMPLE_EVIDENCE = {
    "non_responsive": {"attempts": 3, "days": 30, "last_attempt": "2024-01-31"},
    "broken_promises": {"broken": 2, "days": 180},
    "deterioration": {"probability": 0.5, "exposure": 1000.0},
    "over_limit": {"exposure": 1000.0, "credit_limit": 800.0, "over_share": 0.25},
    "old_item": {"invoice_id": "INV1", "days_past_due": 91, "amount": 1000.0},
}


class EscalationPolicy(BaseModel):
    """The escalation rules, their reasons and who decides. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    non_responsive: NonResponsiveRule
    broken_promises: BrokenPromisesRule
    deterioration: DeteriorationRule
    over_limit: OverLimitRule
    old_item: OldItemRule
    managers: dict[str, str] = Field(default_factory=dict, description="segment -> the manager who decides")
    default_manager: str = Field("AR Manager", min_length=1)

    @model_validator(mode="after")
    def _reasons_name_known_evidence(self) -> EscalationPolicy:
        for code in REASON_CODES:
            try:
                self.rule(code).reason.format(**SAMPLE_EVIDENCE[code])
            except (KeyError, IndexError, ValueError) as problem:
                raise ValueError(f"{code}.reason: cannot be filled with {', '.join(SAMPLE_EVIDENCE[code])} "
                                 f"({type(problem).__name__}: {problem})") from None
        return self

    def rule(self, code: str) -> _Rule:
        return getattr(self, code)

    def manager(self, segment: str | None) -> str:
        """The manager who decides the escalations of a customer of `segment`."""
        return self.managers.get(segment or "", self.default_manager)


def load_escalation_policy(path: str | Path | None = None) -> EscalationPolicy:
    """Read and validate an escalation policy YAML (default `configs/escalations/default.yaml`)."""
    return validated_policy(path or DEFAULT_ESCALATION_POLICY, EscalationPolicy, EscalationPolicyError)


# ---- evidence, one function per column -----------------------------------------------------------------

def _mentions(outcomes: pd.Series, keywords: Iterable[str]) -> pd.Series:
    """True where the outcome holds one of `keywords` (case-insensitive, as plain text)."""
    lowered = outcomes.fillna("").astype(str).str.lower()
    found = pd.Series(False, index=outcomes.index)
    for keyword in keywords:
        found |= lowered.str.contains(keyword.lower(), regex=False)
    return found


def unanswered_attempts(contacts: pd.DataFrame, as_of: pd.Timestamp, rule: NonResponsiveRule) -> pd.DataFrame:
    """Per customer: contact attempts without an answer in (as_of - days, as_of] after its last answered
    contact (`attempts`), and the date of the last one (`last_attempt`)."""
    known = contacts[contacts["contact_date"] <= as_of]
    answered = known[_mentions(known["outcome"], rule.answered_keywords)] if rule.answered_keywords else known[:0]
    last_answer = known["customer_id"].map(answered.groupby("customer_id")["contact_date"].max())
    attempt = (_mentions(known["outcome"], rule.no_answer_keywords)
               & (known["contact_date"] > as_of - rule.days * DAY)
               # An answer on the day of an attempt counts as the answer to it.
               & ~(known["contact_date"] <= last_answer))
    attempts = known[attempt].groupby("customer_id")["contact_date"].agg(["size", "max"])
    return attempts.rename(columns={"size": "attempts", "max": "last_attempt"})


def broken_promises_count(known: Ledger, as_of: pd.Timestamp, days: int) -> pd.Series:
    """Per customer: promises to pay broken as of `as_of` with a promised date in the last `days` days
    (kept or broken recomputed from the payments known then, as the features do)."""
    status = promise_status(known.promises, known.payment_applications, known.payments, known.writeoffs, as_of,
                            MONEY_TOLERANCE)
    return broken_promises(known.promises, status, as_of, days)


def most_overdue_large_items(open_invoices: pd.DataFrame, as_of: pd.Timestamp, rule: OldItemRule) -> pd.DataFrame:
    """Per customer: its most overdue open invoice among those with more than `min_amount_base` open
    (invoice_id, days_past_due, amount), whatever its age (the rule compares the age)."""
    large = open_invoices[open_invoices["open_amount_base"] > rule.min_amount_base]
    large = large.assign(days_past_due=days_between(as_of, large["due_date"]).astype(int))
    large = large.sort_values(["customer_id", "days_past_due", "invoice_id"], ascending=[True, False, True])
    first = large.drop_duplicates("customer_id").set_index("customer_id")
    return first[["invoice_id", "days_past_due", "open_amount_base"]].rename(columns={"open_amount_base": "amount"})


def escalation_evidence(ledger: Ledger, as_of: pd.Timestamp, policy: EscalationPolicy) -> pd.DataFrame:
    """One row per customer known at `as_of` with what the rules read: segment, credit_limit, open_ar_base,
    overdue_amount_base, unanswered_attempts, last_attempt, broken_promises, old_item_id,
    old_item_days_past_due, old_item_amount_base."""
    as_of = pd.Timestamp(as_of).normalize()
    known = known_at(ledger, as_of)
    state = document_state(known, as_of, MONEY_TOLERANCE)
    open_documents = state[state["is_open"]]
    open_invoices = open_documents[open_documents["is_invoice"]]
    customers = known.customers.sort_values("customer_id").set_index("customer_id")
    index = customers.index
    attempts = unanswered_attempts(known.contacts, as_of, policy.non_responsive).reindex(index)
    items = most_overdue_large_items(open_invoices, as_of, policy.old_item).reindex(index)
    evidence = pd.DataFrame({
        "segment": customers["segment"],
        "credit_limit": customers["credit_limit"].astype(float),
        "open_ar_base": open_ar_base(open_documents).reindex(index, fill_value=0.0).astype(float),
        "overdue_amount_base": overdue_amount_base(open_invoices, as_of).reindex(index, fill_value=0.0).astype(float),
        "unanswered_attempts": attempts["attempts"].fillna(0).astype(int),
        "last_attempt": attempts["last_attempt"],
        "broken_promises": broken_promises_count(known, as_of, policy.broken_promises.days)
        .reindex(index, fill_value=0).astype(int),
        "old_item_id": items["invoice_id"],
        "old_item_days_past_due": items["days_past_due"],
        "old_item_amount_base": items["amount"],
    }, index=index)
    return evidence.reset_index()


# ---- the triggers ----------------------------------------------------------------------------------------

def with_scores(evidence: pd.DataFrame, scores: pd.DataFrame | None) -> pd.DataFrame:
    """The evidence with the deterioration model's `deterioration_probability` and `deteriorating` flag per
    customer (from the day's customers table); missing scores are NaN and not flagged."""
    table = evidence.copy()
    if scores is None or not len(scores):
        table["deterioration_probability"], table["deteriorating"] = np.nan, False
        return table
    by_customer = scores.drop_duplicates("customer_id").set_index("customer_id")
    table["deterioration_probability"] = table["customer_id"].map(by_customer["deterioration_probability"]).astype(float)
    flag = (by_customer["deteriorating"] if "deteriorating" in by_customer
            else pd.Series(False, index=by_customer.index))
    table["deteriorating"] = table["customer_id"].map(flag.astype(bool)).fillna(False).astype(bool)
    return table


def non_responsive(table: pd.DataFrame, rule: NonResponsiveRule) -> pd.Series:
    """At least `attempts` contact attempts without an answer in the rule's window."""
    return table["unanswered_attempts"] >= rule.attempts


def second_broken_promise(table: pd.DataFrame, rule: BrokenPromisesRule) -> pd.Series:
    """At least `count` promises broken in the rule's window."""
    return table["broken_promises"] >= rule.count


def deteriorating_with_exposure(table: pd.DataFrame, rule: DeteriorationRule) -> pd.Series:
    """Flagged as deteriorating with open receivables above `min_exposure_base`."""
    return table["deteriorating"].astype(bool) & (table["open_ar_base"] > rule.min_exposure_base)


def over_credit_limit(table: pd.DataFrame, rule: OverLimitRule) -> pd.Series:
    """Open receivables more than `over_share` above a positive credit limit."""
    limit = table["credit_limit"]
    return (limit > 0) & (table["open_ar_base"] > limit * (1 + rule.over_share) + MONEY_TOLERANCE)


def old_large_item(table: pd.DataFrame, rule: OldItemRule) -> pd.Series:
    """An open item more than `days_past_due` days past due with more than `min_amount_base` open."""
    return table["old_item_days_past_due"].fillna(-1) > rule.days_past_due


TRIGGERS = {"non_responsive": non_responsive, "broken_promises": second_broken_promise,
            "deterioration": deteriorating_with_exposure, "over_limit": over_credit_limit, "old_item": old_large_item}


def fired_triggers(table: pd.DataFrame, policy: EscalationPolicy) -> pd.DataFrame:
    """One boolean column per reason code: whether its (enabled) rule fires for the row's customer."""
    return pd.DataFrame({code: TRIGGERS[code](table, policy.rule(code)) & policy.rule(code).enabled
                         for code in REASON_CODES}, index=table.index)


def rule_evidence(code: str, row: Mapping[str, Any], policy: EscalationPolicy) -> dict[str, Any]:
    """The evidence of one fired rule for one customer (the fields its reason template may use)."""
    if code == "non_responsive":
        return {"attempts": int(row["unanswered_attempts"]), "days": policy.non_responsive.days,
                "last_attempt": f"{pd.Timestamp(row['last_attempt']):%Y-%m-%d}"}
    if code == "broken_promises":
        return {"broken": int(row["broken_promises"]), "days": policy.broken_promises.days}
    if code == "deterioration":
        return {"probability": _number(row["deterioration_probability"]), "exposure": float(row["open_ar_base"])}
    if code == "over_limit":
        limit = float(row["credit_limit"])
        return {"exposure": float(row["open_ar_base"]), "credit_limit": limit,
                "over_share": float(row["open_ar_base"]) / limit - 1}
    return {"invoice_id": str(row["old_item_id"]), "days_past_due": int(row["old_item_days_past_due"]),
            "amount": float(row["old_item_amount_base"])}


def _number(value: Any) -> float:
    return float("nan") if value is None or pd.isna(value) else float(value)


def escalation_candidates(evidence: pd.DataFrame, scores: pd.DataFrame | None,
                          policy: EscalationPolicy) -> pd.DataFrame:
    """The customers at least one rule escalates, highest deterioration probability first (then open AR,
    then customer id): rank, customer_id, segment, reason_code (the first rule fired), triggers (every rule
    fired), reasons (their texts), evidence (per rule), deterioration_probability, deteriorating,
    open_ar_base, overdue_amount_base, credit_limit, owner (the segment's manager)."""
    table = with_scores(evidence, scores)
    fired = fired_triggers(table, policy)
    table = table[fired.any(axis=1)]
    fired = fired.loc[table.index]
    rows = []
    for position, row in zip(table.index, table.to_dict("records"), strict=True):
        codes = [code for code in REASON_CODES if fired.at[position, code]]
        proof = {code: rule_evidence(code, row, policy) for code in codes}
        rows.append({
            "customer_id": row["customer_id"], "segment": row["segment"], "reason_code": codes[0],
            "triggers": codes, "reasons": [policy.rule(code).reason.format(**proof[code]) for code in codes],
            "evidence": proof, "deterioration_probability": row["deterioration_probability"],
            "deteriorating": bool(row["deteriorating"]), "open_ar_base": row["open_ar_base"],
            "overdue_amount_base": row["overdue_amount_base"], "credit_limit": row["credit_limit"],
            "owner": policy.manager(row["segment"]),
        })
    columns = ["rank", "customer_id", "segment", "reason_code", "triggers", "reasons", "evidence",
               "deterioration_probability", "deteriorating", "open_ar_base", "overdue_amount_base", "credit_limit",
               "owner"]
    if not rows:
        return pd.DataFrame(columns=columns)
    queue = pd.DataFrame(rows)
    queue = queue.sort_values(["deterioration_probability", "open_ar_base", "customer_id"],
                              ascending=[False, False, True], na_position="last", kind="stable", ignore_index=True)
    queue.insert(0, "rank", np.arange(1, len(queue) + 1))
    return queue[columns]


def escalation_queue(ledger: Ledger, as_of: pd.Timestamp, scores: pd.DataFrame | None,
                     policy: EscalationPolicy | None = None) -> pd.DataFrame:
    """The escalation candidates at `as_of` (`escalation_candidates` of `escalation_evidence`)."""
    policy = policy or load_escalation_policy()
    return escalation_candidates(escalation_evidence(ledger, as_of, policy), scores, policy)


# ---- records ---------------------------------------------------------------------------------------------

def opening_fields(candidate: Mapping[str, Any], opened_date: pd.Timestamp, due_date: pd.Timestamp,
                   currency: str) -> dict[str, Any]:
    """The fields of the store record that opens the escalation of a candidate row (`queue`, `customer_id`,
    dates, `owner`, `reason_code`, the open AR as `amount`, and every reason with its evidence as `details`)."""
    probability = candidate.get("deterioration_probability")
    return {
        "queue": QUEUE, "customer_id": str(candidate["customer_id"]),
        "opened_date": pd.Timestamp(opened_date).date(), "due_date": pd.Timestamp(due_date).date(),
        "owner": str(candidate["owner"]), "reason_code": str(candidate["reason_code"]),
        "amount": f"{float(candidate['open_ar_base']):.2f}", "currency": currency,
        "details": {"triggers": list(candidate["triggers"]), "reasons": list(candidate["reasons"]),
                    "evidence": json.loads(json.dumps(candidate["evidence"], default=str)),
                    "deterioration_probability": None if probability is None or pd.isna(probability)
                    else round(float(probability), 4)},
    }


def is_live(record: Mapping[str, Any]) -> bool:
    """An escalation not closed and not voided: shown on the customer page and in the worklist."""
    return record.get("queue") == QUEUE and record.get("status") != "closed" and not record.get("voided_at")


def live_escalations(records: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """customer_id -> its live escalation (the latest opened, when several)."""
    live = sorted((record for record in records if is_live(record)),
                  key=lambda record: (record["opened_date"], str(record["item_id"])))
    return {record["customer_id"]: record for record in live}


def escalation_label(record: Mapping[str, Any]) -> str:
    """The worklist's word for a live escalation: its status, reason and decision, e.g. 'open: old_item'."""
    decided = f" -> {record['decision']}" if record.get("decision") else ""
    return f"{record['status']}: {record['reason_code']}{decided}"


def with_escalation_column(worklist: pd.DataFrame, records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The worklist with an `escalation` column: each customer's live escalation among the store's escalation
    `records` (`escalation_label`), None without one."""
    labels = {customer: escalation_label(record) for customer, record in live_escalations(records).items()}
    return worklist.assign(escalation=worklist["customer_id"].map(labels).astype(object)
                           .where(worklist["customer_id"].isin(labels.keys()), None))


# ---- the backtest's pure part ----------------------------------------------------------------------------

def deterioration_events(ledger: Ledger, origin: pd.Timestamp) -> set[str]:
    """Customers that went 90+ days past due on an open invoice, or had a document written off, in
    (origin, origin + 90] (the deterioration label of `features.labels`; customers already 90+ days past due
    at the origin are not events: they went before)."""
    config = FeatureConfig()
    labels = customer_labels(ledger, origin, config=config)
    return set(labels.loc[labels[f"deteriorates_{config.deterioration_horizon_days}d"] == 1.0, "customer_id"])


def top_by_overdue(evidence: pd.DataFrame, count: int) -> set[str]:
    """The baseline queue: the `count` customers with the most overdue open receivables (ties by id)."""
    overdue = evidence[evidence["overdue_amount_base"] > 0]
    ranked = overdue.sort_values(["overdue_amount_base", "customer_id"], ascending=[False, True])
    return set(ranked["customer_id"].head(count))


def recall_precision(queue: set[str], events: set[str]) -> dict[str, float]:
    """Share of the events the queue holds, and share of the queue that are events (NaN when empty)."""
    hits = len(queue & events)
    return {"hits": hits, "recall": hits / len(events) if events else float("nan"),
            "precision": hits / len(queue) if queue else float("nan")}


def backtest_origin(ledger: Ledger, origin: pd.Timestamp, scores: pd.DataFrame | None, policy: EscalationPolicy,
                    lead_days: int = 30) -> dict[str, Any]:
    """One origin of the escalation backtest: the events in (origin, origin + 90], the escalation queue held
    at origin - `lead_days` (`scores`: the deterioration model's output at that date, from a model trained
    on what was known then), and the baseline queue of the same size by overdue amount at that date."""
    queue_date = pd.Timestamp(origin) - lead_days * DAY
    evidence = escalation_evidence(ledger, queue_date, policy)
    queue = set(escalation_candidates(evidence, scores, policy)["customer_id"])
    baseline = top_by_overdue(evidence, len(queue))
    events = deterioration_events(ledger, pd.Timestamp(origin))
    ours, theirs = recall_precision(queue, events), recall_precision(baseline, events)
    return {"origin": pd.Timestamp(origin), "queue_date": queue_date, "events": len(events), "queued": len(queue),
            "baseline_queued": len(baseline), "hits": ours["hits"], "recall": ours["recall"],
            "precision": ours["precision"], "baseline_hits": theirs["hits"], "baseline_recall": theirs["recall"],
            "baseline_precision": theirs["precision"]}


def pooled(results: pd.DataFrame) -> dict[str, float]:
    """Recall and precision over all origins together (sums of hits, events and queue sizes)."""
    def share(hits: str, total: str) -> float:
        return float(results[hits].sum() / results[total].sum()) if results[total].sum() else float("nan")

    return {"events": int(results["events"].sum()), "queued": int(results["queued"].sum()),
            "recall": share("hits", "events"), "precision": share("hits", "queued"),
            "baseline_recall": share("baseline_hits", "events"),
            "baseline_precision": share("baseline_hits", "baseline_queued")}
