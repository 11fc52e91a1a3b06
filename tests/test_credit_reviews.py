"""Credit reviews (issue 21, point 3): each trigger and the customer just below it, the recommended limit's
arithmetic done by hand (an established customer, new customers measured by their peers), point-in-time
inputs, and the analyst's decision as the store's changes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ledger import Ledger
from ledger.errors import BadInput
from queues.credit_reviews import (
    CreditReviewPolicy,
    CreditReviewPolicyError,
    credit_review_table,
    customer_history,
    decision_changes,
    load_credit_review_policy,
    opening_fields,
    recommended_limit,
    review_candidates,
    review_queue,
)
from queues.sla import load_sla_policy
from tests.ledgers import dates
from tests.stores import NOW

AS_OF = pd.Timestamp("2024-06-30")
POLICY = CreditReviewPolicy()  # 0.5 probability, 0.9 of the limit, 180 days new, 0.9 safety, 0.5 haircut, 3 peers


def review_ledger(**limits: float) -> Ledger:
    """Six customers at 2024-06-30 (window of the monthly sales: 2023-07-02 .. 2024-06-30, 365 days):
    - A mid/DE, terms 30: 73,000 invoiced in the window (6,000 a month), paid 10 days late on average;
    - B mid/DE, terms 30: 36,500 in the window (3,000 a month), always paid on the due date;
    - N mid/DE, terms 60, limit 20,000: 18,250 in the window (1,500 a month), all of it still open;
    - W mid/DE, terms 60: first invoiced 2024-05-01 (60 days ago), nothing paid yet: new;
    - Q mid/FR, terms 30: invoiced since 2023, never paid in full: new (no payment history);
    - S small/US, terms 30: first invoiced 2024-06-15: new, no peer of its segment."""
    customers = pd.DataFrame({
        "customer_id": ["A", "B", "N", "W", "Q", "S"],
        "name": ["Alpha", "Beta", "Near", "Wren", "Quill", "Small"],
        "segment": ["mid", "mid", "mid", "mid", "mid", "small"],
        "country": ["DE", "DE", "DE", "DE", "FR", "US"],
        "currency": ["EUR"] * 6,
        "payment_terms_days": [30, 30, 60, 60, 30, 30],
        "credit_limit": [limits.get(c, default) for c, default in
                         zip("ABNWQS", [20_000.0, 50_000.0, 20_000.0, 10_000.0, 5_000.0, 5_000.0], strict=True)],
        "created_date": dates("2023-01-01", "2023-01-01", "2023-01-01", "2024-05-01", "2023-01-01", "2024-06-15"),
    })
    invoices = pd.DataFrame({
        "invoice_id": ["A0", "A1", "A2", "B0", "B1", "N0", "N1", "W1", "Q1", "S1"],
        "customer_id": ["A", "A", "A", "B", "B", "N", "N", "W", "Q", "S"],
        "doc_type": ["invoice"] * 10,
        "invoice_date": dates("2023-01-15", "2023-09-01", "2024-03-01", "2023-01-10", "2024-01-10", "2023-01-20",
                              "2024-06-01", "2024-05-01", "2023-02-01", "2024-06-15"),
        "due_date": dates("2023-02-14", "2023-10-01", "2024-03-31", "2023-02-09", "2024-02-09", "2023-03-21",
                          "2024-07-31", "2024-06-30", "2023-03-03", "2024-07-15"),
        "amount": [1_000.0, 36_500.0, 36_500.0, 1_000.0, 36_500.0, 1_000.0, 18_250.0, 6_100.0, 2_000.0, 900.0],
        "currency": ["EUR"] * 10,
        "amount_base": [1_000.0, 36_500.0, 36_500.0, 1_000.0, 36_500.0, 1_000.0, 18_250.0, 6_100.0, 2_000.0, 900.0],
        "cleared_date": dates("2023-02-24", "2023-10-11", "2024-04-10", "2023-02-09", "2024-02-09", "2023-03-21",
                              None, None, None, None),
    })
    # Paid in full: A 10, 10 and 10 days late; B and N on the due date. Q paid half of its invoice.
    paid = {"A0": "2023-02-24", "A1": "2023-10-11", "A2": "2024-04-10", "B0": "2023-02-09", "B1": "2024-02-09",
            "N0": "2023-03-21"}
    payments = pd.DataFrame({
        "payment_id": [f"P{invoice}" for invoice in paid] + ["PQ1"],
        "customer_id": [invoice[0] for invoice in paid] + ["Q"],
        "received_date": dates(*paid.values(), "2023-03-03"),
        "amount": [invoices.set_index("invoice_id").at[invoice, "amount"] for invoice in paid] + [1_000.0],
        "currency": ["EUR"] * 7,
    })
    payments["amount_base"] = payments["amount"]
    applications = pd.DataFrame({"payment_id": payments["payment_id"], "invoice_id": [*paid, "Q1"],
                                 "applied_date": payments["received_date"], "amount": payments["amount"]})
    return Ledger(customers, invoices, payments, applications, base_currency="EUR", source="tests")


def day_risk(**probabilities: float) -> pd.DataFrame:
    """The day's deterioration scores: A flagged (at a probability under the threshold), the others not."""
    base = {"A": 0.2, "B": 0.1, "N": 0.3, "W": 0.05, "Q": 0.1, "S": 0.1, **probabilities}
    return pd.DataFrame({"customer_id": list(base), "deterioration_probability": list(base.values()),
                         "deteriorating": [customer == "A" for customer in base]})


