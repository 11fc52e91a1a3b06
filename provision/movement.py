"""The allowance's movement between two dates, the schedule finance books from:

    opening allowance (ECL at `start`)
  + charge for the period            (the increase needed, when positive)
  - release                          (the decrease, when the needed change is negative)
  - amounts written off against it   (write-offs dated in (start, end], base currency)
  + recoveries                       (cash applied in (start, end] to documents written off before it)
  = closing allowance (ECL at `end`)

so charge - release = closing - opening + written off - recoveries.
"""

from __future__ import annotations

import pandas as pd

from ledger import Ledger


def base_rates(ledger: Ledger) -> pd.Series:
    """Base-currency units per document-currency unit, by invoice_id."""
    invoices = ledger.invoices
    rate = (invoices["amount_base"] / invoices["amount"].where(invoices["amount"] != 0)).fillna(0.0)
    return pd.Series(rate.to_numpy(), index=invoices["invoice_id"].to_numpy())


def written_off_between(ledger: Ledger, start: pd.Timestamp, end: pd.Timestamp) -> float:
    """Write-offs dated in (start, end], base currency."""
    rows = ledger.writeoffs[(ledger.writeoffs["date"] > start) & (ledger.writeoffs["date"] <= end)]
    return float((rows["amount"].to_numpy() * base_rates(ledger).reindex(rows["invoice_id"]).fillna(0).to_numpy()).sum())


def recoveries_between(ledger: Ledger, start: pd.Timestamp, end: pd.Timestamp) -> float:
    """Cash applied in (start, end] to documents written off before the cash came, base currency."""
    first_writeoff = ledger.writeoffs.groupby("invoice_id")["date"].min()
    applied = ledger.payment_applications
    applied = applied[(applied["applied_date"] > start) & (applied["applied_date"] <= end)]
    after = applied["applied_date"] > applied["invoice_id"].map(first_writeoff)
    rows = applied[after.fillna(False).to_numpy()]
    return float((rows["amount"].to_numpy() * base_rates(ledger).reindex(rows["invoice_id"]).fillna(0).to_numpy()).sum())


def movement_schedule(ledger: Ledger, start: pd.Timestamp, end: pd.Timestamp, opening: float, closing: float,
                      method: str) -> pd.DataFrame:
    """The schedule's lines for one method, `opening` and `closing` being its ECL at `start` and `end`."""
    written = written_off_between(ledger, start, end)
    recovered = recoveries_between(ledger, start, end)
    needed = closing - opening + written - recovered
    lines = [("opening allowance", opening), ("charge for the period", max(needed, 0.0)),
             ("release", -max(-needed, 0.0)), ("written off against the allowance", -written),
             ("recoveries", recovered), ("closing allowance", closing)]
    return pd.DataFrame({"method": method, "line": [line for line, _ in lines],
                         "amount_base": [round(amount, 2) + 0.0 for _, amount in lines],  # no -0.00
                         "from": pd.Timestamp(start), "to": pd.Timestamp(end)})
