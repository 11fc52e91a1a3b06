"""The worklist's ranking and rule overrides on hand-built frames and on the tiny ledger."""

from __future__ import annotations

import pandas as pd
import pytest

from features import feature_frames
from ledger import Ledger
from ledger.errors import BadInput
from rules.worklist import (
    ACTIVE,
    ESCALATED,
    HELD,
    WorklistFilterError,
    WorklistPolicy,
    WorklistPolicyError,
    customer_priority,
    filtered_worklist,
    item_rule_inputs,
    load_worklist_policy,
    top_share,
    worklist,
)
from tests.ledgers import dates, tiny_ledger

POLICY = WorklistPolicy()


def items_frame(rows: list[tuple]) -> pd.DataFrame:
    """(customer, amount, days past due, p_unpaid, hold reason, broken promise) per open document."""
    frame = pd.DataFrame(rows, columns=["customer_id", "open_amount_base", "days_past_due", "p_unpaid",
                                        "hold_reason", "broken_promise"])
    return frame.assign(invoice_id=[f"I{i}" for i in range(len(frame))])


def customers_frame(ids: list[str], deteriorating=(), over_limit=()) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ids,
                         "credit_utilisation": [1.2 if c in over_limit else 0.5 for c in ids],
                         "deteriorating": [c in deteriorating for c in ids]})


def test_score_is_money_at_risk_summed_per_customer_then_weighted_by_the_rules():
    items = items_frame([
        ("A", 1000.0, 10, 0.5, "", False),   # 500 at risk
        ("A", 200.0, 0, 0.1, "", False),     # not yet due, still at risk: 20
        ("B", 2000.0, 40, 0.1, "", True),    # 200 x 3 for the broken promise = 600
        ("C", 900.0, 0, 0.9, "", False),     # nothing overdue: not on the list
        ("D", 5000.0, 60, 0.9, "open dispute D1 (pricing)", False),  # held
        ("E", -300.0, 5, 1.0, "", False),    # credit memo: no risk
        ("E", 100.0, 5, 1.0, "", False),     # 100
        ("F", 100.0, 5, 1.0, "", False),     # deteriorating: 100 x 2 = 200
        ("G", 100.0, 5, 1.0, "", False),     # over the limit: 100 x 1.5 = 150
    ])
    table = customer_priority(items, customers_frame(list("ABCDEFG"), deteriorating={"F"}, over_limit={"G"}), POLICY)
    scores = table.set_index("customer_id")["score"]
    assert list(table["customer_id"]) == ["B", "A", "F", "G", "E", "D"]
    assert scores.to_dict() == pytest.approx({"B": 600.0, "A": 520.0, "F": 200.0, "G": 150.0, "E": 100.0, "D": 0.0})
    assert list(table["rank"]) == [1, 2, 3, 4, 5, 6]
    by_id = table.set_index("customer_id")
    assert by_id.loc["D", "status"] == HELD and by_id.loc["D", "held_at_risk_base"] == pytest.approx(4500.0)
    assert by_id.loc["B", "status"] == ESCALATED
    assert by_id.loc["E", "open_amount_base"] == pytest.approx(-200.0)
    assert by_id.loc["E", "overdue_amount_base"] == pytest.approx(100.0)


def test_a_broken_promise_raises_priority():
    rows = [("A", 1000.0, 10, 0.5, "", False), ("B", 800.0, 10, 0.5, "", False)]
    before = customer_priority(items_frame(rows), customers_frame(["A", "B"]), POLICY)
    rows[1] = ("B", 800.0, 10, 0.5, "", True)
    after = customer_priority(items_frame(rows), customers_frame(["A", "B"]), POLICY)
    assert before.set_index("customer_id").loc["B", "rank"] == 2
    assert after.set_index("customer_id").loc["B", "rank"] == 1


def test_more_money_at_risk_never_lowers_priority():
    base = [("A", 1000.0, 10, 0.5, "", False), ("B", 1000.0, 10, 0.4, "", False)]
    for p in (0.3, 0.5, 0.7, 0.9):
        table = customer_priority(items_frame([base[0], ("B", 1000.0, 10, p, "", False)]),
                                  customers_frame(["A", "B"]), POLICY)
        rank_b = table.set_index("customer_id").loc["B", "rank"]
        assert rank_b == (1 if p > 0.5 else 2)


