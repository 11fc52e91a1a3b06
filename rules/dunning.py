"""Dunning proposal as of a date from a policy of ordered levels (DESIGN.md §5).

An open invoice past due is proposed for the level after the highest one already issued to it
(`dunning_notices` known at `as_of`), once it is at least that level's days past due and, after the
first level, at least its days since the previous notice: levels are never skipped. Invoices in open
dispute, under a pending promise (on the invoice or on the whole account) or under a dunning block
(invoice or customer) are held, with the reason. A customer whose proposed overdue total is below
the policy's minimum is skipped, with the reason. Paid items are not open, so never dunned.

Interest is simple daily interest on the open overdue amount: amount x yearly rate x days past
due / 365. The fee is the level's fixed fee, per invoice. One letter is rendered per customer and
level with the level's Jinja template and repeated on each of its rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from configs import validated_policy
from features.asof import known_at
from features.collections import PENDING, open_disputes, promise_status
from features.settlement import days_between, document_state
from ledger import Ledger
from ledger.errors import BadInput
from rules.aging import MONEY_TOLERANCE

PROPOSED, HELD, SKIPPED = "proposed", "held", "skipped"
TEMPLATES = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class PolicyError(BadInput, ValueError):
    """A dunning policy file that cannot be read or does not validate."""


class DunningLevel(BaseModel):
    """One level: when it is reached, how it is sent and what it charges."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: int = Field(ge=1, le=9, description="Level number; levels run 1, 2, 3, ... in order.")
    min_days_past_due: int | None = Field(None, ge=0, description="Reached at this many days past due or more.")
    min_days_since_previous: int | None = Field(
        None, ge=0, description="And at least this many days after the previous level was issued.")
    channel: Literal["email", "letter", "call", "legal"]
    fee: float = Field(0.0, ge=0, description="Fixed fee per invoice, document currency.")
    interest_rate: float = Field(0.0, ge=0, le=1, description="Yearly rate of simple interest, 0.08 = 8%.")
    template: str = Field(min_length=1, description="Jinja text of the letter.")

    @model_validator(mode="after")
    def _has_a_condition(self) -> DunningLevel:
        if self.min_days_past_due is None and self.min_days_since_previous is None:
            raise ValueError("a level needs min_days_past_due and/or min_days_since_previous")
        return self

    @field_validator("template")
    @classmethod
    def _template_compiles(cls, template: str) -> str:
        try:
            TEMPLATES.from_string(template)
        except TemplateError as error:
            raise ValueError(f"template does not compile: {error}") from None
        return template


class DunningPolicy(BaseModel):
    """Ordered dunning levels and the minimum amount worth dunning; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    minimum_amount: float = Field(0.0, ge=0, description="Skip a customer whose overdue total is below this.")
    levels: tuple[DunningLevel, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _levels_in_order(self) -> DunningPolicy:
        numbers = [level.level for level in self.levels]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"levels must be numbered 1, 2, 3, ... in order, got {numbers}")
        if self.levels[0].min_days_past_due is None:
            raise ValueError("level 1 needs min_days_past_due (there is no previous level)")
        return self


def load_policy(path: str | Path) -> DunningPolicy:
    """Read and validate a dunning policy YAML; `PolicyError` names the file and the problem."""
    return validated_policy(path, DunningPolicy, PolicyError)


def policy_levels(policy: DunningPolicy) -> pd.DataFrame:
    """The policy's levels as a frame indexed by level number."""
    return pd.DataFrame([level.model_dump() for level in policy.levels]).set_index("level")


def last_notices(notices: pd.DataFrame) -> pd.DataFrame:
    """Per invoice: the highest level issued, the date it was issued (missing for a level imported
    without its notice date) and the latest day it can have been issued (`issued_by`: the issued date,
    else the day the level became known)."""
    issued_by = notices["issued_date"]
    if "known_date" in notices:
        issued_by = issued_by.fillna(notices["known_date"])
    last = (notices.assign(issued_by=issued_by).sort_values(["invoice_id", "level", "issued_by"])
            .drop_duplicates("invoice_id", keep="last"))
    return last.set_index("invoice_id")[["level", "issued_date", "issued_by"]].rename(
        columns={"level": "last_level", "issued_date": "last_issued_date", "issued_by": "last_issued_by"})


