"""Reminders that go out (issue 22), end to end on the reminder ledger (tests/ledgers.py): the dunning run drafted
into the outbox (held items left out, no e-mail contact: the letter list, legal escalations excluded), approved,
received by a real SMTP server (aiosmtpd on 127.0.0.1) in the customer's language with the statement attached,
recorded so the next dunning level follows; and the same from the command line with a dry run."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pandas as pd
import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from rules.dunning import dunning_proposal, load_policy
from serving.activity import with_activity
from serving.cli import app
from serving.reminders import draft_run, send_approved
from tests.ledgers import reminder_ledger
from tests.smtp_server import smtp_server
from tests.stores import new_store

RUN = pd.Timestamp("2024-03-31")
NOW = datetime(2024, 3, 31, 9, 0, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture
def store(tmp_path):
    activity = new_store(f"sqlite:///{tmp_path / 'activity.db'}")
    activity.migrate()
    yield activity
    activity.close()


def hand_to_legal(store, customer_id: str) -> None:
    """An escalation of the customer that a manager decided `legal`."""
    item = store.open_queue_item("ana", queue="escalation", customer_id=customer_id, opened_date=date(2024, 3, 25),
                                 due_date=date(2024, 3, 28), owner="mia", reason_code="old_item", now=NOW)
    store.update_queue_item("mia", item["item_id"], 1, status="decided", decision="legal",
                            decided_date=date(2024, 3, 27), now=NOW)


def drafted_run(store) -> dict:
    hand_to_legal(store, "C4")
    return draft_run(store, reminder_ledger(), RUN, "ana", now=NOW)


def test_a_run_leaves_held_items_out_lists_letters_and_excludes_customers_handed_to_legal(store):
    result = drafted_run(store)
    rows = {row["key"]: row for row in result["drafted"]}
    # C4 is with the lawyers: no reminder. C3 and C5 have no e-mail contact: the letter list.
    assert sorted(rows) == ["C1:1:2024-03-31", "C2:2:2024-03-31", "C3:1:2024-03-31", "C5:1:2024-03-31"]
    assert [row["customer_id"] for row in result["letters"]] == ["C3", "C5"]
    assert {key: row["channel"] for key, row in rows.items()} == {
        "C1:1:2024-03-31": "email", "C2:2:2024-03-31": "email", "C3:1:2024-03-31": "letter",
        "C5:1:2024-03-31": "letter"}
    # C1's I12 is in open dispute: held, so neither an item nor a word of the message.
    c1 = rows["C1:1:2024-03-31"]
    assert [item["invoice_id"] for item in c1["items"]] == ["I11", "I13"]
    assert b"I12" not in store.get_outbox_message(c1["message_id"])["mime"]
    assert c1["totals"] == {"EUR": 1234.56, "USD": 500.0}
    # Drafting the run again makes no second message.
    again = draft_run(store, reminder_ledger(), RUN, "ana", now=NOW)
    assert again["drafted"] == [] and len(again["existing"]) == 4 and len(store.list_outbox()) == 4


def test_approved_reminders_arrive_in_the_customers_language_with_the_statement(store):
    result = drafted_run(store)
    emails = [row["message_id"] for row in result["drafted"] if row["channel"] == "email"]
    store.approve_outbox_messages("ana", emails, now=NOW)
    with smtp_server() as (handler, server):
        sent = send_approved(store, "ana", server, now=NOW, sleep=lambda seconds: None)
    assert len(sent["sent"]) == 2 and sent["failed"] == [] and sent["unconfirmed"] == []
    received = {message["X-ArRisk-Key"]: (recipients, message) for _, recipients, message in handler.received}
    assert sorted(received) == ["C1:1:2024-03-31", "C2:2:2024-03-31"]
    recipients, german = received["C1:1:2024-03-31"]
    assert recipients == ["buchhaltung@mueller.example"]  # the billing contact, not the owner
    assert german["Subject"].startswith("Zahlungserinnerung")
    text = german.get_body(("plain",)).get_content().replace("\xa0", " ")  # Babel keeps amount and sign together
    assert "1.234,56 €" in text and "I12" not in text
    [statement] = german.iter_attachments()
    assert statement.get_filename() == "statement-C1-2024-03-31.pdf"
    pdf = PdfReader(io.BytesIO(statement.get_content()))
    assert "C1" in "".join(page.extract_text() for page in pdf.pages)
    _, english = received["C2:2:2024-03-31"]
    assert english["Subject"].startswith("Second reminder")
    assert {row["customer_id"]: row["language"] for row in sent["sent"]} == {"C1": "de", "C2": "en"}
    # The letters were not e-mailed; they stay on the letter list.
    assert {row["customer_id"] for row in store.list_outbox(state="drafted")} == {"C3", "C5"}


def test_a_sent_reminder_moves_the_next_dunning_to_the_following_level(store):
    result = drafted_run(store)
    c1 = next(row for row in result["drafted"] if row["customer_id"] == "C1")
    store.approve_outbox_messages("ana", [c1["message_id"]], now=NOW)
    with smtp_server() as (_, server):
        send_approved(store, "ana", server, now=NOW, sleep=lambda seconds: None)
    later, policy = pd.Timestamp("2024-04-14"), load_policy("configs/dunning/default.yaml")
    # Two weeks on, I11 is 35 days past due and 14 days after its e-mailed level 1: level 2. Without the
    # recorded notice it would get level 1 again.
    recorded = dunning_proposal(with_activity(reminder_ledger(), store.ledger_tables()), later, policy)
    unrecorded = dunning_proposal(reminder_ledger(), later, policy)
    assert recorded.set_index("invoice_id").loc["I11", "level"] == 2
    assert unrecorded.set_index("invoice_id").loc["I11", "level"] == 1
    [contact] = store.list_contacts("C1")
    assert contact["channel"] == "email" and contact["contact_date"] == "2024-03-31"


def test_the_command_line_drafts_approves_and_dry_runs_to_eml_files(tmp_path, monkeypatch):
    from ledger import write_ledger

    write_ledger(reminder_ledger(), tmp_path / "ledger")
    monkeypatch.setenv("ARRISK_HOME", str(tmp_path))
    monkeypatch.delenv("ARRISK_SMTP_HOST", raising=False)
    database = ["--database", f"sqlite:///{tmp_path / 'activity.sqlite'}"]
    draft = ["reminders", "draft", "--ledger", str(tmp_path / "ledger"), "--as-of", "2024-03-31", "--user", "ana",
             *database]
    result = runner.invoke(app, draft)
    assert result.exit_code == 0, result.output
    assert "5 messages drafted, 0 already in the outbox; 2 on the letter list" in result.output
    assert "0 messages drafted, 5 already" in runner.invoke(app, draft).output
    approved = runner.invoke(app, ["reminders", "approve", "--user", "ana", "--all-drafted", "2024-03-31", *database])
    assert approved.exit_code == 0 and "3 messages approved" in approved.output
    listing = runner.invoke(app, ["reminders", "list", "--as-of", "2024-03-31", "--state", "approved",
                                  "--out", str(tmp_path / "approved.csv"), *database])
    assert listing.exit_code == 0, listing.output
    assert sorted(pd.read_csv(tmp_path / "approved.csv")["customer_id"]) == ["C1", "C2", "C4"]
    dry = runner.invoke(app, ["reminders", "send", "--user", "ana", "--dry-run", str(tmp_path / "eml"), *database])
    assert dry.exit_code == 0 and "wrote 3 messages" in dry.output
    assert sorted(path.name for path in (tmp_path / "eml").iterdir()) == [
        "C1_1_2024-03-31.eml", "C2_2_2024-03-31.eml", "C4_1_2024-03-31.eml"]
    # Without an SMTP server configured, sending is a one-line error naming the setting.
    refused = runner.invoke(app, ["reminders", "send", "--user", "ana", *database])
    assert refused.exit_code == 1 and "ARRISK_SMTP_HOST" in refused.output
    bad = runner.invoke(app, ["reminders", "list", "--state", "lost", *database])
    assert bad.exit_code == 1 and "state" in bad.output


def test_the_command_line_sends_through_the_smtp_server_of_the_settings(tmp_path, monkeypatch):
    from ledger import write_ledger

    write_ledger(reminder_ledger(), tmp_path / "ledger")
    database = ["--database", f"sqlite:///{tmp_path / 'activity.sqlite'}"]
    monkeypatch.setenv("ARRISK_HOME", str(tmp_path))
    with smtp_server() as (handler, server):
        for name, value in {"HOST": server.host, "PORT": str(server.port), "SECURITY": "none",
                            "SENDER": "Receivables <ar@example.com>"}.items():
            monkeypatch.setenv(f"ARRISK_SMTP_{name}", value)
        assert runner.invoke(app, ["reminders", "draft", "--ledger", str(tmp_path / "ledger"), "--as-of",
                                   "2024-03-31", "--user", "ana", *database]).exit_code == 0
        assert runner.invoke(app, ["reminders", "approve", "--user", "ana", "--all-drafted", "2024-03-31",
                                   *database]).exit_code == 0
        sent = runner.invoke(app, ["reminders", "send", "--user", "ana", *database])
        assert sent.exit_code == 0, sent.output
        assert "3 sent, 0 failed, 0 unconfirmed" in sent.output
        again = runner.invoke(app, ["reminders", "send", "--user", "ana", *database])
        assert "0 sent" in again.output and len(handler.received) == 3
    assert {message["From"] for _, _, message in handler.received} == {"Receivables <ar@example.com>"}


COLLECTOR = "arr_reminders_collector_token_0123456789"


@pytest.fixture(scope="module")
def client(champion_store, tmp_path_factory):
    """The service on the reminder ledger (the test champions: the service needs some; reminders use none), a
    collector of every portfolio, and a real SMTP server in the settings."""
    from starlette.testclient import TestClient

    from ledger import write_ledger
    from serving.auth import hash_token
    from tests.service_app import service_app

    folder = tmp_path_factory.mktemp("reminders")
    write_ledger(reminder_ledger(), folder / "ledger")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARRISK_HOME", str(folder))
        patch.setenv("ARRISK_LEDGER", str(folder / "ledger"))
        patch.setenv("ARRISK_TRACKING_URI", champion_store)
        patch.setenv("ARRISK_API_TOKENS", f"ana:ana:collector+all_portfolios:{hash_token(COLLECTOR)}")
        patch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{folder / 'activity.sqlite'}")
        patch.delenv("ARRISK_TOKENS_FILE", raising=False)
        with smtp_server() as (handler, server):
            for name, value in {"HOST": server.host, "PORT": str(server.port), "SECURITY": "none",
                                "SENDER": "ar@example.com"}.items():
                patch.setenv(f"ARRISK_SMTP_{name}", value)
            with TestClient(service_app(), raise_server_exceptions=False) as test_client:
                yield test_client, handler


def test_the_api_drafts_previews_approves_and_sends(client):
    client, handler = client
    auth = {"Authorization": f"Bearer {COLLECTOR}"}
    drafted = client.post("/v1/reminders/drafts", json={"as_of": "2024-03-31"}, headers=auth)
    assert drafted.status_code == 201, drafted.text
    assert len(drafted.json()["drafted"]) == 5 and len(drafted.json()["letters"]) == 2
    listed = client.get("/v1/reminders?as_of=2024-03-31&channel=email", headers=auth).json()
    c1 = next(row for row in listed["rows"] if row["customer_id"] == "C1")
    shown = client.get(f"/v1/reminders/{c1['message_id']}", headers=auth).json()
    assert shown["subject"].startswith("Zahlungserinnerung") and "I11" in shown["text"] and "I12" not in shown["text"]
    assert [attachment["filename"] for attachment in shown["attachments"]] == ["statement-C1-2024-03-31.pdf"]
    approved = client.post("/v1/reminders/approvals", json={"message_ids": [c1["message_id"]]}, headers=auth)
    assert approved.status_code == 200 and approved.json()["rows"][0]["state"] == "approved"
    again = client.post("/v1/reminders/approvals", json={"message_ids": [c1["message_id"]]}, headers=auth)
    assert again.status_code == 409
    sent = client.post("/v1/reminders/sends", json={"as_of": "2024-03-31"}, headers=auth)
    assert sent.status_code == 200, sent.text
    assert [row["customer_id"] for row in sent.json()["sent"]] == ["C1"] and len(handler.received) == 1
    assert client.get(f"/v1/reminders/{c1['message_id']}", headers=auth).json()["state"] == "sent"


def test_the_page_shows_each_message_before_a_collector_approves_and_sends_it(client):
    import re

    client, handler = client
    form = client.get("/v1/ui/login").text
    landed = client.post("/v1/ui/login", data={"token": COLLECTOR, "csrf": re.search(
        r'name="csrf" value="([0-9a-f]+)"', form).group(1)})
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', landed.text).group(1)
    drafted = client.post("/v1/ui/reminders/draft", data={"csrf": csrf, "as_of": "2024-03-31"})
    assert drafted.status_code == 200 and "already in the outbox" in drafted.text, drafted.text[:300]
    page = client.get("/v1/ui/reminders?as_of=2024-03-31")
    assert page.status_code == 200
    assert "Second reminder: overdue invoices of Bolt Ltd" in page.text and "office@bolt.example" in page.text
    assert "(letter list: no e-mail contact)" in page.text and "statement-C2-2024-03-31.pdf" in page.text
    c2 = re.search(r'data-message="(OUT-[0-9a-f]+)">\s*<h2>\s*<input[^>]*>\s*C2,', page.text).group(1)
    forged = client.post("/v1/ui/reminders/approve", data={"csrf": "0" * 64, "as_of": "2024-03-31", "message_id": c2})
    assert forged.status_code == 403
    approved = client.post("/v1/ui/reminders/approve", data={"csrf": csrf, "as_of": "2024-03-31", "message_id": c2})
    assert approved.status_code == 200 and "1 approved" in approved.text
    before = len(handler.received)
    sent = client.post("/v1/ui/reminders/send", data={"csrf": csrf, "as_of": "2024-03-31"})
    assert sent.status_code == 200 and "1 sent, 0 failed" in sent.text
    assert [message["X-ArRisk-Key"] for _, _, message in handler.received[before:]] == ["C2:2:2024-03-31"]
