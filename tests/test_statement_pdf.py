"""The statement of account PDF (issue 22), parsed back with pypdf: its totals are the aging report's."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
from babel.numbers import parse_decimal
from pypdf import PdfReader

from ledger.errors import NotFound
from reminders.statement import statement_pdf
from rules.aging import aging_report
from tests.ledgers import dates, reminder_ledger

AS_OF = pd.Timestamp("2024-03-31")


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def printed_totals(text: str, word: str, locale: str) -> dict[str, float]:
    """The "Total EUR <amount>" lines of a statement, by currency."""
    totals = {}
    for currency, amount in re.findall(rf"^{word} ([A-Z]{{3}}) (.+)$", text, flags=re.MULTILINE):
        number = re.sub(r"[^\d.,-]", "", amount)  # the currency sign, whichever side it is on
        totals[currency] = float(parse_decimal(number, locale=locale))
    return totals


@pytest.mark.parametrize(("customer_id", "language", "word", "locale"), [
    ("C1", "de", "Gesamt", "de_DE"), ("C1", "en", "Total", "en_GB"), ("C2", "en", "Total", "en_GB"),
])
def test_the_statements_totals_per_currency_equal_the_aging_reports(customer_id, language, word, locale):
    ledger = reminder_ledger()
    report = aging_report(ledger, AS_OF, currency="document")
    expected = report[report["customer_id"] == customer_id].set_index("currency")["Total"].to_dict()
    printed = printed_totals(pdf_text(statement_pdf(ledger, AS_OF, customer_id, language)), word, locale)
    # C1: EUR 1,234.56 + 999.99 (held in dispute, but open on the account) = 2,234.55, USD 500.00;
    # C2: EUR 200.00 less 50.00 received and not applied = 150.00.
    assert printed == pytest.approx(expected, abs=0.005)
    assert expected == pytest.approx({"C1": {"EUR": 2234.55, "USD": 500.0}, "C2": {"EUR": 150.0}}[customer_id])


def test_the_statement_lists_open_items_ageing_and_unapplied_cash():
    text = pdf_text(statement_pdf(reminder_ledger(), AS_OF, "C2", "en"))
    assert "Statement of account as of 31 Mar 2024" in text
    assert "Bolt Ltd (C2)" in text
    assert "I21 Invoice 2 Jan 2024 1 Feb 2024 59 €200.00" in text
    assert "P1 Payment not yet applied 20 Mar 2024 -€50.00" in text
    # I21 is 59 days past due: the 31-60 bucket.
    assert "31-60 €200.00" in text and "Unapplied cash -€50.00" in text


def test_the_german_statement_has_umlauts_the_euro_sign_and_german_dates():
    text = pdf_text(statement_pdf(reminder_ledger(), AS_OF, "C1", "de"))
    assert "Kontoauszug zum 31.03.2024" in text
    assert "Kunde: Müller GmbH (C1)" in text
    # Babel puts a no-break space between the amount and the sign in German.
    assert "I11 Rechnung 09.02.2024 10.03.2024 21 1.234,56\xa0€" in text
    assert "Fällig am" in text and "Nicht fällig" in text


def test_a_name_beyond_the_core_fonts_characters_prints_with_question_marks_instead_of_failing():
    ledger = reminder_ledger()
    customers = ledger.customers.assign(name=ledger.customers["name"].replace({"Bolt Ltd": "Łódź Żywiec Sp. z o.o."}))
    text = pdf_text(statement_pdf(ledger.replace(customers=customers), AS_OF, "C2", "en"))
    assert "?ód? ?ywiec Sp. z o.o. (C2)" in text


def test_the_statement_shows_only_what_was_known_as_of_its_date():
    ledger = reminder_ledger()
    # I11 paid in full on 2024-04-05: after the statement's date, so still open on it.
    payments = pd.concat([ledger.payments, pd.DataFrame({
        "payment_id": ["P2"], "customer_id": ["C1"], "received_date": dates("2024-04-05"), "amount": [1234.56],
        "currency": ["EUR"], "amount_base": [1234.56]})], ignore_index=True)
    applications = pd.DataFrame({"payment_id": ["P2"], "invoice_id": ["I11"], "applied_date": dates("2024-04-05"),
                                 "amount": [1234.56]})
    invoices = ledger.invoices.assign(cleared_date=ledger.invoices["cleared_date"].where(
        ledger.invoices["invoice_id"] != "I11", pd.Timestamp("2024-04-05")))
    later = ledger.replace(payments=payments, payment_applications=applications, invoices=invoices).validate()
    before = pdf_text(statement_pdf(later, AS_OF, "C1", "en"))
    after = pdf_text(statement_pdf(later, pd.Timestamp("2024-04-05"), "C1", "en"))
    assert "I11 Invoice" in before and printed_totals(before, "Total", "en_GB")["EUR"] == pytest.approx(2234.55)
    assert "I11 Invoice" not in after and printed_totals(after, "Total", "en_GB")["EUR"] == pytest.approx(999.99)


def test_a_customer_without_open_items_gets_a_statement_saying_so():
    ledger = reminder_ledger()
    customers = pd.concat([ledger.customers, ledger.customers.iloc[[0]].assign(customer_id="C9", name="Quiet AG")],
                          ignore_index=True)
    text = pdf_text(statement_pdf(ledger.replace(customers=customers), AS_OF, "C9", "de"))
    assert "Keine offenen Posten." in text and "Gesamt" not in text


def test_an_unknown_customer_is_named():
    with pytest.raises(NotFound, match="customer 'C9': no such customer"):
        statement_pdf(reminder_ledger(), AS_OF, "C9", "en")
