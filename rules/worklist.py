"""The prioritised collection worklist (DESIGN.md §7): one row per customer with overdue open items.

Priority is the expected money at risk: for each open invoice, open amount x P(still unpaid
`horizon_days` after `as_of`), taken from the receipt-timing distribution and passed in as the
`p_unpaid` column; summed per customer. Rules then adjust it:

- **hold**: an item in open dispute, under a pending promise (on the invoice or the account) or under
  a dunning block is not chased, so its money at risk leaves the score; a customer whose overdue
  items are all held is marked held, with the reason, and ranks by what is left (its other items'
  risk; nothing when all its items are held). Ranking held customers last instead gave up the risk of
  their other items: in the backtest check it lost to ranking by overdue amount at 4 of 12 origins, by
  score at 2;
- **jump**: the score is multiplied when a promise was broken, when the customer is flagged as
  deteriorating, or when the open balance is over the credit limit (weights in the policy).

Ties are broken by overdue amount, then customer id, so the order never depends on input order.
The scoring inputs are plain frames, so the backtest check of the ranking uses this same code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from configs import config_path, validated_policy
from features.asof import known_at
from features.collections import BROKEN, promise_status
from ledger import Ledger
from ledger.errors import BadInput
from rules.aging import MONEY_TOLERANCE
from rules.dunning import hold_reasons

ACTIVE, ESCALATED, HELD = "active", "escalated", "held"
DEFAULT_POLICY = config_path("worklist", "default.yaml")


class WorklistPolicy(BaseModel):
    """How rules adjust the money-at-risk score."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    horizon_days: int = Field(30, ge=1, le=365, description="Money at risk: still unpaid this many days after as_of.")
    broken_promise_weight: float = Field(3.0, ge=1, description="Score multiplier after a broken promise.")
    broken_promise_days: int = Field(90, ge=1, description="A broken promise counts for this many days.")
    deterioration_weight: float = Field(2.0, ge=1, description="Score multiplier when flagged as deteriorating.")
    over_limit_weight: float = Field(1.5, ge=1, description="Score multiplier when open AR exceeds the credit limit.")


class WorklistPolicyError(BadInput, ValueError):
    """A worklist policy file that cannot be read or does not validate."""


class WorklistFilterError(BadInput, ValueError):
    """A worklist filter the ledger cannot answer (a collector without a collector column)."""


def load_worklist_policy(path: str | Path = DEFAULT_POLICY) -> WorklistPolicy:
    """The policy in a YAML file, or a `WorklistPolicyError` naming the file and the bad keys."""
    return validated_policy(path, WorklistPolicy, WorklistPolicyError)


def money_at_risk(open_amount_base: pd.Series, p_unpaid: pd.Series) -> pd.Series:
    """Expected amount still unpaid at the horizon; credit memos (negative) carry no risk."""
    return open_amount_base.clip(lower=0) * p_unpaid.clip(0, 1)


def customer_priority(items: pd.DataFrame, customers: pd.DataFrame, policy: WorklistPolicy) -> pd.DataFrame:
    """Per customer with an overdue open invoice: amounts, money at risk, escalations and the score.

    `items`: one row per open document with customer_id, open_amount_base, days_past_due, p_unpaid,
    hold_reason ("" when not held) and broken_promise (bool). `customers`: customer_id,
    credit_utilisation (open AR / credit limit, NaN without one) and deteriorating (bool)."""
    amount = items["open_amount_base"]
    overdue = (items["days_past_due"] > 0) & (amount > 0)
    held = items["hold_reason"].fillna("") != ""
    at_risk = money_at_risk(amount, items["p_unpaid"])
    per_item = pd.DataFrame({
        "customer_id": items["customer_id"],
        "open_amount_base": amount,
        "overdue_amount_base": amount.where(overdue, 0.0),
        "active_overdue_base": amount.where(overdue & ~held, 0.0),
        "money_at_risk_base": at_risk.where(~held, 0.0),
        "held_at_risk_base": at_risk.where(held, 0.0),
        "broken_promise": items["broken_promise"].astype(bool),
        "max_days_past_due": items["days_past_due"].where(amount > 0, 0),
    })
    table = per_item.groupby("customer_id", sort=True).agg(
        open_amount_base=("open_amount_base", "sum"), overdue_amount_base=("overdue_amount_base", "sum"),
        active_overdue_base=("active_overdue_base", "sum"), money_at_risk_base=("money_at_risk_base", "sum"),
        held_at_risk_base=("held_at_risk_base", "sum"), broken_promise=("broken_promise", "any"),
        max_days_past_due=("max_days_past_due", "max"))
    table = table[table["overdue_amount_base"] > 0]
    table["max_days_past_due"] = table["max_days_past_due"].astype(int)
    facts = customers.set_index("customer_id").reindex(table.index)
    table["deteriorating"] = facts["deteriorating"].fillna(False).astype(bool)
    table["over_credit_limit"] = facts["credit_utilisation"].fillna(0).to_numpy() > 1
    weight = (np.where(table["broken_promise"], policy.broken_promise_weight, 1.0)
              * np.where(table["deteriorating"], policy.deterioration_weight, 1.0)
              * np.where(table["over_credit_limit"], policy.over_limit_weight, 1.0))
    table["score"] = table["money_at_risk_base"] * weight
    escalated = table["broken_promise"] | table["deteriorating"] | table["over_credit_limit"]
    table["status"] = np.select([table["active_overdue_base"] <= 0, escalated], [HELD, ESCALATED], ACTIVE)
    return ranked(table.reset_index())


