"""The reminders outbox (issue 22): drafting once per key, the state machine, and sending at most once to a
real SMTP server (aiosmtpd on 127.0.0.1), with hand-made messages; on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import email
import email.policy
from datetime import date
from email.message import EmailMessage

import pytest

from activity.audit import verify_audit
from activity.store import ActivityStore, InvalidInput, VersionConflict
from reminders.smtp import SmtpServer, eml_name
from serving.reminders import send_approved, settle, write_dry_run
from tests.smtp_server import free_port, smtp_server
from tests.stores import NOW

RUN = date(2024, 3, 31)
ITEMS = [{"invoice_id": "I1", "currency": "EUR", "open_amount": 500.0, "fee": 5.0, "interest": 1.2, "level": 1},
         {"invoice_id": "I2", "currency": "EUR", "open_amount": 250.0, "fee": 5.0, "interest": 0.4, "level": 1}]


def hand_made_message(customer_id: str, to: str, subject: str = "Reminder: 2 invoices overdue") -> bytes:
    """A text + HTML e-mail with a PDF attachment, as the composer makes them."""
    message = EmailMessage()
    message["From"] = "Receivables <ar@example.com>"
    message["To"] = to
    message["Subject"] = subject
    message["X-ArRisk-Key"] = f"{customer_id}:1:{RUN}"
    message.set_content("Dear customer,\nInvoices I1 and I2 are overdue: EUR 761.60 in total.\n")
    message.add_alternative("<p>Invoices I1 and I2 are overdue: <b>EUR 761.60</b></p>", subtype="html")
    message.add_attachment(b"%PDF-1.4 statement", maintype="application", subtype="pdf",
                           filename=f"statement-{customer_id}-{RUN}.pdf")
    return message.as_bytes(policy=email.policy.SMTP)


def draft(store: ActivityStore, customer_id: str = "C1", to: tuple[str, ...] = ("ap@acme.example",),
          level: int = 1) -> tuple[dict, bool]:
    return store.draft_outbox_message(
        "alice", key=f"{customer_id}:{level}:{RUN}", customer_id=customer_id, level=level, run_date=RUN,
        channel="email" if to else "letter", language="en", recipients=to, subject="Reminder: 2 invoices overdue",
        mime=hand_made_message(customer_id, ", ".join(to)), items=ITEMS, totals={"EUR": 761.6}, now=NOW)


def approved(store: ActivityStore, *customers: str) -> list[str]:
    ids = [draft(store, customer, (f"ap@{customer.lower()}.example",))[0]["message_id"] for customer in customers]
    store.approve_outbox_messages("bob", ids, now=NOW)
    return ids


def no_wait(seconds: float) -> None:
    """The sender's sleep in tests: recorded, never waited."""
    WAITS.append(seconds)


WAITS: list[float] = []


def test_a_run_drafted_twice_makes_no_second_message(store):
    first, created = draft(store)
    again, created_again = draft(store)
    assert created and not created_again
    assert again["message_id"] == first["message_id"]
    assert [row["key"] for row in store.list_outbox()] == ["C1:1:2024-03-31"]
    assert first["state"] == "drafted" and first["attempts"] == 0 and first["items"] == ITEMS


def test_an_email_needs_recipients_and_a_letter_has_none(store):
    with pytest.raises(InvalidInput, match="recipients"):
        store.draft_outbox_message("alice", key="C9:1:2024-03-31", customer_id="C9", level=1, run_date=RUN,
                                   channel="email", language="en", recipients=(), subject="s", mime=b"x",
                                   items=ITEMS, totals={}, now=NOW)
    letter, _ = draft(store, "C2", to=())
    assert letter["channel"] == "letter" and letter["recipients"] == []