def table_row(table: pd.DataFrame, customer_id: str) -> dict:
    return table.set_index("customer_id").loc[customer_id].to_dict()


def test_the_default_policy_file_loads_and_a_typo_is_refused(tmp_path):
    assert load_credit_review_policy() == POLICY
    typo = tmp_path / "policy.yaml"
    typo.write_text("near_limit_shar: 0.8\n")
    with pytest.raises(CreditReviewPolicyError, match="near_limit_shar"):
        load_credit_review_policy(typo)


def test_each_customer_gets_the_triggers_it_meets_and_the_first_is_its_reason():
    table = credit_review_table(review_ledger(), AS_OF, day_risk(), POLICY)
    reasons = table.set_index("customer_id")["reason_code"].to_dict()
    # A: flagged by the model; N: 18,250 open of 20,000 = 0.9125 >= 0.9; W, Q, S new; B none.
    assert reasons == {"A": "deteriorating", "B": None, "N": "near_limit", "W": "new_customer",
                       "Q": "new_customer", "S": "new_customer"}
    assert list(review_candidates(table)["customer_id"]) == ["N", "A", "Q", "S", "W"]  # by probability


@pytest.mark.parametrize(("probability", "triggered"), [(0.49, False), (0.5, True)])
def test_a_probability_at_the_threshold_triggers_a_review_and_just_below_does_not(probability, triggered):
    table = credit_review_table(review_ledger(), AS_OF, day_risk(B=probability), POLICY)
    assert (table_row(table, "B")["reason_code"] == "deteriorating") is triggered


@pytest.mark.parametrize(("limit", "triggered"), [(20_250.0, True), (20_300.0, False), (0.0, False)])
def test_open_receivables_at_the_share_of_the_limit_trigger_a_review_and_just_below_do_not(limit, triggered):
    # 18,250 / 20,250 = 0.9012 reaches 0.9; 18,250 / 20,300 = 0.8990 does not; a limit of 0 (on hold) is no limit.
    table = credit_review_table(review_ledger(N=limit), AS_OF, day_risk(), POLICY)
    assert ("near_limit" in table_row(table, "N")["triggers"]) is triggered


@pytest.mark.parametrize(("new_customer_days", "triggered"), [(532, False), (533, True)])
def test_a_customer_first_invoiced_new_customer_days_ago_is_no_longer_new(new_customer_days, triggered):
    # A's first invoice, 2023-01-15, is 532 days before 2024-06-30.
    policy = POLICY.model_copy(update={"new_customer_days": new_customer_days})
    table = credit_review_table(review_ledger(), AS_OF, day_risk(), policy)
    assert ("new_customer" in table_row(table, "A")["triggers"]) is triggered


