"""Unapplied cash: every payment, or part of one, received by `as_of` and not applied to a document, with
its age and why it is still there. Cash that sits unapplied makes paid invoices look overdue and hides
short payments; the report is what a cash-application team works down each day."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd

from features.asof import known_at
from features.settlement import base_rate, days_between
from ledger import Ledger
from ledger.schema import UNIDENTIFIED_PAYER
from ledger.validation import TOLERANCE

AGE_LIMITS = (7, 30, 60, 90)
COLUMNS = ("payment_id", "customer_id", "received_date", "currency", "amount", "unapplied_amount",
           "unapplied_amount_base", "age_days", "age_bucket", "reason")


def age_buckets(age_days: pd.Series, limits: tuple[int, ...] = AGE_LIMITS) -> pd.Series:
    """'0-7', '8-30', '31-60', '61-90', '90+' for the default limits."""
    labels = [f"0-{limits[0]}", *(f"{low + 1}-{high}" for low, high in pairwise(limits)),
              f"{limits[-1]}+"]
    return pd.cut(age_days, bins=[-np.inf, *limits, np.inf], labels=labels, right=True).astype(object)


def unapplied_cash(ledger: Ledger, as_of: pd.Timestamp, proposals: pd.DataFrame | None = None,
                   tolerance: float = TOLERANCE) -> pd.DataFrame:
    """One row per payment with cash not applied on `as_of` (COLUMNS), oldest first. The reason of a payment
    with no application comes from the matcher's `proposals` (`apply_cash` on the same ledger and date) when
    given: would be applied automatically, awaiting review, or why it is unmatched."""
    as_of = pd.Timestamp(as_of).normalize()
    known = known_at(ledger, as_of)
    payments = known.payments
    applied = payments["payment_id"].map(known.payment_applications.groupby("payment_id")["amount"].sum())
    left = payments["amount"] - applied.fillna(0.0)
    keep = (left > tolerance).to_numpy()
    payments, left, applied = payments[keep], left[keep], applied[keep]
    age = days_between(as_of, payments["received_date"])
    table = pd.DataFrame({
        "payment_id": payments["payment_id"], "customer_id": payments["customer_id"].fillna(UNIDENTIFIED_PAYER),
        "received_date": payments["received_date"], "currency": payments["currency"], "amount": payments["amount"],
        "unapplied_amount": left.round(2), "unapplied_amount_base": (left * base_rate(payments["amount"],
                                                                                     payments["amount_base"])).round(2),
        "age_days": age, "age_bucket": age_buckets(age),
        "reason": reasons(payments["payment_id"], applied.notna(), left, proposals),
    })
    return table.sort_values(["received_date", "payment_id"], kind="stable").reset_index(drop=True)[list(COLUMNS)]


def reasons(payment_ids: pd.Series, partly: pd.Series, left: pd.Series, proposals: pd.DataFrame | None) -> list[str]:
    """Why each payment's cash is unapplied, in words."""
    found = {}
    if proposals is not None and len(proposals):
        first = proposals.drop_duplicates("payment_id").set_index("payment_id")
        for payment_id, row in first.iterrows():
            if row["decision"] == "unmatched":
                found[payment_id] = f"unmatched: {row['reason']}"
            else:
                confidence = f"{row['confidence']:.0%}"
                found[payment_id] = (f"the matcher applies it ({row['rule']}, {confidence} confident)"
                                     if row["decision"] == "auto"
                                     else f"awaiting review: a proposal ({row['rule']}) at {confidence} confidence")
    out = []
    for payment_id, is_partly, amount in zip(payment_ids, partly, left, strict=True):
        if is_partly:
            out.append(f"{amount:,.2f} left after its applications (an overpayment, or cash on account)")
        else:
            out.append(found.get(payment_id, "not applied"))
    return out
