"""Reader for flat invoice lists: one row per invoice with the date it was settled (the IBM sample).

Each settled invoice gets one payment, received and fully applied on its settled date; an
invoice without a settled date stays open. A dispute flag becomes one dispute per flagged invoice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ledger.errors import LedgerError, Problem
from ledger.importing.mappings import SettledInvoicesMapping
from ledger.importing.sources import CHUNK_ROWS, SourceTable, read_source_chunks
from ledger.importing.tables import CustomerTally, contract_table, customers_table
from ledger.schema import empty_table
from ledger.store import Ledger

if TYPE_CHECKING:
    from ledger.partitions import PartitionedWriter


def settled_invoices_ledger(sources: Sequence[Path], mapping: SettledInvoicesMapping, name: str,
                            chunk_rows: int = CHUNK_ROWS) -> Ledger:
    """A validated ledger from one or more invoice-list files, read `chunk_rows` lines at a time (the
    parsed rows are held, the raw cells only a chunk at a time)."""
    problems: list[Problem] = []
    rows = pd.concat(list(parsed_rows(sources, mapping, chunk_rows, problems)), ignore_index=True)
    if problems:
        raise LedgerError(problems, title="bad import source")
    invoices = invoices_table(rows)
    payments, applications = payments_tables(invoices)
    ledger = Ledger(
        customers=customers_table(rows.assign(doc_type="invoice"), rows.groupby("customer_id")["invoice_date"].min(),
                                  mapping.customers),
        invoices=invoices,
        payments=payments,
        payment_applications=applications,
        disputes=disputes_table(rows, mapping),
        base_currency=mapping.base_currency,
        source=f"import:{name}",
    )
    return ledger.validate()


def write_settled_invoices(sources: Sequence[Path], mapping: SettledInvoicesMapping, writer: PartitionedWriter,
                           chunk_rows: int = CHUNK_ROWS) -> None:
    """Stream invoice-list files into a partitioned writer chunk by chunk: each chunk's invoices, payments
    and disputes go out as they are parsed; only the per-customer tallies for the customers table are held.
    Nothing is written once a bad cell is found (parsing goes on, to report every problem at once)."""
    problems: list[Problem] = []
    tally = CustomerTally()
    for rows in parsed_rows(sources, mapping, chunk_rows, problems):
        if problems:
            continue
        tally.add(rows.assign(doc_type="invoice"), rows.groupby("customer_id")["invoice_date"].min())
        invoices = invoices_table(rows)
        payments, applications = payments_tables(invoices)
        writer.add(Ledger(customers=empty_table("customers"), invoices=invoices, payments=payments,
                          payment_applications=applications, disputes=disputes_table(rows, mapping)))
    if problems:
        raise LedgerError(problems, title="bad import source")
    writer.add(Ledger(customers=tally.customers(mapping.customers), invoices=empty_table("invoices"),
                      payments=empty_table("payments"), payment_applications=empty_table("payment_applications")))


def parsed_rows(sources: Sequence[Path], mapping: SettledInvoicesMapping, chunk_rows: int,
                problems: list[Problem]) -> Iterator[pd.DataFrame]:
    """Each file's rows parsed a chunk at a time; bad cells are appended to `problems`; a file without
    data rows is a `LedgerError`."""
    for path in sources:
        count = 0
        for table in read_source_chunks(path, mapping.format, chunk_rows):
            rows = invoice_rows(table, mapping)
            problems += table.problems
            count += len(table)
            yield rows
        if not count:
            raise LedgerError(Problem(str(path), 2, None, "no data rows: expected one row per invoice"),
                              title="bad import source")


def invoice_rows(table: SourceTable, mapping: SettledInvoicesMapping) -> pd.DataFrame:
    """The file's rows parsed into ledger fields; bad cells are recorded in `table.problems`."""
    columns = mapping.columns
    table.require_columns(columns.model_dump())
    rows = pd.DataFrame({
        "customer_id": table.text(columns.customer_id, required=True),
        "invoice_id": table.text(columns.invoice_id, required=True),
        "invoice_date": table.dates(columns.invoice_date, required=True),
        "due_date": table.dates(columns.due_date, required=True),
        "amount": table.money(columns.amount, required=True),
        "settled_date": table.dates(columns.settled_date),
    })
    if columns.customer_name:
        rows["name"] = table.text(columns.customer_name)
    if columns.country:
        rows["country"] = table.text(columns.country)
    if columns.currency:
        rows["currency"] = table.text(columns.currency, required=True)
        other = rows["currency"].notna() & (rows["currency"] != mapping.base_currency)
        table.flag(other, columns.currency,
                   f"expected the base currency {mapping.base_currency} (this layout has no base amounts)",
                   table.cells[columns.currency])
    else:
        rows["currency"] = mapping.constants.currency
    if columns.disputed:
        flags = table.text(columns.disputed)
        rows["disputed"] = flags.isin(mapping.disputes.flag_values if mapping.disputes else []).to_numpy()
    if columns.delivery_channel:
        channels = table.text(columns.delivery_channel)
        rows["delivery_channel"] = channels.map(mapping.delivery_channels).to_numpy()
        known = ", ".join(sorted(mapping.delivery_channels)) or "none mapped"
        table.flag(channels.notna() & ~channels.isin(mapping.delivery_channels), columns.delivery_channel,
                   f"unknown delivery channel: expected one of {known} (see delivery_channels)",
                   table.cells[columns.delivery_channel])
    table.flag(rows["amount"] <= 0, columns.amount, "expected a positive invoice amount",
               table.cells[columns.amount])
    return rows


def invoices_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The ledger's invoices: amounts already in the base currency, cleared on the settled date."""
    invoices = rows.assign(doc_type="invoice", amount_base=rows["amount"], cleared_date=rows["settled_date"])
    return contract_table("invoices", invoices)


def payments_tables(invoices: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One payment per cleared invoice, received and fully applied on its cleared date."""
    settled = invoices[invoices["cleared_date"].notna()]
    payment_ids = "PAY-" + settled["invoice_id"]
    payments = pd.DataFrame({
        "payment_id": payment_ids,
        "customer_id": settled["customer_id"],
        "received_date": settled["cleared_date"],
        "amount": settled["amount"],
        "currency": settled["currency"],
        "amount_base": settled["amount_base"],
    })
    applications = pd.DataFrame({
        "payment_id": payment_ids,
        "invoice_id": settled["invoice_id"],
        "applied_date": settled["cleared_date"],
        "amount": settled["amount"],
    })
    return contract_table("payments", payments), contract_table("payment_applications", applications)


def disputes_table(rows: pd.DataFrame, mapping: SettledInvoicesMapping) -> pd.DataFrame:
    """One dispute per flagged invoice, over its whole amount, resolved when it was settled."""
    if mapping.disputes is None or "disputed" not in rows:
        return empty_table("disputes")
    flagged = rows[rows["disputed"]]
    opened = flagged["invoice_date"]
    if mapping.disputes.opened_at == "due_date":
        # Raised by the due date at the latest, and never after the invoice was settled.
        opened = flagged[["due_date", "settled_date"]].min(axis=1)
    disputes = pd.DataFrame({
        "dispute_id": "DSP-" + flagged["invoice_id"],
        "invoice_id": flagged["invoice_id"],
        "opened_date": opened,
        "resolved_date": flagged["settled_date"],
        "reason": mapping.disputes.reason,
        "amount": flagged["amount"],
    })
    return contract_table("disputes", disputes)
