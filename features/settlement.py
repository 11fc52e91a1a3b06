"""Where every known document stands at `as_of`: applied, written off, open, paid on which date.

The input is always a ledger already passed through `features.asof.known_at`. A document's paid date
is the date of its last application once applications settle it (DESIGN.md §5); the ledger's own
`cleared_date` is never read, because it is derived from later events.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ledger import Ledger

DAY = pd.Timedelta(days=1)


def days_between(later: pd.Series | pd.Timestamp, earlier: pd.Series | pd.Timestamp) -> pd.Series:
    """Whole days from `earlier` to `later` as floats (NaN where a date is missing)."""
    return (later - earlier) / DAY


def base_rate(amount: pd.Series, amount_base: pd.Series) -> pd.Series:
    """Company-currency units per document-currency unit, from the document's own amounts."""
    return (amount_base / amount.where(amount != 0)).fillna(0.0)


def document_state(known: Ledger, as_of: pd.Timestamp, tolerance: float) -> pd.DataFrame:
    """Per known document: applied and written-off amounts, open amount (document and company
    currency), whether it is open, and the paid date and days late of documents paid in full."""
    invoices = known.invoices
    # Unsorted groups: the result is aligned to the invoices right away.
    by_invoice = known.payment_applications.groupby("invoice_id", sort=False).agg(
        applied=("amount", "sum"), applications=("amount", "size"), last_applied=("applied_date", "max"))
    by_invoice = by_invoice.reindex(invoices["invoice_id"])
    written = known.writeoffs.groupby("invoice_id", sort=False)["amount"].sum().reindex(invoices["invoice_id"])
    amount = invoices["amount"].to_numpy()
    applied = by_invoice["applied"].fillna(0.0).to_numpy()
    applications = by_invoice["applications"].fillna(0).to_numpy(dtype=np.int64)
    written_off = written.fillna(0.0).to_numpy() * np.sign(amount)  # write-offs carry no sign
    open_amount = amount - applied - written_off
    is_open = np.abs(open_amount) > tolerance
    # Written-off documents were never paid: they leave the payment-behaviour history.
    paid_in_full = ~is_open & (written_off == 0) & (applications > 0)
    paid_date = by_invoice["last_applied"].where(paid_in_full).to_numpy()
    return pd.DataFrame({
        "invoice_id": invoices["invoice_id"].to_numpy(),
        "customer_id": invoices["customer_id"].to_numpy(),
        "is_invoice": (invoices["doc_type"] == "invoice").to_numpy(),
        "invoice_date": invoices["invoice_date"].to_numpy(),
        "due_date": invoices["due_date"].to_numpy(),
        "amount": amount,
        "amount_base": invoices["amount_base"].to_numpy(),
        "applied": applied,
        "applications": applications,
        "written_off": written_off,
        "open_amount": open_amount,
        "open_amount_base": open_amount * base_rate(invoices["amount"], invoices["amount_base"]).to_numpy(),
        "is_open": is_open,
        "paid_date": paid_date,
        "days_late": (paid_date - invoices["due_date"].to_numpy()) / np.timedelta64(1, "D"),
        "delivery_channel": (invoices["delivery_channel"].to_numpy() if "delivery_channel" in invoices
                             else np.full(len(invoices), None, dtype=object)),
    })