def test_equal_scores_rank_by_overdue_amount_then_customer_id_whatever_the_input_order():
    rows = [("Z", 100.0, 5, 1.0, "", False), ("M", 100.0, 5, 1.0, "", False),
            ("A", 50.0, 5, 1.0, "", False), ("A", 50.0, 0, 1.0, "", False), ("Q", 200.0, 5, 0.5, "", False)]
    forward = customer_priority(items_frame(rows), customers_frame(["Z", "M", "A", "Q"]), POLICY)
    backward = customer_priority(items_frame(rows[::-1]), customers_frame(["Q", "A", "M", "Z"]), POLICY)
    # Q: 100 at risk but 200 overdue; M and Z: 100 overdue; A: only 50 overdue.
    assert list(forward["customer_id"]) == ["Q", "M", "Z", "A"]
    assert list(backward["customer_id"]) == list(forward["customer_id"])


def test_top_share_counts_the_outcome_held_by_the_top_fifth():
    score = pd.Series([5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    outcome = pd.Series([10.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 60.0])
    assert top_share(score, outcome, 0.2) == pytest.approx(0.4)
    assert top_share(outcome, outcome, 0.2) == pytest.approx(0.9)
    assert pd.isna(top_share(score, outcome * 0, 0.2))


def scored_tiny(as_of: str, p_unpaid: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    items, customers = feature_frames(tiny_ledger(), pd.Timestamp(as_of))
    return items.assign(p_unpaid=p_unpaid), customers.assign(deteriorating=False)


def test_worklist_holds_a_pending_promise_and_escalates_once_it_is_broken():
    ledger = tiny_ledger()
    # 10 March: C1's promise PR1 (200 on I2 by 15 March) is pending, so I2 is held.
    items, customers = scored_tiny("2024-03-10")
    before = worklist(ledger, pd.Timestamp("2024-03-10"), items, customers, POLICY).set_index("customer_id")
    assert before.loc["C1", "status"] == HELD
    assert before.loc["C1", "rank"] == 2
    assert before.loc["C1", "reason_1"] == "on hold: pending promise PR1 to pay by 2024-03-15"
    assert before.loc["C1", "last_promise"] == "promise of 2024-03-05 to pay 200.00 by 2024-03-15: pending"
    # 10 April: nothing came, the promise is broken and C1 jumps to the top.
    items, customers = scored_tiny("2024-04-10")
    after = worklist(ledger, pd.Timestamp("2024-04-10"), items, customers, POLICY).set_index("customer_id")
    assert after.loc["C1", "status"] == ESCALATED
    assert after.loc["C1", "rank"] == 1
    assert after.loc["C1", "score"] == pytest.approx(200 * 0.5 * 3)
    assert after.loc["C1", "reason_1"] == "promise to pay 200.00 by 2024-03-15 broken"
    assert after.loc["C1", "last_promise"].endswith(": broken")
    # C2: I3 (800) is in dispute and held; I4 (300, 46 days past due) is chased.
    assert after.loc["C2", "score"] == pytest.approx(300 * 0.5)
    assert after.loc["C2", "oldest_invoice_id"] == "I4"
    assert after.loc["C2", "max_days_past_due"] == 46
    assert after.loc["C2", "last_dispute"] == "dispute on I3 (pricing) opened 2024-03-01, open"


def test_worklist_filters_by_segment_and_numbers_the_rows_it_keeps():
    ledger = tiny_ledger()
    items, customers = scored_tiny("2024-04-10")
    small = worklist(ledger, pd.Timestamp("2024-04-10"), items, customers, POLICY, segment="small")
    assert list(small["customer_id"]) == ["C2"]
    assert list(small["rank"]) == [1]
    assert worklist(ledger, pd.Timestamp("2024-04-10"), items, customers, POLICY, top=1)["customer_id"].tolist() == ["C1"]


def test_worklist_by_collector_needs_a_collector_column():
    ledger = tiny_ledger()
    items, customers = scored_tiny("2024-04-10")
    with pytest.raises(ValueError, match="no collector column"):
        worklist(ledger, pd.Timestamp("2024-04-10"), items, customers, POLICY, collector="Anna")
    with_collectors = ledger.replace(customers=ledger.customers.assign(collector=["Anna", "Ben"]))
    table = worklist(with_collectors, pd.Timestamp("2024-04-10"), items, customers, POLICY, collector="Ben")
    assert list(table["customer_id"]) == ["C2"]


def test_worklist_of_an_empty_ledger_is_empty():
    ledger = tiny_ledger()
    items, customers = scored_tiny("2024-04-10")
    table = worklist(ledger, pd.Timestamp("2024-04-10"), items.iloc[0:0], customers, POLICY)
    assert table.empty and "reason_1" in table


def test_policy_file_rejects_unknown_keys(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("horizon_days: 30\nbroken_promis_weight: 2\n")
    with pytest.raises(WorklistPolicyError, match="broken_promis_weight"):
        load_worklist_policy(path)
    path.write_text("deterioration_weight: 0.5\n")
    with pytest.raises(WorklistPolicyError, match="deterioration_weight"):
        load_worklist_policy(path)
    assert load_worklist_policy().horizon_days == 30


def test_an_item_due_today_is_not_overdue_and_a_partial_payment_counts_what_is_left():
    ledger = tiny_ledger()
    # I2 (500, 300 paid on 1 March) is due on 2 March: not overdue that day, overdue the next.
    on_due_date, customers = scored_tiny("2024-03-02", p_unpaid=1.0)
    table = worklist(ledger, pd.Timestamp("2024-03-02"), on_due_date, customers, WorklistPolicy())
    assert "C1" not in set(table["customer_id"])
    day_after, customers = scored_tiny("2024-03-03", p_unpaid=1.0)
    table = worklist(ledger, pd.Timestamp("2024-03-03"), day_after, customers, WorklistPolicy()).set_index("customer_id")
    assert table.loc["C1", "overdue_amount_base"] == pytest.approx(200.0)
    assert table.loc["C1", "money_at_risk_base"] == pytest.approx(200.0)


def test_a_customer_with_only_unapplied_cash_is_not_chased():
    ledger = tiny_ledger()
    extra_customer = ledger.customers.iloc[[1]].assign(customer_id="C3", name="Cash Only Ltd")
    payment = ledger.payments.iloc[[2]].assign(payment_id="P9", customer_id="C3", amount=75.0, amount_base=75.0)
    ledger = ledger.replace(customers=pd.concat([ledger.customers, extra_customer], ignore_index=True),
                            payments=pd.concat([ledger.payments, payment], ignore_index=True))
    items, customers = feature_frames(ledger, pd.Timestamp("2024-04-10"))
    table = worklist(ledger, pd.Timestamp("2024-04-10"), items.assign(p_unpaid=0.5),
                     customers.assign(deteriorating=False), POLICY)
    assert "C3" not in set(table["customer_id"]) and list(table["customer_id"]) == ["C1", "C2"]


def ranked_worklist() -> pd.DataFrame:
    """Five ranked customers of two collectors and two segments."""
    return pd.DataFrame({"rank": [1, 2, 3, 4, 5], "customer_id": ["C1", "C2", "C3", "C4", "C5"],
                         "collector": ["Anna", "Ben", "Anna", "Anna", None],
                         "segment": ["retail", "retail", "wholesale", "retail", "retail"]})


def test_filtered_worklist_renumbers_the_ranks_of_what_is_left_then_takes_the_top():
    table = filtered_worklist(ranked_worklist(), collector="Anna", segment="retail")
    # Anna's retail customers are C1 and C4 (ranks 1 and 4 of everyone's): ranks 1 and 2 of hers.
    assert table["customer_id"].tolist() == ["C1", "C4"] and table["rank"].tolist() == [1, 2]
    assert filtered_worklist(ranked_worklist(), customers=frozenset({"C5", "C3"}), top=1)["customer_id"].tolist() == ["C3"]
    assert filtered_worklist(ranked_worklist())["rank"].tolist() == [1, 2, 3, 4, 5]


def test_filtered_worklist_takes_a_recorded_portfolio_over_the_collector_column():
    table = filtered_worklist(ranked_worklist(), collector="Anna", portfolio=["C2", "C5"])
    assert table["customer_id"].tolist() == ["C2", "C5"] and table["rank"].tolist() == [1, 2]
    with pytest.raises(WorklistFilterError, match="no collector column"):
        filtered_worklist(ranked_worklist().drop(columns="collector"), collector="Anna")
    assert issubclass(WorklistFilterError, BadInput)  # the API answers it as a 400, the CLI in one line


def ledger_with_big_debtor(*account_promises: tuple[str, float]) -> Ledger:
    """The tiny ledger plus C3, far overdue: K1 5,000 (due 1 Dec), K2 3,000 (15 Jan), K3 2,000 (1 Mar)
    and K4 1,000 not yet due on 10 April, within its credit limit; plus pending promises (id, amount)
    on C3's account."""
    ledger = tiny_ledger()
    customer = ledger.customers.iloc[[0]].assign(customer_id="C3", name="Kappa AG", credit_limit=50_000.0)
    due = dates("2023-12-01", "2024-01-15", "2024-03-01", "2024-05-01")
    invoices = pd.DataFrame({
        "invoice_id": ["K1", "K2", "K3", "K4"], "customer_id": "C3", "doc_type": "invoice",
        "invoice_date": due - pd.Timedelta(days=30), "due_date": due, "amount": [5000.0, 3000.0, 2000.0, 1000.0],
        "currency": "EUR", "amount_base": [5000.0, 3000.0, 2000.0, 1000.0], "cleared_date": dates(*[None] * 4),
    })
    promises = pd.DataFrame({
        "promise_id": [promise_id for promise_id, _ in account_promises], "customer_id": "C3", "invoice_id": None,
        "made_date": pd.Timestamp("2024-04-05"), "promised_date": pd.Timestamp("2024-04-20"),
        "amount": [amount for _, amount in account_promises],
        "kept": pd.array([None] * len(account_promises), dtype="boolean"),
    })
    return ledger.replace(customers=pd.concat([ledger.customers, customer], ignore_index=True),
                          invoices=pd.concat([ledger.invoices, invoices], ignore_index=True),
                          promises=pd.concat([ledger.promises, promises], ignore_index=True))


def worklist_of(ledger: Ledger, as_of: str = "2024-04-10") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The worklist by customer and the items with their hold reasons, at P(unpaid) = 0.5 for every item."""
    items, customers = feature_frames(ledger, pd.Timestamp(as_of))
    items, customers = items.assign(p_unpaid=0.5), customers.assign(deteriorating=False)
    table = worklist(ledger, pd.Timestamp(as_of), items, customers, POLICY).set_index("customer_id")
    holds = item_rule_inputs(ledger, pd.Timestamp(as_of), items, POLICY).set_index("invoice_id")["hold_reason"]
    return table, holds


def test_a_small_promise_on_the_account_does_not_hold_a_large_overdue_balance():
    without, _ = worklist_of(ledger_with_big_debtor())
    table, holds = worklist_of(ledger_with_big_debtor(("PK", 100.0)))
    # 100 pays none of K1 (5,000, the oldest), so nothing is held: (5,000 + 3,000 + 2,000 + 1,000) x 0.5.
    assert (holds[["K1", "K2", "K3", "K4"]] == "").all()
    assert table.loc["C3", "rank"] == 1 and table.loc["C3", "status"] == ACTIVE
    assert table.loc["C3", "money_at_risk_base"] == pytest.approx(5500.0)
    assert table.loc["C3", "money_at_risk_base"] == pytest.approx(without.loc["C3", "money_at_risk_base"])
    assert table.loc["C3", "score"] == pytest.approx(without.loc["C3", "score"])


def test_a_promise_on_the_account_holds_exactly_the_oldest_items_it_pays():
    table, holds = worklist_of(ledger_with_big_debtor(("PK", 8000.0)))
    # 8,000 = K1 + K2: both held; K3 (overdue) and K4 (not yet due) stay at risk: (2,000 + 1,000) x 0.5.
    assert holds["K1"] == holds["K2"] == "pending promise PK to pay by 2024-04-20"
    assert holds["K3"] == holds["K4"] == ""
    assert table.loc["C3", "status"] == ACTIVE and table.loc["C3", "rank"] == 1
    assert table.loc["C3", "money_at_risk_base"] == pytest.approx(1500.0)
    assert table.loc["C3", "overdue_amount_base"] == pytest.approx(10_000.0)
    # Two promises add up to the same cover.
    _, split = worklist_of(ledger_with_big_debtor(("PK", 3000.0), ("PL", 5000.0)))
    assert split["K2"] == "pending promise PK to pay by 2024-04-20; pending promise PL to pay by 2024-04-20"
    assert split["K3"] == ""


def test_a_broken_promise_then_a_small_account_promise_stays_escalated():
    # 10 April: C1's PR1 (200 on I2 by 15 March) is broken; on 5 April C1 promised 50 on the account.
    ledger = tiny_ledger()
    small = pd.DataFrame({"promise_id": ["PR2"], "customer_id": ["C1"], "invoice_id": [None],
                          "made_date": dates("2024-04-05"), "promised_date": dates("2024-04-20"),
                          "amount": [50.0], "kept": pd.array([None], dtype="boolean")})
    table, holds = worklist_of(ledger.replace(promises=pd.concat([ledger.promises, small], ignore_index=True)))
    # 50 does not pay I2 (200 open): I2 is not held, C1 is still escalated at 200 x 0.5 x 3.
    assert holds["I2"] == ""
    assert table.loc["C1", "status"] == ESCALATED and table.loc["C1", "rank"] == 1
    assert table.loc["C1", "score"] == pytest.approx(200 * 0.5 * 3)
    # A promise on the account that pays I2 in full does hold it.
    enough = small.assign(amount=200.0)
    table, holds = worklist_of(ledger.replace(promises=pd.concat([ledger.promises, enough], ignore_index=True)))
    assert holds["I2"] == "pending promise PR2 to pay by 2024-04-20"
    assert table.loc["C1", "status"] == HELD


def test_a_promise_on_an_invoice_still_holds_that_invoice_in_the_worklist():
    _, holds = worklist_of(tiny_ledger(), "2024-03-10")
    # PR1 promises 200 on I2 (open 200) by 15 March: I2 is held; C2's I4 is not.
    assert holds["I2"] == "pending promise PR1 to pay by 2024-03-15"
    assert holds["I4"] == ""
