"""Dunning proposal as of 2024-03-31 for a hand-built ledger: levels in order, holds, minimum, interest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ledger import Ledger
from rules.dunning import DunningPolicy, PolicyError, dunning_proposal, load_policy
from tests.ledgers import dates

AS_OF = pd.Timestamp("2024-03-31")
POLICY = {
    "name": "test", "minimum_amount": 50.0,
    "levels": [
        {"level": 1, "min_days_past_due": 10, "channel": "email", "template":
         "Dear {{ customer_name }}: {% for i in items %}{{ i.invoice_id }} {{ '%.2f'|format(i.open_amount) }};{% endfor %}"},
        {"level": 2, "min_days_past_due": 30, "min_days_since_previous": 14, "channel": "letter", "fee": 5.0,
         "interest_rate": 0.10, "template": "Second notice, {{ customer_name }}: {{ '%.2f'|format(total_due) }}"},
        {"level": 3, "min_days_past_due": 60, "min_days_since_previous": 14, "channel": "call", "fee": 10.0,
         "interest_rate": 0.10, "template": "Call {{ customer_id }}"},
    ],
}


def dunning_ledger() -> Ledger:
    """A: one invoice per rule; B: below the minimum; C: customer block; D: pending promise; E: invoice block."""
    ids = ["A1", "A2", "A3", "A4", "A5", "A6", "A8", "B1", "C1", "D1", "E1"]
    customers = pd.DataFrame({
        "customer_id": list("ABCDE"), "name": ["Alpha", "Beta", "Gamma", "Delta", "Echo"], "segment": ["mid"] * 5,
        "country": ["DE"] * 5, "currency": ["EUR"] * 5, "payment_terms_days": [30] * 5,
        "credit_limit": [9000.0] * 5, "created_date": dates(*["2023-01-01"] * 5),
        "dunning_block": [False, False, True, False, False],
    })
    due = dates("2024-03-01", "2024-02-01", "2024-01-01", "2024-02-15", "2024-03-05", "2024-03-25", "2023-12-01",
                "2024-03-01", "2024-03-01", "2024-03-01", "2024-03-01")
    invoices = pd.DataFrame({
        "invoice_id": ids, "customer_id": [i[0] for i in ids], "doc_type": ["invoice"] * 11,
        "invoice_date": due - pd.Timedelta(days=30), "due_date": due,
        "amount": [1000.0, 730.0, 400.0, 500.0, 250.0, 90.0, 80.0, 40.0, 300.0, 300.0, 300.0],
        "currency": ["EUR"] * 11,
        "amount_base": [1000.0, 730.0, 400.0, 500.0, 250.0, 90.0, 80.0, 40.0, 300.0, 300.0, 300.0],
        "cleared_date": dates(*[None] * 11),
        "dunning_block": [False] * 10 + [True],
    })
    payments = pd.DataFrame({
        "payment_id": ["PA4", "PA5"], "customer_id": ["A", "A"], "received_date": dates("2024-03-01", "2024-03-20"),
        "amount": [200.0, 250.0], "currency": ["EUR", "EUR"], "amount_base": [200.0, 250.0],
    })
    applications = pd.DataFrame({"payment_id": ["PA4", "PA5"], "invoice_id": ["A4", "A5"],
                                  "applied_date": dates("2024-03-01", "2024-03-20"), "amount": [200.0, 250.0]})
    disputes = pd.DataFrame({
        "dispute_id": ["DA4", "DA1"], "invoice_id": ["A4", "A1"], "opened_date": dates("2024-03-05", "2024-03-02"),
        "resolved_date": dates(None, "2024-03-10"), "reason": ["quality", "pricing"], "amount": [300.0, 1000.0],
    })
    promises = pd.DataFrame({
        "promise_id": ["PD", "PA"], "customer_id": ["D", "A"], "invoice_id": [None, "A1"],
        "made_date": dates("2024-03-20", "2024-03-01"), "promised_date": dates("2024-04-05", "2024-03-15"),
        "amount": [300.0, 1000.0], "kept": pd.array([None, None], dtype="boolean"),
    })
    notices = pd.DataFrame({
        "invoice_id": ["A2", "A3", "A3", "A8", "A8", "A8"], "level": [1, 1, 2, 1, 2, 3],
        "issued_date": dates("2024-03-10", "2024-02-01", "2024-03-25", "2024-01-01", "2024-02-01", "2024-03-01"),
    })
    return Ledger(customers, invoices, payments, applications, disputes=disputes, promises=promises,
                  dunning_notices=notices)


def proposal() -> pd.DataFrame:
    return dunning_proposal(dunning_ledger(), AS_OF, DunningPolicy.model_validate(POLICY)).set_index("invoice_id")


def test_levels_are_reached_in_order():
    result = proposal()
    # A1 is 30 days past due with no notice: level 1, not 2. Its dispute was resolved and its promise broken.
    assert (result.loc["A1", "level"], result.loc["A1", "status"], result.loc["A1", "channel"]) == (1, "proposed", "email")
    # A2: 59 days past due, level 1 issued 21 days ago -> level 2.
    assert (result.loc["A2", "level"], result.loc["A2", "status"]) == (2, "proposed")
    # A3: level 2 issued 6 days ago (< 14); A6: 6 days past due (< 10); A8: the final level was issued;
    # A5: paid. None is proposed.
    assert not {"A3", "A5", "A6", "A8"} & set(result.index)


def test_fee_and_simple_daily_interest():
    a2 = proposal().loc["A2"]
    # 730 x 10% x 59 days / 365 = 11.80; fee of level 2 = 5.
    assert a2["interest"] == pytest.approx(730 * 0.10 * 59 / 365)
    assert a2["fee"] == 5.0
    assert proposal().loc["A1", "interest"] == 0.0


def test_holds_say_why():
    result = proposal()
    # A4 is 500 - 200 paid = 300 open, in open dispute.
    assert result.loc["A4", "open_amount"] == 300.0
    assert (result.loc["A4", "status"], result.loc["A4", "reason"]) == ("held", "open dispute DA4 (quality)")
    assert result.loc["C1", "reason"] == "dunning block on customer"
    assert result.loc["D1", "reason"] == "pending promise PD to pay by 2024-04-05"
    assert result.loc["E1", "reason"] == "dunning block on invoice"
    assert (result.loc[["A4", "C1", "D1", "E1"], ["fee", "interest"]] == 0).all().all()
    assert (result.loc[["A4", "C1", "D1", "E1"], "letter_text"] == "").all()


def test_below_the_minimum_is_skipped():
    b1 = proposal().loc["B1"]
    assert b1["status"] == "skipped" and "below the minimum of 50.00" in b1["reason"]


def test_one_letter_per_customer_and_level():
    result = proposal()
    assert result.loc["A1", "letter_text"] == "Dear Alpha: A1 1000.00;"
    # Level 2 total due = 730 + 5 fee + 11.80 interest.
    assert result.loc["A2", "letter_text"] == "Second notice, Alpha: 746.80"


def test_a_notice_issued_after_the_date_does_not_count():
    ledger = dunning_ledger()
    later = pd.concat([ledger.dunning_notices, pd.DataFrame({"invoice_id": ["A1"], "level": [1],
                                                             "issued_date": dates("2024-04-02")})])
    result = dunning_proposal(ledger.replace(dunning_notices=later), AS_OF, DunningPolicy.model_validate(POLICY))
    assert result.set_index("invoice_id").loc["A1", "level"] == 1


def test_policy_validation(tmp_path: Path):
    assert len(load_policy(Path("configs/dunning/default.yaml")).levels) == 4
    with pytest.raises(ValueError, match="extra"):
        DunningPolicy.model_validate({**POLICY, "minimun_amount": 5})
    swapped = {**POLICY, "levels": [POLICY["levels"][1], POLICY["levels"][0]]}
    with pytest.raises(ValueError, match="in order"):
        DunningPolicy.model_validate(swapped)
    bad = tmp_path / "bad.yaml"
    bad.write_text("levels:\n  - level: 1\n    min_days_past_due: 5\n    channel: fax\n    template: x\n")
    with pytest.raises(PolicyError, match="channel"):
        load_policy(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("levels:\n  - level: 1\n    min_days_past_due: 5\n    channel: email\n    template: '{{ x'\n")
    with pytest.raises(PolicyError, match="template"):
        load_policy(broken)
