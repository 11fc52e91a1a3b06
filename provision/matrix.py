"""The provision matrix: expected credit loss = open amount x the loss rate of its ageing bucket (and its
customer's segment), per document, per customer and in total, in base currency, as of a date.

Open credit memos lower their customer's exposure (in the Current bucket's rate) and a customer's ECL is
never below zero. A disputed item takes the policy's `disputed` rate (its bucket's by default); an item
under a pending promise its rate times `promised_factor`. Unapplied cash is left out (the aging shows it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.asof import known_at
from features.collections import PENDING, open_disputes, promise_status
from ledger import Ledger
from provision.policy import ProvisionPolicy
from provision.roll_rates import ALL_SEGMENTS, open_balances
from rules.aging import MONEY_TOLERANCE


def held_items(ledger: Ledger, as_of: pd.Timestamp) -> tuple[set[str], set[str]]:
    """The invoices in open dispute and those under a pending promise on the invoice, at `as_of`."""
    known = known_at(ledger, as_of)
    disputed = set(open_disputes(known.disputes)["invoice_id"])
    status = promise_status(known.promises, known.payment_applications, known.payments, known.writeoffs, as_of,
                            MONEY_TOLERANCE)
    pending = known.promises[(status == PENDING).to_numpy()]
    return disputed, set(pending["invoice_id"].dropna())


def matrix_items(ledger: Ledger, as_of: pd.Timestamp, rates: pd.DataFrame, policy: ProvisionPolicy) -> pd.DataFrame:
    """Each open document with its bucket, the loss rate applied, why, and its ECL (base currency)."""
    as_of = pd.Timestamp(as_of).normalize()
    items = open_balances(ledger, as_of, policy.aging_limits)
    used = rates.set_index(["segment", "bucket"])["loss_rate_used"]
    overall = rates[rates["segment"] == ALL_SEGMENTS].set_index("bucket")["loss_rate_used"]
    keys = pd.MultiIndex.from_arrays([items["segment"], items["bucket"]])
    rate = pd.Series(used.reindex(keys).to_numpy(), index=items.index).fillna(items["bucket"].map(overall))
    disputed, promised = held_items(ledger, as_of)
    in_dispute = items["invoice_id"].isin(disputed)
    under_promise = items["invoice_id"].isin(promised)
    if policy.disputed != "bucket":
        rate = rate.where(~in_dispute, float(policy.disputed))
    rate = rate.where(~under_promise, rate * policy.promised_factor)
    basis = np.select([in_dispute, under_promise], ["disputed", "promised"], "bucket")
    return items.assign(loss_rate=rate.to_numpy(), basis=basis, ecl=(items["open_amount_base"] * rate).to_numpy())


def by_customer(items: pd.DataFrame, ecl_column: str = "ecl") -> pd.DataFrame:
    """Exposure and ECL per customer (ECL floored at zero: a credit memo cannot make a gain)."""
    table = items.groupby(["customer_id", "segment"], as_index=False).agg(
        exposure=("open_amount_base", "sum"), ecl=(ecl_column, "sum"))
    table["ecl"] = table["ecl"].clip(lower=0.0)
    table["exposure"] = table["exposure"].clip(lower=0.0)
    return table.sort_values("ecl", ascending=False, ignore_index=True)


def matrix_table(items: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """The provision matrix as finance reads it: per segment and bucket, the open amount, loss rate and ECL."""
    table = items.groupby(["segment", "bucket"], as_index=False).agg(
        documents=("invoice_id", "size"), open_amount_base=("open_amount_base", "sum"), ecl=("ecl", "sum"))
    table["loss_rate"] = table["ecl"] / table["open_amount_base"].where(table["open_amount_base"].abs() > MONEY_TOLERANCE)
    table["bucket"] = pd.Categorical(table["bucket"], categories=labels, ordered=True)
    return table.sort_values(["segment", "bucket"], ignore_index=True)
