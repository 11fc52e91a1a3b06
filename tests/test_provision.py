"""The bad-debt provision (issue 23) on a ledger small enough to compute by hand.

Buckets Current, 1-30, 30+ (limits 0, 30); look-back Jan 31 -> Feb 29 -> Mar 31 -> Apr 30 2024.
  A  C1  1,000 due Jan 31: 400 paid Feb 10, the 600 left written off Apr 15   Current -> 1-30 -> 30+ -> gone
  B  C2    500 due Feb 14: paid in full Mar 10                               Current -> 1-30 -> paid
  C  C2    800 due Apr 20 (60 days' terms), open at the close                Current -> Current -> 1-30
  D  C1    100 USD = 200 EUR due Apr 4, open at the close                    Current -> 1-30
  CM C1    -50 credit memo of Apr 20, open at the close                      1-30
  E  C3    300 due Oct 1 2023: written off Feb 15, 100 recovered Apr 10     30+ -> gone (a recovery after)

Flows (base currency):  Current B 1,500 + 800 + 1,000 = 3,300, rolled 600 + 500 + 800 + 200 = 2,100, stayed 800
                        1-30    B 600 + 500 = 1,100, rolled 600                  30+  B 300 + 600 = 900, written off 900
Loss rates: 30+ = 900 / 900 = 1;  1-30 = 600 x 1 / 1,100 = 0.545454...;  Current = 2,100 x 0.5454.. / (3,300 - 800)
= 0.458181...
"""

from __future__ import annotations

import pandas as pd
import pytest

from ledger import Ledger
from provision import ProvisionPolicy
from provision.matrix import by_customer, matrix_items
from provision.model_ecl import loss_given_default, model_ecl
from provision.movement import movement_schedule, recoveries_between, written_off_between
from provision.report import provision_backtest, provision_report, write_workbook
from provision.roll_rates import loss_rates, open_balances
from tests.ledgers import dates

CLOSE = pd.Timestamp("2024-04-30")
L_LATE, L_1_30 = 1.0, 600 / 1100
L_CURRENT = 2100 * L_1_30 / 2500


def hand_ledger(dispute_on_c: bool = False) -> Ledger:
    customers = pd.DataFrame({
        "customer_id": ["C1", "C2", "C3"], "name": ["Acme", "Bolt", "Crest"], "segment": ["mid", "mid", "small"],
        "country": ["DE", "DE", "FR"], "currency": ["EUR"] * 3, "payment_terms_days": [30, 30, 30],
        "credit_limit": [10_000.0] * 3, "created_date": dates("2023-01-01", "2023-01-01", "2023-01-01")})
    invoices = pd.DataFrame({
        "invoice_id": ["A", "B", "C", "D", "CM", "E"],
        "customer_id": ["C1", "C2", "C2", "C1", "C1", "C3"],
        "doc_type": ["invoice"] * 4 + ["credit_memo", "invoice"],
        "invoice_date": dates("2024-01-10", "2024-01-15", "2024-02-20", "2024-03-05", "2024-04-20", "2023-09-01"),
        "due_date": dates("2024-01-31", "2024-02-14", "2024-04-20", "2024-04-04", "2024-04-20", "2023-10-01"),
        "amount": [1000.0, 500.0, 800.0, 100.0, -50.0, 300.0],
        "currency": ["EUR", "EUR", "EUR", "USD", "EUR", "EUR"],
        "amount_base": [1000.0, 500.0, 800.0, 200.0, -50.0, 300.0],
        "cleared_date": dates("2024-04-15", "2024-03-10", None, None, None, "2024-02-15")})
    payments = pd.DataFrame({
        "payment_id": ["P1", "P2", "P3"], "customer_id": ["C1", "C2", "C3"],
        "received_date": dates("2024-02-10", "2024-03-10", "2024-04-10"), "amount": [400.0, 500.0, 100.0],
        "currency": ["EUR"] * 3, "amount_base": [400.0, 500.0, 100.0]})
    applications = pd.DataFrame({
        "payment_id": ["P1", "P2", "P3"], "invoice_id": ["A", "B", "E"],
        "applied_date": dates("2024-02-10", "2024-03-10", "2024-04-10"), "amount": [400.0, 500.0, 100.0]})
    writeoffs = pd.DataFrame({"invoice_id": ["A", "E"], "date": dates("2024-04-15", "2024-02-15"),
                              "amount": [600.0, 300.0]})
    disputes = pd.DataFrame({"dispute_id": ["D1"] if dispute_on_c else [], "invoice_id": ["C"] if dispute_on_c else [],
                             "opened_date": dates("2024-04-25") if dispute_on_c else dates(),
                             "resolved_date": dates(None) if dispute_on_c else dates(),
                             "reason": ["pricing"] if dispute_on_c else [], "amount": [800.0] if dispute_on_c else []})
    return Ledger(customers, invoices, payments, applications, disputes=disputes, writeoffs=writeoffs,
                  base_currency="EUR", source="tests")


