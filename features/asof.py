"""The one as-of filter: the ledger as it was known at the end of the day `as_of` (DESIGN.md §4).

Every feature function receives the result of `known_at` and nothing else from the ledger, so a
fact dated after `as_of` cannot reach a feature. Choices, table by table:

- invoices: issued on or before `as_of`; a `cleared_date` after `as_of` becomes NaT (still open then).
- payments: received on or before `as_of`.
- payment_applications: applied on or before `as_of`, of a payment and to an invoice known then
  (the second condition only matters for inconsistent data; the validator already orders dates).
- disputes: opened on or before `as_of`; a `resolved_date` after `as_of` becomes NaT (open then).
- promises: made on or before `as_of`; `kept` is set to missing, because it is derived after the fact
  (whether a promise was kept is recomputed as of the date from payments, see `features.customer`).
- writeoffs, dunning_notices, contacts: dated on or before `as_of`. A dunning notice imported without
  its issued date (the level known, not the day) counts from its `known_date`, the export's date.
- customers: created on or before `as_of`, or named by a known invoice or payment (the master record
  existed when the document was posted, whatever date the export gives it). Their `created_date`
  becomes the earliest of itself and their first known document, so tenure never reads a date after
  `as_of`. Master data without history (terms, credit limit, segment) is taken as it stands: the
  ledger keeps no earlier versions of it.
"""

from __future__ import annotations

import pandas as pd

from ledger import Ledger


def known_at(ledger: Ledger, as_of: pd.Timestamp) -> Ledger:
    """The ledger restricted to what was known on or before `as_of` (end of that day)."""
    as_of = pd.Timestamp(as_of).normalize()
    invoices = _on_or_before(ledger.invoices, "invoice_date", as_of)
    invoices = invoices.assign(cleared_date=_unknown_after(invoices["cleared_date"], as_of))
    payments = _on_or_before(ledger.payments, "received_date", as_of)
    applications = _on_or_before(ledger.payment_applications, "applied_date", as_of)
    applications = applications[applications["payment_id"].isin(payments["payment_id"])
                                & applications["invoice_id"].isin(invoices["invoice_id"])]
    disputes = _on_or_before(ledger.disputes, "opened_date", as_of)
    disputes = disputes.assign(resolved_date=_unknown_after(disputes["resolved_date"], as_of))
    promises = _on_or_before(ledger.promises, "made_date", as_of)
    promises = promises.assign(kept=pd.array([pd.NA] * len(promises), dtype="boolean"))
    return ledger.replace(
        customers=_known_customers(ledger.customers, invoices, payments, as_of),
        invoices=invoices,
        payments=payments,
        payment_applications=applications,
        disputes=disputes,
        promises=promises,
        writeoffs=_on_or_before(ledger.writeoffs, "date", as_of),
        dunning_notices=known_notices(ledger.dunning_notices, as_of),
        contacts=_on_or_before(ledger.contacts, "contact_date", as_of),
    )


def known_notices(notices: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Dunning notices issued on or before `as_of`; a notice whose issued date is unknown counts from
    its `known_date` (the day the export that carried its level was taken), never earlier."""
    known = notices["issued_date"]
    if "known_date" in notices:
        known = known.fillna(notices["known_date"])
    return notices[known <= as_of]


def _on_or_before(table: pd.DataFrame, column: str, as_of: pd.Timestamp) -> pd.DataFrame:
    return table[table[column] <= as_of]


def _unknown_after(dates: pd.Series, as_of: pd.Timestamp) -> pd.Series:
    return dates.where(dates <= as_of)


def _known_customers(customers: pd.DataFrame, invoices: pd.DataFrame, payments: pd.DataFrame,
                     as_of: pd.Timestamp) -> pd.DataFrame:
    first_document = pd.concat([
        invoices.groupby("customer_id")["invoice_date"].min(),
        payments.groupby("customer_id")["received_date"].min(),
    ]).groupby(level=0).min()
    first_document = customers["customer_id"].map(first_document)
    known = (customers["created_date"] <= as_of) | first_document.notna()
    created = customers["created_date"].where(
        first_document.isna() | (customers["created_date"] <= first_document), first_document)
    return customers.assign(created_date=created.astype(customers["created_date"].dtype))[known]
