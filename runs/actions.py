"""The day's recorded actions on top of a run: one customer's worklist, dunning and aging rows re-derived.

A promise, dispute, contact or dunning letter changes what the rules say about that customer (holds,
escalations, status, the last promise and contact, the next dunning level), not the models'
probabilities. A recorded cash application also takes what it paid off the customer's scored open
documents (a document paid in full leaves them; the rest keep the run's probabilities) and changes its
aging, and the cash it identifies leaves the unidentified payer's aging row. So after a write only that
customer's rows are recomputed: the worklist, dunning and aging rules run on the customer's slice of the
ledger (its documents, payments and records, with the activity store's) and the run's scores of its open
documents; the rows replace the customer's and the worklist is ranked again. The rules are per customer,
so the rows equal those a full recomputation with the same scores would give (tested). The next run
takes the actions into its features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.asof import known_at
from features.customer import credit_utilisation
from features.settlement import document_state
from ledger import Ledger
from ledger.schema import UNIDENTIFIED_PAYER
from rules.aging import MONEY_TOLERANCE
from rules.dunning import dunning_proposal, proposal_order
from rules.worklist import ranked, worklist
from runs.answers import DayView
from runs.day import DaySettings, aging_table, model_reasons
from runs.scoring import fill_reasons

# The ledger tables and how their rows belong to a customer: by their own customer_id, or by their invoice's.
BY_CUSTOMER = ("customers", "invoices", "payments", "promises", "contacts")
BY_INVOICE = ("payment_applications", "disputes", "writeoffs", "dunning_notices")
AGING_ORDER = ["basis", "amounts", "customer_id", "currency"]


@dataclass(frozen=True)
class CustomerIndex:
    """Row positions of each ledger table per customer, built once, so a customer's slice costs lookups."""

    ledger: Ledger
    rows: dict[str, dict[str, np.ndarray]]

    def slice(self, customer_id: str) -> Ledger:
        """The ledger restricted to one customer's rows."""
        tables = {}
        for name, groups in self.rows.items():
            table = getattr(self.ledger, name)
            tables[name] = table.iloc[groups.get(customer_id, np.array([], dtype=int))]
        return self.ledger.replace(**tables)


def customer_index(ledger: Ledger) -> CustomerIndex:
    """Index every ledger table by customer (rows of an invoice belong to its customer)."""
    owner = pd.Series(ledger.invoices["customer_id"].to_numpy(), index=ledger.invoices["invoice_id"].to_numpy())
    rows = {}
    for name in (*BY_CUSTOMER, *BY_INVOICE):
        table = getattr(ledger, name)
        keys = table["customer_id"] if name in BY_CUSTOMER else table["invoice_id"].map(owner)
        rows[name] = {customer: np.asarray(positions)
                      for customer, positions in pd.Series(keys.to_numpy()).groupby(keys.to_numpy()).indices.items()}
    return CustomerIndex(ledger, rows)


def with_records(ledger: Ledger, records: dict[str, pd.DataFrame]) -> Ledger:
    """A (customer's) ledger with recorded activity appended to its collections tables, recorded cash
    applications merged into its payments (`with_cash_records`), the credit limits decided by credit reviews
    in place of the customers' (`credit_limits`), and the write-offs of valid deductions on documents the
    ledger has not written off itself."""
    merged = {}
    if records.get("payments") is not None or records.get("payment_applications") is not None:
        merged = with_cash_records(ledger, records.get("payments"), records.get("payment_applications"))
    limits = records.get("credit_limits")
    if limits is not None and len(limits):
        decided = limits.set_index("customer_id")["credit_limit"]
        customers = ledger.customers
        merged["customers"] = customers.assign(credit_limit=customers["customer_id"].map(decided).where(
            customers["customer_id"].isin(decided.index), customers["credit_limit"]).astype("float64"))
    for name, recorded in records.items():
        if recorded is None or recorded.empty or name in ("payments", "payment_applications", "credit_limits"):
            continue
        if name == "writeoffs":  # one write-off per document: the ledger's own wins
            recorded = recorded[~recorded["invoice_id"].isin(ledger.writeoffs["invoice_id"])]
            if recorded.empty:
                continue
        current = getattr(ledger, name)
        # Only the ledger's columns; one the records lack (a notice's known_date) stays missing on their rows.
        merged[name] = recorded if current.empty else pd.concat(
            [current, recorded[recorded.columns.intersection(current.columns)]], ignore_index=True)
    return ledger.replace(**merged) if merged else ledger