def policy(**overrides) -> ProvisionPolicy:
    return ProvisionPolicy(**({"lookback_months": 3, "aging_limits": (0, 30), "by_segment": False,
                               "lgd_outcome_months": 1, "lgd_min_observations": 1, "backtest_horizon_months": 3}
                              | overrides))


def rates_by_bucket(table: pd.DataFrame, column: str = "loss_rate_used") -> dict[str, float]:
    overall = table[table["segment"] == "(all)"]
    return dict(zip(overall["bucket"].astype(str), overall[column], strict=True))


def test_roll_rates_follow_each_bucket_to_write_off_as_computed_by_hand():
    table = loss_rates(hand_ledger(), CLOSE, policy())
    flows = table.set_index("bucket")
    assert flows.loc["Current", ["balance", "rolled", "stayed", "written_off"]].tolist() == [3300, 2100, 800, 0]
    assert flows.loc["1-30", ["balance", "rolled", "written_off"]].tolist() == [1100, 600, 0]
    assert flows.loc["30+", ["balance", "written_off", "observations"]].tolist() == [900, 900, 2]
    assert rates_by_bucket(table) == pytest.approx({"Current": L_CURRENT, "1-30": L_1_30, "30+": L_LATE})
    assert flows.loc["1-30", "roll_rate"] == pytest.approx(600 / 1100)


def test_the_forward_looking_adjustment_scales_every_rate_and_caps_at_one():
    adjusted = rates_by_bucket(loss_rates(hand_ledger(), CLOSE, policy(forward_looking_adjustment=0.1)))
    assert adjusted == pytest.approx({"Current": L_CURRENT * 1.1, "1-30": L_1_30 * 1.1, "30+": 1.0})


def test_an_empty_bucket_has_no_history_and_takes_a_full_loss():
    table = loss_rates(hand_ledger(), CLOSE, policy(aging_limits=(0, 30, 150)))
    last = table[(table["segment"] == "(all)") & (table["bucket"] == "150+")].iloc[0]
    assert last["observations"] == 0 and last["loss_rate_used"] == 1.0 and last["source"] == "no history: 100%"
    # 31-150 is A (600) and E (300) at their month ends, both written off: its own history says 1.
    assert rates_by_bucket(table)["31-150"] == pytest.approx(1.0)


def test_the_matrix_books_open_amount_times_rate_in_base_currency_with_credit_memos_netted():
    items = matrix_items(hand_ledger(), CLOSE, loss_rates(hand_ledger(), CLOSE, policy()), policy())
    ecl = dict(zip(items["invoice_id"], items["ecl"], strict=True))
    # E is 100 below zero after its recovery: cash on account, not exposure.
    assert set(ecl) == {"C", "D", "CM"}
    assert ecl == pytest.approx({"C": 800 * L_1_30, "D": 200 * L_1_30, "CM": -50 * L_1_30})  # D in EUR, not USD
    customers = by_customer(items).set_index("customer_id")
    assert customers.loc["C1", "ecl"] == pytest.approx(150 * L_1_30) and customers.loc["C1", "exposure"] == 150


def test_a_disputed_item_takes_the_policys_rate():
    ledger = hand_ledger(dispute_on_c=True)
    rates = loss_rates(ledger, CLOSE, policy())
    as_bucket = matrix_items(ledger, CLOSE, rates, policy()).set_index("invoice_id")
    fixed = matrix_items(ledger, CLOSE, rates, policy(disputed=0.25)).set_index("invoice_id")
    assert as_bucket.loc["C", "ecl"] == pytest.approx(800 * L_1_30) and as_bucket.loc["C", "basis"] == "disputed"
    assert fixed.loc["C", "ecl"] == pytest.approx(200.0) and fixed.loc["D", "ecl"] == pytest.approx(200 * L_1_30)


def test_model_ecl_is_exposure_times_pd_times_the_lgd_the_ledger_recovered():
    ledger = hand_ledger()
    lgd = loss_given_default(ledger, CLOSE, policy())
    # Only E's customer was 90+ days past due (Jan 31: 122 days) with a month of outcome known: 300 of 300 lost.
    assert (lgd["lgd"], lgd["defaulted_customers"], lgd["source"]) == (1.0, 1, "ledger recoveries")
    items = open_balances(ledger, CLOSE, (0, 30))
    table = model_ecl(items, pd.Series({"C1": 0.2, "C2": 0.5}), lgd["lgd"]).set_index("customer_id")
    assert table.loc["C1", "ecl"] == pytest.approx(150 * 0.2) and table.loc["C2", "ecl"] == pytest.approx(800 * 0.5)
    few = loss_given_default(ledger, CLOSE, policy(lgd_min_observations=2, default_lgd=0.4))
    assert few["lgd"] == 0.4 and few["measured_lgd"] == 1.0


