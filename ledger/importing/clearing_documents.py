"""Reader for customer line items with clearing documents (SAP FBL5N exported to a spreadsheet).

How SAP records receivables, and how the ledger is rebuilt from it:

- Invoice and credit-memo documents (RV, DR, DG) become ledger invoices, one per document.
- Every other document (DZ payment, AB clearing) becomes a payment whose amount is minus the sum
  of its customer lines: a full payment's credit line; a partial payment's credit line; or the
  credit line of a clearing less the residual item it leaves open for the rest.
- A line of such a document that is not cleared by its own document and belongs to an invoice
  continues that invoice: a residual item (debit) is what is still owed on it, a partial payment
  (credit) is applied to it on its posting date. The original invoice stays one ledger invoice; it
  is cleared when its last item is. The line is linked as SAP links it (`LINK_RULES`, in order):
  by its invoice reference (Rechnungsbezug, REBZG); else by its assignment (Zuordnung) or else its
  reference (Referenz, XBLNR) naming exactly one invoice of the customer, by that invoice's own
  assignment, reference or document number (SAP copies the invoice's Zuordnung, and often its
  Referenz, to the residual item it creates at payment time). A debit line linked by none of these
  is an error naming the candidates; a credit line is then cash on account.
- All items sharing a clearing document were cleared together on the clearing date. Each invoice's
  open balance fell there by its items cleared, less any residual item the clearing document left
  open for it; that fall is applied from the cash cleared with it, oldest invoice first from the
  earliest cash (SAP does not record which cash paid which item). Credit memos are applied by the
  first payment. A clearing without cash (an invoice against a credit memo, AB) is a payment of 0.
- Open credit lines with no invoice reference are unapplied cash.

Amounts are reckoned in whole cents so that applications add up exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ledger.errors import LedgerError, Problem
from ledger.importing.mappings import LineItemColumns, LineItemsMapping
from ledger.importing.sources import CHUNK_ROWS, SourceTable, read_source_chunks
from ledger.importing.tables import contract_table, customers_table, problems_at
from ledger.schema import DATE, empty_table
from ledger.store import Ledger

RECEIVABLE_ROLES = ("invoice", "credit_memo")
MAX_REFERENCE_CHAIN = 20  # a residual of a residual of ... : SAP keeps few, this bounds a cycle
# How a residual item or partial payment is linked to its invoice, tried in this order: the rule's
# name, and the line field it reads (invoice_reference names the document; the others match).
LINK_RULES = {"invoice reference": "invoice_reference", "assignment": "assignment", "reference": "reference"}
# Parsed fields a mapping may leave out (or a file may lack): missing means empty on every line.
OPTIONAL_FIELDS = {"invoice_reference": object, "assignment": object, "reference": object, "name": object,
                   "dunning_level": "Int64", "dunning_date": DATE, "dunning_block": object}


@dataclass(frozen=True)
class LinkReport:
    """What an import of line items linked, for the import command to print: per rule of `LINK_RULES`
    how many residual items and partial payments it linked, and notes on what was left out."""

    linked: dict[str, int]
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per rule and note, e.g. 'residual items and partial payments linked by assignment: 4'."""
        return [f"residual items and partial payments linked by {rule}: {count}"
                for rule, count in self.linked.items()] + self.notes


def line_items_ledger(sources: Sequence[Path], mapping: LineItemsMapping, name: str,
                      chunk_rows: int = CHUNK_ROWS) -> Ledger:
    """A validated ledger from one or more line-item exports (.csv or .xlsx); see `line_items_import`."""
    return line_items_import(sources, mapping, name, chunk_rows)[0]


