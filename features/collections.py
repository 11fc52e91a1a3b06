"""Collections events as of a date: promises to pay (kept, broken, pending), disputes, dunning.

A promise's stored `kept` is derived after the fact, so its status is recomputed here from what was
known at `as_of`. A promise is **kept** once payments made from its `made_date` up to its
`promised_date` (both inclusive) add up to its amount: applications to its invoice for an invoice
promise (plus the write-off of a small residual when the invoice was paid short in the window), the
customer's received payments for a promise on the account. It is **broken** once the
promised date has passed (promised_date < as_of, the whole promised day is over) without being kept,
and **pending** while the promised date is today or later and it is not yet kept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ledger.promises import promise_paid_amount

KEPT, BROKEN, PENDING = "kept", "broken", "pending"


def promise_status(promises: pd.DataFrame, applications: pd.DataFrame, payments: pd.DataFrame,
                   writeoffs: pd.DataFrame, as_of: pd.Timestamp, tolerance: float) -> pd.Series:
    """Per promise row: kept, broken or pending as of `as_of` (see the module docstring)."""
    kept = promise_paid_amount(promises, applications, payments, writeoffs) >= promises["amount"] - tolerance
    broken = ~kept & (promises["promised_date"] < as_of)
    status = np.select([kept, broken], [KEPT, BROKEN], default=PENDING)
    return pd.Series(status, index=promises.index, dtype=object)


def open_disputes(disputes: pd.DataFrame) -> pd.DataFrame:
    """Disputes not resolved as of the date (the as-of filter has cleared later resolutions)."""
    return disputes[disputes["resolved_date"].isna()]


def dunning_level_reached(notices: pd.DataFrame) -> pd.Series:
    """Highest dunning level issued per invoice."""
    return notices.groupby("invoice_id", sort=False)["level"].max()
