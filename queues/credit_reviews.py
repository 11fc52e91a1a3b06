"""Credit reviews (issue 21, point 3): which customers the credit team reviews at `as_of`, and the credit limit
it is advised to set, with the formula and every input shown. Settings: `configs/credit_reviews/default.yaml`.

Triggers, each from what was known at `as_of` (`features.asof.known_at`) and the day's deterioration scores:
- `deteriorating`: the day's deterioration flag is set, or its probability is at least `deterioration_probability`;
- `near_limit`: open receivables (company currency, net of open credit memos) over the credit limit is at least
  `near_limit_share`; a customer without a positive limit (none, or on credit hold) is not reviewed for it;
- `new_customer`: its first invoice is less than `new_customer_days` old, or none of its invoices was paid in
  full yet (no payment history to judge it by).
A customer with several triggers is one review; its reason code is the first of them in that order.

The recommended limit is the receivables the customer runs up at its own pace, cut for its risk:

    limit = floor_to_step( monthly_sales x (terms_days + days_late) / 30 x (1 - p_deteriorate)
                           x safety_factor x (1 - new_customer_haircut) )

- monthly_sales: invoices (not credit memos) issued in the last `sales_days` days, company currency, per 30
  days of that window in which the customer was invoiced (the whole window, or since its first invoice);
- terms_days: the customer's payment terms (master data as it stands, see `features.asof`);
- days_late: the mean days late of its invoices paid in full by `as_of`, at least 0 (a limit covers the terms);
- p_deteriorate: the day's deterioration probability (0 where the day has none);
- new_customer_haircut: 0 for an established customer. A new customer has no history of its own to measure,
  so monthly_sales, days_late and p_deteriorate are the medians of its established peers (customers known at
  `as_of` that are not new themselves) of the same segment and country; with fewer than `min_peers` of those,
  of the same segment; then of all established customers. Its p_deteriorate is the higher of its own and its
  peers'. Without any established customer, its own figures are used (0 where it has none).
The product is rounded down to a multiple of `rounding_step`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from configs import config_path, validated_policy
from features.asof import known_at
from features.settlement import days_between, document_state
from ledger import Ledger
from ledger.errors import BadInput
from queues.sla import SlaPolicy, due_date

DEFAULT_POLICY = config_path("credit_reviews", "default.yaml")
QUEUE = "credit_review"
TRIGGERS = ("deteriorating", "near_limit", "new_customer")  # the reason code is the first that applies
DECISIONS = ("approve", "change", "credit_hold")
RISK_COLUMNS = ("customer_id", "deterioration_probability", "deteriorating")
MONTH_DAYS = 30
MONEY_TOLERANCE = 0.005  # an open amount within this is settled (features.FeatureConfig.money_tolerance)


class CreditReviewPolicyError(BadInput, ValueError):
    """A credit-review policy file that cannot be read or does not validate."""


class CreditReviewPolicy(BaseModel):
    """When a customer is reviewed and how its recommended limit is computed. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    owner: str = Field("Credit Team", min_length=1, description="Who a review is opened for.")
    deterioration_probability: float = Field(0.5, gt=0, le=1, description="P(deteriorate) from which to review.")
    near_limit_share: float = Field(0.9, gt=0, description="Open receivables / credit limit from which to review.")
    new_customer_days: int = Field(180, ge=0, description="A customer invoiced first within these days is new.")
    sales_days: int = Field(365, ge=30, description="Window of the monthly sales, in days.")
    safety_factor: float = Field(0.9, gt=0, le=1, description="Share of the computed exposure recommended.")
    new_customer_haircut: float = Field(0.5, ge=0, lt=1, description="Cut of a new customer's limit.")
    min_peers: int = Field(3, ge=1, description="Fewest peers of a group before falling back to a wider one.")
    rounding_step: float = Field(1000, gt=0, description="The limit is rounded down to a multiple of this.")


def load_credit_review_policy(path: str | Path | None = None) -> CreditReviewPolicy:
    """Read and validate a credit-review policy YAML (default `configs/credit_reviews/default.yaml`)."""
    return validated_policy(path or DEFAULT_POLICY, CreditReviewPolicy, CreditReviewPolicyError)


# --- Each customer's history at as_of ---------------------------------------------------------------