def test_monthly_sales_count_the_days_since_the_first_invoice_when_it_is_inside_the_window():
    history = customer_history(review_ledger(), AS_OF, POLICY)
    # W: 6,100 invoiced over the 61 days 2024-05-01 .. 2024-06-30 = 3,000 per 30 days; A: 73,000 over 365 days.
    assert history.at["W", "covered_days"] == 61 and history.at["W", "monthly_sales_base"] == pytest.approx(3_000)
    assert history.at["A", "covered_days"] == 365 and history.at["A", "monthly_sales_base"] == pytest.approx(6_000)
    assert history.at["A", "avg_days_late"] == 10 and history.at["N", "open_ar_base"] == 18_250


def test_an_established_customers_limit_is_its_sales_over_terms_and_lateness_cut_for_risk():
    row = table_row(credit_review_table(review_ledger(), AS_OF, day_risk(), POLICY), "A")
    # 6,000 a month x (30 terms + 10 days late) / 30 = 8,000; x (1 - 0.2) = 6,400; x 0.9 safety = 5,760;
    # rounded down to 1,000: 5,000.
    assert row["recommended_limit"] == 5_000
    inputs = row["inputs"]
    assert inputs["basis"] == "own history" and inputs["monthly_sales_base"] == 6_000
    assert (inputs["payment_terms_days"], inputs["avg_days_late"], inputs["deterioration_probability"]) == (30, 10, 0.2)
    assert row["formula"].startswith("5,000 = floor to 1,000 of 6,000.00 monthly sales x (30 terms + 10 days late)")


def test_a_new_customer_is_measured_by_the_medians_of_its_segment_and_country_peers_with_a_haircut():
    row = table_row(credit_review_table(review_ledger(), AS_OF, day_risk(), POLICY), "W")
    # Established mid/DE peers A, B, N: monthly sales 6,000 / 3,000 / 1,500 -> 3,000; days late 10 / 0 / 0 -> 0;
    # P(deteriorate) 0.2 / 0.1 / 0.3 -> 0.2, above W's own 0.05. W's own terms are 60:
    # 3,000 x (60 + 0) / 30 = 6,000; x 0.8 = 4,800; x 0.9 = 4,320; x (1 - 0.5) = 2,160; rounded down: 2,000.
    assert row["recommended_limit"] == 2_000
    inputs = row["inputs"]
    assert inputs["basis"] == "peers: segment mid and country DE" and inputs["peer_count"] == 3
    assert (inputs["monthly_sales_base"], inputs["avg_days_late"], inputs["deterioration_probability"]) == (3_000, 0, 0.2)
    assert inputs["own_deterioration_probability"] == 0.05 and inputs["new_customer_haircut"] == 0.5


def test_a_new_customer_riskier_than_its_peers_keeps_its_own_probability():
    row = table_row(credit_review_table(review_ledger(), AS_OF, day_risk(W=0.6), POLICY), "W")
    # 3,000 x 60 / 30 x (1 - 0.6) x 0.9 x 0.5 = 1,080 -> 1,000; and it is deteriorating as well (first reason).
    assert row["recommended_limit"] == 1_000 and row["triggers"] == "deteriorating, new_customer"


def test_peers_fall_back_to_the_segment_then_to_all_established_customers():
    table = credit_review_table(review_ledger(), AS_OF, day_risk(), POLICY)
    # Q (mid/FR): no established mid/FR customer, so the mid segment (A, B, N): 3,000 x 30/30 x 0.8 x 0.9 x 0.5
    # = 1,080 -> 1,000. S (small/US): no small customer established, so all of them (A, B, N), the same medians.
    assert table_row(table, "Q")["inputs"]["basis"] == "peers: segment mid"
    assert table_row(table, "S")["inputs"]["basis"] == "peers: all established customers"
    assert table_row(table, "Q")["recommended_limit"] == table_row(table, "S")["recommended_limit"] == 1_000
    fewer = POLICY.model_copy(update={"min_peers": 4})  # three mid/DE peers are too few now: the segment has 3 too
    assert table_row(credit_review_table(review_ledger(), AS_OF, day_risk(), fewer), "W")["inputs"]["basis"] == (
        "peers: all established customers")