def test_only_drafted_or_failed_messages_are_approved_and_only_approved_ones_claimed(store):
    message, _ = draft(store)
    with pytest.raises(VersionConflict, match="is drafted, not approved"):
        store.claim_outbox_message(message["message_id"], now=NOW)
    [row] = store.approve_outbox_messages("bob", [message["message_id"]], now=NOW)
    assert row["state"] == "approved" and row["approved_by"] == "bob" and row["version"] == 2
    claimed = store.claim_outbox_message(message["message_id"], now=NOW)
    assert claimed["state"] == "sending" and claimed["attempts"] == 1 and claimed["mime"].startswith(b"From:")
    # A second claim (another sender, a restart) finds it taken: the message is sent at most once.
    with pytest.raises(VersionConflict, match="is sending"):
        store.claim_outbox_message(message["message_id"], now=NOW)
    with pytest.raises(VersionConflict, match="is sending, not drafted or failed"):
        store.approve_outbox_messages("bob", [message["message_id"]], now=NOW)


def test_a_sent_message_is_recorded_as_a_contact_and_a_letter_per_invoice_with_the_audit(store):
    [message_id] = approved(store, "C1")
    store.claim_outbox_message(message_id, now=NOW)
    sent = store.finish_outbox_message("bob", message_id, sent=True, now=NOW)
    assert sent["state"] == "sent" and sent["sent_at"] is not None
    [contact] = store.list_contacts("C1")
    assert contact["channel"] == "email" and contact["contact_date"] == "2024-03-31"
    assert "level 1" in contact["outcome"] and message_id in contact["note"]
    letters = store.list_letters("C1")
    assert sorted((row["invoice_id"], row["level"], row["issued_date"], row["channel"]) for row in letters) == [
        ("I1", 1, "2024-03-31", "email"), ("I2", 1, "2024-03-31", "email")]
    assert verify_audit(store) == []
    # The ledger's view: the next dunning level starts from these notices.
    notices = store.ledger_tables("C1")["dunning_notices"]
    assert sorted(notices["invoice_id"]) == ["I1", "I2"]
    bounced = store.mark_outbox_bounced("bob", message_id, reason="550 mailbox unknown", now=NOW)
    assert bounced["state"] == "bounced" and bounced["reason"] == "550 mailbox unknown"


def test_the_smtp_server_receives_the_text_the_html_and_the_attachment(store):
    [message_id] = approved(store, "C1")
    with smtp_server() as (handler, server):
        result = send_approved(store, "bob", server, now=NOW, sleep=no_wait)
    assert [row["message_id"] for row in result["sent"]] == [message_id]
    [(mail_from, recipients, message)] = handler.received
    assert mail_from == "ar@example.com" and recipients == ["ap@c1.example"]
    assert message["Subject"] == "Reminder: 2 invoices overdue" and message["X-ArRisk-Key"] == "C1:1:2024-03-31"
    assert "EUR 761.60 in total" in message.get_body(("plain",)).get_content()
    assert "<b>EUR 761.60</b>" in message.get_body(("html",)).get_content()
    [attachment] = message.iter_attachments()
    assert attachment.get_filename() == "statement-C1-2024-03-31.pdf"
    assert attachment.get_content() == b"%PDF-1.4 statement"
    assert store.get_outbox_message(message_id)["state"] == "sent"


def test_a_crash_between_sending_and_recording_never_sends_twice(store):
    [message_id] = approved(store, "C1")

    def crash(_claimed: dict) -> None:
        raise RuntimeError("killed after the SMTP transaction, before the record")

    with smtp_server() as (handler, server):
        with pytest.raises(RuntimeError, match="killed"):
            send_approved(store, "bob", server, now=NOW, sleep=no_wait, after_transaction=crash)
        again = send_approved(store, "bob", server, now=NOW, sleep=no_wait)
        assert len(handler.received) == 1  # exactly one, after the restart too
    assert again["sent"] == [] and [row["message_id"] for row in again["unconfirmed"]] == [message_id]
    assert store.list_contacts("C1") == []  # not recorded: nobody knows yet that it went out
    # A person checks the mailbox and settles it: now the contact and letters are recorded.
    settled = settle(store, "carol", message_id, delivered=True, note="in the sent folder", now=NOW)
    assert settled["state"] == "sent" and settled["reason"] == "checked by carol: in the sent folder"
    assert len(store.list_letters("C1")) == 2