def hold_reasons(known: Ledger, invoices: pd.DataFrame, as_of: pd.Timestamp, tolerance: float,
                 status: pd.Series | None = None) -> pd.Series:
    """Per invoice row: why it is held ("; "-joined), or an empty string. `status` is the promises'
    status at `as_of` when the caller already has it. A pending promise holds what was promised: its
    invoice, or for a promise on the account the oldest overdue items it covers (`account_promise_holds`)."""
    disputes = open_disputes(known.disputes)
    dispute = invoices["invoice_id"].map(
        ("open dispute " + disputes["dispute_id"] + " (" + disputes["reason"] + ")")
        .groupby(disputes["invoice_id"]).agg("; ".join))
    promises = known.promises
    if status is None:
        status = promise_status(promises, known.payment_applications, known.payments, known.writeoffs, as_of,
                                tolerance)
    pending = promises[status == PENDING]
    pending_text = ("pending promise " + pending["promise_id"] + " to pay by "
                    + pending["promised_date"].dt.strftime("%Y-%m-%d"))
    on_invoice = invoices["invoice_id"].map(
        pending_text[pending["invoice_id"].notna()].groupby(pending["invoice_id"]).agg("; ".join))
    on_account = invoices["invoice_id"].map(account_promise_holds(known, pending, pending_text, as_of, tolerance))
    invoice_block = _flag(known.invoices, "invoice_id", "dunning_block", invoices["invoice_id"])
    customer_block = _flag(known.customers, "customer_id", "dunning_block", invoices["customer_id"])
    reasons = pd.DataFrame({
        "dispute": dispute,
        "promise": on_invoice,
        "account_promise": on_account,
        "invoice_block": np.where(invoice_block, "dunning block on invoice", None),
        "customer_block": np.where(customer_block, "dunning block on customer", None),
    }, index=invoices.index)
    # stack() drops the missing reasons, so each invoice joins only those that apply.
    joined = reasons.stack().groupby(level=0).agg("; ".join) if len(reasons) else pd.Series(dtype=object)
    return joined.reindex(invoices.index, fill_value="")