def ranked(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in priority order with `rank` 1..n: score, then overdue amount, then customer id."""
    order = table.sort_values(["score", "overdue_amount_base", "customer_id"], ascending=[False, False, True],
                              kind="mergesort")
    return order.assign(rank=np.arange(1, len(order) + 1)).reset_index(drop=True)


def top_share(score: pd.Series, outcome: pd.Series, share: float = 0.2, tiebreak: pd.Series | None = None) -> float:
    """Share of the total `outcome` held by the top `share` of rows by `score` (ties by `tiebreak`)."""
    if len(score) == 0 or outcome.sum() <= 0:
        return float("nan")
    frame = pd.DataFrame({"score": score.to_numpy(), "outcome": outcome.to_numpy(),
                          "tiebreak": (tiebreak if tiebreak is not None else pd.Series(range(len(score)))).to_numpy()})
    frame = frame.sort_values(["score", "tiebreak"], ascending=[False, True], kind="mergesort")
    top = max(1, int(np.ceil(share * len(frame))))
    return float(frame["outcome"].iloc[:top].sum() / frame["outcome"].sum())


def item_rule_inputs(ledger: Ledger, as_of: pd.Timestamp, items: pd.DataFrame, policy: WorklistPolicy,
                     tolerance: float = MONEY_TOLERANCE, known: Ledger | None = None,
                     status: pd.Series | None = None) -> pd.DataFrame:
    """`items` with hold_reason and broken_promise (a promise on the item or on the account broken
    within `broken_promise_days` and not kept) as known at `as_of`. A caller that already has the
    ledger as known at `as_of` and its promise status passes them, so neither is computed twice."""
    as_of = pd.Timestamp(as_of).normalize()
    known = known if known is not None else known_at(ledger, as_of)
    status = status if status is not None else promise_status(
        known.promises, known.payment_applications, known.payments, known.writeoffs, as_of, tolerance)
    recent = (known.promises["promised_date"] >= as_of - pd.Timedelta(days=policy.broken_promise_days))
    broken = known.promises[(status == BROKEN) & recent]
    on_invoice = items["invoice_id"].isin(broken["invoice_id"].dropna())
    on_account = items["customer_id"].isin(broken.loc[broken["invoice_id"].isna(), "customer_id"])
    return items.assign(hold_reason=hold_reasons(known, items, as_of, tolerance, status).to_numpy(),
                        broken_promise=(on_invoice | on_account).to_numpy())


def rule_reasons(row: pd.Series, facts: dict) -> list[str]:
    """The rule reasons of one priority row, in words: broken promise, deterioration, limit, holds."""
    reasons = []
    if row["broken_promise"] and facts.get("broken_promise"):
        reasons.append(facts["broken_promise"])
    if row["deteriorating"]:
        probability = facts.get("deterioration_probability")
        share = f" ({probability:.0%} risk of 90+ days past due in 90 days)" if probability is not None else ""
        reasons.append(f"flagged as deteriorating{share}")
    if row["over_credit_limit"]:
        utilisation = facts.get("credit_utilisation")
        reasons.append(f"over credit limit ({utilisation:.0%} used)" if utilisation is not None
                       else "over credit limit")
    if row["status"] == HELD and facts.get("hold"):
        reasons.append(f"on hold: {facts['hold']}")
    return reasons


def last_promise_text(promises: pd.DataFrame, status: pd.Series) -> pd.Series:
    """Per customer: the latest promise (by made date) in words, with its status as of the date."""
    if promises.empty:
        return pd.Series(dtype=object)
    latest = promises.assign(status=status).sort_values(["made_date", "promise_id"]).groupby("customer_id").tail(1)
    text = ("promise of " + latest["made_date"].dt.strftime("%Y-%m-%d") + " to pay "
            + latest["amount"].map("{:,.2f}".format) + " by " + latest["promised_date"].dt.strftime("%Y-%m-%d")
            + ": " + latest["status"])
    return pd.Series(text.to_numpy(), index=latest["customer_id"].to_numpy())


def broken_promise_text(promises: pd.DataFrame, status: pd.Series) -> pd.Series:
    """Per customer: the latest broken promise in words ("promise of 12 Oct to pay 500.00 broken")."""
    broken = promises[status == BROKEN]
    if broken.empty:
        return pd.Series(dtype=object)
    latest = broken.sort_values(["promised_date", "promise_id"]).groupby("customer_id").tail(1)
    text = ("promise to pay " + latest["amount"].map("{:,.2f}".format) + " by "
            + latest["promised_date"].dt.strftime("%Y-%m-%d") + " broken")
    return pd.Series(text.to_numpy(), index=latest["customer_id"].to_numpy())


def last_dispute_text(disputes: pd.DataFrame, invoices: pd.DataFrame) -> pd.Series:
    """Per customer: the latest dispute (by opening date) in words, open or resolved."""
    if disputes.empty:
        return pd.Series(dtype=object)
    customer = disputes["invoice_id"].map(invoices.set_index("invoice_id")["customer_id"])
    latest = disputes.assign(customer_id=customer).sort_values(["opened_date", "dispute_id"])
    latest = latest.groupby("customer_id").tail(1)
    state = np.where(latest["resolved_date"].isna(), "open",
                     "resolved " + latest["resolved_date"].dt.strftime("%Y-%m-%d").fillna(""))
    text = ("dispute on " + latest["invoice_id"] + " (" + latest["reason"].fillna("no reason") + ") opened "
            + latest["opened_date"].dt.strftime("%Y-%m-%d") + ", " + state)
    return pd.Series(text.to_numpy(), index=latest["customer_id"].to_numpy())


def last_contact_text(contacts: pd.DataFrame) -> pd.Series:
    """Per customer: the latest contact in words (date, channel, outcome)."""
    if contacts.empty:
        return pd.Series(dtype=object)
    latest = contacts.sort_values(["contact_date", "contact_id"]).groupby("customer_id").tail(1)
    text = (latest["contact_date"].dt.strftime("%Y-%m-%d") + " " + latest["channel"] + ": "
            + latest["outcome"].fillna(""))
    return pd.Series(text.to_numpy(), index=latest["customer_id"].to_numpy())


def next_dunning_action(proposal: pd.DataFrame) -> pd.Series:
    """Per customer in a dunning proposal: the highest level proposed and its channel, else why not."""
    if proposal.empty:
        return pd.Series(dtype=object)
    proposed = proposal[proposal["status"] == "proposed"]
    action = (proposed.sort_values("level").groupby("customer_id").tail(1)
              .pipe(lambda rows: pd.Series(("level " + rows["level"].astype(str) + " by " + rows["channel"]).to_numpy(),
                                           index=rows["customer_id"].to_numpy())))
    others = proposal[~proposal["customer_id"].isin(proposed["customer_id"])]
    waiting = others.groupby("customer_id")["status"].first().map(lambda status: f"none ({status})")
    return pd.concat([action, waiting])


WORKLIST_COLUMNS = ["rank", "customer_id", "name", "collector", "segment", "status", "score", "money_at_risk_base",
                    "open_amount_base", "overdue_amount_base", "oldest_invoice_id", "max_days_past_due",
                    "next_dunning_action", "last_promise", "last_dispute", "last_contact",
                    "reason_1", "reason_2", "reason_3"]


def worklist(ledger: Ledger, as_of: pd.Timestamp, items: pd.DataFrame, customers: pd.DataFrame,
             policy: WorklistPolicy, dunning: pd.DataFrame | None = None, collector: str | None = None,
             segment: str | None = None, top: int | None = None, portfolio: list[str] | None = None,
             tolerance: float = MONEY_TOLERANCE) -> pd.DataFrame:
    """The worklist as of `as_of`: priority rows with who to call, what happened last and why.

    `items` are the open documents with p_unpaid (see `customer_priority`); `customers` add
    credit_utilisation, deteriorating and optionally deterioration_probability. The reason columns
    hold the rule reasons; the caller fills the free ones from the models' explanations."""
    as_of = pd.Timestamp(as_of).normalize()
    known = known_at(ledger, as_of)
    status = promise_status(known.promises, known.payment_applications, known.payments, known.writeoffs,
                            as_of, tolerance)
    items = item_rule_inputs(ledger, as_of, items, policy, tolerance, known=known, status=status)
    priority = customer_priority(items, customers, policy)
    info = known.customers.set_index("customer_id")
    # Filtered before the text columns are built: `top=20` of thousands of customers describes 20.
    who = priority.assign(segment=priority["customer_id"].map(info["segment"]))
    if "collector" in info:
        who["collector"] = priority["customer_id"].map(info["collector"])
    priority = priority.loc[filtered_worklist(who, collector=collector, segment=segment, top=top,
                                              portfolio=portfolio).index]
    priority = priority.assign(rank=np.arange(1, len(priority) + 1))

    broken = broken_promise_text(known.promises, status)
    overdue_items = items[(items["days_past_due"] > 0) & (items["open_amount_base"] > 0)]
    oldest = overdue_items.sort_values(["days_past_due", "invoice_id"], ascending=[False, True]).groupby(
        "customer_id")["invoice_id"].first()
    holds = overdue_items[overdue_items["hold_reason"] != ""].groupby("customer_id")["hold_reason"].agg(
        lambda reasons: "; ".join(sorted(set("; ".join(reasons).split("; ")))))
    facts = customers.set_index("customer_id")
    reasons = []
    for row in priority.itertuples(index=False):
        row_series = pd.Series(row._asdict())
        customer_id = row.customer_id
        rules_text = rule_reasons(row_series, {
            "broken_promise": broken.get(customer_id),
            "deterioration_probability": _optional(facts, "deterioration_probability", customer_id),
            "credit_utilisation": _optional(facts, "credit_utilisation", customer_id),
            "hold": holds.get(customer_id),
        })
        reasons.append(([*rules_text, "", "", ""])[:3])
    reason_frame = pd.DataFrame(reasons, columns=["reason_1", "reason_2", "reason_3"], index=priority.index)
    table = priority.join(reason_frame).assign(
        name=priority["customer_id"].map(info["name"]),
        collector=priority["customer_id"].map(info["collector"]) if "collector" in info else None,
        segment=priority["customer_id"].map(info["segment"]),
        oldest_invoice_id=priority["customer_id"].map(oldest),
        next_dunning_action=(priority["customer_id"].map(next_dunning_action(dunning)).fillna("none due")
                             if dunning is not None else None),
        last_promise=priority["customer_id"].map(last_promise_text(known.promises, status)),
        last_dispute=priority["customer_id"].map(last_dispute_text(known.disputes, known.invoices)),
        last_contact=priority["customer_id"].map(last_contact_text(known.contacts)),
    )
    return table[WORKLIST_COLUMNS].reset_index(drop=True)


def filtered_worklist(table: pd.DataFrame, customers: frozenset[str] | None = None, collector: str | None = None,
                      segment: str | None = None, top: int | None = None,
                      portfolio: list[str] | None = None) -> pd.DataFrame:
    """The rows of a ranked worklist for one collector, segment and set of `customers` (None: no filter),
    ranks renumbered 1..n, the first `top`. A collector's `portfolio` recorded in the activity store wins
    over the ledger's collector column (None: none recorded)."""
    if portfolio is not None:
        table = table[table["customer_id"].isin(portfolio)]
    elif collector is not None:
        if "collector" not in table:
            raise WorklistFilterError("the ledger's customers have no collector column: cannot filter by collector")
        table = table[table["collector"] == collector]
    if customers is not None:
        table = table[table["customer_id"].isin(customers)]
    if segment is not None:
        table = table[table["segment"] == segment]
    table = table.assign(rank=np.arange(1, len(table) + 1))
    return table.head(top) if top is not None else table


def _optional(facts: pd.DataFrame, column: str, customer_id: str):
    if column not in facts or customer_id not in facts.index:
        return None
    value = facts.at[customer_id, column]
    return None if pd.isna(value) else float(value)