def customer_history(ledger: Ledger, as_of: pd.Timestamp, policy: CreditReviewPolicy) -> pd.DataFrame:
    """Per customer known at `as_of` (indexed by customer_id): master data, first invoice, sales in the
    window, days late of paid invoices and open receivables, all from what was known at `as_of`."""
    as_of = pd.Timestamp(as_of).normalize()
    known = known_at(ledger, as_of)
    state = document_state(known, as_of, MONEY_TOLERANCE)
    customers = known.customers.set_index("customer_id")
    invoices = state[state["is_invoice"]]
    first_invoice = invoices.groupby("customer_id")["invoice_date"].min().reindex(customers.index)
    in_window = invoices[invoices["invoice_date"] > as_of - pd.Timedelta(days=policy.sales_days)]
    invoiced = in_window.groupby("customer_id")["amount_base"].sum().reindex(customers.index, fill_value=0.0)
    covered = (days_between(as_of, first_invoice) + 1).clip(upper=policy.sales_days)
    paid = invoices[invoices["paid_date"].notna()]
    open_ar = state[state["is_open"]].groupby("customer_id")["open_amount_base"].sum()
    return pd.DataFrame({
        "name": customers.get("name"),
        "segment": customers["segment"],
        "country": customers["country"],
        "payment_terms_days": customers["payment_terms_days"].astype(float),
        "credit_limit": customers["credit_limit"].astype(float) if "credit_limit" in customers else np.nan,
        "first_invoice_date": first_invoice,
        "invoiced_base": invoiced.astype(float),
        "covered_days": covered,
        "monthly_sales_base": (invoiced / covered * MONTH_DAYS).fillna(0.0),
        "paid_invoices": paid.groupby("customer_id").size().reindex(customers.index, fill_value=0),
        "avg_days_late": paid.groupby("customer_id")["days_late"].mean().reindex(customers.index),
        "open_ar_base": open_ar.reindex(customers.index, fill_value=0.0).astype(float),
    }, index=customers.index)


def with_risk(history: pd.DataFrame, risk: pd.DataFrame) -> pd.DataFrame:
    """`history` with the day's `deterioration_probability` and `deteriorating` flag per customer (NaN and
    False where the day has none); `risk` is the day's customers table, or any frame with those columns."""
    missing = [column for column in RISK_COLUMNS if column not in risk]
    if missing:
        raise BadInput(f"customers: missing column(s) {', '.join(missing)} (the day's deterioration scores)")
    indexed = risk.drop_duplicates("customer_id").set_index("customer_id")
    probability = pd.to_numeric(indexed["deterioration_probability"], errors="coerce")
    return history.assign(
        deterioration_probability=probability.reindex(history.index).astype(float),
        deteriorating=indexed["deteriorating"].fillna(False).astype(bool).reindex(history.index, fill_value=False))


# --- Triggers ---------------------------------------------------------------------------------------------

def deteriorating(history: pd.DataFrame, policy: CreditReviewPolicy) -> pd.Series:
    """True where the day's flag is set or P(deteriorate) reaches the policy's threshold."""
    return history["deteriorating"] | (history["deterioration_probability"] >= policy.deterioration_probability)


def credit_utilisation(history: pd.DataFrame) -> pd.Series:
    """Open receivables over the credit limit (NaN without a positive limit)."""
    return history["open_ar_base"] / history["credit_limit"].where(history["credit_limit"] > 0)


def near_limit(history: pd.DataFrame, policy: CreditReviewPolicy) -> pd.Series:
    """True where open receivables reach the policy's share of a positive credit limit."""
    return (credit_utilisation(history) >= policy.near_limit_share).fillna(False).astype(bool)


def new_customer(history: pd.DataFrame, as_of: pd.Timestamp, policy: CreditReviewPolicy) -> pd.Series:
    """True where the first invoice is under `new_customer_days` old, or no invoice was paid in full yet."""
    age = days_between(pd.Timestamp(as_of).normalize(), history["first_invoice_date"])
    return ((age < policy.new_customer_days) | history["first_invoice_date"].isna()
            | (history["paid_invoices"] == 0)).astype(bool)


def triggers(history: pd.DataFrame, as_of: pd.Timestamp, policy: CreditReviewPolicy) -> pd.DataFrame:
    """One boolean column per trigger (`TRIGGERS`), per customer."""
    return pd.DataFrame({"deteriorating": deteriorating(history, policy), "near_limit": near_limit(history, policy),
                         "new_customer": new_customer(history, as_of, policy)}, index=history.index)


# --- The recommended limit ------------------------------------------------------------------------------

def peer_figures(history: pd.DataFrame, is_new: pd.Series, customer_id: str,
                 policy: CreditReviewPolicy) -> tuple[str, int, dict]:
    """The group of established peers a new customer is measured by (segment and country, else segment,
    else all), its size, and its medians of monthly sales, days late and P(deteriorate)."""
    established = history[~is_new]
    own = history.loc[customer_id]
    groups = [
        (f"segment {own['segment']} and country {own['country']}",
         established[(established["segment"] == own["segment"]) & (established["country"] == own["country"])]),
        (f"segment {own['segment']}", established[established["segment"] == own["segment"]]),
        ("all established customers", established),
    ]
    for name, peers in groups:
        if len(peers) >= policy.min_peers or (name == groups[-1][0] and len(peers)):
            return name, len(peers), {
                "monthly_sales_base": float(peers["monthly_sales_base"].median()),
                "avg_days_late": float(peers["avg_days_late"].clip(lower=0).median()),
                "deterioration_probability": _zero_if_missing(peers["deterioration_probability"].median()),
            }
    return "none (no established customer)", 0, {}