def test_the_movement_schedule_adds_up_with_a_write_off_and_a_recovery():
    ledger = hand_ledger()
    start = pd.Timestamp("2024-01-31")
    assert written_off_between(ledger, start, CLOSE) == 900.0  # E on Feb 15, A on Apr 15
    assert recoveries_between(ledger, start, CLOSE) == 100.0  # E's 100 came after its write-off
    lines = movement_schedule(ledger, start, CLOSE, opening=1000.0, closing=400.0, method="m").set_index("line")
    amounts = lines["amount_base"]
    # 400 - 1,000 + 900 - 100 = 200 to charge.
    assert amounts["charge for the period"] == 200.0 and amounts["release"] == 0.0
    assert amounts[["opening allowance", "charge for the period", "release", "written off against the allowance",
                    "recoveries"]].sum() == pytest.approx(amounts["closing allowance"])
    released = movement_schedule(ledger, start, CLOSE, opening=2000.0, closing=400.0, method="m").set_index("line")
    assert released.loc["release", "amount_base"] == -800.0  # 400 - 2,000 + 900 - 100


def test_the_report_and_its_workbook_show_both_methods(tmp_path):
    from openpyxl import load_workbook

    report = provision_report(hand_ledger(), CLOSE, policy(), lambda day: pd.Series({"C1": 0.2, "C2": 0.5}),
                              start=pd.Timestamp("2024-03-31"))
    totals = report.summary.set_index("method")["ecl_base"]
    assert totals["provision matrix"] == pytest.approx(950 * L_1_30)
    assert totals["model (PD x LGD)"] == pytest.approx(30 + 400)
    assert set(report.movement["method"]) == {"provision matrix", "model (PD x LGD)"}
    # C1: matrix 150 x 0.545 = 81.8 against 150 x 0.2 x 1 = 30; C2: 436.4 against 400.
    largest = report.differences.iloc[0]
    assert largest["customer_id"] == "C1" and largest["difference"] == pytest.approx(30 - 150 * L_1_30)
    assert "PD 20% (deterioration model (90 days)) x LGD 100%" in largest["explanation"]
    path = write_workbook(report, tmp_path / "provision.xlsx")
    sheets = load_workbook(path, read_only=True).sheetnames
    assert sheets == ["summary", "matrix", "loss rates", "customers", "differences", "lgd", "movement", "backtest",
                      "method note"]
    assert [entry.name for entry in tmp_path.iterdir()] == ["provision.xlsx"]  # nothing half-written beside it


def test_the_backtest_sets_each_method_against_the_write_offs_that_followed():
    table = provision_backtest(hand_ledger(), pd.Timestamp("2024-01-31"), 1, policy(),
                               lambda day: pd.Series({"C1": 0.5, "C2": 0.5, "C3": 0.5}))
    matrix = table.set_index("method").loc["provision matrix"]
    # At Jan 31 no bucket has history yet (every rate 100%): A 1,000 + B 500 + E 300 booked; A's 600 and E's
    # 300 were written off in the next three months.
    assert (matrix["provision_base"], matrix["written_off_next_base"], matrix["ratio"]) == (1800.0, 900.0, 2.0)
    assert set(table["method"]) == {"provision matrix", "model (PD x LGD)"}


def test_nothing_after_the_close_changes_the_provision():
    ledger = hand_ledger()
    later = ledger.replace(writeoffs=pd.concat([ledger.writeoffs, pd.DataFrame(
        {"invoice_id": ["C"], "date": dates("2024-05-20"), "amount": [800.0]})], ignore_index=True))
    assert provision_report(later, CLOSE, policy()).summary.equals(provision_report(ledger, CLOSE, policy()).summary)


def test_a_bad_policy_or_movement_start_is_a_clear_error(tmp_path):
    from ledger.errors import BadInput
    from provision import load_provision_policy

    bad = tmp_path / "policy.yaml"
    bad.write_text("aging_limits: [30, 10]\nsurprise: 1\n")
    with pytest.raises(BadInput, match=r"aging_limits.*increase strictly.*surprise"):
        load_provision_policy(bad)
    with pytest.raises(BadInput, match="--from: the movement's start 2024-05-31 must be before the close"):
        provision_report(hand_ledger(), CLOSE, policy(), start=pd.Timestamp("2024-05-31"))
