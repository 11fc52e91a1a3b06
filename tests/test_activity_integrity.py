"""The activity store's integrity (issue 14): bounded dates, exact money, bounded text, the database's own
checks, records an older version wrote, corrections and voids, the keyed audit log against tampering,
idempotency keys per user, and how serving/activity.py keys and bounds the store; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import stat
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import MetaData, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from activity import audit
from activity.audit import verify_audit
from activity.models import AuditEntry, json_value
from activity.store import ActivityStore, AuditBroken, IdempotencyMismatch, InvalidInput, VersionConflict
from configs.settings import Settings
from serving.activity import audit_key, ledger_date_window, open_store
from tests.stores import NOW, new_store
from tests.test_activity_store import count_rows, make_promise, tamper

HUGE = Decimal("9999999999999999.99")


def make_contact(store: ActivityStore, **overrides) -> dict:
    fields = {"customer_id": "C001", "contact_date": date(2024, 3, 1), "channel": "call", "now": NOW}
    return store.create_contact("alice", **(fields | overrides))


def contact_id_of(store: ActivityStore) -> str:
    return store.list_contacts(include_voided=True)[0]["contact_id"]


# -- dates ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("day", [date(9999, 12, 31), date(1, 1, 1), date(2263, 1, 1), date(1899, 12, 31)])
def test_a_date_pandas_cannot_hold_is_refused_before_anything_is_written(store, day):
    with pytest.raises(InvalidInput, match=r"outside 1900-01-01\.\.2199-12-31") as error:
        make_contact(store, contact_date=day)
    assert error.value.field == "contact_date"
    with pytest.raises(InvalidInput) as error:
        make_promise(store, promised_date=day)
    assert error.value.field == "promised_date"
    assert count_rows(store, "contacts") == count_rows(store, "promises") == count_rows(store, "audit_log") == 0
    for name, frame in store.ledger_tables().items():
        assert frame.empty, name


def test_dates_outside_the_ledger_window_are_refused_with_the_window(database_url):
    bounded = new_store(database_url, date_window=(date(2014, 1, 1), date(2028, 6, 30)))
    bounded.migrate()
    with pytest.raises(InvalidInput, match=r"2028-07-01 is outside 2014-01-01..2028-06-30 \(the ledger's dates") as error:
        bounded.record_dunning_letter("alice", invoice_id="INV-1", customer_id="C001", level=1,
                                      issued_date=date(2028, 7, 1), now=NOW)
    assert error.value.field == "issued_date"
    contact = make_contact(bounded, contact_date=date(2014, 1, 1), next_action_date=date(2028, 6, 30))
    with pytest.raises(InvalidInput, match="next_action_date"):
        bounded.update_contact("alice", contact["contact_id"], 1, now=NOW, next_action_date=date(2030, 1, 1))
    bounded.close()


def test_the_database_refuses_bad_values_even_from_code_that_skips_the_validators(store):
    make_contact(store)
    live = {"customer_id": "C1", "channel": "call", "outcome": "", "note": "", "created_by": "x",
            "recorded_at": NOW, "version": 1}
    bad_rows = [
        ("contacts", live | {"contact_id": "CNT-a", "contact_date": date(9999, 12, 31)}),
        ("contacts", live | {"contact_id": "CNT-b", "contact_date": date(2024, 3, 1), "note": "x" * 10_001}),
        ("promises", {"promise_id": "PTP-a", "customer_id": "C1", "made_date": date(2024, 3, 1),
                      "promised_date": date(2024, 3, 8), "amount": -1, "status": "open", "note": "",
                      "created_by": "x", "recorded_at": NOW, "version": 1}),
    ]
    for table, row in bad_rows:
        with pytest.raises(IntegrityError), store.engine.begin() as connection:
            connection.execute(insert(_table(connection, table)), [row])
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(text("UPDATE contacts SET contact_date = '2263-01-01'"))
    assert count_rows(store, "contacts") == 1
    assert count_rows(store, "promises") == 0


def _table(connection, name: str):
    metadata = MetaData()
    metadata.reflect(connection, only=[name])
    return metadata.tables[name]


# -- money ---------------------------------------------------------------------------------------------


def test_the_largest_amount_round_trips_to_the_cent_and_verifies(store):
    created = make_promise(store, amount=HUGE)
    assert created["amount"] == "9999999999999999.99"
    assert store.get_promise(created["promise_id"])["amount"] == "9999999999999999.99"
    changed = store.update_promise("bob", created["promise_id"], 1, now=NOW, note="still owed")
    assert changed["amount"] == "9999999999999999.99"
    assert verify_audit(store) == []


@pytest.mark.parametrize("amount", [Decimal("1e30"), "10000000000000000.00", 1e16])
def test_an_amount_that_does_not_fit_is_refused(store, amount):
    with pytest.raises(InvalidInput, match=r"larger than 9999999999999999\.99") as error:
        make_promise(store, amount=amount)
    assert error.value.field == "amount"
    assert count_rows(store, "promises") == 0


# -- text ----------------------------------------------------------------------------------------------


def test_free_text_is_bounded_by_max_text_chars(database_url):
    short = new_store(database_url, max_text_chars=10)
    short.migrate()
    make_contact(short, outcome="x" * 10)
    for field in ("outcome", "note"):
        with pytest.raises(InvalidInput, match="longer than 10 characters") as error:
            make_contact(short, **{field: "x" * 11})
        assert error.value.field == field
    with pytest.raises(InvalidInput, match="reason"):
        short.void("root", "contacts", contact_id_of(short), 1, reason="y" * 11, now=NOW)
    short.close()
    with pytest.raises(ValueError, match="10000"):
        new_store(database_url, max_text_chars=10_001)


# -- records an older version wrote ----------------------------------------------------------------------


def write_as_version_0001(store: ActivityStore, rows: list[tuple[str, str, dict]]) -> None:
    """Insert (table, id column, row) as version 0001 did: no bounds checked, and a plain sha256 entry each."""
    prev_hash = audit.GENESIS_HASH
    with store.engine.begin() as connection:
        metadata = MetaData()
        metadata.reflect(connection)
        for seq, (table, id_column, row) in enumerate(rows, start=1):
            row = row | {"created_by": "alice", "recorded_at": NOW, "version": 1}
            connection.execute(insert(metadata.tables[table]), [row])
            after = {column: json_value(value) for column, value in row.items()}
            entry_hash = audit.entry_hash(prev_hash, seq=seq, recorded_at=NOW, user="alice", action="create",
                                          table=table, record_id=row[id_column], before=None, after=after)
            connection.execute(insert(metadata.tables["audit_log"]), [{
                "seq": seq, "recorded_at": NOW, "user_name": "alice", "action": "create", "table_name": table,
                "record_id": row[id_column], "before": None, "after": audit.canonical_json(after),
                "prev_hash": prev_hash, "hash": entry_hash}])
            prev_hash = entry_hash


def old_contact(contact_id: str, contact_date: date) -> tuple[str, str, dict]:
    return ("contacts", "contact_id", {"contact_id": contact_id, "customer_id": "C001", "contact_date": contact_date,
                                       "channel": "call", "outcome": "", "note": "", "next_action_date": None})


def old_promise(promise_id: str, amount: Decimal) -> tuple[str, str, dict]:
    return ("promises", "promise_id", {"promise_id": promise_id, "customer_id": "C001", "invoice_id": None,
                                       "made_date": date(2024, 3, 1), "promised_date": date(2024, 3, 8),
                                       "amount": amount, "currency": "EUR", "status": "open", "note": ""})


@pytest.fixture
def old_store(database_url):
    """A store an older version (schema 0001) wrote a good contact, two poisoned ones and a promise into,
    then migrated to the latest schema."""
    activity = new_store(database_url)
    activity.migrate("0001")
    write_as_version_0001(activity, [old_contact("CNT-good", date(2024, 3, 1)),
                                     old_contact("CNT-9999", date(9999, 12, 31)),
                                     old_contact("CNT-0001", date(1, 1, 1)),
                                     old_promise("PTP-old", Decimal("1234.56"))])
    activity.migrate()
    yield activity
    activity.close()


def test_an_old_poisoned_row_survives_migration_and_the_ledger_skips_it(old_store):
    assert {contact["contact_id"] for contact in old_store.list_contacts()} == {"CNT-good", "CNT-9999", "CNT-0001"}
    contacts = old_store.ledger_tables()["contacts"]
    assert contacts["contact_id"].tolist() == ["CNT-good"]
    assert old_store.get_promise("PTP-old")["amount"] == "1234.56"
    assert old_store.ledger_tables()["promises"]["amount"].tolist() == [1234.56]


def test_old_poisoned_rows_are_reported_until_an_admin_corrects_or_voids_them(old_store):
    unreadable = old_store.unreadable_records()
    assert [(bad["table"], bad["record_id"], bad["field"], bad["version"]) for bad in unreadable] == [
        ("contacts", "CNT-0001", "contact_date", 1), ("contacts", "CNT-9999", "contact_date", 1)]
    assert "9999-12-31 is outside 1900-01-01..2199-12-31" in unreadable[1]["problem"]
    problems = verify_audit(old_store)
    assert len(problems) == 2 and all("contact_date" in problem and "correct or void" in problem for problem in problems)

    corrected = old_store.correct("root", "contacts", "CNT-9999", 1, now=NOW, contact_date=date(2024, 3, 4))
    voided = old_store.void("root", "contacts", "CNT-0001", 1, reason="typed by mistake", now=NOW)

    assert corrected["contact_date"] == "2024-03-04" and corrected["version"] == 2
    assert voided["void_reason"] == "typed by mistake" and voided["voided_at"] == NOW.isoformat()
    assert old_store.unreadable_records() == []
    assert sorted(old_store.ledger_tables()["contacts"]["contact_id"]) == ["CNT-9999", "CNT-good"]
    assert verify_audit(old_store) == []
    with old_store.engine.connect() as connection:
        actions = connection.execute(text("SELECT action, algorithm FROM audit_log ORDER BY seq")).all()
    assert [tuple(row) for row in actions] == [("create", "sha256")] * 4 + [("correct", "hmac-sha256"),
                                                                              ("void", "hmac-sha256")]


def test_legacy_entries_are_protected_once_the_log_is_keyed(old_store):
    # Rewriting an entry written before the key, and re-hashing the plain sha256 chain, still shows:
    # the head (HMAC'd) commits to the last legacy hash.
    with old_store.session() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    prev_hash = audit.GENESIS_HASH
    for entry in entries:
        after = json.loads(entry.after) | ({"note": "forged"} if entry.seq == 1 else {})
        new_hash = audit.entry_hash(prev_hash, seq=entry.seq, recorded_at=entry.recorded_at, user=entry.user_name,
                                    action="create", table=entry.table_name, record_id=entry.record_id,
                                    before=None, after=after)
        tamper(old_store, 'UPDATE audit_log SET "after" = :after, prev_hash = :prev, hash = :hash WHERE seq = :seq',
               after=audit.canonical_json(after), prev=prev_hash, hash=new_hash, seq=entry.seq)
        prev_hash = new_hash
    tamper(old_store, "UPDATE contacts SET note = 'forged' WHERE contact_id = 'CNT-good'")
    assert any("is not the entry the head points at" in problem for problem in verify_audit(old_store))


def test_sqlite_money_an_older_version_kept_as_a_float_becomes_exact_cents(database_url):
    # SQLite kept 9999999999999999.99 as 1e16: the cents were already lost when 0001 wrote it. After the
    # migration the record says what it holds, is reported (too large) and an admin can void it.
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL always kept Numeric(18, 2) exactly")
    legacy = new_store(database_url)
    legacy.migrate("0001")
    write_as_version_0001(legacy, [old_promise("PTP-ok", Decimal("0.10")), old_promise("PTP-huge", HUGE)])
    legacy.migrate()
    with legacy.engine.connect() as connection:
        stored = dict(connection.execute(text("SELECT promise_id, amount FROM promises")).all())
    assert stored == {"PTP-ok": 10, "PTP-huge": 10**18}
    assert legacy.get_promise("PTP-ok")["amount"] == "0.10"
    assert [bad["record_id"] for bad in legacy.unreadable_records()] == ["PTP-huge"]
    assert any("PTP-huge: differs from its latest audit entry" in problem for problem in verify_audit(legacy))
    legacy.void("root", "promises", "PTP-huge", 1, reason="amount lost its cents in 0001", now=NOW)
    assert verify_audit(legacy) == []
    assert legacy.ledger_tables()["promises"]["promise_id"].tolist() == ["PTP-ok"]
    legacy.close()


def test_idempotency_keys_an_older_version_stored_still_replay_and_verify(database_url):
    legacy = new_store(database_url)
    legacy.migrate("0001")
    row = old_promise("PTP-1", Decimal("5000"))
    write_as_version_0001(legacy, [row])
    with legacy.engine.connect() as connection:
        after = connection.execute(text("SELECT \"after\" FROM audit_log")).scalar_one()
    with legacy.engine.begin() as connection:
        connection.execute(insert(_table(connection, "idempotency_keys")),
                           [{"key": "req-1", "user_name": "alice", "fingerprint": "f" * 64, "response": after,
                             "recorded_at": NOW}])
    legacy.migrate()
    assert verify_audit(legacy) == []
    tamper(legacy, """UPDATE idempotency_keys SET response = '{"promise_id":"PTP-forged"}'""")
    assert any("idempotency_keys alice/req-1" in problem for problem in verify_audit(legacy))
    legacy.close()


# -- corrections and voids -------------------------------------------------------------------------------


def test_correct_changes_any_business_field_validated_like_a_create_and_audited(store):
    promise = make_promise(store)
    with pytest.raises(InvalidInput, match="promised_date"):
        store.correct("root", "promises", promise["promise_id"], 1, now=NOW, made_date=date(2024, 3, 9))
    with pytest.raises(InvalidInput, match="created_by"):
        store.correct("root", "promises", promise["promise_id"], 1, now=NOW, created_by="mallory")
    with pytest.raises(InvalidInput, match="table"):
        store.correct("root", "users", "alice", 1, now=NOW, role="admin")
    corrected = store.correct("root", "promises", promise["promise_id"], 1, now=NOW, customer_id="C002",
                              made_date=date(2024, 3, 2), amount="4999.99")
    assert (corrected["customer_id"], corrected["made_date"], corrected["amount"]) == ("C002", "2024-03-02", "4999.99")
    assert corrected["created_by"] == "alice"
    with pytest.raises(VersionConflict):
        store.correct("root", "promises", promise["promise_id"], 1, now=NOW, note="stale")
    assert verify_audit(store) == []


def test_a_voided_record_stays_with_its_reason_but_leaves_the_ledger_and_the_lists(store):
    letter = store.record_dunning_letter("alice", invoice_id="INV-1", customer_id="C001", level=1,
                                         issued_date=date(2024, 2, 15), now=NOW)
    contact = make_contact(store)
    voided = store.void("root", "dunning_letters", letter["letter_id"], 1, reason="sent to the wrong customer",
                        now=NOW + timedelta(hours=1))

    assert voided["version"] == 2 and voided["void_reason"] == "sent to the wrong customer"
    assert store.list_letters() == []
    assert store.list_letters(include_voided=True) == [voided]
    assert store.ledger_tables()["dunning_notices"].empty
    assert store.list_contacts() == [contact]
    with pytest.raises(VersionConflict, match="voided"):
        store.void("root", "dunning_letters", letter["letter_id"], 2, reason="again", now=NOW)
    store.void("root", "contacts", contact["contact_id"], 1, reason="duplicate", now=NOW)
    with pytest.raises(VersionConflict, match="voided"):
        store.update_contact("alice", contact["contact_id"], 2, now=NOW, note="too late")
    with pytest.raises(InvalidInput, match="reason"):
        store.void("root", "contacts", contact["contact_id"], 2, reason=" ", now=NOW)
    with store.engine.connect() as connection:
        logged = connection.execute(text("SELECT user_name, action FROM audit_log ORDER BY seq")).all()
    assert [tuple(row) for row in logged][-2:] == [("root", "void"), ("root", "void")]
    assert verify_audit(store) == []


# -- the keyed audit log -----------------------------------------------------------------------------------


def five_writes(store: ActivityStore) -> None:
    """Seq 1 promise, 2 its update, 3 a dispute, 4 and 5 two contacts (the last with key req-5)."""
    promise = make_promise(store)
    store.update_promise("bob", promise["promise_id"], 1, now=NOW, note="moved")
    store.create_dispute("alice", invoice_id="INV-2", customer_id="C001", opened_date=date(2024, 3, 1),
                         reason_code="quality", amount=10, now=NOW)
    make_contact(store)
    make_contact(store, outcome="promised", idempotency_key="req-5")


def test_the_database_refuses_to_update_or_delete_audit_entries(store):
    five_writes(store)
    for sql in ("UPDATE audit_log SET user_name = 'mallory'", "DELETE FROM audit_log WHERE seq = 5",
                "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
            connection.execute(text(sql))
    assert count_rows(store, "audit_log") == 5
    assert verify_audit(store) == []


def test_a_deleted_record_whose_entries_stay_is_found(store):
    five_writes(store)
    tamper(store, "DELETE FROM disputes")
    problems = verify_audit(store)
    assert any("disputes DSP-" in problem and "has audit entries but no record" in problem for problem in problems)
    assert any(problem.startswith("disputes: 0 records, but the audit log counted 1") for problem in problems)


def test_the_tail_cut_off_with_its_records_is_found(store):
    five_writes(store)
    tamper(store, "DELETE FROM idempotency_keys")
    tamper(store, "DELETE FROM contacts")
    tamper(store, "DELETE FROM audit_log WHERE seq >= 4")
    assert verify_audit(store) == ["audit_log: entries 4..5 are missing from the end (cut off)"]
    # The store will not chain new entries onto the cut log either.
    with pytest.raises(AuditBroken):
        make_contact(store)


def test_a_record_and_its_entry_edited_and_the_chain_rehashed_without_the_key_is_found(store):
    five_writes(store)
    tamper(store, "UPDATE contacts SET outcome = 'paid in full' WHERE outcome = 'promised'")
    with store.session() as session:
        last = session.get(AuditEntry, 5)
    after = json.loads(last.after) | {"outcome": "paid in full"}
    fields = {"seq": 5, "recorded_at": last.recorded_at, "user": last.user_name, "action": "create",
              "table": "contacts", "record_id": last.record_id, "before": None, "after": after}
    wrong_key = audit.keyed_entry_hash(b"guessed-key-0123456789", last.prev_hash, table_count=2, **fields)
    tamper(store, 'UPDATE audit_log SET "after" = :after, hash = :hash WHERE seq = 5',
           after=audit.canonical_json(after), hash=wrong_key)
    problems = verify_audit(store)
    assert "audit_log seq 5: hash does not match its contents (entry edited)" in problems
    assert any("is not the entry the head points at" in problem for problem in problems)

    plain = audit.entry_hash(last.prev_hash, **fields)
    tamper(store, "UPDATE audit_log SET algorithm = 'sha256', hash = :hash WHERE seq = 5", hash=plain)
    assert any("seq 5: algorithm 'sha256' where 'hmac-sha256' belongs" in problem for problem in verify_audit(store))


def test_an_edited_idempotency_response_is_found_and_never_replayed(store):
    five_writes(store)
    tamper(store, """UPDATE idempotency_keys SET response = '{"contact_id":"CNT-forged"}'""")
    assert verify_audit(store) == ["idempotency_keys alice/req-5: stored response edited (a retry would replay it)"]
    with pytest.raises(AuditBroken):
        make_contact(store, outcome="promised", idempotency_key="req-5")


def test_a_forged_or_deleted_head_is_found_and_stops_writes(store):
    five_writes(store)
    tamper(store, "UPDATE audit_head SET seq = 4")
    assert verify_audit(store)[0].startswith("audit_head: fails its MAC")
    with pytest.raises(AuditBroken):
        make_contact(store)
    tamper(store, "DELETE FROM audit_head")
    store.migrate()  # opening the store again must not re-sign whatever the log holds now
    assert verify_audit(store)[0].startswith("audit_head: missing")
    with pytest.raises(AuditBroken):
        make_contact(store)


def test_another_audit_key_fails_verification(database_url, store):
    five_writes(store)
    other = ActivityStore(database_url, audit_key=b"another-key-0123456789abcdef")
    assert any("audit_head: fails its MAC" in problem for problem in verify_audit(other))
    other.close()


# -- idempotency keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "   ", "k" * 201])
def test_an_empty_or_overlong_idempotency_key_is_refused(store, key):
    with pytest.raises(InvalidInput) as error:
        make_promise(store, idempotency_key=key)
    assert error.value.field == "idempotency_key"
    assert count_rows(store, "promises") == 0


def test_idempotency_keys_belong_to_their_user(store):
    alice = make_promise(store, idempotency_key="k1")
    bob = store.create_promise("bob", customer_id="C001", amount=5000, promised_date=date(2024, 3, 8),
                               made_date=date(2024, 3, 1), idempotency_key="k1", now=NOW)
    assert bob["promise_id"] != alice["promise_id"] and bob["created_by"] == "bob"
    assert make_promise(store, idempotency_key="k1") == alice
    with pytest.raises(IdempotencyMismatch):
        make_promise(store, idempotency_key="k1", amount=1)
    assert count_rows(store, "promises") == 2


# -- serving/activity.py ---------------------------------------------------------------------------------------


def test_the_audit_key_file_is_created_private_once_and_reused(tmp_path):
    settings = Settings(audit_key_file=tmp_path / "keys" / "audit.key")
    first = audit_key(settings)
    assert len(first) == 64
    assert stat.S_IMODE(os.stat(settings.audit_key_file).st_mode) == 0o600
    assert audit_key(settings) == first
    assert audit_key(Settings(audit_key=first.decode(), audit_key_file=tmp_path / "unused")) == first
    assert not (tmp_path / "unused").exists()


def test_open_store_keys_and_bounds_the_store_from_the_settings(database_url, tmp_path, scoring_ledger):
    settings = Settings(audit_key="k" * 32, max_text_chars=50, date_window_past_years=1,
                        date_window_future_years=1)
    window = ledger_date_window(scoring_ledger, settings)
    # The ledger's first invoice is dated 2022-01-03 and its last event 2023-06-30.
    assert window == (date(2021, 1, 3), date(2024, 6, 30))
    opened = open_store(database_url, settings, window)
    with pytest.raises(InvalidInput, match="the ledger's dates"):
        make_contact(opened, contact_date=date(2021, 1, 2))
    with pytest.raises(InvalidInput, match="longer than 50"):
        make_contact(opened, note="x" * 51)
    make_contact(opened)
    assert verify_audit(ActivityStore(database_url, audit_key=b"k" * 32)) == []
    opened.close()


def test_field_problems_gives_every_field_the_store_would_refuse_in_its_own_words(store):
    # One set of rules: the web form shows these messages, the API and the CLI get the same on a write.
    problems = store.field_problems("promise", {"customer_id": "C001", "amount": "-5", "made_date": "",
                                                "promised_date": "9999-12-31", "note": "fine"})
    assert problems == {"amount": "must be positive", "made_date": "is required (YYYY-MM-DD)",
                        "promised_date": "9999-12-31 is outside 1900-01-01..2199-12-31 (the dates the store holds)"}
    assert store.field_problems("contact", {"customer_id": "C001", "contact_date": "2024-03-01",
                                            "channel": "call", "next_action_date": None}) == {}