def limit_inputs(history: pd.DataFrame, is_new: pd.Series, customer_id: str, as_of: pd.Timestamp,
                 policy: CreditReviewPolicy) -> dict:
    """Every input of a customer's recommended limit (JSON-ready), with where each comes from."""
    own = history.loc[customer_id]
    own_probability = _zero_if_missing(own["deterioration_probability"])
    inputs = {
        "as_of": f"{pd.Timestamp(as_of):%Y-%m-%d}",
        "basis": "own history",
        "monthly_sales_base": _rounded(own["monthly_sales_base"]),
        "invoiced_base": _rounded(own["invoiced_base"]),
        "sales_days": policy.sales_days,
        "covered_days": None if pd.isna(own["covered_days"]) else int(own["covered_days"]),
        "payment_terms_days": _rounded(own["payment_terms_days"]),
        "avg_days_late": _rounded(max(_zero_if_missing(own["avg_days_late"]), 0.0)),
        "paid_invoices": int(own["paid_invoices"]),
        "deterioration_probability": _rounded(own_probability, 4),
        "safety_factor": policy.safety_factor,
        "new_customer_haircut": 0.0,
        "rounding_step": policy.rounding_step,
    }
    if bool(is_new.loc[customer_id]):
        group, count, medians = peer_figures(history, is_new, customer_id, policy)
        inputs.update(basis=f"peers: {group}", peer_count=count, new_customer_haircut=policy.new_customer_haircut,
                      own_deterioration_probability=inputs["deterioration_probability"])
        if medians:
            inputs.update(monthly_sales_base=_rounded(medians["monthly_sales_base"]),
                          avg_days_late=_rounded(medians["avg_days_late"]),
                          deterioration_probability=_rounded(max(own_probability,
                                                                 medians["deterioration_probability"]), 4))
    return inputs


def recommended_limit(inputs: dict) -> tuple[float, str]:
    """The recommended limit from `limit_inputs`, and the formula with the numbers put in, on one line."""
    exposure = (inputs["monthly_sales_base"] * (inputs["payment_terms_days"] + inputs["avg_days_late"]) / MONTH_DAYS
                * (1 - inputs["deterioration_probability"]) * inputs["safety_factor"]
                * (1 - inputs["new_customer_haircut"]))
    step = inputs["rounding_step"]
    # Rounded to the cent first, so a product that is a whole step in decimals is not a hair below it.
    limit = max(math.floor(round(exposure, 2) / step) * step, 0.0)
    haircut = f" x (1 - {inputs['new_customer_haircut']:g} new-customer haircut)" if inputs["new_customer_haircut"] else ""
    formula = (f"{limit:,.0f} = floor to {step:,g} of {inputs['monthly_sales_base']:,.2f} monthly sales x "
               f"({inputs['payment_terms_days']:g} terms + {inputs['avg_days_late']:g} days late) / {MONTH_DAYS} x "
               f"(1 - {inputs['deterioration_probability']:g} P(deteriorate)) x {inputs['safety_factor']:g} safety"
               f"{haircut} [{inputs['basis']}]")
    return float(limit), formula


# --- The review table ---------------------------------------------------------------------------------

def credit_review_table(ledger: Ledger, as_of: pd.Timestamp, risk: pd.DataFrame,
                        policy: CreditReviewPolicy) -> pd.DataFrame:
    """Per customer known at `as_of`: its triggers, reason code (None: not to review), current limit,
    utilisation, P(deteriorate), recommended limit, the formula and its inputs (a dict)."""
    as_of = pd.Timestamp(as_of).normalize()
    history = with_risk(customer_history(ledger, as_of, policy), risk)
    flags = triggers(history, as_of, policy)
    utilisation = credit_utilisation(history)
    rows = []
    for customer_id in history.index:
        own = history.loc[customer_id]
        fired = [name for name in TRIGGERS if flags.at[customer_id, name]]
        inputs = limit_inputs(history, flags["new_customer"], customer_id, as_of, policy)
        limit, formula = recommended_limit(inputs)
        rows.append({
            "customer_id": customer_id, "name": own["name"], "segment": own["segment"], "country": own["country"],
            "reason_code": fired[0] if fired else None, "triggers": ", ".join(fired),
            "credit_limit": _rounded(own["credit_limit"]), "open_ar_base": _rounded(own["open_ar_base"]),
            "utilisation": _rounded(utilisation.loc[customer_id], 4),
            "deterioration_probability": _rounded(own["deterioration_probability"], 4),
            "deteriorating": bool(own["deteriorating"]),
            "recommended_limit": limit, "formula": formula, "inputs": inputs,
        })
    return pd.DataFrame(rows, columns=["customer_id", "name", "segment", "country", "reason_code", "triggers",
                                       "credit_limit", "open_ar_base", "utilisation", "deterioration_probability",
                                       "deteriorating", "recommended_limit", "formula", "inputs"])