def account_promise_holds(known: Ledger, pending: pd.DataFrame, pending_text: pd.Series, as_of: pd.Timestamp,
                          tolerance: float) -> pd.Series:
    """The documents held by pending promises on the account, indexed by invoice_id, with the promises' text.

    A customer's pending account promises add up and cover its oldest overdue open documents first
    (earliest due date, then invoice_id), whole documents only, while their running open amount stays
    within the promised total + `tolerance`: the first document not fully covered ends the cover, and
    documents not yet due are never covered. Credit memos are not covered (they carry no risk).

    Amounts are compared in document currency when the customer's overdue documents and account
    promises are all in one currency; otherwise in base currency, each promise converted at the
    amount-weighted rate of the customer's known documents in its currency (1 for the base currency; a
    promise in a currency none of them is in covers nothing). A promise's currency is its `currency`
    column when the ledger has one, else the customer's currency: an account promise is kept by the
    customer's payments (`features.collections`), which are in that currency.

    The documents come from the ledger as known at `as_of`, not from the caller's rows: the dunning
    proposal passes only the items due for their next level, and a promise must cover the same items
    there as in the worklist (which passes every open document). Only the customer's own rows are
    read, so a customer's slice of the ledger gives the same holds as the whole (`runs.actions`)."""
    account = pending[pending["invoice_id"].isna()]
    if account.empty:
        return pd.Series(dtype=object)
    customer_ids = account["customer_id"].unique()
    documents = known.invoices[known.invoices["customer_id"].isin(customer_ids)]
    ids = documents["invoice_id"]
    state = document_state(known.replace(
        invoices=documents,
        payment_applications=known.payment_applications[known.payment_applications["invoice_id"].isin(ids)],
        writeoffs=known.writeoffs[known.writeoffs["invoice_id"].isin(ids)]), as_of, tolerance)
    state["currency"] = documents["currency"].to_numpy()
    overdue = state[state["is_open"] & (state["open_amount"] > 0) & (days_between(as_of, state["due_date"]) > 0)]

    currency = account["customer_id"].map(known.customers.set_index("customer_id")["currency"])
    if "currency" in account:
        currency = account["currency"].fillna(currency)
    promise_currencies = currency.groupby(account["customer_id"]).agg(["nunique", "first"])
    item_currencies = overdue.groupby("customer_id")["currency"].agg(["nunique", "first"])
    items_too = item_currencies.reindex(promise_currencies.index)
    one_currency = ((promise_currencies["nunique"] == 1) & (items_too["nunique"] == 1)
                    & (promise_currencies["first"] == items_too["first"]))

    rate = pd.Series(_weighted_rates(documents, ["customer_id", "currency"]).reindex(
        pd.MultiIndex.from_arrays([account["customer_id"], currency])).to_numpy(), index=account.index)
    # No rate without a document of the customer's in that currency: such a promise covers nothing.
    rate = rate.where(currency != known.base_currency, 1.0).fillna(0.0)
    in_documents = account["customer_id"].map(one_currency).to_numpy(dtype=bool)
    promised = (account["amount"] * np.where(in_documents, 1.0, rate)).groupby(account["customer_id"]).sum()

    # Oldest first within each customer; the running sum only grows (amounts > 0), so a document is
    # covered exactly when it and every older one fit in the promised total.
    overdue = overdue.sort_values(["customer_id", "due_date", "invoice_id"], kind="mergesort")
    amount = overdue["open_amount"].where(overdue["customer_id"].map(one_currency).fillna(False).astype(bool),
                                          overdue["open_amount_base"])
    covered = amount.groupby(overdue["customer_id"]).cumsum() <= overdue["customer_id"].map(promised) + tolerance
    held = overdue[covered]
    text = pending_text[account.index].groupby(account["customer_id"]).agg("; ".join)
    return pd.Series(held["customer_id"].map(text).to_numpy(), index=held["invoice_id"].to_numpy(), dtype=object)


