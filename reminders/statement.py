"""The statement of account a reminder carries (issue 22): a customer's open items, their ageing by bucket,
its unapplied cash and the total per currency, as of a date, as a PDF (fpdf2).

It is the account as the aging report shows it (`rules.aging`, document currency): every open item,
held ones included, since a statement is the balance of the account, not a reminder; its totals are
the aging report's. The reminder's own text names only the items it reminds of.

fpdf2's core fonts (Helvetica) are Latin-1 by default; the document is written in Windows-1252, which
adds the € sign and keeps the umlauts, and any character beyond it prints as "?" instead of failing:
no font file has to ship with the package.
"""

from __future__ import annotations

import pandas as pd
from fpdf import FPDF

from ledger import Ledger
from ledger.errors import NotFound
from reminders.formatting import calendar_date, locale_of, money
from rules.aging import TOTAL, UNAPPLIED, aging_detail, aging_from_detail

PDF_ENCODING = "windows-1252"
LABELS = {
    "en": {"title": "Statement of account", "as_of": "as of", "customer": "Customer", "document": "Document",
           "type": "Type", "date": "Date", "due_date": "Due date", "days": "Days overdue", "amount": "Open amount",
           "invoice": "Invoice", "credit_memo": "Credit memo", "payment": "Payment not yet applied",
           "ageing": "Ageing", "Current": "Not yet due", UNAPPLIED: "Unapplied cash", TOTAL: "Total",
           "currency": "Currency", "nothing": "No open items."},
    "de": {"title": "Kontoauszug", "as_of": "zum", "customer": "Kunde", "document": "Beleg", "type": "Art",
           "date": "Datum", "due_date": "Fällig am", "days": "Tage überfällig", "amount": "Offener Betrag",
           "invoice": "Rechnung", "credit_memo": "Gutschrift", "payment": "Zahlung, noch nicht zugeordnet",
           "ageing": "Altersstruktur", "Current": "Nicht fällig", UNAPPLIED: "Nicht zugeordnete Zahlungen",
           TOTAL: "Gesamt", "currency": "Währung", "nothing": "Keine offenen Posten."},
}
ITEM_WIDTHS = (34, 46, 26, 26, 24, 34)  # mm: document, type, date, due date, days overdue, open amount


def customer_aging(ledger: Ledger, as_of: pd.Timestamp, customer_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The customer's aging detail rows and its aging report rows (one per currency), in document currency."""
    if customer_id not in set(ledger.customers["customer_id"]):
        raise NotFound(f"customer {customer_id!r}: no such customer in the ledger")
    detail = aging_detail(ledger, as_of, currency="document")
    detail = detail[detail["customer_id"] == customer_id].reset_index(drop=True)
    report = aging_from_detail(detail, ledger.customers) if len(detail) else pd.DataFrame()
    return detail, report


def statement_pdf(ledger: Ledger, as_of: pd.Timestamp, customer_id: str, language: str, *,
                  locale: str | None = None) -> bytes:
    """The customer's statement of account as of `as_of`, as PDF bytes, labelled in `language` (en or de;
    any other gets English labels) with money and dates written for `locale` (default: the language's)."""
    as_of = pd.Timestamp(as_of).normalize()
    locale = locale or locale_of(language)
    labels = LABELS.get(language, LABELS["en"])
    detail, report = customer_aging(ledger, as_of, customer_id)
    name = ledger.customers.set_index("customer_id").at[customer_id, "name"]

    pdf = FPDF(format="A4")
    pdf.core_fonts_encoding = PDF_ENCODING
    pdf.set_title(f"{labels['title']} {customer_id} {as_of:%Y-%m-%d}")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("helvetica", "B", 14)
    _line(pdf, f"{labels['title']} {labels['as_of']} {calendar_date(as_of, locale)}")
    pdf.set_font("helvetica", "", 10)
    _line(pdf, f"{labels['customer']}: {name} ({customer_id})")
    pdf.ln(4)
    if detail.empty:
        _line(pdf, labels["nothing"])
    for row in report.itertuples(index=False):
        currency = row.currency
        _currency_section(pdf, detail[detail["currency"] == currency], report, currency, labels, locale, as_of)
    return bytes(pdf.output())


def _currency_section(pdf: FPDF, items: pd.DataFrame, report: pd.DataFrame, currency: str, labels: dict,
                      locale: str, as_of: pd.Timestamp) -> None:
    pdf.set_font("helvetica", "B", 11)
    _line(pdf, f"{labels['currency']}: {currency}")
    pdf.set_font("helvetica", "B", 9)
    headers = ("document", "type", "date", "due_date", "days", "amount")
    for width, header in zip(ITEM_WIDTHS, headers, strict=True):
        pdf.cell(width, 6, _safe(labels[header]), border="B", align="R" if header in ("days", "amount") else "L")
    pdf.ln()
    pdf.set_font("helvetica", "", 9)
    for item in items.itertuples(index=False):
        overdue = item.item_type != "payment" and pd.notna(item.due_date) and item.age_days > 0
        cells = (item.item_id, labels[item.item_type], calendar_date(item.date, locale),
                 calendar_date(item.due_date, locale) if pd.notna(item.due_date) else "",
                 str(int(item.age_days)) if overdue else "", money(item.open_amount, currency, locale))
        for width, cell, header in zip(ITEM_WIDTHS, cells, headers, strict=True):
            pdf.cell(width, 5, _safe(cell), align="R" if header in ("days", "amount") else "L")
        pdf.ln()
    pdf.ln(2)
    pdf.set_font("helvetica", "B", 10)
    _line(pdf, labels["ageing"])
    pdf.set_font("helvetica", "", 9)
    row = report[report["currency"] == currency].iloc[0]
    buckets = [column for column in report.columns if column not in ("customer_id", "name", "currency", TOTAL)]
    for bucket in buckets:
        pdf.cell(80, 5, _safe(labels.get(bucket, bucket)))
        pdf.cell(40, 5, _safe(money(row[bucket], currency, locale)), align="R")
        pdf.ln()
    pdf.set_font("helvetica", "B", 10)
    pdf.cell(80, 6, _safe(f"{labels[TOTAL]} {currency}"), border="T")
    pdf.cell(40, 6, _safe(money(row[TOTAL], currency, locale)), border="T", align="R")
    pdf.ln(10)


def _line(pdf: FPDF, text: str) -> None:
    pdf.cell(0, 7, _safe(text))
    pdf.ln()


def _safe(text: str) -> str:
    """The text as the core font can print it: Windows-1252, anything beyond it as "?"."""
    return str(text).encode(PDF_ENCODING, "replace").decode(PDF_ENCODING)
