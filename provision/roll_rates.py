"""Loss rates per ageing bucket from the ledger's own history: a roll-rate (migration) analysis.

At every month end of the look-back, each open document is in an ageing bucket (days past due, base
currency). One month later each one has either been written off (wholly or in part), rolled on to a later
bucket, stayed in its bucket (a document not yet due for two month ends, or one in the last bucket), or
been paid or credited. Summed over the look-back per bucket b (amounts in base currency):

    B_b  the balance in b at the month ends         W_b  of it, written off by the next month end
    R_b  what was still open a bucket or more later  S_b  what was still open in the same bucket

The loss rate is the share of a bucket's balance that ends written off, following each month's moves:

    L_b = (W_b + R_b x L_next) / (B_b - S_b)        (the last bucket has no R: L_last = W / (B - S))

(an absorbing chain: what stays is counted again at the next month end, so it leaves the denominator).
Per segment when the segment's bucket has `min_observations` document-months behind it, else the
all-customer rate; then times (1 + the policy's forward-looking adjustment), capped at 1.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from features.asof import known_at
from features.settlement import days_between, document_state
from ledger import Ledger
from provision.policy import ProvisionPolicy
from rules.aging import MONEY_TOLERANCE, aging_bucket, bucket_labels

ALL_SEGMENTS = "(all)"


def month_ends(as_of: pd.Timestamp, months: int) -> list[pd.Timestamp]:
    """The `months` month ends before `as_of` (the last one on or before it), oldest first."""
    last = pd.Timestamp(as_of).normalize() + pd.offsets.MonthEnd(0)
    if last > pd.Timestamp(as_of).normalize():
        last = last - pd.offsets.MonthEnd(1)
    return list(pd.date_range(end=last, periods=months, freq="ME"))


def open_balances(ledger: Ledger, as_of: pd.Timestamp, limits: tuple[int, ...]) -> pd.DataFrame:
    """Every document open at `as_of`: customer, segment, bucket and open amount (base currency)."""
    as_of = pd.Timestamp(as_of).normalize()
    known = known_at(ledger, as_of)
    state = document_state(known, as_of, MONEY_TOLERANCE)
    # An invoice below zero was paid twice or recovered after its write-off: cash on account, not exposure.
    state = state[(state["is_open"] & ~(state["is_invoice"] & (state["open_amount"] < 0))).to_numpy()]
    segments = ledger.customers.drop_duplicates("customer_id").set_index("customer_id")
    segment = state["customer_id"].map(segments["segment"]) if "segment" in segments else None
    return pd.DataFrame({
        "invoice_id": state["invoice_id"].to_numpy(),
        "customer_id": state["customer_id"].to_numpy(),
        "segment": (segment.fillna("(none)") if segment is not None else pd.Series("(none)", index=state.index)).to_numpy(),
        "is_invoice": state["is_invoice"].to_numpy(),
        "days_past_due": days_between(as_of, state["due_date"]).to_numpy(),
        "bucket": aging_bucket(days_between(as_of, state["due_date"]), limits).astype(str).to_numpy(),
        "open_amount_base": state["open_amount_base"].to_numpy(),
    })


def transitions(ledger: Ledger, ends: list[pd.Timestamp], limits: tuple[int, ...]) -> pd.DataFrame:
    """Each open invoice at each month end but the last, with where it was one month end later: its
    balance then, and what was written off meanwhile (base currency). Credit memos are left out."""
    labels = bucket_labels(limits)
    order = {label: position for position, label in enumerate(labels)}
    rate = pd.Series((ledger.invoices["amount_base"] / ledger.invoices["amount"].where(ledger.invoices["amount"] != 0))
                     .fillna(0.0).to_numpy(), index=ledger.invoices["invoice_id"].to_numpy())
    balances = {end: open_balances(ledger, end, limits) for end in ends}
    frames = []
    for start, end in itertools.pairwise(ends):
        now = balances[start]
        now = now[now["is_invoice"] & (now["open_amount_base"] > MONEY_TOLERANCE)]
        later = balances[end].set_index("invoice_id")
        written = ledger.writeoffs[(ledger.writeoffs["date"] > start) & (ledger.writeoffs["date"] <= end)]
        written = written.groupby("invoice_id")["amount"].sum() * rate.reindex(written["invoice_id"].unique())
        next_bucket = now["invoice_id"].map(later["bucket"])
        frames.append(now.assign(
            month_end=start,
            written_off=now["invoice_id"].map(written).fillna(0.0).clip(upper=now["open_amount_base"]).to_numpy(),
            later_amount=now["invoice_id"].map(later["open_amount_base"]).fillna(0.0).clip(lower=0).to_numpy(),
            moved=(next_bucket.map(order) - now["bucket"].map(order)).to_numpy(),
        ))
    columns = ["month_end", "invoice_id", "customer_id", "segment", "bucket", "open_amount_base", "written_off",
               "later_amount", "moved"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def bucket_flows(moves: pd.DataFrame, keys: list[str], labels: list[str]) -> pd.DataFrame:
    """B, W, R and S (see the module docstring) and the observations per `keys` and bucket."""
    later = moves["later_amount"].clip(upper=moves["open_amount_base"] - moves["written_off"])
    frame = moves.assign(
        balance=moves["open_amount_base"], rolled=later.where(moves["moved"] > 0, 0.0),
        stayed=later.where(moves["moved"] == 0, 0.0))
    flows = frame.groupby([*keys, "bucket"], observed=True).agg(
        observations=("invoice_id", "size"), balance=("balance", "sum"), written_off=("written_off", "sum"),
        rolled=("rolled", "sum"), stayed=("stayed", "sum")).reset_index()
    flows["bucket"] = pd.Categorical(flows["bucket"], categories=labels, ordered=True)
    return flows.sort_values([*keys, "bucket"], ignore_index=True)


def chained_loss_rates(flows: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """One group's flows per bucket with its roll rate and loss rate, the last bucket first (see docstring)."""
    by_bucket = flows.set_index("bucket").reindex(labels)
    rates, following = {}, 0.0
    for label in reversed(labels):
        row = by_bucket.loc[label]
        leaving = row["balance"] - row["stayed"] if pd.notna(row["balance"]) else 0.0
        if leaving > MONEY_TOLERANCE:
            onward = row["rolled"] * following if row["rolled"] > MONEY_TOLERANCE else 0.0
            following = (row["written_off"] + onward) / leaving  # NaN: it rolls on into a bucket without history
        else:  # no history in this bucket
            following = np.nan
        rates[label] = following
    table = by_bucket.reset_index()
    leaving = (table["balance"] - table["stayed"]).where(lambda value: value > MONEY_TOLERANCE)
    table["roll_rate"] = table["rolled"] / leaving
    table["writeoff_rate"] = table["written_off"] / leaving
    table["loss_rate"] = table["bucket"].map(rates).astype(float)
    table["observations"] = table["observations"].fillna(0).astype(int)
    return table