def line_items_import(sources: Sequence[Path], mapping: LineItemsMapping, name: str,
                      chunk_rows: int = CHUNK_ROWS) -> tuple[Ledger, LinkReport]:
    """A validated ledger from one or more line-item exports (.csv or .xlsx), with what its rules linked.

    The files are read and parsed `chunk_rows` lines at a time, but the parsed line items of all files are
    held together: a clearing document groups items across rows (and files), and residual items refer to
    invoices anywhere in the export, so the ledger can only be derived from all of them at once."""
    problems: list[Problem] = []
    parsed = []
    for path in sources:
        chunks = [line_items(table, mapping, problems) for table in read_source_chunks(path, mapping.format,
                                                                                        chunk_rows)]
        if not sum(len(chunk) for chunk in chunks):
            raise LedgerError(Problem(str(path), 2, None, "no data rows: expected one row per line item"),
                              title="bad import source")
        parsed += chunks
    if problems:
        raise LedgerError(problems, title="bad import source")
    items = with_roots(with_optional_fields(pd.concat(parsed, ignore_index=True)))
    problems = consistency_problems(items, mapping.columns)
    if problems:
        raise LedgerError(problems, title="bad import source")
    items = items.assign(ledger_reference=ledger_reference(items, mapping.columns))
    owed, cash = owed_per_clearing(items), cash_per_clearing(items)
    applications = applications_table(owed, cash, items)
    invoices = invoices_table(items, applications)
    ledger = Ledger(
        customers=customers_table(items.rename(columns={"role": "doc_type"}), first_seen(items), mapping.customers),
        invoices=invoices,
        payments=payments_table(items, applications),
        payment_applications=contract_table("payment_applications", applications),
        dunning_notices=dunning_notices_table(items),
        base_currency=mapping.base_currency,
        source=f"import:{name}",
    )
    return ledger.validate(), link_report(items)


def link_report(items: pd.DataFrame) -> LinkReport:
    """How many continuing lines each rule linked; how many dunning levels lack a date."""
    counts = items.loc[items["continues"], "link_rule"].value_counts()
    notes = []
    undated = items.loc[undated_dunning(items), "root"].nunique()
    if undated:
        notes.append(f"{undated} documents carry a dunning level without a date: the level is kept, its notice "
                     f"date unknown, and counts from the export's date {export_date(items):%Y-%m-%d}")
    return LinkReport({rule: int(counts.get(rule, 0)) for rule in LINK_RULES}, notes)


def line_items(table: SourceTable, mapping: LineItemsMapping, problems: list[Problem] | None = None) -> pd.DataFrame:
    """The file's (or chunk's) lines parsed, with their file, line number and document role; bad cells
    are recorded in `table.problems` and appended to `problems` when given."""
    columns = mapping.columns
    table.require_columns(columns.model_dump())
    items = pd.DataFrame({
        "file": table.file,
        "line": table.lines,
        "customer_id": table.text(columns.customer_id, required=True),
        "document": table.text(columns.document, required=True),
        "document_type": table.text(columns.document_type, required=True),
        "invoice_date": table.dates(columns.invoice_date, required=True),
        "posting_date": table.dates(columns.posting_date, required=True),
        "due_date": table.dates(columns.due_date),
        "amount": table.money(columns.amount, required=True),
        "currency": table.text(columns.currency, required=True),
        "amount_base": table.money(columns.amount_base, required=True),
        "base_currency": table.text(columns.base_currency, required=True),
        "clearing_document": table.text(columns.clearing_document),
        "clearing_date": table.dates(columns.clearing_date),
    })
    parsers = {"invoice_reference": table.text, "assignment": table.text, "reference": table.text,
               "customer_name": table.text, "dunning_level": table.whole_numbers, "dunning_date": table.dates,
               "dunning_block": table.text}
    for name, parse in parsers.items():
        # A field the mapping lacks, or a mapped column absent from the file, is left out (empty).
        column = getattr(columns, name, None)
        if column and column in table.cells:
            items[name] = parse(column)
    items = with_optional_fields(items.rename(columns={"customer_name": "name"}))
    items["role"] = items["document_type"].map(mapping.document_types)
    _flag_line_problems(table, items, mapping)
    if problems is not None:
        problems += table.problems
    return items