def with_cash_records(ledger: Ledger, payments: pd.DataFrame | None,
                      applications: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """The ledger's payments and applications with the cash applications recorded in the activity store:
    a recorded payment the ledger lacks is added (a customer's slice lacks a payment whose payer the ledger
    does not know), one it holds without a customer gets the recorded payer; recorded applications of a
    payment the ledger has since applied itself are left out (the ledger's own win, never both)."""
    merged: dict[str, pd.DataFrame] = {}
    current = ledger.payments
    if payments is not None and len(payments):
        payer = payments.drop_duplicates("payment_id").set_index("payment_id")["customer_id"]
        filled = current["customer_id"].where(current["customer_id"].notna(), current["payment_id"].map(payer))
        added = payments[~payments["payment_id"].isin(current["payment_id"])]
        current = current.assign(customer_id=filled)
        if len(added):
            current = pd.concat([current, added[added.columns.intersection(current.columns)]], ignore_index=True)
        merged["payments"] = current
    if applications is not None and len(applications):
        ledger_applied = set(ledger.payment_applications["payment_id"])
        recorded = applications[~applications["payment_id"].isin(ledger_applied)]
        if len(recorded):
            merged["payment_applications"] = pd.concat([ledger.payment_applications, recorded], ignore_index=True)
    return merged


def still_open(items: pd.DataFrame, ledger: Ledger, as_of: pd.Timestamp) -> pd.DataFrame:
    """The scored open documents less what the customer's ledger (with the recorded cash applications) has
    applied to them since: a document paid in full leaves, one paid in part keeps what it still owes (its
    probabilities stay the run's)."""
    if items.empty or ledger.payment_applications.empty:
        return items
    state = document_state(known_at(ledger, as_of), as_of, MONEY_TOLERANCE).set_index("invoice_id")
    owed = items["invoice_id"].map(state["open_amount"])
    changed = owed.notna() & ((owed - items["open_amount"]).abs() > MONEY_TOLERANCE)
    if not changed.any():
        return items
    share = (owed / items["open_amount"].where(items["open_amount"] != 0)).where(changed, 1.0)
    items = items.assign(open_amount=items["open_amount"] * share, open_amount_base=items["open_amount_base"] * share)
    return items[(owed.isna() | (owed.abs() > MONEY_TOLERANCE)).to_numpy()]


@dataclass(frozen=True)
class CustomerRows:
    """What a customer's recorded actions change in a day's view."""

    worklist: pd.DataFrame  # its worklist row (none when nothing is overdue)
    dunning: pd.DataFrame  # its dunning rows
    aging: pd.DataFrame | None = None  # its aging rows in the day's views (`runs.day.aging_table`), if re-derived
    items: pd.DataFrame | None = None  # its scored open documents, when recorded cash changed them


def customer_rows(view: DayView, ledger: Ledger, customer_id: str, settings: DaySettings,
                  money: bool = True) -> CustomerRows:
    """The customer's worklist and dunning rows at the view's date from its ledger slice `ledger` (with its
    recorded actions) and the day's scores; with `money` (recorded cash or deductions changed what it owes)
    also its aging rows, and its scored open documents less what was paid when that changed them."""
    scored = view.scores.iloc[view.by_customer.get(customer_id, np.array([], dtype=int))]
    items = still_open(scored, ledger, view.as_of) if money else scored
    customers = with_decided_limit(view.customers.iloc[[view.customer_position[customer_id]]]
                                   if customer_id in view.customer_position.index else view.customers.iloc[[]],
                                   ledger.customers)
    dunning = dunning_proposal(ledger, view.as_of, settings.dunning_policy)
    table = worklist(ledger, view.as_of, items, customers, settings.policy, dunning=dunning)
    aging = aging_table(ledger, view.as_of) if money else None
    return CustomerRows(fill_reasons(table, model_reasons(customers)), dunning,
                        None if aging is None else aging[aging["customer_id"] == customer_id],
                        None if items is scored else items)


def with_decided_limit(rows: pd.DataFrame, master: pd.DataFrame) -> pd.DataFrame:
    """The day's customer rows with the credit limit of `master` (a credit review decided since the run) and
    the utilisation of that limit, where the two differ."""
    if rows.empty or "credit_limit" not in rows or "credit_limit" not in master:
        return rows
    limit = rows["customer_id"].map(master.drop_duplicates("customer_id").set_index("customer_id")["credit_limit"])
    changed = limit.notna() & (limit != rows["credit_limit"])
    if not changed.any():
        return rows
    limit = limit.where(changed, rows["credit_limit"]).astype(float)
    return rows.assign(credit_limit=limit, credit_utilisation=credit_utilisation(rows["open_ar_base"], limit))


def unidentified_rows(view: DayView, ledger: Ledger, recorded: dict[str, pd.DataFrame]) -> CustomerRows:
    """The aging rows of the cash whose payer nobody has identified (`UNIDENTIFIED_PAYER`): the ledger's
    payments without a customer, less what the recorded cash applications (`recorded`: the store's
    payments and payment_applications) identified or applied."""
    payments = ledger.payments[ledger.payments["customer_id"].isna()]
    ids = set(payments["payment_id"])
    of_these = {name: table[table["payment_id"].isin(ids)] for name, table in recorded.items() if table is not None}
    applications = ledger.payment_applications
    unknown = ledger.replace(customers=ledger.customers.iloc[:0], invoices=ledger.invoices.iloc[:0], payments=payments,
                             payment_applications=applications[applications["payment_id"].isin(ids)])
    merged = with_cash_records(unknown, of_these.get("payments"), of_these.get("payment_applications"))
    aging = aging_table(unknown.replace(**merged), view.as_of)
    return CustomerRows(view.worklist.iloc[:0], view.dunning.iloc[:0], aging[aging["customer_id"] == UNIDENTIFIED_PAYER])


def with_actions(view: DayView, changed: dict[str, CustomerRows]) -> DayView:
    """The view with the worklist, dunning and aging rows of the `changed` customers replaced (the worklist
    ranked again), and the scored open documents of those whose recorded cash paid some."""
    ids = set(changed)
    rows = [view.worklist[~view.worklist["customer_id"].isin(ids)], *(rows.worklist for rows in changed.values())]
    worklist_table = ranked(pd.concat([frame for frame in rows if len(frame)] or [view.worklist.iloc[:0]],
                                      ignore_index=True))
    letters = [view.dunning[~view.dunning["customer_id"].isin(ids)], *(rows.dunning for rows in changed.values())]
    dunning = proposal_order(pd.concat([frame for frame in letters if len(frame)] or [view.dunning.iloc[:0]],
                                       ignore_index=True))
    aged = {customer: rows.aging for customer, rows in changed.items() if rows.aging is not None}
    aging = view.aging_table
    if aged:
        frames = [aging[~aging["customer_id"].isin(set(aged))], *aged.values()]
        aging = pd.concat([frame for frame in frames if len(frame)] or [aging.iloc[:0]],
                          ignore_index=True).sort_values(AGING_ORDER, ignore_index=True)
    items = {customer: rows.items for customer, rows in changed.items() if rows.items is not None}
    return view.with_rows(worklist_table, dunning, ids, aging, items)