def test_the_limit_is_rounded_down_never_up_and_never_below_zero():
    inputs = {"basis": "own history", "monthly_sales_base": 3_000.0, "payment_terms_days": 30.0, "avg_days_late": 0.0,
              "deterioration_probability": 0.0, "safety_factor": 1.0, "new_customer_haircut": 0.0,
              "rounding_step": 1_000.0}
    assert recommended_limit(inputs)[0] == 3_000  # exactly a step stays a step
    assert recommended_limit({**inputs, "monthly_sales_base": 2_999.0})[0] == 2_000
    assert recommended_limit({**inputs, "deterioration_probability": 1.0})[0] == 0


def test_what_happens_after_as_of_changes_no_trigger_and_no_limit():
    ledger = review_ledger()
    later = ledger.invoices.iloc[[0]].assign(invoice_id="A9", invoice_date=pd.Timestamp("2024-07-01"),
                                             due_date=pd.Timestamp("2024-07-31"), amount=99_000.0, amount_base=99_000.0,
                                             cleared_date=pd.NaT)
    payment = pd.DataFrame({"payment_id": ["PN1"], "customer_id": ["N"], "received_date": dates("2024-07-02"),
                            "amount": [18_250.0], "currency": ["EUR"], "amount_base": [18_250.0]})
    application = pd.DataFrame({"payment_id": ["PN1"], "invoice_id": ["N1"], "applied_date": dates("2024-07-02"),
                                "amount": [18_250.0]})
    perturbed = ledger.replace(invoices=pd.concat([ledger.invoices, later], ignore_index=True),
                               payments=pd.concat([ledger.payments, payment], ignore_index=True),
                               payment_applications=pd.concat([ledger.payment_applications, application],
                                                              ignore_index=True))
    before = credit_review_table(ledger, AS_OF, day_risk(), POLICY)
    after = credit_review_table(perturbed, AS_OF, day_risk(), POLICY)
    pd.testing.assert_frame_equal(before.drop(columns="inputs"), after.drop(columns="inputs"))
    assert list(before["inputs"]) == list(after["inputs"])


def test_scores_without_the_columns_are_refused_by_name():
    with pytest.raises(BadInput, match="deteriorating"):
        credit_review_table(review_ledger(), AS_OF, day_risk().drop(columns="deteriorating"), POLICY)


def test_a_review_opens_with_its_reason_recommended_limit_formula_and_sla():
    candidate = table_row(credit_review_table(review_ledger(), AS_OF, day_risk(), POLICY), "A") | {"customer_id": "A"}
    fields = opening_fields(candidate, AS_OF, POLICY, load_sla_policy(), "EUR")
    assert (fields["queue"], fields["reason_code"], fields["amount"], fields["owner"]) == (
        "credit_review", "deteriorating", "5000.00", "Credit Team")
    assert str(fields["due_date"]) == "2024-07-10"  # 10 days for a credit review in configs/sla/default.yaml
    assert fields["details"]["inputs"]["monthly_sales_base"] == 6_000 and fields["details"]["triggers"] == ["deteriorating"]
    no_trigger = table_row(credit_review_table(review_ledger(), AS_OF, day_risk(), POLICY), "B") | {"customer_id": "B"}
    with pytest.raises(BadInput, match="B has no credit-review trigger"):
        opening_fields(no_trigger, AS_OF, POLICY, load_sla_policy(), "EUR")


def test_a_decision_sets_the_recommended_the_typed_or_a_zero_limit():
    review = {"item_id": "CRV-1", "status": "open", "amount": "5000.00"}
    assert decision_changes(review, "approve", "2024-07-02")["decided_amount"] == "5000.00"
    assert decision_changes(review, "change", "2024-07-02", limit="3500")["decided_amount"] == "3500.00"
    hold = decision_changes(review, "credit_hold", "2024-07-02", note="two cheques bounced")
    assert (hold["status"], hold["decision"], hold["decided_amount"], str(hold["decided_date"]), hold["note"]) == (
        "decided", "credit_hold", "0.00", "2024-07-02", "two cheques bounced")
    for decision, limit, problem in [("change", None, "limit: required"), ("change", "-5", "0 or more"),
                                     ("approve", "100", "only a change"), ("raise", None, "expected one of")]:
        with pytest.raises(BadInput, match=problem):
            decision_changes(review, decision, "2024-07-02", limit=limit)
    with pytest.raises(BadInput, match="already decided"):
        decision_changes({**review, "status": "decided"}, "approve", "2024-07-02")


