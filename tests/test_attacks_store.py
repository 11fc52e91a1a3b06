"""The attacks of issue 14 replayed on the activity store itself (SQLite and PostgreSQL): each one
that used to poison, corrupt or forge the store is now refused or found. To merge into test_attacks.py."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from activity.audit import verify_audit
from activity.store import ActivityStore, InvalidInput
from tests.test_activity_store import NOW, empty_database, make_promise, new_store, tamper


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A migrated, empty store on each database the store supports."""
    for url in empty_database(request.param, tmp_path):
        activity = new_store(url)
        activity.migrate()
        yield activity
        activity.close()


def contact(store: ActivityStore, **overrides) -> dict:
    fields = {"customer_id": "C001", "contact_date": date(2024, 3, 1), "channel": "call", "now": NOW}
    return store.create_contact("mallory", **(fields | overrides))


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "2263-01-01"])
def test_attack_a_contact_date_pandas_cannot_hold_is_refused_and_the_store_stays_readable(store, day):
    with pytest.raises(InvalidInput, match="contact_date"):
        contact(store, contact_date=day)
    contact(store)
    assert len(store.ledger_tables()["contacts"]) == 1
    assert verify_audit(store) == []


def test_attack_a_huge_amount_keeps_its_cents_or_is_refused(store):
    assert make_promise(store, amount="9999999999999999.99")["amount"] == "9999999999999999.99"
    with pytest.raises(InvalidInput) as error:
        make_promise(store, amount=Decimal("1e30"))
    assert error.value.field == "amount"
    assert verify_audit(store) == []


def test_attack_a_deleted_record_is_found(store):
    contact(store)
    tamper(store, "DELETE FROM contacts")
    assert any("has audit entries but no record" in problem for problem in verify_audit(store))


def test_attack_the_tail_cut_off_with_its_records_is_found(store):
    contact(store)
    contact(store, outcome="second")
    tamper(store, "DELETE FROM contacts WHERE outcome = 'second'")
    tamper(store, "DELETE FROM audit_log WHERE seq = 2")
    assert verify_audit(store) == ["audit_log: entries 2..2 are missing from the end (cut off)"]


def test_attack_a_record_and_its_entry_rewritten_without_the_key_is_found(store):
    contact(store, outcome="no answer")
    tamper(store, "UPDATE contacts SET outcome = 'paid'")
    tamper(store, """UPDATE audit_log SET "after" = replace("after", 'no answer', 'paid')""")
    assert "audit_log seq 1: hash does not match its contents (entry edited)" in verify_audit(store)


def test_attack_an_edited_idempotency_response_is_found(store):
    contact(store, idempotency_key="k1")
    tamper(store, "UPDATE idempotency_keys SET response = replace(response, 'C001', 'C999')")
    assert verify_audit(store) == ["idempotency_keys mallory/k1: stored response edited (a retry would replay it)"]


def test_attack_an_empty_idempotency_key_is_refused_and_keys_belong_to_their_user(store):
    with pytest.raises(InvalidInput, match="idempotency_key"):
        contact(store, idempotency_key="")
    mine = contact(store, idempotency_key="k1")
    theirs = store.create_contact("victim", customer_id="C001", contact_date=date(2024, 3, 1), channel="call",
                                  idempotency_key="k1", now=NOW)
    assert theirs["contact_id"] != mine["contact_id"]