def _flag_line_problems(table: SourceTable, items: pd.DataFrame, mapping: LineItemsMapping) -> None:
    columns = mapping.columns
    known = ", ".join(sorted(mapping.document_types))
    table.flag(items["document_type"].notna() & items["role"].isna(), columns.document_type,
               f"unknown document type: expected one of {known} (add it to document_types in the mapping)",
               items["document_type"])
    table.flag(items["base_currency"].notna() & (items["base_currency"] != mapping.base_currency),
               columns.base_currency, f"expected the mapping's base_currency {mapping.base_currency}",
               items["base_currency"])
    table.flag(items["clearing_document"].notna() & items["clearing_date"].isna(), columns.clearing_date,
               "missing value: a cleared item needs its clearing date")
    table.flag(items["clearing_document"].isna() & items["clearing_date"].notna(), columns.clearing_document,
               "missing value: an item with a clearing date needs its clearing document")
    invoice, credit_memo = items["role"] == "invoice", items["role"] == "credit_memo"
    table.flag(invoice & (items["amount"] <= 0), columns.amount,
               "an invoice must be a debit (a positive amount)", table.cells[columns.amount])
    table.flag(credit_memo & (items["amount"] >= 0), columns.amount,
               "a credit memo must be a credit (a negative amount)", table.cells[columns.amount])
    both = items["amount"].notna() & items["amount_base"].notna()
    table.flag(both & (np.sign(items["amount_base"]) != np.sign(items["amount"])), columns.amount_base,
               "expected the same sign as the amount in document currency", table.cells[columns.amount_base])
    table.flag((invoice | credit_memo) & items["due_date"].isna(), columns.due_date,
               "missing value (an invoice or credit memo needs its due date)")
    level_column = getattr(columns, "dunning_level", None)
    if level_column and level_column in table.cells:
        # A level without a date is kept (see dunning_notices_table), not refused.
        table.flag((items["dunning_level"] < 0) | (items["dunning_level"] > 9), level_column,
                   "expected a dunning level from 0 to 9", table.cells[level_column])


def with_optional_fields(items: pd.DataFrame) -> pd.DataFrame:
    """Items with every field of `OPTIONAL_FIELDS`, empty where the mapping or the file has none."""
    missing = {name: pd.Series(None, index=items.index, dtype=dtype)
               for name, dtype in OPTIONAL_FIELDS.items() if name not in items}
    return items.assign(**missing) if missing else items


def with_roots(items: pd.DataFrame) -> pd.DataFrame:
    """Items with `receivable` (an invoice or credit memo line), `continues` (a residual item or a
    partial payment linked to one), `link_rule` (the `LINK_RULES` name that linked it), `candidates`
    (for a line of a payment document no rule linked: the invoices its assignment or reference
    matched, none or several) and `root` (the ledger invoice a receivable or continuing line belongs
    to, else the payment document; NaN where an invoice reference leads nowhere)."""
    receivable = items["role"].isin(RECEIVABLE_ROLES)
    loose = ~receivable & (items["clearing_document"] != items["document"])
    by_reference = loose & items["invoice_reference"].notna()
    target = items["invoice_reference"].where(by_reference)
    link_rule = pd.Series(None, index=items.index, dtype=object).mask(by_reference, "invoice reference")
    candidates = pd.Series(None, index=items.index, dtype=object)
    pending = items.index[loose & ~by_reference]
    matched: list[pd.Series] = []
    for rule in ("assignment", "reference"):
        matches = matching_invoices(items.loc[pending], items[receivable], LINK_RULES[rule])
        single = matches[matches.map(len) == 1]
        target.loc[single.index] = single.str[0]
        link_rule.loc[single.index] = rule
        matched.append(matches)
        pending = pending.difference(single.index)
    if len(pending):
        found = [matches.reindex(pending) for matches in matched]
        candidates.loc[pending] = [tuple(sorted(set(by_assignment) | set(by_reference)))
                                   for by_assignment, by_reference in zip(*found, strict=True)]
    continues = target.notna()
    # An invoice reference may point at a document that itself continues an invoice (a residual of a residual).
    step = target[continues].groupby(items.loc[continues, "document"]).first()
    root = target
    for _ in range(MAX_REFERENCE_CHAIN):
        following = root.map(step)
        if following.isna().all():
            break
        root = following.fillna(root)
    invoice_ids = items.loc[receivable, "document"]
    root = root.where(root.isin(invoice_ids))
    return items.assign(receivable=receivable, continues=continues, link_rule=link_rule, candidates=candidates,
                        root=items["document"].where(~continues, root),
                        cleared=items["clearing_document"].notna(),
                        cents=np.rint(items["amount"] * 100).astype("int64"))


