"""Escalations (issue 21 point 2, `queues.escalations`): each rule fires on a hand-built ledger and stays quiet
just under its threshold, point in time at `as_of`; the queue is ranked by the deterioration probability; the
record's fields, the policy's checks and the backtest's arithmetic."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ledger import Ledger
from ledger.schema import empty_table
from queues.escalations import (
    EscalationPolicyError,
    backtest_origin,
    deterioration_events,
    escalation_candidates,
    escalation_evidence,
    escalation_queue,
    live_escalations,
    load_escalation_policy,
    opening_fields,
    pooled,
    recall_precision,
    top_by_overdue,
)
from queues.sla import due_date, load_sla_policy
from tests.ledgers import dates, tiny_ledger

AS_OF = pd.Timestamp("2024-06-30")
POLICY = load_escalation_policy()


def ledger_of(invoices: list[tuple[str, str, float]], credit_limit: float = 1_000_000.0,
              contacts: list[tuple[str, str]] = (), promises: list[tuple[str, str]] = (),
              segment: str = "mid") -> Ledger:
    """Customer C1 (and C2, quiet, with nothing open): `invoices` as (invoice_id, due_date, amount) issued 30
    days before due and never paid; `contacts` as (date, outcome); `promises` as (made, promised) of 100 each."""
    customers = pd.DataFrame({
        "customer_id": ["C1", "C2"], "name": ["Acme", "Bolt"], "segment": [segment, "small"],
        "country": ["DE", "FR"], "currency": ["EUR", "EUR"], "payment_terms_days": [30, 30],
        "credit_limit": [credit_limit, 5_000.0], "created_date": dates("2023-01-01", "2023-01-01"),
    })
    due = pd.to_datetime([due for _, due, _ in invoices])
    invoice_table = pd.DataFrame({
        "invoice_id": [invoice_id for invoice_id, _, _ in invoices], "customer_id": ["C1"] * len(invoices),
        "doc_type": ["invoice"] * len(invoices), "invoice_date": due - pd.Timedelta(days=30), "due_date": due,
        "amount": [amount for _, _, amount in invoices], "currency": ["EUR"] * len(invoices),
        "amount_base": [amount for _, _, amount in invoices], "cleared_date": pd.NaT,
    })
    invoice_table["cleared_date"] = invoice_table["cleared_date"].astype("datetime64[ns]")
    payments, applications = empty_table("payments"), empty_table("payment_applications")
    contact_table = pd.DataFrame({
        "contact_id": [f"K{n}" for n in range(len(contacts))], "customer_id": ["C1"] * len(contacts),
        "contact_date": dates(*[day for day, _ in contacts]), "channel": ["call"] * len(contacts),
        "outcome": [outcome for _, outcome in contacts]})
    promise_table = pd.DataFrame({
        "promise_id": [f"PR{n}" for n in range(len(promises))], "customer_id": ["C1"] * len(promises),
        "invoice_id": pd.Series([None] * len(promises), dtype=object),
        "made_date": dates(*[made for made, _ in promises]), "promised_date": dates(*[due for _, due in promises]),
        "amount": [100.0] * len(promises), "kept": pd.array([pd.NA] * len(promises), dtype="boolean")})
    if not contacts:
        contact_table = empty_table("contacts")
    if not promises:
        promise_table = empty_table("promises")
    return Ledger(customers, invoice_table, payments, applications, contacts=contact_table, promises=promise_table,
                  base_currency="EUR", source="tests")


def triggers(ledger: Ledger, as_of: pd.Timestamp = AS_OF, scores: pd.DataFrame | None = None) -> list[str]:
    """The rules that escalate C1 at `as_of` ([] when it is not in the queue)."""
    queue = escalation_queue(ledger, as_of, scores, POLICY)
    row = queue[queue["customer_id"] == "C1"]
    return list(row["triggers"].iat[0]) if len(row) else []


SMALL = [("I1", "2024-06-20", 500.0)]  # 10 days past due, 500 open: no rule fires on it alone


# ---- non-responsive: 3 attempts without an answer in 30 days ------------------------------------------

def test_three_unanswered_calls_in_30_days_escalate_as_non_responsive():
    ledger = ledger_of(SMALL, contacts=[("2024-06-05", "No answer"), ("2024-06-15", "left voicemail"),
                                        ("2024-06-28", "unreachable")])
    queue = escalation_queue(ledger, AS_OF, None, POLICY)
    row = queue.iloc[0]
    assert row["customer_id"] == "C1" and row["reason_code"] == "non_responsive"
    assert row["reasons"] == ["Non-responsive: 3 contact attempts without an answer in the last 30 days "
                              "(last on 2024-06-28)"]
    assert row["evidence"] == {"non_responsive": {"attempts": 3, "days": 30, "last_attempt": "2024-06-28"}}


def test_two_unanswered_calls_or_one_outside_the_window_do_not_escalate():
    assert triggers(ledger_of(SMALL, contacts=[("2024-06-15", "no answer"), ("2024-06-28", "no answer")])) == []
    # 2024-05-31 is 30 days before 2024-06-30: the window (as_of - 30, as_of] leaves it out.
    assert triggers(ledger_of(SMALL, contacts=[("2024-05-31", "no answer"), ("2024-06-15", "no answer"),
                                               ("2024-06-28", "no answer")])) == []


def test_an_answer_restarts_the_count_and_a_statement_sent_neither_counts_nor_restarts():
    calls = [("2024-06-05", "no answer"), ("2024-06-10", "no answer"), ("2024-06-12", "spoke to AP, will pay"),
             ("2024-06-20", "no answer"), ("2024-06-25", "no answer")]
    assert triggers(ledger_of(SMALL, contacts=calls)) == []  # two attempts since the answer
    calls = [("2024-06-05", "no answer"), ("2024-06-10", "statement sent"), ("2024-06-20", "no answer"),
             ("2024-06-25", "voicemail")]
    assert triggers(ledger_of(SMALL, contacts=calls)) == ["non_responsive"]


def test_attempts_after_as_of_are_not_known_yet():
    calls = [("2024-06-05", "no answer"), ("2024-06-15", "no answer"), ("2024-07-01", "no answer")]
    assert triggers(ledger_of(SMALL, contacts=calls)) == []
    assert triggers(ledger_of(SMALL, contacts=calls), pd.Timestamp("2024-07-01")) == ["non_responsive"]


# ---- a second broken promise: 2 broken promises in 180 days --------------------------------------------

def test_a_second_broken_promise_escalates_and_a_first_does_not():
    # Nothing is paid, so a promise is broken once its promised day is over (promised_date < as_of).
    two = [("2024-05-01", "2024-05-10"), ("2024-06-01", "2024-06-10")]
    assert triggers(ledger_of(SMALL, promises=two)) == ["broken_promises"]
    assert triggers(ledger_of(SMALL, promises=two[:1])) == []
    # The second one is promised for as_of itself: still pending that day.
    assert triggers(ledger_of(SMALL, promises=[two[0], ("2024-06-01", "2024-06-30")])) == []


# ---- deterioration flag with exposure over 10,000 -----------------------------------------------------

def flagged(probability: float = 0.7, deteriorating: bool = True) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["C1", "C2"], "deterioration_probability": [probability, 0.01],
                         "deteriorating": [deteriorating, False]})


def test_a_flagged_customer_with_more_than_10000_open_escalates():
    ledger = ledger_of([("I1", "2024-07-15", 10_000.01)])
    queue = escalation_queue(ledger, AS_OF, flagged(), POLICY)
    assert list(queue["customer_id"]) == ["C1"]
    assert queue["reasons"].iat[0] == ["Deteriorating: flagged by the model (P = 70%) with 10,000 open"]


def test_a_flagged_customer_with_exactly_10000_open_or_an_unflagged_one_does_not():
    assert triggers(ledger_of([("I1", "2024-07-15", 10_000.0)]), scores=flagged()) == []
    assert triggers(ledger_of([("I1", "2024-07-15", 50_000.0)]), scores=flagged(0.3, deteriorating=False)) == []


# ---- over the credit limit by more than 10% ---------------------------------------------------------------

def test_open_ar_more_than_10_percent_over_the_limit_escalates():
    # 1,100.00 open against a limit of 999: 10.1% over.
    assert triggers(ledger_of([("I1", "2024-07-15", 1_100.0)], credit_limit=999.0)) == ["over_limit"]
    queue = escalation_queue(ledger_of([("I1", "2024-07-15", 1_100.0)], credit_limit=999.0), AS_OF, None, POLICY)
    assert queue["reasons"].iat[0] == ["Over the credit limit by 10%: 1,100 open against a limit of 999"]


def test_exactly_10_percent_over_the_limit_or_no_limit_does_not_escalate():
    assert triggers(ledger_of([("I1", "2024-07-15", 1_100.0)], credit_limit=1_000.0)) == []
    assert triggers(ledger_of([("I1", "2024-07-15", 1_100.0)], credit_limit=0.0)) == []


# ---- an item older than 90 days past due above 5,000 ----------------------------------------------------

def test_an_item_91_days_past_due_with_more_than_5000_open_escalates():
    # Due 2024-03-31: 91 days past due on 2024-06-30.
    ledger = ledger_of([("I1", "2024-03-31", 5_000.01), ("I2", "2024-06-01", 9_000.0)])
    queue = escalation_queue(ledger, AS_OF, None, POLICY)
    assert queue["triggers"].iat[0] == ["old_item"]
    assert queue["reasons"].iat[0] == ["Old item: I1 is 91 days past due with 5,000 open"]


def test_an_item_90_days_past_due_or_with_5000_open_does_not_escalate():
    assert triggers(ledger_of([("I1", "2024-04-01", 9_000.0)])) == []  # 90 days past due
    assert triggers(ledger_of([("I1", "2024-03-01", 5_000.0)])) == []  # 121 days, but only 5,000 open


def test_a_payment_after_as_of_does_not_hide_the_old_item_that_day():
    ledger = ledger_of([("I1", "2024-03-31", 6_000.0)])
    payments = pd.DataFrame({"payment_id": ["P1"], "customer_id": ["C1"], "received_date": dates("2024-07-02"),
                             "amount": [6_000.0], "currency": ["EUR"], "amount_base": [6_000.0]})
    applications = pd.DataFrame({"payment_id": ["P1"], "invoice_id": ["I1"], "applied_date": dates("2024-07-02"),
                                 "amount": [6_000.0]})
    paid = ledger.replace(payments=payments, payment_applications=applications)
    assert triggers(paid) == ["old_item"]
    assert triggers(paid, pd.Timestamp("2024-07-02")) == []


# ---- the queue ---------------------------------------------------------------------------------------------

def test_every_rule_that_fires_is_a_reason_and_the_first_is_the_reason_code():
    ledger = ledger_of([("I1", "2024-03-01", 8_000.0), ("I2", "2024-07-15", 4_000.0)], credit_limit=10_000.0,
                       contacts=[("2024-06-20", "no answer"), ("2024-06-21", "no answer"),
                                 ("2024-06-22", "no answer")],
                       promises=[("2024-05-01", "2024-05-10"), ("2024-06-01", "2024-06-10")])
    row = escalation_queue(ledger, AS_OF, flagged(), POLICY).iloc[0]
    # 12,000 open: over 10,000 (deterioration) and 20% over the limit.
    assert row["triggers"] == ["non_responsive", "broken_promises", "deterioration", "over_limit", "old_item"]
    assert row["reason_code"] == "non_responsive" and len(row["reasons"]) == 5
    assert row["owner"] == "AR Manager"


def test_the_queue_is_ranked_by_deterioration_probability_then_open_ar():
    evidence = pd.DataFrame({
        "customer_id": ["A", "B", "C", "D"], "segment": ["mid"] * 4, "credit_limit": [None] * 4,
        "open_ar_base": [6_000.0, 7_000.0, 8_000.0, 9_000.0], "overdue_amount_base": [6_000.0] * 4,
        "unanswered_attempts": [0] * 4, "last_attempt": [pd.NaT] * 4, "broken_promises": [0] * 4,
        "old_item_id": ["IA", "IB", "IC", "ID"], "old_item_days_past_due": [120] * 4,
        "old_item_amount_base": [6_000.0] * 4})
    scores = pd.DataFrame({"customer_id": ["A", "B", "C"], "deterioration_probability": [0.2, 0.9, 0.2]})
    queue = escalation_candidates(evidence, scores, POLICY)
    # B (0.9) first; A and C tie at 0.2, C has more open; D has no probability: last.
    assert list(queue["customer_id"]) == ["B", "C", "A", "D"]
    assert list(queue["rank"]) == [1, 2, 3, 4]


def test_the_manager_of_the_segment_owns_the_escalation(tmp_path: Path):
    text = Path(POLICY_PATH()).read_text().replace("managers: {}", "managers: {enterprise: Key Accounts Manager}")
    (tmp_path / "policy.yaml").write_text(text)
    policy = load_escalation_policy(tmp_path / "policy.yaml")
    ledger = ledger_of([("I1", "2024-03-01", 8_000.0)], segment="enterprise")
    assert escalation_queue(ledger, AS_OF, None, policy)["owner"].tolist() == ["Key Accounts Manager"]


def POLICY_PATH() -> Path:
    from queues.escalations import DEFAULT_ESCALATION_POLICY

    return DEFAULT_ESCALATION_POLICY


def test_a_disabled_rule_never_fires(tmp_path: Path):
    text = Path(POLICY_PATH()).read_text().replace("  days_past_due: 90\n", "  enabled: false\n  days_past_due: 90\n")
    (tmp_path / "policy.yaml").write_text(text)
    ledger = ledger_of([("I1", "2024-03-01", 8_000.0)])
    assert escalation_queue(ledger, AS_OF, None, load_escalation_policy(tmp_path / "policy.yaml")).empty


@pytest.mark.parametrize(("old", "new", "message"), [
    ("  attempts: 3\n", "  attempts: 3\n  attemps: 4\n", "non_responsive.attemps: Extra inputs"),
    ("  count: 2\n", "  count: 0\n", "broken_promises.count"),
    ("{invoice_id} is", "{invoice} is", "old_item.reason: cannot be filled"),
])
def test_a_policy_with_a_typo_is_refused_with_the_file_and_field(tmp_path: Path, old: str, new: str, message: str):
    path = tmp_path / "policy.yaml"
    path.write_text(Path(POLICY_PATH()).read_text().replace(old, new))
    with pytest.raises(EscalationPolicyError, match=message) as error:
        load_escalation_policy(path)
    assert str(path) in str(error.value)


def test_evidence_has_one_row_per_customer_known_at_as_of():
    evidence = escalation_evidence(tiny_ledger(), pd.Timestamp("2024-03-20"), POLICY)
    assert list(evidence["customer_id"]) == ["C1", "C2"]
    # C1: I2 500 - 300 applied = 200 open, due 2024-03-02 (overdue); C2: I3 800 (not due) + I4 300 (overdue).
    assert evidence["open_ar_base"].tolist() == [200.0, 1_100.0]
    assert evidence["overdue_amount_base"].tolist() == [200.0, 300.0]
    # PR1 (C1, promised 2024-03-15, 200 on I2) is broken on 2024-03-20: nothing was applied to I2 since.
    assert evidence["broken_promises"].tolist() == [1, 0]


# ---- records ----------------------------------------------------------------------------------------------

def test_opening_fields_carry_every_reason_and_the_sla_due_date():
    ledger = ledger_of([("I1", "2024-03-01", 8_000.0)], credit_limit=5_000.0)
    candidate = escalation_queue(ledger, AS_OF, flagged(0.42, False), POLICY).iloc[0].to_dict()
    sla = load_sla_policy()
    fields = opening_fields(candidate, AS_OF, due_date(sla, "escalation", AS_OF), "EUR")
    assert fields["queue"] == "escalation" and fields["customer_id"] == "C1"
    assert fields["reason_code"] == "over_limit" and fields["owner"] == "AR Manager"
    assert str(fields["opened_date"]) == "2024-06-30" and str(fields["due_date"]) == "2024-07-05"  # 5 days
    assert fields["amount"] == "8000.00" and fields["currency"] == "EUR"
    assert fields["details"]["triggers"] == ["over_limit", "old_item"]
    assert fields["details"]["deterioration_probability"] == 0.42
    assert fields["details"]["evidence"]["old_item"]["invoice_id"] == "I1"


def test_a_closed_or_voided_escalation_is_not_live():
    records = [
        {"item_id": "Q1", "queue": "escalation", "customer_id": "C1", "status": "closed", "opened_date": "2024-01-01"},
        {"item_id": "Q2", "queue": "escalation", "customer_id": "C2", "status": "decided", "opened_date": "2024-02-01"},
        {"item_id": "Q3", "queue": "escalation", "customer_id": "C3", "status": "open", "opened_date": "2024-02-01",
         "voided_at": "2024-02-02T10:00:00"},
        {"item_id": "Q4", "queue": "deduction", "customer_id": "C4", "status": "open", "opened_date": "2024-02-01"},
    ]
    assert set(live_escalations(records)) == {"C2"}


# ---- the backtest's pure part ----------------------------------------------------------------------------

def test_recall_and_precision_of_a_queue():
    # 2 of 4 events queued; 2 of 5 queued are events.
    assert recall_precision({"A", "B", "X", "Y", "Z"}, {"A", "B", "C", "D"}) == {"hits": 2, "recall": 0.5,
                                                                                  "precision": 0.4}
    assert pd.isna(recall_precision(set(), {"A"})["precision"])


def test_the_baseline_takes_the_customers_with_the_most_overdue():
    evidence = pd.DataFrame({"customer_id": ["A", "B", "C", "D"], "overdue_amount_base": [5.0, 0.0, 9.0, 5.0]})
    assert top_by_overdue(evidence, 2) == {"C", "A"}
    assert top_by_overdue(evidence, 10) == {"A", "C", "D"}  # nothing overdue: never flagged


def test_an_event_is_going_90_days_past_due_within_90_days_after_the_origin():
    # I1 due 2024-05-01 goes 91 days past due on 2024-07-31: inside (2024-06-30, 2024-09-28].
    ledger = ledger_of([("I1", "2024-05-01", 8_000.0)])
    ledger = ledger.replace(contacts=ledger.contacts.assign(contact_date=ledger.contacts["contact_date"]))
    ledger = with_event_after(ledger, "2024-10-31")
    assert deterioration_events(ledger, AS_OF) == {"C1"}
    # At 2024-08-31 it is already 90+ past due: not an event any more.
    assert deterioration_events(ledger, pd.Timestamp("2024-08-31")) == set()


def with_event_after(ledger: Ledger, day: str) -> Ledger:
    """The ledger observed until `day` (a contact of the quiet customer C2 that day)."""
    contact = pd.DataFrame({"contact_id": ["KEND"], "customer_id": ["C2"], "contact_date": dates(day),
                            "channel": ["email"], "outcome": ["statement sent"]})
    return ledger.replace(contacts=pd.concat([ledger.contacts, contact], ignore_index=True))


def test_one_backtest_origin_counts_hits_of_the_queue_30_days_before_and_of_the_baseline():
    # On 2024-05-31 (30 days before the origin 2024-06-30) C1 is 10% over its limit only by 1,100 / 999;
    # its I1 (due 2024-04-01) goes 91 days past due on 2024-07-01: an event.
    ledger = with_event_after(ledger_of([("I1", "2024-04-01", 1_100.0)], credit_limit=999.0), "2024-10-31")
    result = backtest_origin(ledger, AS_OF, None, POLICY)
    assert result["queue_date"] == pd.Timestamp("2024-05-31")
    assert (result["events"], result["queued"], result["hits"], result["recall"], result["precision"]) == (
        1, 1, 1, 1.0, 1.0)
    assert (result["baseline_hits"], result["baseline_recall"]) == (1, 1.0)  # C1 is the only one overdue
    total = pooled(pd.DataFrame([result, {**result, "events": 3, "hits": 0, "baseline_hits": 0}]))
    assert total["recall"] == 0.25 and total["precision"] == 0.5


# ---- the command line ------------------------------------------------------------------------------------

def test_the_cli_lists_opens_and_decides_an_escalation(tmp_path: Path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from ledger import write_ledger
    from serving.cli import app

    monkeypatch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{tmp_path / 'activity.sqlite'}")
    write_ledger(ledger_of([("I1", "2024-03-31", 6_000.0)]), tmp_path / "ledger")
    common = ["--ledger", str(tmp_path / "ledger"), "--as-of", "2024-06-30",
              "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    runner = CliRunner()
    listed = runner.invoke(app, ["escalations", "list", *common, "--out", str(tmp_path / "queue.csv")])
    assert listed.exit_code == 0, listed.output
    queue = pd.read_csv(tmp_path / "queue.csv")
    assert list(queue["customer_id"]) == ["C1"] and list(queue["reason_code"]) == ["old_item"]

    opened = runner.invoke(app, ["escalations", "open", *common, "--customer", "C1", "--user", "ana"])
    assert opened.exit_code == 0, opened.output
    record = json.loads(opened.output)
    assert (record["owner"], record["due_date"], record["status"]) == ("AR Manager", "2024-07-05", "open")
    refused = runner.invoke(app, ["escalations", "open", *common, "--customer", "C2", "--user", "ana"])
    assert refused.exit_code != 0 and "no escalation rule fires for C2" in refused.output

    decided = runner.invoke(app, ["escalations", "decide", record["item_id"], "--user", "mia", "--expected-version",
                                  "1", "--decision", "credit_hold", "--decided-date", "2024-07-01"])
    assert decided.exit_code == 0, decided.output
    assert json.loads(decided.output)["decision"] == "credit_hold"
    wrong = runner.invoke(app, ["escalations", "decide", record["item_id"], "--user", "mia", "--expected-version",
                                "2", "--decision", "forgive", "--decided-date", "2024-07-01"])
    assert wrong.exit_code != 0 and "keep_chasing, legal" in wrong.output
