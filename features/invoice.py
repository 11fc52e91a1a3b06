"""Invoice-level features: one row per document open at `as_of` (issued by then, not settled by then).

Each function is named after the column it returns and takes the columns it needs; its docstring begins
with the column's glossary line (`features.registry` fills in the `FeatureConfig` values). All values are
floats (flags 0/1) so that every column is a model input as it stands.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.collections import BROKEN, PENDING, dunning_level_reached, open_disputes
from features.config import FeatureConfig
from features.settlement import days_between
from ledger import Ledger


def open_amount_base(open_amount_base: pd.Series) -> pd.Series:
    """Amount still open, in company currency (negative for a credit memo)."""
    return open_amount_base.astype(float)


def open_amount_base_log1p(open_amount_base: pd.Series) -> pd.Series:
    """Signed log(1 + |open amount in company currency|)."""
    return np.sign(open_amount_base) * np.log1p(open_amount_base.abs())


def share_paid(applied: pd.Series, amount: pd.Series) -> pd.Series:
    """Share of the document's amount already settled by payment applications."""
    return applied / amount


def days_past_due(due_date: pd.Series, as_of: pd.Timestamp) -> pd.Series:
    """Days since the due date; 0 while not yet due."""
    return days_between(as_of, due_date).clip(lower=0)


def days_to_due(due_date: pd.Series, as_of: pd.Timestamp) -> pd.Series:
    """Days until the due date; 0 once due."""
    return days_between(due_date, as_of).clip(lower=0)


def terms_days(due_date: pd.Series, invoice_date: pd.Series) -> pd.Series:
    """Payment terms of this document: due date minus invoice date, in days."""
    return days_between(due_date, invoice_date)


def invoice_age_days(invoice_date: pd.Series, as_of: pd.Timestamp) -> pd.Series:
    """Days since the invoice date."""
    return days_between(as_of, invoice_date)


def invoice_month_end(invoice_date: pd.Series, month_end_days: int) -> pd.Series:
    """1 when issued in the last {config.month_end_days} days of its month.

    Marks period-end billing.
    """
    days_left = invoice_date.dt.days_in_month - invoice_date.dt.day
    return (days_left < month_end_days).astype(float)


def invoice_quarter_end(invoice_date: pd.Series, month_end_days: int) -> pd.Series:
    """1 when issued in the last {config.month_end_days} days of a calendar quarter."""
    return invoice_month_end(invoice_date, month_end_days) * (invoice_date.dt.month % 3 == 0)


def is_credit_memo(is_invoice: pd.Series) -> pd.Series:
    """1 for a credit memo, 0 for an invoice."""
    return (~is_invoice).astype(float)


def paperless(delivery_channel: pd.Series) -> pd.Series:
    """1 when the document was sent electronically, 0 on paper, NaN when unknown."""
    return delivery_channel.map({"electronic": 1.0, "paper": 0.0}).astype(float)


def in_open_dispute(invoice_id: pd.Series, disputes: pd.DataFrame) -> pd.Series:
    """1 when a dispute on the document is open."""
    return invoice_id.isin(open_disputes(disputes)["invoice_id"]).astype(float)


def has_pending_promise(invoice_id: pd.Series, promises: pd.DataFrame, status: pd.Series) -> pd.Series:
    """1 when a promise to pay this document is not yet due and not yet kept."""
    return invoice_id.isin(promises.loc[status == PENDING, "invoice_id"]).astype(float)


def has_broken_promise(invoice_id: pd.Series, promises: pd.DataFrame, status: pd.Series) -> pd.Series:
    """1 when a promise to pay this document was broken."""
    return invoice_id.isin(promises.loc[status == BROKEN, "invoice_id"]).astype(float)


def dunning_level(invoice_id: pd.Series, notices: pd.DataFrame) -> pd.Series:
    """Highest dunning level issued for the document; 0 when never dunned."""
    return invoice_id.map(dunning_level_reached(notices)).fillna(0).astype(float)


def invoice_features(known: Ledger, state: pd.DataFrame, status: pd.Series, as_of: pd.Timestamp,
                     config: FeatureConfig) -> pd.DataFrame:
    """Invoice-level features of every document open at `as_of`: invoice_id, customer_id, features.
    `state` is `document_state(known, ...)`; `status` is `promise_status(...)` of `known.promises`."""
    documents = state[state["is_open"]].sort_values("invoice_id").reset_index(drop=True)
    invoice_id = documents["invoice_id"]
    return pd.DataFrame({
        "invoice_id": invoice_id,
        "customer_id": documents["customer_id"],
        "open_amount_base": open_amount_base(documents["open_amount_base"]),
        "open_amount_base_log1p": open_amount_base_log1p(documents["open_amount_base"]),
        "share_paid": share_paid(documents["applied"], documents["amount"]),
        "days_past_due": days_past_due(documents["due_date"], as_of),
        "days_to_due": days_to_due(documents["due_date"], as_of),
        "terms_days": terms_days(documents["due_date"], documents["invoice_date"]),
        "invoice_age_days": invoice_age_days(documents["invoice_date"], as_of),
        "invoice_month_end": invoice_month_end(documents["invoice_date"], config.month_end_days),
        "invoice_quarter_end": invoice_quarter_end(documents["invoice_date"], config.month_end_days),
        "is_credit_memo": is_credit_memo(documents["is_invoice"]),
        "paperless": paperless(documents["delivery_channel"]),
        "in_open_dispute": in_open_dispute(invoice_id, known.disputes),
        "has_pending_promise": has_pending_promise(invoice_id, known.promises, status),
        "has_broken_promise": has_broken_promise(invoice_id, known.promises, status),
        "dunning_level": dunning_level(invoice_id, known.dunning_notices),
    })