def matching_invoices(lines: pd.DataFrame, receivables: pd.DataFrame, field: str) -> pd.Series:
    """Per line, the documents (a sorted tuple, maybe empty) of its customer's invoices and credit memos
    whose `field` or document number is the line's `field`; a debit line matches no credit memo (what is
    still owed on a credit memo is a credit)."""
    keys = pd.concat([receivables[["customer_id", "document", "role", field]].rename(columns={field: "key"}),
                      receivables[["customer_id", "document", "role"]].assign(key=receivables["document"])])
    keys = keys.dropna(subset=["key"]).drop_duplicates(["customer_id", "key", "document"])
    wanted = pd.DataFrame({"line": lines.index, "customer_id": lines["customer_id"].to_numpy(),
                           "key": lines[field].to_numpy(), "debit": (lines["amount"] > 0).to_numpy()})
    pairs = wanted.dropna(subset=["key"]).merge(keys, on=["customer_id", "key"])
    pairs = pairs[~(pairs["debit"] & (pairs["role"] == "credit_memo"))]
    found = pairs.groupby("line")["document"].agg(lambda documents: tuple(sorted(set(documents))))
    return pd.Series([found.get(line, ()) for line in lines.index], index=lines.index, dtype=object)


def consistency_problems(items: pd.DataFrame, columns: LineItemColumns) -> list[Problem]:
    """Problems only the lines together show: duplicate invoices, references that lead nowhere,
    clearings that do not balance, payments that pay out."""
    invoices = items[items["receivable"]]
    problems = problems_at(invoices, invoices.duplicated("document", keep=False), columns.document,
                           "the same invoice or credit memo document on several lines (line items of one "
                           "document are not supported)")
    types = items.groupby("document")["document_type"].transform("nunique")
    problems += problems_at(items, types > 1, columns.document_type, "one document with several document types")
    continues = items[items["continues"]]
    problems += problems_at(continues, continues["root"].isna(), columns.invoice_reference,
                            "refers to " + continues["invoice_reference"].astype(str)
                            + ", which is no invoice or credit memo in the export")
    root_currency = continues["root"].map(invoices.drop_duplicates("document").set_index("document")["currency"])
    problems += problems_at(continues, root_currency.notna() & (root_currency != continues["currency"]),
                            columns.currency, "in another currency than the invoice it refers to, "
                            + root_currency.astype(str))
    loose_debit = ~items["receivable"] & ~items["continues"] & (items["amount"] > 0) & (
        items["clearing_document"] != items["document"])
    link_column = next((getattr(columns, name, None) for name in ("assignment", "reference", "invoice_reference")
                        if getattr(columns, name, None)), columns.amount)
    problems += problems_at(items, loose_debit, link_column,
                            unlinked_messages(items[loose_debit]).reindex(items.index))
    problems += _group_problems(items[~items["receivable"]], "document", columns.document, "payment document")
    problems += _group_problems(items[items["cleared"]], "clearing_document", columns.clearing_document,
                                "clearing document")
    return problems


def unlinked_messages(lines: pd.DataFrame) -> pd.Series:
    """Why each debit line of a payment document is linked to no invoice: the invoices that match, none or several."""
    def message(line: pd.Series) -> str:
        head = "a residual item (a debit in a payment document) without an invoice reference"
        said = ", ".join(f"{name} {line[name]}" for name in ("assignment", "reference") if pd.notna(line[name]))
        if not said:
            return f"{head}, assignment or reference: cannot tell which invoice it belongs to"
        found = line["candidates"] if isinstance(line["candidates"], tuple) else ()
        if len(found) > 1:
            return f"{head}: its {said} match several invoices of customer {line['customer_id']}: {', '.join(found)}"
        return (f"{head}: its {said} match no invoice of customer {line['customer_id']}: cannot tell which "
                "invoice it belongs to")
    return lines.apply(message, axis=1) if len(lines) else pd.Series(dtype=object)


