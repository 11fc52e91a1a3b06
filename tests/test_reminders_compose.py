"""Reminders composed from the dunning proposal (issue 22): one per customer and level, in the customer's
language with Babel's money and dates, totals per currency, held items never named, the statement attached;
and the e-mail they become, carried by a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import email
import email.policy
import io
import smtplib

import pandas as pd
import pytest
from pypdf import PdfReader

from configs import config_path
from ledger.errors import BadInput
from reminders.compose import (
    ReminderPolicyError,
    compose_reminders,
    load_reminder_policy,
    message_id,
    mime_message,
)
from rules.dunning import dunning_proposal, load_policy
from tests.ledgers import reminder_ledger
from tests.smtp_server import smtp_server

AS_OF = pd.Timestamp("2024-03-31")
SENDER = "ar@supplier.example"


def proposal(ledger) -> pd.DataFrame:
    return dunning_proposal(ledger, AS_OF, load_policy(config_path("dunning", "default.yaml")), letters=False)


def reminders_by_customer(ledger=None, policy=None, **options) -> dict:
    ledger = ledger if ledger is not None else reminder_ledger()
    composed = compose_reminders(ledger, AS_OF, proposal(ledger), policy or load_reminder_policy(), **options)
    return {reminder.customer_id: reminder for reminder in composed}


def test_one_reminder_per_customer_and_level_keyed_by_customer_level_and_date():
    composed = compose_reminders(reminder_ledger(), AS_OF, proposal(reminder_ledger()), load_reminder_policy())
    assert [reminder.key for reminder in composed] == [
        "C1:1:2024-03-31", "C2:2:2024-03-31", "C3:1:2024-03-31", "C4:1:2024-03-31", "C5:1:2024-03-31"]
    assert [reminder.level for reminder in composed] == [1, 2, 1, 1, 1]


def test_a_customer_handed_to_legal_gets_no_reminder():
    composed = reminders_by_customer(excluded_customers=frozenset({"C4"}))
    assert sorted(composed) == ["C1", "C2", "C3", "C5"]


def test_a_german_contact_gets_german_text_with_german_money_and_dates():
    reminder = reminders_by_customer()["C1"]
    assert reminder.language == "de"
    assert reminder.subject == "Zahlungserinnerung: offene Rechnungen von Müller GmbH zum 31.03.2024"
    # Babel de_DE: thousands with ".", cents with ",", a no-break space before the sign; dates dd.mm.yyyy.
    assert "- Rechnung I11, fällig am 10.03.2024, 21 Tage überfällig: 1.234,56\xa0€" in reminder.text
    assert "<td>I11</td><td>10.03.2024</td>" in reminder.html
    assert "Guten Tag Anna Berg," in reminder.text
    assert "IBAN DE89 3704 0044 0532 0130 00" in reminder.text
    assert "Verwendungszweck „C1 reminder 1 of 2024-03-31“" in reminder.text


def test_an_english_reminder_shows_the_fee_and_interest_the_dunning_policy_computes():
    reminder = reminders_by_customer()["C2"]
    assert reminder.language == "en"  # no language on the contact; the country (GB) has none in the policy
    assert reminder.subject == "Second reminder: overdue invoices of Bolt Ltd as of 31 Mar 2024"
    # Level 2: fee 5.00; interest 200.00 x 8% x 59 days / 365 = 2.586... -> 2.59.
    assert reminder.items == ({"invoice_id": "I21", "currency": "EUR", "open_amount": 200.0, "fee": 5.0,
                               "interest": 2.59, "level": 2, "due_date": "2024-02-01", "days_past_due": 59},)
    assert "- Invoice I21, due 1 Feb 2024, 59 days overdue: €200.00, fee €5.00, interest €2.59" in reminder.text
    assert "Total due in EUR: €207.59 (open €200.00, fees €5.00, interest €2.59)" in reminder.text
    assert reminder.totals == {"EUR": 207.59}


def test_totals_are_per_currency():
    reminder = reminders_by_customer()["C1"]
    assert reminder.totals == {"EUR": 1234.56, "USD": 500.0}
    assert "Gesamtbetrag in EUR: 1.234,56\xa0€" in reminder.text
    assert "Gesamtbetrag in USD: 500,00\xa0$" in reminder.text
    # Level 1 charges neither fee nor interest, so the message does not mention them.
    assert "Mahngebühr" not in reminder.text and "Zinsen" not in reminder.text


def test_a_held_item_is_left_out_and_not_mentioned():
    reminder = reminders_by_customer()["C1"]
    assert [item["invoice_id"] for item in reminder.items] == ["I11", "I13"]
    for part in (reminder.subject, reminder.text, reminder.html):
        assert "I12" not in part and "999" not in part
        assert "dispute" not in part.lower() and "reklamation" not in part.lower() and "quality" not in part


def test_a_customer_with_no_email_contact_has_no_recipients_and_its_countrys_language():
    composed = reminders_by_customer()
    assert composed["C3"].recipients == () and composed["C3"].language == "en"  # US
    assert composed["C5"].recipients == () and composed["C5"].language == "de"  # AT
    assert composed["C5"].text.startswith("Sehr geehrte Damen und Herren,")


def test_recipients_are_the_billing_and_payables_contacts_else_all_of_them():
    composed = reminders_by_customer()
    assert composed["C1"].recipients == ("buchhaltung@mueller.example",)  # the owner is left off
    assert composed["C2"].recipients == ("office@bolt.example",)  # its only contact, role "other"


def test_the_contacts_language_comes_before_the_countrys():
    ledger = reminder_ledger()
    contacts = ledger.email_contacts.assign(language=["de", "de", "de", "en"])
    reminder = reminders_by_customer(ledger.replace(email_contacts=contacts))["C2"]  # GB, contact reads German
    assert reminder.language == "de" and reminder.subject.startswith("2. Mahnung")
    assert "Mahngebühren 5,00\xa0€" in reminder.text and "Zinsen 2,59\xa0€" in reminder.text


def test_the_html_escapes_what_comes_from_the_ledger_and_the_text_does_not():
    ledger = reminder_ledger()
    customers = ledger.customers.assign(name=ledger.customers["name"].replace({"Bolt Ltd": "Bolt & <Sons>"}))
    reminder = reminders_by_customer(ledger.replace(customers=customers))["C2"]
    assert "Bolt &amp; &lt;Sons&gt; (C2)" in reminder.html and "<Sons>" not in reminder.html
    assert "Bolt & <Sons> (C2)" in reminder.text


def test_the_statement_of_account_is_attached():
    reminder = reminders_by_customer()["C2"]
    (statement,) = reminder.attachments
    assert statement.filename == "statement-C2-2024-03-31.pdf" and statement.mimetype == "application/pdf"
    text = PdfReader(io.BytesIO(statement.content)).pages[0].extract_text()
    assert "Statement of account as of 31 Mar 2024" in text and "Total EUR €150.00" in text
    without = load_reminder_policy().model_copy(update={"attach_statement": False})
    plain = reminders_by_customer(policy=without)["C2"]
    assert plain.attachments == () and "statement of account" not in plain.text


def test_only_written_channels_become_reminders():
    # Level 2 goes by letter in the default dunning policy; a policy sending e-mail levels only leaves C2 out.
    email_only = load_reminder_policy().model_copy(update={"channels": ("email",)})
    assert sorted(reminders_by_customer(policy=email_only)) == ["C1", "C3", "C4", "C5"]


def test_the_mime_message_has_text_html_the_pdf_and_a_message_id_from_the_key():
    reminder = reminders_by_customer()["C1"]
    message = mime_message(reminder, SENDER)
    assert message["To"] == "buchhaltung@mueller.example" and message["From"] == SENDER
    assert message["X-ArRisk-Key"] == "C1:1:2024-03-31" and message["Content-Language"] == "de"
    assert message["Message-ID"] == message_id("C1:1:2024-03-31", SENDER)
    assert message["Message-ID"].endswith("@supplier.example>")
    assert mime_message(reminder, SENDER)["Message-ID"] == message["Message-ID"]  # a resend is recognisable
    assert message_id("C1:2:2024-03-31", SENDER) != message["Message-ID"]
    assert message.get_body(("plain",)).get_content() == reminder.text
    assert message.get_body(("html",)).get_content() == reminder.html
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "statement-C1-2024-03-31.pdf"
    assert attachment.get_content() == reminder.attachments[0].content


def test_the_message_arrives_whole_through_a_real_smtp_server():
    reminder = reminders_by_customer()["C1"]
    with smtp_server() as (handler, settings), smtplib.SMTP(settings.host, settings.port, timeout=10) as client:
        client.send_message(mime_message(reminder, SENDER))
    ((sender, recipients, received),) = handler.received
    assert sender == SENDER and recipients == ["buchhaltung@mueller.example"]
    assert received["Subject"] == reminder.subject and received["X-ArRisk-Key"] == reminder.key
    assert "1.234,56\xa0€" in received.get_body(("plain",)).get_content()
    (attachment,) = received.iter_attachments()
    pdf = PdfReader(io.BytesIO(attachment.get_content())).pages[0].extract_text()
    assert "Kontoauszug zum 31.03.2024" in pdf
    assert email.message_from_bytes(received.as_bytes(), policy=email.policy.default)["Message-ID"] == \
        message_id(reminder.key, SENDER)


def test_no_proposed_rows_give_no_reminders():
    ledger = reminder_ledger()
    nothing_due = proposal(ledger).assign(status="held")
    assert compose_reminders(ledger, AS_OF, nothing_due, load_reminder_policy()) == []


def test_a_proposal_without_its_columns_is_bad_input():
    with pytest.raises(BadInput, match=r"dunning proposal: column\(s\) missing: fee, interest"):
        compose_reminders(reminder_ledger(), AS_OF, proposal(reminder_ledger()).drop(columns=["fee", "interest"]),
                          load_reminder_policy())


def test_a_missing_template_is_named(tmp_path):
    policy = load_reminder_policy().model_copy(update={"templates": str(tmp_path)})
    with pytest.raises(ReminderPolicyError, match=r"reminder template de/level_1.subject.txt not found in "):
        reminders_by_customer(policy=policy)


def test_the_policy_rejects_unknown_keys_and_a_reference_with_unknown_fields(tmp_path):
    shipped = config_path("reminders", "default.yaml").read_text()
    typo = tmp_path / "typo.yaml"
    typo.write_text(shipped.replace("attach_statement:", "attach_statment:"))
    with pytest.raises(ReminderPolicyError, match=r"typo.yaml: attach_statment: Extra inputs are not permitted"):
        load_reminder_policy(typo)
    reference = tmp_path / "reference.yaml"
    reference.write_text(shipped.replace("{customer_id} reminder", "{customer} reminder"))
    with pytest.raises(ReminderPolicyError, match=r"payment.reference: .*may use only"):
        load_reminder_policy(reference)
    locale = tmp_path / "locale.yaml"
    locale.write_text(shipped.replace("de: de_DE", "de: xx_YY"))
    with pytest.raises(ReminderPolicyError, match=r"locales: .*'xx_YY' is not a locale Babel knows"):
        load_reminder_policy(locale)