def _weighted_rates(documents: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Base units per document-currency unit per `keys`, weighted by amount (credit memos count by size)."""
    sums = documents[["amount", "amount_base"]].abs().groupby([documents[key] for key in keys]).sum()
    return sums["amount_base"] / sums["amount"]


def _flag(table: pd.DataFrame, key: str, column: str, keys: pd.Series) -> np.ndarray:
    if column not in table:
        return np.zeros(len(keys), dtype=bool)
    return keys.map(table.set_index(key)[column]).fillna(False).astype(bool).to_numpy()


def dunning_proposal(ledger: Ledger, as_of: pd.Timestamp, policy: DunningPolicy,
                     tolerance: float = MONEY_TOLERANCE, letters: bool = True) -> pd.DataFrame:
    """Per overdue open invoice due for its next level: level, fee, interest, channel and letter,
    or held / skipped with the reason (`letters=False` leaves the letter text empty: rendering is the
    slow part and the worklist needs only the next level)."""
    as_of = pd.Timestamp(as_of).normalize()
    known = known_at(ledger, as_of)
    state = document_state(known, as_of, tolerance)
    state = state.assign(currency=known.invoices["currency"].to_numpy(),
                         days_past_due=days_between(as_of, state["due_date"]))
    items = state[state["is_open"] & state["is_invoice"] & (state["days_past_due"] > 0)]
    items = items.join(last_notices(known.dunning_notices), on="invoice_id")
    items["last_level"] = items["last_level"].fillna(0).astype(int)
    levels = policy_levels(policy)
    items = items[items["last_level"] < len(levels)]  # the final level was issued: nothing further to send
    items = items.assign(level=items["last_level"] + 1).join(levels, on="level")
    # Days since the previous notice; for one whose date is unknown, at least the days since its level
    # became known: the next level is proposed only once it is due however early that notice went out.
    since_previous = days_between(as_of, items["last_issued_by"])
    waits_on_previous = items["min_days_since_previous"].notna() & (items["last_level"] > 0)
    past_due = items["min_days_past_due"].isna() | (items["days_past_due"] >= items["min_days_past_due"])
    due = past_due & (~waits_on_previous | (since_previous >= items["min_days_since_previous"]))
    undated = (past_due & waits_on_previous & ~due & items["last_issued_date"].isna()
               & items["last_issued_by"].notna())
    items["undated_reason"] = undated_notice_reasons(items, undated)
    items = items[due | undated].copy()
    others = hold_reasons(known, items, as_of, tolerance)
    both = (items["undated_reason"] != "") & (others != "")
    items["reason"] = items["undated_reason"] + np.where(both, "; ", "") + others
    items["status"] = np.where(items["reason"] != "", HELD, PROPOSED)
    proposed = items["status"] == PROPOSED
    overdue_total = items["open_amount_base"].where(proposed, 0.0).groupby(items["customer_id"]).transform("sum")
    below = proposed & (overdue_total < policy.minimum_amount)
    items.loc[below, "status"] = SKIPPED
    items.loc[below, "reason"] = f"overdue total below the minimum of {policy.minimum_amount:,.2f}"
    charged = items["status"] == PROPOSED
    items["fee"] = items["fee"].where(charged, 0.0)
    items["interest"] = (items["open_amount"] * items["interest_rate"] * items["days_past_due"] / 365).where(charged, 0.0)
    items["name"] = items["customer_id"].map(known.customers.set_index("customer_id")["name"])
    items["letter_text"] = rendered_letters(items, as_of) if letters else ""
    columns = ["customer_id", "name", "invoice_id", "currency", "due_date", "days_past_due", "open_amount",
               "last_level", "last_issued_date", "level", "channel", "fee", "interest", "status", "reason",
               "letter_text"]
    return proposal_order(items[columns])


def undated_notice_reasons(items: pd.DataFrame, undated: pd.Series) -> pd.Series:
    """Why an item is held whose previous level has no notice date: the level is known, the day it was
    sent is not, so the next one waits its days counted from the day the level became known."""
    waits = items[undated]
    until = waits["last_issued_by"] + pd.to_timedelta(waits["min_days_since_previous"], unit="D")
    text = ("level " + waits["last_level"].astype(str) + " sent on an unknown date (imported without its "
            "dunning date, known since " + waits["last_issued_by"].dt.strftime("%Y-%m-%d") + "): level "
            + waits["level"].astype(str) + " waits until " + until.dt.strftime("%Y-%m-%d"))
    return text.reindex(items.index, fill_value="")


def proposal_order(proposal: pd.DataFrame) -> pd.DataFrame:
    """Proposal rows in their order: proposed, held, skipped; then customer and invoice."""
    order = proposal["status"].map({PROPOSED: 0, HELD: 1, SKIPPED: 2})
    return (proposal.assign(_order=order).sort_values(["_order", "customer_id", "invoice_id"])
            .drop(columns="_order").reset_index(drop=True))


def rendered_letters(items: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """The letter of each proposed customer and level, on each of its rows ("" for held and skipped)."""
    text = pd.Series("", index=items.index, dtype=object)
    proposed = items[items["status"] == PROPOSED]
    # One rendering per letter (customer and level), not per invoice.
    for (_customer, _level), group in proposed.groupby(["customer_id", "level"], sort=True):
        first = group.iloc[0]
        context = {
            "customer_id": first["customer_id"], "customer_name": first["name"], "as_of": f"{as_of:%Y-%m-%d}",
            "level": int(first["level"]), "channel": first["channel"],
            "items": [{"invoice_id": row.invoice_id, "due_date": f"{row.due_date:%Y-%m-%d}",
                       "days_past_due": int(row.days_past_due), "open_amount": row.open_amount,
                       "currency": row.currency, "fee": row.fee, "interest": round(row.interest, 2)}
                      for row in group.itertuples()],
            "total_open": group["open_amount"].sum(), "total_fee": group["fee"].sum(),
            "total_interest": round(group["interest"].sum(), 2),
        }
        context["total_due"] = context["total_open"] + context["total_fee"] + context["total_interest"]
        try:
            text[group.index] = TEMPLATES.from_string(first["template"]).render(context)
        except TemplateError as error:
            raise PolicyError(f"level {int(first['level'])} template: {error}") from None
    return text