def loss_rates(ledger: Ledger, as_of: pd.Timestamp, policy: ProvisionPolicy) -> pd.DataFrame:
    """The loss rate per segment and bucket as of `as_of` from the look-back before it, with the
    observations and flows behind it, the all-customer rate, the rate used and why."""
    labels = bucket_labels(policy.aging_limits)
    moves = transitions(ledger, month_ends(as_of, policy.lookback_months + 1), policy.aging_limits)
    overall = chained_loss_rates(bucket_flows(moves, [], labels), labels).assign(segment=ALL_SEGMENTS)
    tables = [overall]
    if policy.by_segment:
        for segment, flows in bucket_flows(moves, ["segment"], labels).groupby("segment", sort=True):
            tables.append(chained_loss_rates(flows.drop(columns="segment"), labels).assign(segment=segment))
    table = pd.concat(tables, ignore_index=True)
    fallback = table["bucket"].map(overall.set_index("bucket")["loss_rate"])
    own = (table["segment"] == ALL_SEGMENTS) | (table["observations"] >= policy.min_observations)
    historical = table["loss_rate"].where(own & table["loss_rate"].notna(), fallback)
    # A bucket with no history anywhere (a young ledger): every exposure in it is lost, the prudent default.
    historical = historical.fillna(1.0)
    table["source"] = np.where(own & table["loss_rate"].notna(), "own history",
                               np.where(fallback.notna(), "all customers (too few observations)", "no history: 100%"))
    table["historical_loss_rate"] = historical
    table["loss_rate_used"] = (historical * (1 + policy.forward_looking_adjustment)).clip(0, 1)
    columns = ["segment", "bucket", "observations", "balance", "written_off", "rolled", "stayed", "writeoff_rate",
               "roll_rate", "loss_rate", "historical_loss_rate", "loss_rate_used", "source"]
    return table[columns]
