"""The activity store: round trips, optimistic concurrency, idempotency, the audit chain, atomic
writes, migrations and the ledger's view, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from activity import audit
from activity.audit import verify_audit
from activity.models import Base
from activity.store import (
    ActivityStore,
    IdempotencyMismatch,
    InvalidInput,
    NotFound,
    VersionConflict,
)
from ledger.schema import SCHEMAS
from tests.stores import NOW, new_store

TABLES = {"promises", "disputes", "contacts", "dunning_letters", "cash_applications", "users", "portfolios",
          "idempotency_keys", "audit_log", "audit_head", "alembic_version"}


def make_promise(store: ActivityStore, **overrides) -> dict:
    """A promise of 5,000 EUR on a Friday, with any field overridden."""
    fields = {"customer_id": "C001", "amount": Decimal("5000"), "promised_date": date(2024, 3, 8),
              "made_date": date(2024, 3, 1), "invoice_id": "INV-1", "currency": "EUR", "note": "pays Friday",
              "now": NOW}
    return store.create_promise("alice", **(fields | overrides))


def count_rows(store: ActivityStore, table: str) -> int:
    with store.engine.connect() as connection:
        return connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()


# -- migrations -------------------------------------------------------------------------------------


def test_migrate_creates_the_tables_and_runs_twice(database_url):
    store = new_store(database_url)
    store.migrate()
    store.migrate()
    assert set(inspect(store.engine).get_table_names()) >= TABLES
    store.close()


# SQLAlchemy 2.1 warns when it reflects PostgreSQL's NOT VALID check constraints (migration 0002); harmless.
@pytest.mark.filterwarnings("ignore:Can't validate argument 'dialect_options'")
def test_migration_matches_the_models(store):
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


# -- round trips ------------------------------------------------------------------------------------


def test_promise_round_trip(store):
    created = make_promise(store)
    make_promise(store, customer_id="C002", invoice_id=None, currency=None, note="")

    assert created["promise_id"].startswith("PTP-")
    assert created["amount"] == "5000.00"
    assert created["promised_date"] == "2024-03-08"
    assert created["status"] == "open"
    assert created["version"] == 1
    assert created["created_by"] == "alice"
    assert created["recorded_at"] == NOW.isoformat()
    assert store.get_promise(created["promise_id"]) == created
    assert store.list_promises("C001") == [created]
    assert len(store.list_promises()) == 2


def test_recorded_at_is_stored_in_utc(store):
    paris = datetime(2024, 3, 1, 10, 30, tzinfo=UTC).astimezone()
    created = make_promise(store, now=paris)
    assert store.get_promise(created["promise_id"])["recorded_at"] == "2024-03-01T10:30:00+00:00"


def test_update_promise_bumps_version_and_logs_before_and_after(store):
    created = make_promise(store)
    later = NOW + timedelta(hours=2)
    updated = store.update_promise("bob", created["promise_id"], 1, now=later, amount="4500.50",
                                   promised_date=date(2024, 3, 15))
    assert updated["version"] == 2
    assert updated["amount"] == "4500.50"
    assert updated["promised_date"] == "2024-03-15"
    assert updated["recorded_at"] == later.isoformat()
    assert updated["created_by"] == "alice"

    cancelled = store.update_promise("bob", created["promise_id"], 2, now=later, status="cancelled")
    assert cancelled["status"] == "cancelled"
    with store.engine.connect() as connection:
        users = connection.execute(text("SELECT user_name, action FROM audit_log ORDER BY seq")).all()
    assert [tuple(row) for row in users] == [("alice", "create"), ("bob", "update"), ("bob", "update")]


def test_dispute_round_trip_and_resolution(store):
    dispute = store.create_dispute("alice", invoice_id="INV-7", customer_id="C001", opened_date="2024-02-20",
                                   reason_code="price", amount=120, now=NOW)
    assert dispute["status"] == "open"
    assert dispute["owner"] == "alice"
    assert dispute["resolved_date"] is None

    resolved = store.update_dispute("carol", dispute["dispute_id"], 1, now=NOW, status="resolved",
                                    resolution="credit note issued", resolved_date=date(2024, 3, 1))
    assert resolved["status"] == "resolved"
    assert resolved["resolved_date"] == "2024-03-01"
    assert store.list_disputes("C001") == [resolved]
    with pytest.raises(InvalidInput, match="resolved_date"):
        store.update_dispute("carol", dispute["dispute_id"], 2, now=NOW, status="open")


def test_contact_and_letter_round_trip(store):
    contact = store.create_contact("alice", customer_id="C001", contact_date=date(2024, 3, 1), channel="call",
                                   outcome="promised to pay", next_action_date=date(2024, 3, 8), now=NOW)
    updated = store.update_contact("alice", contact["contact_id"], 1, now=NOW, note="spoke to AP clerk")
    letter = store.record_dunning_letter("alice", invoice_id="INV-1", customer_id="C001", level=1,
                                         issued_date=date(2024, 2, 15), now=NOW)

    assert store.list_contacts("C001") == [updated]
    assert updated["note"] == "spoke to AP clerk"
    assert updated["version"] == 2
    assert store.list_letters("C001") == [letter]
    assert store.list_letters("C999") == []
    assert letter["version"] == 1
    assert letter["void_reason"] is None


def test_users_and_portfolios(store):
    store.upsert_user("alice", "collector")
    store.upsert_user("alice", "credit")
    store.assign_portfolio("alice", ["C002", "C001"])
    store.assign_portfolio("alice", ["C001", "C003"])

    assert store.portfolio("alice") == ["C001", "C002", "C003"]
    assert store.portfolio("nobody") == []
    with pytest.raises(NotFound):
        store.assign_portfolio("nobody", ["C001"])
    with pytest.raises(InvalidInput, match="role"):
        store.upsert_user("bob", "boss")


# -- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"amount": -5}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": "12.345"}, "amount"),
        ({"amount": "lots"}, "amount"),
        ({"promised_date": date(2024, 2, 1)}, "promised_date"),
        ({"made_date": "yesterday"}, "made_date"),
        ({"currency": "EURO"}, "currency"),
        ({"customer_id": ""}, "customer_id"),
        ({"now": datetime(2024, 3, 1, 9, 30)}, "now"),
    ],
)
def test_bad_promise_input_names_the_field(store, overrides, field):
    with pytest.raises(InvalidInput) as error:
        make_promise(store, **overrides)
    assert error.value.field == field
    assert count_rows(store, "promises") == 0


def test_other_bad_input_names_the_field(store):
    with pytest.raises(InvalidInput, match=r"^user:"):
        store.create_promise("", customer_id="C001", amount=1, promised_date=date(2024, 3, 8),
                             made_date=date(2024, 3, 1), now=NOW)
    with pytest.raises(InvalidInput, match=r"^channel:"):
        store.create_contact("alice", customer_id="C001", contact_date=date(2024, 3, 1), channel="visit", now=NOW)
    with pytest.raises(InvalidInput, match=r"^level:"):
        store.record_dunning_letter("alice", invoice_id="I", customer_id="C", level=0,
                                    issued_date=date(2024, 3, 1), now=NOW)
    promise = make_promise(store)
    with pytest.raises(InvalidInput, match=r"^customer_id:"):
        store.update_promise("alice", promise["promise_id"], 1, now=NOW, customer_id="C002")
    with pytest.raises(InvalidInput, match=r"^status:"):
        store.update_promise("alice", promise["promise_id"], 1, now=NOW, status="kept")


# -- optimistic concurrency ---------------------------------------------------------------------------


def test_two_writers_on_the_same_version_one_wins(store):
    promise_id = make_promise(store)["promise_id"]
    first_read = store.get_promise(promise_id)["version"]
    second_read = store.get_promise(promise_id)["version"]

    store.update_promise("alice", promise_id, first_read, now=NOW, amount=4000)
    with pytest.raises(VersionConflict):
        store.update_promise("bob", promise_id, second_read, now=NOW, amount=3000)
    assert store.get_promise(promise_id)["amount"] == "4000.00"
    assert store.get_promise(promise_id)["version"] == 2


def test_two_threads_on_their_own_connections_one_wins(database_url, store):
    promise_id = make_promise(store)["promise_id"]
    writers = [new_store(database_url), new_store(database_url)]
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def write(writer: ActivityStore, amount: int) -> None:
        start.wait()
        try:
            writer.update_promise(f"user{amount}", promise_id, 1, now=NOW, amount=amount)
            outcomes.append("won")
        except VersionConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(writer, amount))
               for writer, amount in zip(writers, (100, 200), strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.close()

    assert sorted(outcomes) == ["conflict", "won"]
    assert store.get_promise(promise_id)["version"] == 2
    assert verify_audit(store) == []


def test_update_of_an_unknown_id_is_not_found(store):
    with pytest.raises(NotFound):
        store.update_promise("alice", "PTP-missing", 1, now=NOW, note="x")


# -- idempotency --------------------------------------------------------------------------------------


def test_idempotent_retry_creates_one_record_and_returns_the_same_response(store):
    first = make_promise(store, idempotency_key="req-1")
    retried = make_promise(store, idempotency_key="req-1", amount="5000.00", now=NOW + timedelta(minutes=1))

    assert retried == first
    assert count_rows(store, "promises") == 1
    assert count_rows(store, "audit_log") == 1
    assert count_rows(store, "idempotency_keys") == 1


def test_reusing_a_key_for_another_request_raises(store):
    make_promise(store, idempotency_key="req-1")
    with pytest.raises(IdempotencyMismatch):
        make_promise(store, idempotency_key="req-1", amount=4999)
    with pytest.raises(IdempotencyMismatch):
        store.create_contact("alice", customer_id="C001", contact_date=date(2024, 3, 1), channel="call",
                             idempotency_key="req-1", now=NOW)
    assert count_rows(store, "promises") == 1
    assert count_rows(store, "contacts") == 0


# -- the audit log ------------------------------------------------------------------------------------


def audited_store(store: ActivityStore) -> ActivityStore:
    """A store with five audit entries."""
    promise = make_promise(store)
    store.update_promise("bob", promise["promise_id"], 1, now=NOW, note="moved")
    store.create_contact("alice", customer_id="C001", contact_date=date(2024, 3, 1), channel="email", now=NOW)
    store.create_dispute("alice", invoice_id="INV-2", customer_id="C001", opened_date=date(2024, 3, 1),
                         reason_code="quality", amount=10, now=NOW)
    store.record_dunning_letter("alice", invoice_id="INV-3", customer_id="C001", level=2,
                                issued_date=date(2024, 3, 1), now=NOW)
    return store


def tamper(store: ActivityStore, sql: str, **params) -> None:
    """Run `sql` as someone with full database access would: first dropping the append-only triggers."""
    with store.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
            connection.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
        else:
            connection.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        connection.execute(text(sql), params)


def test_audit_chain_verifies_when_intact(store):
    assert verify_audit(store) == []
    audited_store(store)
    assert count_rows(store, "audit_log") == 5
    assert verify_audit(store) == []


def test_audit_detects_an_edited_entry(store):
    audited_store(store)
    tamper(store, """UPDATE audit_log SET "after" = '{"note":"forged"}' WHERE seq = 2""")
    problems = verify_audit(store)
    assert any("seq 2" in problem and "edited" in problem for problem in problems)


def test_audit_detects_a_deleted_entry(store):
    audited_store(store)
    tamper(store, "DELETE FROM audit_log WHERE seq = 3")
    problems = verify_audit(store)
    assert any("missing" in problem for problem in problems)
    assert any("chain broken" in problem for problem in problems)
    assert any("no audit entry" in problem for problem in problems)


def test_audit_detects_the_last_entry_cut_off_and_records_edited_behind_its_back(store):
    audited_store(store)
    tamper(store, "DELETE FROM audit_log WHERE seq = 5")
    tamper(store, "UPDATE promises SET amount = 1")
    problems = verify_audit(store)
    assert any(problem.startswith("dunning_letters") for problem in problems)
    assert any(problem.startswith("promises") and "differs" in problem for problem in problems)


# -- atomic writes ------------------------------------------------------------------------------------


def test_a_crash_mid_transaction_leaves_nothing_behind(store, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit, "append_entry", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        make_promise(store, idempotency_key="req-1")
    for table in ("promises", "audit_log", "idempotency_keys"):
        assert count_rows(store, table) == 0

    monkeypatch.undo()
    created = make_promise(store, idempotency_key="req-1")
    assert store.list_promises() == [created]
    assert verify_audit(store) == []


def test_a_crash_mid_update_leaves_the_record_unchanged(store, monkeypatch):
    promise = make_promise(store)
    monkeypatch.setattr(audit, "append_entry", lambda *args, **kwargs: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        store.update_promise("bob", promise["promise_id"], 1, now=NOW, amount=1)
    assert store.get_promise(promise["promise_id"]) == promise
    assert count_rows(store, "audit_log") == 1


# -- the ledger's view ----------------------------------------------------------------------------------


def test_ledger_tables_follow_the_ledger_schemas(store):
    kept = make_promise(store)
    dropped = make_promise(store, invoice_id=None)
    store.update_promise("alice", dropped["promise_id"], 1, now=NOW, status="cancelled")
    make_promise(store, customer_id="C002", invoice_id=None)
    store.create_dispute("alice", invoice_id="INV-2", customer_id="C001", opened_date=date(2024, 3, 1),
                         reason_code="quality", amount="10.50", now=NOW)
    resolved = store.create_dispute("alice", invoice_id="INV-3", customer_id="C001",
                                    opened_date=date(2024, 2, 1), reason_code="price", amount=0, now=NOW)
    store.update_dispute("alice", resolved["dispute_id"], 1, now=NOW, status="resolved",
                         resolved_date=date(2024, 2, 10))
    store.create_contact("alice", customer_id="C001", contact_date=date(2024, 3, 1), channel="letter", now=NOW)
    for level, issued in ((1, date(2024, 2, 1)), (2, date(2024, 2, 15)), (1, date(2024, 2, 20))):
        store.record_dunning_letter("alice", invoice_id="INV-1", customer_id="C001", level=level,
                                    issued_date=issued, now=NOW)
    store.record_cash_application("carla", payment=BANK_PAYMENT, lines=CASH_LINES, decision="confirmed",
                                  applied_date=date(2024, 3, 9), now=NOW)

    tables = store.ledger_tables()
    # The limits credit reviews decided replace the customers' column; not a table of the ledger's own.
    assert list(tables.pop("credit_limits").columns) == ["customer_id", "credit_limit", "decided_date"]
    for name, frame in tables.items():
        SCHEMAS[name].validate(frame)
        # Every column of the contract but the optional known_date (a recorded letter always has its date).
        assert list(frame.columns) == [column for column in SCHEMAS[name].columns if column != "known_date"]
    promises = tables["promises"]
    assert len(promises) == 2
    assert dropped["promise_id"] not in set(promises["promise_id"])
    assert promises.set_index("promise_id").loc[kept["promise_id"], "amount"] == 5000.0
    assert promises["kept"].isna().all()
    assert tables["disputes"]["resolved_date"].isna().sum() == 1
    notices = tables["dunning_notices"].sort_values("level")
    assert notices["issued_date"].tolist() == [pd.Timestamp("2024-02-01"), pd.Timestamp("2024-02-15")]


def test_ledger_tables_of_an_empty_store_follow_the_schemas(store):
    tables = store.ledger_tables()
    assert tables.pop("credit_limits").empty
    for name, frame in tables.items():
        SCHEMAS[name].validate(frame)
        assert frame.empty


# ---- work queues (issue 21) -----------------------------------------------------------------------------

def open_deduction(store: ActivityStore, **overrides) -> dict:
    values = {"queue": "deduction", "customer_id": "C001", "invoice_id": "INV-1", "payment_id": "PAY-1",
              "opened_date": date(2024, 3, 1), "due_date": date(2024, 3, 31), "owner": "Pricing Desk",
              "reason_code": "pricing", "amount": "120.50", "currency": "EUR", "details": {"memo": "price diff"}}
    return store.open_queue_item("ana", **(values | overrides), now=NOW)


def test_a_deduction_holds_its_invoice_until_decided_and_a_valid_one_writes_off_its_amount(store):
    deduction = open_deduction(store)
    assert (deduction["item_id"][:4], deduction["status"], deduction["amount"]) == ("DED-", "open", "120.50")
    assert deduction["details"] == '{"memo":"price diff"}'
    with pytest.raises(VersionConflict, match="still open for customer C001, invoice INV-1"):
        open_deduction(store, owner="someone else")
    held = store.ledger_tables()["disputes"].iloc[0]
    assert (held["reason"], held["amount"], pd.isna(held["resolved_date"])) == ("deduction: pricing", 120.5, True)
    reviewed = store.update_queue_item("bob", deduction["item_id"], 1, status="in_review", now=NOW)
    with pytest.raises(InvalidInput, match="decision"):
        store.update_queue_item("bob", deduction["item_id"], 2, status="valid", decided_date=date(2024, 3, 9), now=NOW)
    with pytest.raises(InvalidInput, match="rebilled"):
        store.update_queue_item("bob", deduction["item_id"], 2, status="invalid", decision="write_off",
                                decided_date=date(2024, 3, 9), now=NOW)
    valid = store.update_queue_item("bob", reviewed["item_id"], 2, status="valid", decision="credit_memo",
                                    decided_date=date(2024, 3, 9), now=NOW)
    assert (valid["version"], valid["decision"]) == (3, "credit_memo")
    tables = store.ledger_tables()
    assert tables["disputes"].iloc[0]["resolved_date"] == pd.Timestamp("2024-03-09")
    assert tables["writeoffs"].to_dict("records") == [
        {"invoice_id": "INV-1", "date": pd.Timestamp("2024-03-09"), "amount": 120.5}]
    open_deduction(store)  # the first one is closed: the same short payment may be opened again
    assert verify_audit(store) == []


def test_an_invalid_deduction_ends_the_hold_without_a_write_off(store):
    deduction = open_deduction(store)
    store.update_queue_item("bob", deduction["item_id"], 1, status="invalid", decision="rebilled",
                            decided_date=date(2024, 3, 5), now=NOW)
    tables = store.ledger_tables()
    assert tables["disputes"].iloc[0]["resolved_date"] == pd.Timestamp("2024-03-05") and tables["writeoffs"].empty


def test_a_decided_credit_review_sets_the_limit_and_a_credit_hold_sets_zero(store):
    def review(customer: str) -> dict:
        return store.open_queue_item("cara", queue="credit_review", customer_id=customer, opened_date=date(2024, 3, 1),
                                     due_date=date(2024, 3, 11), owner="Credit Team", reason_code="near limit",
                                     amount="50000", details={"monthly_sales": 20000.0}, now=NOW)

    first, second = review("C001"), review("C002")
    with pytest.raises(InvalidInput, match="decided_amount: is required"):
        store.update_queue_item("cara", first["item_id"], 1, status="decided", decision="change",
                                decided_date=date(2024, 3, 2), now=NOW)
    store.update_queue_item("cara", first["item_id"], 1, status="decided", decision="change", decided_amount="35000",
                            decided_date=date(2024, 3, 2), now=NOW)
    held = store.update_queue_item("cara", second["item_id"], 1, status="decided", decision="credit_hold",
                                   decided_date=date(2024, 3, 2), now=NOW)
    assert held["decided_amount"] == "0.00"
    limits = store.ledger_tables()["credit_limits"].set_index("customer_id")["credit_limit"].to_dict()
    assert limits == {"C001": 35000.0, "C002": 0.0}
    assert store.ledger_tables("C001")["credit_limits"]["customer_id"].tolist() == ["C001"]


def test_an_escalation_decision_is_the_managers_and_needs_its_date(store):
    escalation = store.open_queue_item("ana", queue="escalation", customer_id="C009", opened_date=date(2024, 3, 1),
                                       due_date=date(2024, 3, 6), owner="AR Manager",
                                       reason_code="second broken promise", amount="9000", now=NOW)
    with pytest.raises(InvalidInput, match="decided_date: is required"):
        store.update_queue_item("max", escalation["item_id"], 1, status="decided", decision="legal", now=NOW)
    with pytest.raises(InvalidInput, match="only a credit review"):
        store.update_queue_item("max", escalation["item_id"], 1, status="decided", decision="credit_hold",
                                decided_amount="0", decided_date=date(2024, 3, 2), now=NOW)
    decided = store.update_queue_item("max", escalation["item_id"], 1, status="decided", decision="legal",
                                      decided_date=date(2024, 3, 2), now=NOW)
    assert (decided["status"], decided["decision"], decided["decided_amount"]) == ("decided", "legal", None)
    assert [item["item_id"] for item in store.list_queue_items("escalation")] == [escalation["item_id"]]
    assert store.list_queue_items("deduction") == [] and "C009" in store.customers_changed_since(0)
    with pytest.raises(InvalidInput, match="queue"):
        store.list_queue_items("tickets")


@pytest.mark.parametrize(("overrides", "field"), [
    ({"queue": "tickets"}, "queue"), ({"due_date": date(2024, 2, 1)}, "due_date"), ({"invoice_id": None}, "invoice_id"),
    ({"amount": "-5"}, "amount"), ({"details": ["a list"]}, "details"), ({"owner": ""}, "owner")])
def test_bad_queue_input_names_the_field(store, overrides, field):
    with pytest.raises(InvalidInput) as error:
        open_deduction(store, **overrides)
    assert error.value.field == field


def test_concurrent_writers_keep_one_unbroken_chain(database_url, store):
    writers = [new_store(database_url) for _ in range(4)]
    start = threading.Barrier(len(writers))

    def write(writer: ActivityStore, customer: int) -> None:
        start.wait()
        for day in range(1, 6):
            writer.create_contact(f"user{customer}", customer_id=f"C{customer}", contact_date=date(2024, 3, day),
                                  channel="call", now=NOW)

    threads = [threading.Thread(target=write, args=(writer, number)) for number, writer in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.close()

    assert count_rows(store, "contacts") == 20
    assert count_rows(store, "audit_log") == 20
    assert verify_audit(store) == []


# -- cash applications -------------------------------------------------------------------------------

BANK_PAYMENT = {"payment_id": "BANK-1", "received_date": date(2024, 3, 8), "amount": "300.00", "amount_base": "300.00",
                "currency": "EUR", "payer_name": "ACME GMBH", "payer_account": "DE02120300000000202051"}
CASH_LINES = [{"invoice_id": "INV-1", "customer_id": "C001", "amount": "350.00"},
              {"invoice_id": "CM-1", "customer_id": "C001", "amount": "-50.00"}]


def test_a_cash_application_records_its_lines_together_audited_and_joins_the_ledger(store):
    written = store.record_cash_application("carla", payment=BANK_PAYMENT, lines=CASH_LINES, decision="confirmed",
                                            applied_date=date(2024, 3, 9), now=NOW)
    assert [line["applied_amount"] for line in written["lines"]] == ["350.00", "-50.00"]
    assert {line["created_by"] for line in written["lines"]} == {"carla"}
    assert verify_audit(store) == []
    tables = store.ledger_tables("C001")
    assert sorted(tables["payment_applications"]["amount"]) == [-50.0, 350.0]
    payment = tables["payments"].iloc[0]
    assert (payment["payment_id"], payment["customer_id"], payment["amount"]) == ("BANK-1", "C001", 300.0)
    assert store.ledger_tables("C002")["payment_applications"].empty


def test_a_payment_is_applied_once_until_its_lines_are_voided(store):
    first = store.record_cash_application("carla", payment=BANK_PAYMENT, lines=CASH_LINES[:1], decision="confirmed",
                                          applied_date=date(2024, 3, 9), now=NOW)
    with pytest.raises(VersionConflict, match="BANK-1' is already applied"):
        store.record_cash_application("dave", payment=BANK_PAYMENT, lines=CASH_LINES[:1], decision="changed",
                                      applied_date=date(2024, 3, 9), now=NOW)
    store.void("root", "cash_applications", first["lines"][0]["application_id"], 1, reason="wrong invoice", now=NOW)
    again = store.record_cash_application("dave", payment=BANK_PAYMENT, lines=CASH_LINES[:1], decision="changed",
                                          applied_date=date(2024, 3, 9), now=NOW)
    assert again["decision"] == "changed"
    assert len(store.ledger_tables()["payment_applications"]) == 1
    assert verify_audit(store) == []


def test_a_rejection_names_no_document_and_does_not_apply(store):
    rejected = store.record_cash_application("carla", payment=BANK_PAYMENT, lines=[], decision="rejected",
                                             applied_date=date(2024, 3, 9), note="not ours", now=NOW)
    assert rejected["lines"][0]["invoice_id"] is None and rejected["lines"][0]["applied_amount"] == "0.00"
    assert store.ledger_tables()["payment_applications"].empty
    # A rejection does not block applying the payment later.
    store.record_cash_application("carla", payment=BANK_PAYMENT, lines=CASH_LINES[:1], decision="changed",
                                  applied_date=date(2024, 3, 9), now=NOW)


@pytest.mark.parametrize(("lines", "decision", "applied", "field"), [
    (CASH_LINES, "rejected", date(2024, 3, 9), "lines"),
    ([], "confirmed", date(2024, 3, 9), "lines"),
    (CASH_LINES, "confirmed", date(2024, 3, 7), "applied_date"),
    ([{"invoice_id": "INV-1", "customer_id": "C001", "amount": "0"}], "confirmed", date(2024, 3, 9), "invoice_id"),
    (CASH_LINES, "maybe", date(2024, 3, 9), "decision"),
    ([{"invoice_id": "INV-1", "customer_id": "C001", "amount": "-1e17"}], "confirmed", date(2024, 3, 9),
     "applied_amount"),
    ([{"invoice_id": "INV-1", "customer_id": "C001", "amount": "10.001"}], "confirmed", date(2024, 3, 9),
     "applied_amount"),
])
def test_bad_cash_applications_are_refused_naming_the_field(store, lines, decision, applied, field):
    with pytest.raises(InvalidInput) as refused:
        store.record_cash_application("carla", payment=BANK_PAYMENT, lines=lines, decision=decision,
                                      applied_date=applied, now=NOW)
    assert refused.value.field == field
    assert count_rows(store, "cash_applications") == 0