def review_candidates(table: pd.DataFrame) -> pd.DataFrame:
    """The customers with a trigger, most likely to deteriorate first (then by customer)."""
    candidates = table[table["reason_code"].notna()]
    order = candidates["deterioration_probability"].fillna(-1.0)
    return (candidates.assign(_order=-order).sort_values(["_order", "customer_id"])
            .drop(columns="_order").reset_index(drop=True))


def review_queue(candidates: pd.DataFrame, recorded: list[dict]) -> list[dict]:
    """The credit team's queue: every live (not voided) recorded review, newest first, then each candidate
    without a review still open, marked `candidate`. A recorded review carries its candidate's figures of
    today under `today` when it still is one."""
    today = {row["customer_id"]: row for row in candidates.to_dict("records")}
    reviews = [item for item in recorded if item["queue"] == QUEUE and not item.get("voided_at")]
    open_for = {item["customer_id"] for item in reviews if item["status"] == "open"}
    rows = [{**item, "kind": "recorded", "today": today.get(item["customer_id"])}
            for item in sorted(reviews, key=lambda item: (item["opened_date"], item["item_id"]), reverse=True)]
    rows += [{**row, "kind": "candidate"} for row in candidates.to_dict("records") if row["customer_id"] not in open_for]
    return rows


# --- Records ---------------------------------------------------------------------------------------------

def opening_fields(candidate: dict, as_of: pd.Timestamp, policy: CreditReviewPolicy, sla: SlaPolicy,
                   currency: str) -> dict:
    """The activity store's fields of a review opened at `as_of` for a candidate row: reason code, the
    recommended limit as its amount, the formula and its inputs as details, due by the SLA."""
    if not candidate.get("reason_code"):
        raise BadInput(f"customer_id: {candidate['customer_id']} has no credit-review trigger on {as_of:%Y-%m-%d}")
    return {
        "queue": QUEUE, "customer_id": candidate["customer_id"], "opened_date": pd.Timestamp(as_of).date(),
        "due_date": due_date(sla, QUEUE, as_of).date(), "owner": policy.owner,
        "reason_code": candidate["reason_code"], "amount": f"{candidate['recommended_limit']:.2f}",
        "currency": currency,
        "details": {"triggers": candidate["triggers"].split(", "), "formula": candidate["formula"],
                    "inputs": candidate["inputs"], "credit_limit": candidate["credit_limit"],
                    "open_ar_base": candidate["open_ar_base"], "utilisation": candidate["utilisation"]},
    }


def decision_changes(review: dict, decision: str, decided_date, limit: float | str | None = None,
                     note: str | None = None) -> dict:
    """The store's changes for an analyst's decision on an open review: approve sets the recommended limit,
    change the `limit` typed, credit_hold a limit of 0."""
    if decision not in DECISIONS:
        raise BadInput(f"decision: expected one of {', '.join(DECISIONS)}, got {decision!r}")
    if review["status"] != "open":
        raise BadInput(f"decision: credit review {review['item_id']} is already {review['status']}")
    if decision == "change":
        if limit is None:
            raise BadInput("limit: required when the decision is change (the limit the analyst sets)")
        decided = _checked_limit(limit)
    elif limit is not None:
        raise BadInput(f"limit: only a change takes a limit; {decision} sets "
                       + ("the recommended limit" if decision == "approve" else "a limit of 0"))
    else:
        decided = 0.0 if decision == "credit_hold" else _checked_limit(review["amount"])
    changes = {"status": "decided", "decision": decision, "decided_amount": f"{decided:.2f}",
               "decided_date": pd.Timestamp(decided_date).date()}
    if note:
        changes["note"] = note
    return changes


def _checked_limit(value) -> float:
    try:
        limit = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"limit: expected an amount, got {value!r}") from None
    if not math.isfinite(limit) or limit < 0:
        raise BadInput(f"limit: expected an amount of 0 or more, got {value!r}")
    return limit


def _zero_if_missing(value) -> float:
    return 0.0 if pd.isna(value) else float(value)


def _rounded(value, digits: int = 2) -> float | None:
    return None if pd.isna(value) else round(float(value), digits)
