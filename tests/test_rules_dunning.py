"""Dunning proposal as of 2024-03-31 for a hand-built ledger: levels in order, holds, minimum, interest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.asof import known_at
from ledger import Ledger
from rules.aging import MONEY_TOLERANCE
from rules.dunning import DunningPolicy, PolicyError, dunning_proposal, hold_reasons, load_policy
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


def undated(invoice_id: str, level: int, known: str) -> pd.DataFrame:
    """A level imported without its notice date (FBL5N without Letzte Mahnung), known since `known`."""
    return pd.DataFrame({"invoice_id": [invoice_id], "level": [level], "issued_date": dates(None),
                         "known_date": dates(known)})


@pytest.mark.parametrize(("known", "status", "reason"), [
    # Known 10 days before: the notice may have gone out yesterday, so level 2 waits for its 14 days.
    ("2024-03-21", "held", "level 1 sent on an unknown date (imported without its dunning date, known since "
                           "2024-03-21): level 2 waits until 2024-04-04"),
    # Known 14 days before: it went out 14 days ago or earlier, so level 2 is due however early it was.
    ("2024-03-17", "proposed", ""),
])
def test_a_level_without_its_notice_date_is_kept_and_the_next_waits_from_the_day_it_became_known(
        known, status, reason):
    ledger = dunning_ledger()
    ledger = ledger.replace(dunning_notices=pd.concat([ledger.dunning_notices, undated("A1", 1, known)],
                                                      ignore_index=True))
    a1 = dunning_proposal(ledger, AS_OF, DunningPolicy.model_validate(POLICY)).set_index("invoice_id").loc["A1"]
    # Never level 1 again: the level is reached, only its date is unknown.
    assert (a1["last_level"], a1["level"], a1["status"], a1["reason"]) == (1, 2, status, reason)
    assert pd.isna(a1["last_issued_date"])


def test_an_undated_level_known_only_after_the_date_does_not_count():
    ledger = dunning_ledger()
    ledger = ledger.replace(dunning_notices=pd.concat([ledger.dunning_notices, undated("A1", 2, "2024-04-02")],
                                                      ignore_index=True))
    a1 = dunning_proposal(ledger, AS_OF, DunningPolicy.model_validate(POLICY)).set_index("invoice_id").loc["A1"]
    assert (a1["last_level"], a1["level"]) == (0, 1)


def test_an_undated_level_and_another_hold_give_both_reasons():
    ledger = dunning_ledger()
    # A4 (in open dispute DA4) is 45 days past due: level 2 is reached by days, waits on the undated level 1.
    ledger = ledger.replace(dunning_notices=pd.concat([ledger.dunning_notices, undated("A4", 1, "2024-03-25")],
                                                      ignore_index=True))
    a4 = dunning_proposal(ledger, AS_OF, DunningPolicy.model_validate(POLICY)).set_index("invoice_id").loc["A4"]
    assert a4["reason"] == ("level 1 sent on an unknown date (imported without its dunning date, known since "
                            "2024-03-25): level 2 waits until 2024-04-08; open dispute DA4 (quality)")


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


def account_ledger() -> Ledger:
    """K (EUR): a paid invoice, four overdue (two due the same day), a credit memo, one not yet due.
    U (USD): three USD invoices at different rates, one paid. M (EUR): one USD and one EUR invoice."""
    rows = [  # invoice, customer, due date, amount, currency, amount_base
        ("K0", "K", "2023-11-01", 700.0, "EUR", 700.0),      # paid on 1 Nov
        ("K1", "K", "2023-12-01", 5000.0, "EUR", 5000.0),    # 121 days past due on 31 March
        ("K2", "K", "2024-01-15", 3000.0, "EUR", 3000.0),    # 76
        ("K3a", "K", "2024-02-20", 2000.0, "EUR", 2000.0),   # 40, same day as K3b: by invoice_id
        ("K3b", "K", "2024-02-20", 500.0, "EUR", 500.0),     # 40
        ("KC", "K", "2024-01-01", -400.0, "EUR", -400.0),    # credit memo
        ("K4", "K", "2024-04-30", 1000.0, "EUR", 1000.0),    # not yet due
        ("U0", "U", "2023-11-01", 1000.0, "USD", 600.0),     # paid; drags the customer's USD rate down
        ("U1", "U", "2024-01-01", 1000.0, "USD", 900.0),
        ("U2", "U", "2024-02-01", 1000.0, "USD", 950.0),
        ("M1", "M", "2024-01-01", 1000.0, "USD", 900.0),
        ("M2", "M", "2024-02-01", 500.0, "EUR", 500.0),
    ]
    invoices = pd.DataFrame(rows, columns=["invoice_id", "customer_id", "due_date", "amount", "currency",
                                           "amount_base"])
    invoices["due_date"] = pd.to_datetime(invoices["due_date"])
    invoices = invoices.assign(doc_type=["credit_memo" if i == "KC" else "invoice" for i in invoices["invoice_id"]],
                               invoice_date=invoices["due_date"] - pd.Timedelta(days=30),
                               cleared_date=pd.NaT)
    customers = pd.DataFrame({
        "customer_id": ["K", "U", "M"], "name": ["Kappa", "Upsilon", "Mu"], "segment": ["mid"] * 3,
        "country": ["DE", "US", "DE"], "currency": ["EUR", "USD", "EUR"], "payment_terms_days": [30] * 3,
        "credit_limit": [9000.0] * 3, "created_date": dates(*["2023-01-01"] * 3),
    })
    payments = pd.DataFrame({
        "payment_id": ["PK0", "PU0"], "customer_id": ["K", "U"], "received_date": dates("2023-11-01", "2023-11-01"),
        "amount": [700.0, 1000.0], "currency": ["EUR", "USD"], "amount_base": [700.0, 600.0],
    })
    applications = pd.DataFrame({"payment_id": ["PK0", "PU0"], "invoice_id": ["K0", "U0"],
                                 "applied_date": dates("2023-11-01", "2023-11-01"), "amount": [700.0, 1000.0]})
    return Ledger(customers, invoices, payments, applications)


def account_holds(*promises: tuple) -> pd.Series:
    """hold_reasons on 31 March for every known document of `account_ledger` under pending promises
    (promise_id, customer_id, invoice_id or None, amount[, currency]) made 25 March, due 15 April."""
    frame = pd.DataFrame([promise[:4] for promise in promises],
                         columns=["promise_id", "customer_id", "invoice_id", "amount"])
    frame = frame.assign(made_date=pd.Timestamp("2024-03-25"), promised_date=pd.Timestamp("2024-04-15"),
                         kept=pd.array([None] * len(frame), dtype="boolean"))
    if any(len(promise) > 4 for promise in promises):
        frame["currency"] = [promise[4] if len(promise) > 4 else None for promise in promises]
    known = known_at(account_ledger().replace(promises=frame), AS_OF)
    documents = known.invoices[["invoice_id", "customer_id"]]
    reasons = hold_reasons(known, documents, AS_OF, MONEY_TOLERANCE)
    return reasons.set_axis(documents["invoice_id"].to_numpy())


def held(reasons: pd.Series) -> list[str]:
    return sorted(reasons.index[reasons != ""])


def test_an_account_promise_smaller_than_the_oldest_item_holds_nothing():
    # The oldest overdue item K1 is 5,000: a promise of 100 pays none of it, and none after it.
    assert held(account_holds(("P1", "K", None, 100.0))) == []


@pytest.mark.parametrize(("amount", "expected"), [
    (8000.0, ["K1", "K2"]),                    # exactly the two oldest: 5,000 + 3,000
    (8000.0 - 0.004, ["K1", "K2"]),            # within the money tolerance
    (7999.0, ["K1"]),                          # K2 only partly covered: not held
    (10_000.0, ["K1", "K2", "K3a"]),           # K3a before K3b (same due date, by invoice_id); 10,500 > 10,000
    (1_000_000.0, ["K1", "K2", "K3a", "K3b"]),  # never K4 (not yet due), the credit memo or the paid K0
])
def test_an_account_promise_holds_the_oldest_overdue_items_it_covers_whole(amount, expected):
    reasons = account_holds(("P1", "K", None, amount))
    assert held(reasons) == expected
    assert reasons["K1"] == "pending promise P1 to pay by 2024-04-15"


def test_account_promises_of_a_customer_add_up_and_each_is_named():
    reasons = account_holds(("P1", "K", None, 3000.0), ("P2", "K", None, 5000.0))
    assert held(reasons) == ["K1", "K2"]
    assert reasons["K2"] == "pending promise P1 to pay by 2024-04-15; pending promise P2 to pay by 2024-04-15"


def test_a_promise_on_an_invoice_still_holds_that_invoice_whatever_its_amount():
    reasons = account_holds(("P1", "K", "K4", 10.0), ("P2", "K", None, 100.0))
    assert held(reasons) == ["K4"]
    assert reasons["K4"] == "pending promise P1 to pay by 2024-04-15"


def test_an_account_promise_compares_document_amounts_when_all_is_in_one_currency():
    # U promises 2,000 USD; U1 + U2 = 2,000 USD. In base currency at U's USD rate (600 + 900 + 950) /
    # 3,000 = 0.8167 the promise would be 1,633 EUR against 900 + 950 = 1,850 EUR and U2 would be left out.
    assert held(account_holds(("P1", "U", None, 2000.0))) == ["U1", "U2"]
    assert held(account_holds(("P1", "U", None, 1999.0))) == ["U1"]


def test_an_account_promise_compares_base_amounts_across_currencies():
    # M's items are in USD and EUR. 1,400 EUR (M's currency, rate 1) covers M1 (900 EUR) + M2 (500 EUR).
    assert held(account_holds(("P1", "M", None, 1400.0))) == ["M1", "M2"]
    assert held(account_holds(("P1", "M", None, 1399.0))) == ["M1"]
    # A promise in USD is converted at M's USD rate (0.9): 1,000 USD = 900 EUR covers M1 alone.
    assert held(account_holds(("P1", "M", None, 1000.0, "USD"))) == ["M1"]
    # M has no CHF document, so there is no rate for a CHF promise: it covers nothing, the EUR one still counts.
    assert held(account_holds(("P1", "M", None, 1_000_000.0, "CHF"), ("P2", "M", None, 900.0, "EUR"))) == ["M1"]


def test_an_account_promise_holds_the_same_items_in_the_proposal_as_in_the_ledger():
    # A's overdue items, oldest first: A8 80 (final level issued), A3 400 (level 2 six days ago), A2 730,
    # A4 300 open, A1 1,000. A pending promise of 800 on the account covers A8 + A3 = 480, not A2 (1,210):
    # A8 and A3 are not dunning rows, yet the promise is spent on them, so A2 is still proposed.
    ledger = dunning_ledger()
    promise = pd.DataFrame({"promise_id": ["PX"], "customer_id": ["A"], "invoice_id": [None],
                            "made_date": dates("2024-03-25"), "promised_date": dates("2024-04-10"),
                            "amount": [800.0], "kept": pd.array([None], dtype="boolean")})
    ledger = ledger.replace(promises=pd.concat([ledger.promises, promise], ignore_index=True))
    result = dunning_proposal(ledger, AS_OF, DunningPolicy.model_validate(POLICY)).set_index("invoice_id")
    assert (result.loc["A2", "status"], result.loc["A2", "level"]) == ("proposed", 2)
    assert result.loc["A1", "status"] == "proposed"
    reasons = hold_reasons(known_at(ledger, AS_OF), ledger.invoices, AS_OF, MONEY_TOLERANCE)
    held_by_promise = ledger.invoices.loc[reasons.str.contains("PX"), "invoice_id"]
    assert sorted(held_by_promise) == ["A3", "A8"]


def test_account_promise_holds_read_only_the_customers_own_rows():
    # The worklist re-derives one customer's rows from its slice of the ledger: the holds must not change.
    promises = ("P1", "K", None, 8000.0), ("P2", "M", None, 1000.0, "USD"), ("P3", "U", None, 2000.0)
    whole = account_holds(*promises)
    frame = pd.DataFrame([promise[:4] for promise in promises], columns=["promise_id", "customer_id", "invoice_id",
                                                                          "amount"])
    frame = frame.assign(made_date=pd.Timestamp("2024-03-25"), promised_date=pd.Timestamp("2024-04-15"),
                         kept=pd.array([None] * 3, dtype="boolean"), currency=[None, "USD", None])
    ledger = account_ledger().replace(promises=frame)
    for customer in ("K", "M", "U"):
        own = ledger.invoices["customer_id"] == customer
        alone = ledger.replace(customers=ledger.customers[ledger.customers["customer_id"] == customer],
                               invoices=ledger.invoices[own],
                               payments=ledger.payments[ledger.payments["customer_id"] == customer],
                               payment_applications=ledger.payment_applications[
                                   ledger.payment_applications["invoice_id"].isin(ledger.invoices.loc[own, "invoice_id"])],
                               promises=frame[frame["customer_id"] == customer])
        known = known_at(alone, AS_OF)
        reasons = hold_reasons(known, known.invoices, AS_OF, MONEY_TOLERANCE)
        assert reasons.tolist() == whole[known.invoices["invoice_id"]].tolist()