def test_a_temporary_failure_is_retried_with_backoff_then_sent(store):
    approved(store, "C1")
    WAITS.clear()
    with smtp_server(answers=["451 4.3.0 Try again later"]) as (handler, server):
        result = send_approved(store, "bob", server, now=NOW, sleep=no_wait)
    assert handler.data_commands == 2 and len(handler.received) == 1
    assert WAITS == [5.0]  # one backoff before the second try
    [sent] = result["sent"]
    assert sent["state"] == "sent" and sent["attempts"] == 2


def test_a_permanent_failure_is_marked_failed_with_the_servers_reason_and_not_retried(store):
    [message_id] = approved(store, "C1")
    WAITS.clear()
    with smtp_server(answers=["550 5.7.1 Message rejected as spam"]) as (handler, server):
        result = send_approved(store, "bob", server, now=NOW, sleep=no_wait)
    assert handler.data_commands == 1 and handler.received == [] and WAITS == []
    [failed] = result["failed"]
    assert failed["state"] == "failed"
    assert failed["reason"] == "permanent failure: 550 5.7.1 Message rejected as spam"
    assert store.list_contacts("C1") == [] and store.list_letters("C1") == []
    # Approved again by a person (the address corrected, say), it goes out on the next send.
    store.approve_outbox_messages("bob", [message_id], now=NOW)
    with smtp_server() as (handler, server):
        assert len(send_approved(store, "bob", server, now=NOW, sleep=no_wait)["sent"]) == 1


def test_a_refused_recipient_fails_the_message_with_the_reason(store):
    approved(store, "C1")
    with smtp_server(refuse_rcpt={"ap@c1.example": "550 5.1.1 No such mailbox"}) as (_, server):
        [failed] = send_approved(store, "bob", server, now=NOW, sleep=no_wait)["failed"]
    assert failed["reason"] == "permanent failure: ap@c1.example: 550 5.1.1 No such mailbox"


def test_a_server_that_refuses_connections_is_retried_then_failed_as_temporary(store):
    approved(store, "C1")
    WAITS.clear()
    nowhere = SmtpServer(host="127.0.0.1", port=free_port(), security="none", sender="ar@example.com", timeout=2)
    [failed] = send_approved(store, "bob", nowhere, now=NOW, sleep=no_wait)["failed"]
    assert WAITS == [5.0, 10.0]
    assert failed["reason"].startswith("temporary failure, 3 attempts: ConnectionRefusedError")
    assert failed["attempts"] == 1  # the claim; a refused connection sent nothing


def test_letters_are_listed_not_emailed(store):
    letter, _ = draft(store, "C2", to=())
    approved(store, "C1")
    store.approve_outbox_messages("bob", [letter["message_id"]], now=NOW)
    with smtp_server() as (handler, server):
        result = send_approved(store, "bob", server, now=NOW, sleep=no_wait)
    assert [to for _, to, _ in handler.received] == [["ap@c1.example"]]
    assert [row["customer_id"] for row in result["sent"]] == ["C1"]
    assert store.get_outbox_message(letter["message_id"])["state"] == "approved"


def test_a_dry_run_writes_one_eml_per_email_and_changes_nothing(store, tmp_path):
    approved(store, "C1")
    draft(store, "C3", ("ap@c3.example",))
    draft(store, "C2", to=())
    paths = write_dry_run(store, tmp_path / "eml")
    assert sorted(path.name for path in paths) == [eml_name("C1:1:2024-03-31"), eml_name("C3:1:2024-03-31")]
    parsed = email.message_from_bytes((tmp_path / "eml" / "C1_1_2024-03-31.eml").read_bytes(),
                                      policy=email.policy.default)
    assert parsed["To"] == "ap@c1.example"
    assert sorted(row["state"] for row in store.list_outbox()) == ["approved", "drafted", "drafted"]
