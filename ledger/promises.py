"""What was paid towards a promise to pay: the one sum behind a promise's `kept` (derived by the generic CSV
import, `ledger.importing.ledger_tables`) and its status in the features (`features.collections`)."""

from __future__ import annotations

import pandas as pd


def promise_paid_amount(promises: pd.DataFrame, applications: pd.DataFrame, payments: pd.DataFrame,
                        writeoffs: pd.DataFrame) -> pd.Series:
    """Per promise row: the amount settled towards it between made and promised date (known so far)."""
    on_invoice = promises.loc[promises["invoice_id"].notna(), ["promise_id", "invoice_id", "made_date",
                                                               "promised_date"]]
    towards_invoice = on_invoice.merge(applications[["invoice_id", "applied_date", "amount"]], on="invoice_id")
    towards_invoice = towards_invoice[towards_invoice["applied_date"].between(
        towards_invoice["made_date"], towards_invoice["promised_date"])]
    # A short payment whose small residual is written off settles the promise too, but a write-off
    # alone does not: only write-offs of invoices that received a payment in the window count.
    written = on_invoice[on_invoice["promise_id"].isin(towards_invoice["promise_id"])].merge(
        writeoffs[["invoice_id", "date", "amount"]], on="invoice_id")
    written = written[written["date"].between(written["made_date"], written["promised_date"])]
    on_account = promises[promises["invoice_id"].isna()]
    towards_account = on_account[["promise_id", "customer_id", "made_date", "promised_date"]].merge(
        payments[["customer_id", "received_date", "amount"]], on="customer_id")
    towards_account = towards_account[towards_account["received_date"].between(
        towards_account["made_date"], towards_account["promised_date"])]
    paid = pd.concat([frame[["promise_id", "amount"]] for frame in (towards_invoice, written, towards_account)])
    return promises["promise_id"].map(paid.groupby("promise_id", sort=False)["amount"].sum()).fillna(0.0)