def test_the_queue_lists_recorded_reviews_then_candidates_without_an_open_one():
    candidates = review_candidates(credit_review_table(review_ledger(), AS_OF, day_risk(), POLICY))
    recorded = [{"item_id": "CRV-1", "queue": "credit_review", "customer_id": "A", "status": "open",
                 "opened_date": "2024-06-29", "voided_at": None},
                {"item_id": "CRV-0", "queue": "credit_review", "customer_id": "N", "status": "decided",
                 "opened_date": "2024-06-01", "voided_at": None}]
    queue = review_queue(candidates, recorded)
    assert [(row["kind"], row.get("item_id") or row["customer_id"]) for row in queue] == [
        ("recorded", "CRV-1"), ("recorded", "CRV-0"), ("candidate", "N"), ("candidate", "Q"),
        ("candidate", "S"), ("candidate", "W")]
    assert queue[0]["today"]["recommended_limit"] == 5_000  # A's figures of the day beside its open review


# ---- through the activity store: the decision's audit and the decided limit in the features and the worklist ----

def decided_review(store, decision: str, limit: str | None = None) -> dict:
    """N's review opened on 2024-06-30 from the day's table, then decided on 2024-07-01."""
    candidate = table_row(credit_review_table(review_ledger(), AS_OF, day_risk(), POLICY), "N") | {"customer_id": "N"}
    opened = store.open_queue_item("cara", **opening_fields(candidate, AS_OF, POLICY, load_sla_policy(), "EUR"),
                                   now=NOW)
    changes = decision_changes(opened, decision, "2024-07-01", limit=limit, note="reviewed the accounts")
    return store.update_queue_item("dina", opened["item_id"], opened["version"], now=NOW, **changes)


def test_a_decision_is_kept_with_the_audit_chain(store):
    from sqlalchemy import select

    from activity.audit import verify_audit
    from activity.models import AuditEntry

    decided = decided_review(store, "change", "10000")
    assert (decided["status"], decided["decision"], decided["decided_amount"], decided["version"]) == (
        "decided", "change", "10000.00", 2)
    assert json.loads(decided["details"])["inputs"]["monthly_sales_base"] == 1_500
    with store.session() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.record_id == decided["item_id"])
                                  .order_by(AuditEntry.seq)).all()
    assert [(entry.user_name, entry.action) for entry in entries] == [("cara", "create"), ("dina", "update")]
    assert '"decided_amount":"10000.00"' in entries[-1].after.replace(" ", "")
    assert verify_audit(store) == []


def test_a_decided_lower_limit_puts_the_customer_over_it_in_the_features_and_the_worklist(store):
    from features import customer_features_at, features_at
    from rules.worklist import load_worklist_policy, worklist
    from runs.actions import with_records

    def over_limit_reasons(ledger: Ledger) -> tuple[float, list[str]]:
        # The worklist of 2024-08-15, when N's 18,250 (due 2024-07-31) is overdue; every item sure to stay unpaid.
        worklist_day = pd.Timestamp("2024-08-15")
        customers = customer_features_at(ledger, worklist_day).assign(deteriorating=False)
        items = features_at(ledger, worklist_day).assign(p_unpaid=1.0)
        table = worklist(ledger, worklist_day, items, customers, load_worklist_policy()).set_index("customer_id")
        utilisation = customers.set_index("customer_id").at["N", "credit_utilisation"]
        return utilisation, [reason for reason in table.loc["N", ["reason_1", "reason_2", "reason_3"]] if reason]

    ledger = review_ledger()
    assert over_limit_reasons(ledger) == (pytest.approx(0.9125), [])  # 18,250 open of 20,000
    decided_review(store, "change", "10000")
    merged = with_records(ledger, store.ledger_tables())
    assert merged.customers.set_index("customer_id").at["N", "credit_limit"] == 10_000
    # 18,250 open of the decided 10,000: 182.5% used, and the worklist says so.
    assert over_limit_reasons(merged) == (pytest.approx(1.825), ["over credit limit (182% used)"])