def _group_problems(items: pd.DataFrame, key: str, column: str, what: str) -> list[Problem]:
    """One currency per payment or clearing document; a clearing balances to zero; a payment does
    not pay money out."""
    groups = items.groupby(key)
    currencies = groups["currency"].transform("nunique")
    problems = problems_at(items, currencies > 1, column,
                           f"{what} " + items[key].astype(str) + " mixes document currencies "
                           "(not supported: clear one currency at a time)")
    total = groups["cents"].transform("sum")
    if what == "clearing document":
        message = (f"the items cleared by {what} " + items[key].astype(str) + " add up to "
                   + (total / 100).map("{:.2f}".format) + " " + items["currency"]
                   + ", expected 0: are some of its items missing from the export?")
        problems += problems_at(items, (total != 0) & (currencies == 1), column, message)
    else:
        message = (f"{what} " + items[key].astype(str) + " adds up to a debit of "
                   + (total / 100).map("{:.2f}".format) + ": refunds and reversals are not supported")
        problems += problems_at(items, (total > 0) & (currencies == 1), column, message)
    return problems


def owed_per_clearing(items: pd.DataFrame) -> pd.DataFrame:
    """Per clearing (a clearing document, or a partial payment's posting) and invoice: by how
    many cents the invoice's open balance fell (`event`, `root`, `date`, `cents`)."""
    belongs = items[items["receivable"] | items["continues"]]
    cleared = belongs[belongs["cleared"]]
    # Lines continuing an invoice are owed again from their own document on: a residual item
    # adds back what is still open; a partial payment takes its amount off.
    posted = items[items["continues"]]
    changes = pd.concat([
        pd.DataFrame({"event": cleared["clearing_document"], "root": cleared["root"],
                      "date": cleared["clearing_date"], "cents": cleared["cents"]}),
        pd.DataFrame({"event": posted["document"], "root": posted["root"],
                      "date": posted["posting_date"], "cents": -posted["cents"]}),
    ])
    owed = changes.groupby(["event", "root"], as_index=False).agg(date=("date", "max"), cents=("cents", "sum"))
    return owed[owed["cents"] != 0].reset_index(drop=True)


def cash_per_clearing(items: pd.DataFrame) -> pd.DataFrame:
    """Per clearing and payment document: the cents of its cash used there (`event`, `payer`,
    `received_date`, `cents`)."""
    own = items[~items["receivable"] & ~items["continues"] & items["cleared"]]
    posted = items[items["continues"]]
    changes = pd.concat([
        pd.DataFrame({"event": own["clearing_document"], "payer": own["document"], "cents": -own["cents"]}),
        pd.DataFrame({"event": posted["document"], "payer": posted["document"], "cents": -posted["cents"]}),
    ])
    cash = changes.groupby(["event", "payer"], as_index=False)["cents"].sum()
    received = items.groupby("document")["posting_date"].min()
    return cash.assign(received_date=cash["payer"].map(received))


def applications_table(owed: pd.DataFrame, cash: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Payment applications: per clearing, invoices (by due date) paid from the cash (by received
    date) in order, credit memos applied by the first payment; one row per payment and invoice."""
    payers = cash[cash["cents"] > 0]
    # A clearing without cash (an invoice against a credit memo) is a payment of zero by the
    # clearing document itself.
    bare = owed.loc[~owed["event"].isin(payers["event"]), ["event", "date"]].groupby("event", as_index=False).max()
    bare = pd.DataFrame({"event": bare["event"], "payer": bare["event"], "cents": 0, "received_date": bare["date"]})
    payers = pd.concat([payers, bare]).sort_values(["event", "received_date", "payer"], ignore_index=True)
    first_payer = payers.drop_duplicates("event").set_index("event")["payer"]

    credits = owed[owed["cents"] < 0].assign(payer=lambda frame: frame["event"].map(first_payer))
    credit_total = -credits.groupby("event")["cents"].sum()
    is_first = payers["payer"].to_numpy() == payers["event"].map(first_payer).to_numpy()
    budget = payers["cents"] + np.where(is_first, payers["event"].map(credit_total).fillna(0), 0)
    payers = payers.assign(upper=budget.groupby(payers["event"]).cumsum().astype("int64"))
    payers["lower"] = payers["upper"] - budget.astype("int64")

    due = items[items["receivable"]].set_index("document")["due_date"]
    debits = owed[owed["cents"] > 0].assign(due_date=lambda frame: frame["root"].map(due))
    debits = debits.sort_values(["event", "due_date", "root"], ignore_index=True)
    debits["upper"] = debits.groupby("event")["cents"].cumsum()
    debits["lower"] = debits["upper"] - debits["cents"]
    # Lay invoices and cash side by side on one axis of cents per clearing; overlaps are applications.
    pairs = debits.merge(payers[["event", "payer", "lower", "upper"]], on="event", suffixes=("", "_cash"))
    pairs["cents"] = (np.minimum(pairs["upper"], pairs["upper_cash"])
                      - np.maximum(pairs["lower"], pairs["lower_cash"])).clip(lower=0)
    pieces = pd.concat([pairs.loc[pairs["cents"] > 0, ["payer", "root", "date", "cents"]],
                        credits[["payer", "root", "date", "cents"]]])
    applications = pieces.groupby(["payer", "root"], as_index=False).agg(applied_date=("date", "max"),
                                                                          cents=("cents", "sum"))
    applications = applications[applications["cents"] != 0]
    return pd.DataFrame({
        "payment_id": applications["payer"].astype(str),
        "invoice_id": applications["root"].astype(str),
        "applied_date": applications["applied_date"].astype(DATE),
        "amount": applications["cents"] / 100,
    }).reset_index(drop=True)


def invoices_table(items: pd.DataFrame, applications: pd.DataFrame) -> pd.DataFrame:
    """Ledger invoices and credit memos, cleared on their last application once fully applied."""
    lines = items[items["receivable"]]
    applied = applications.assign(cents=np.rint(applications["amount"] * 100).astype("int64")).groupby(
        "invoice_id").agg(cents=("cents", "sum"), last=("applied_date", "max"))
    settled = lines["document"].map(applied["cents"]).fillna(0).astype("int64") == lines["cents"]
    invoices = pd.DataFrame({
        "invoice_id": lines["document"],
        "customer_id": lines["customer_id"],
        "doc_type": lines["role"],
        "invoice_date": lines["invoice_date"],
        "due_date": lines["due_date"],
        "amount": lines["amount"],
        "currency": lines["currency"],
        "amount_base": lines["amount_base"],
        "cleared_date": lines["document"].map(applied["last"]).where(settled).astype(DATE),
    })
    if lines["ledger_reference"].notna().any():
        invoices["reference"] = lines["ledger_reference"]
    if lines["dunning_block"].notna().any():
        blocked = items.loc[items["dunning_block"].notna(), "root"]
        invoices["dunning_block"] = lines["document"].isin(blocked)
    return contract_table("invoices", invoices)


def ledger_reference(items: pd.DataFrame, columns: LineItemColumns) -> pd.Series:
    """The ledger's `reference` of each line, where the mapping maps one: its Referenz (XBLNR), or, where
    the export has no Referenz filled, its Zuordnung (the column the reference was read from before the
    two were mapped apart)."""
    if getattr(columns, "reference", None) is None:
        return pd.Series(None, index=items.index, dtype=object)
    return items["reference"] if items["reference"].notna().any() else items["assignment"]


def payments_table(items: pd.DataFrame, applications: pd.DataFrame) -> pd.DataFrame:
    """One payment per payment or clearing document: minus the sum of its lines, received on its
    posting date; plus a payment of zero for each clearing without cash or lines of its own."""
    lines = items[~items["receivable"]]
    documents = lines.groupby("document", sort=False).agg(
        customer_id=("customer_id", "first"), received_date=("posting_date", "min"), cents=("cents", "sum"),
        base=("amount_base", "sum"), currency=("currency", "first"), reference=("ledger_reference", "first"))
    payments = pd.DataFrame({
        "payment_id": documents.index.astype(str),
        "customer_id": documents["customer_id"].to_numpy(),
        "received_date": documents["received_date"].to_numpy(),
        "amount": -documents["cents"].to_numpy() / 100 + 0.0,
        "currency": documents["currency"].to_numpy(),
        "amount_base": (-documents["base"].round(2) + 0.0).to_numpy(),
        "reference": documents["reference"].to_numpy(),
    })
    bare_ids = applications.loc[~applications["payment_id"].isin(payments["payment_id"]), "payment_id"].unique()
    bare = applications[applications["payment_id"].isin(bare_ids)].join(
        items[items["receivable"]].set_index("document")[["customer_id", "currency"]], on="invoice_id")
    bare = bare.groupby("payment_id", as_index=False).agg(
        customer_id=("customer_id", "first"), received_date=("applied_date", "min"), currency=("currency", "first"))
    payments = pd.concat([payments, bare.assign(amount=0.0, amount_base=0.0, reference=None)], ignore_index=True)
    if payments["reference"].isna().all():
        payments = payments.drop(columns="reference")
    return contract_table("payments", payments)


def dunning_notices_table(items: pd.DataFrame) -> pd.DataFrame:
    """Per dunned invoice, its current dunning level, issued on the date of the last dunning run
    (FBL5N keeps only the last level and date; earlier notices are not in the export).

    A level without a date (no Letzte Mahnung in the layout, or an empty cell) is kept with its issued
    date unknown and a `known_date`: the export's date, the latest date anywhere in it, on which the
    level was certainly known. The point-in-time rules count such a notice from that day only, and the
    dunning proposal waits until the next level is due counting from it (`rules.dunning`)."""
    dunned = items[dunned_invoice_items(items)]
    if dunned.empty:
        return empty_table("dunning_notices")
    latest = dunned.sort_values(["root", "dunning_level", "dunning_date"]).drop_duplicates("root", keep="last")
    notices = pd.DataFrame({
        "invoice_id": latest["root"].astype(str),
        "level": latest["dunning_level"].astype("int64"),
        "issued_date": latest["dunning_date"].astype(DATE),
    })
    if notices["issued_date"].isna().any():
        notices["known_date"] = pd.Series(export_date(items), index=notices.index).where(
            notices["issued_date"].isna()).astype(DATE)
    return contract_table("dunning_notices", notices)


def export_date(items: pd.DataFrame) -> pd.Timestamp:
    """The day the export was taken, as far as the export tells: the latest date on which one of its
    lines says something happened (the export itself carries no key date)."""
    columns = [column for column in ("invoice_date", "posting_date", "clearing_date", "dunning_date")
               if column in items]  # dates on which something happened; due dates may lie ahead
    return items[columns].max().max()


def dunned_invoice_items(items: pd.DataFrame) -> pd.Series:
    """Items with a dunning level above 0 that belong to an invoice or credit memo of the export."""
    return (items["dunning_level"].fillna(0) > 0) & items["root"].isin(items.loc[items["receivable"], "document"])


def undated_dunning(items: pd.DataFrame) -> pd.Series:
    """Dunned items without the date of their last dunning notice (no Letzte Mahnung column, or empty)."""
    return dunned_invoice_items(items) & items["dunning_date"].isna()


def first_seen(items: pd.DataFrame) -> pd.Series:
    """Per customer, the date of its first document (the export has no customer creation date)."""
    dates = items[["invoice_date", "posting_date"]].min(axis=1)
    return dates.groupby(items["customer_id"]).min()
