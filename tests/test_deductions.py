"""Deductions (issue 21, point 1) and the SLA clocks (point 4), pure: short payments found in hand-built ledgers,
reason codes from memo-line keywords, owners, the report arithmetic and an SLA breach the day after its due date."""

from __future__ import annotations

import pandas as pd
import pytest

from configs import config_path
from features.asof import known_at
from features.settlement import document_state
from ledger import Ledger
from ledger.errors import BadInput
from queues.deductions import (
    DeductionPolicyError,
    age_bucket,
    candidate_deductions,
    days_deduction_outstanding,
    decision_changes,
    deduction_summary,
    invalid_recovery_rate,
    item_frame,
    load_deduction_policy,
    open_by_age_and_reason,
    owner,
    reason_code,
    share_resolved_within_sla,
    short_payments,
)
from queues.sla import clock_records, load_sla_policy, sla_clocks, sla_report
from tests.ledgers import dates

POLICY = load_deduction_policy()
SLA = load_sla_policy()


def short_paid_ledger(extra_applications: list[tuple] = (), disputes: pd.DataFrame | None = None) -> Ledger:
    """Two customers (C1 mid, C2 large) and six invoices of 2024-02-01, each paid on 2024-03-01:
    I1 1000 paid 900 ("Preisdifferenz", rest 100 = 10%: a deduction), I2 1000 paid 500 (rest 50%: a partial
    payment), I3 1000 paid 995 (rest 5, under the 10 minimum), I4 400 paid 380 of C2 ("damaged goods", rest 20),
    I5 1000 paid 900 then 100 on 03-05 (settled), I6 1000 paid 900 then 50 on 03-05 (rest 50 from 03-05)."""
    customers = pd.DataFrame({
        "customer_id": ["C1", "C2"], "name": ["Acme GmbH", "Bolt SA"], "segment": ["mid", "large"],
        "country": ["DE", "FR"], "currency": ["EUR", "EUR"], "payment_terms_days": [30, 30],
        "credit_limit": [50_000.0, 50_000.0], "created_date": dates("2023-01-01", "2023-01-01"),
    })
    ids = ["I1", "I2", "I3", "I4", "I5", "I6"]
    amounts = [1000.0, 1000.0, 1000.0, 400.0, 1000.0, 1000.0]
    invoices = pd.DataFrame({
        "invoice_id": ids, "customer_id": ["C1", "C1", "C1", "C2", "C1", "C1"], "doc_type": ["invoice"] * 6,
        "invoice_date": dates(*["2024-02-01"] * 6), "due_date": dates(*["2024-03-02"] * 6),
        "amount": amounts, "currency": ["EUR"] * 6, "amount_base": amounts,
        "cleared_date": dates(None, None, None, None, "2024-03-05", None),
    })
    paid = [("P1", "I1", "2024-03-01", 900.0, "C1", "Preisdifferenz RE I1"),
            ("P2", "I2", "2024-03-01", 500.0, "C1", "RE I2 erste Rate"),
            ("P3", "I3", "2024-03-01", 995.0, "C1", None),
            ("P4", "I4", "2024-03-01", 380.0, "C2", "INV I4 less damaged goods"),
            ("P5", "I5", "2024-03-01", 900.0, "C1", "I5"),
            ("P6", "I5", "2024-03-05", 100.0, "C1", "I5 rest"),
            ("P7", "I6", "2024-03-01", 900.0, "C1", "I6"),
            ("P8", "I6", "2024-03-05", 50.0, "C1", "I6 part"),
            *extra_applications]
    payments = pd.DataFrame({
        "payment_id": [row[0] for row in paid], "customer_id": [row[4] for row in paid],
        "received_date": dates(*[row[2] for row in paid]), "amount": [row[3] for row in paid],
        "currency": ["EUR"] * len(paid), "amount_base": [row[3] for row in paid],
        "remittance_text": [row[5] for row in paid],
    })
    applications = pd.DataFrame({
        "payment_id": [row[0] for row in paid], "invoice_id": [row[1] for row in paid],
        "applied_date": dates(*[row[2] for row in paid]), "amount": [row[3] for row in paid],
    })
    kwargs = {} if disputes is None else {"disputes": disputes}
    return Ledger(customers, invoices, payments, applications, base_currency="EUR", source="tests", **kwargs)


# -- detection ---------------------------------------------------------------------------------------------


def test_a_short_payment_opens_a_deduction_the_day_its_wait_ends():
    ledger = short_paid_ledger()
    # P1 left 100 of I1's 1000 (10%, at most 25%, at least 10) on 03-01; no payment within 7 days: opens 03-08.
    before = candidate_deductions(ledger, pd.Timestamp("2024-03-07"), POLICY, SLA)
    assert "I1" not in set(before["invoice_id"])
    table = candidate_deductions(ledger, pd.Timestamp("2024-03-08"), POLICY, SLA).set_index("invoice_id")
    row = table.loc["I1"]
    assert (row["customer_id"], row["payment_id"], row["amount"], row["currency"]) == ("C1", "P1", 100.0, "EUR")
    assert row["reason_code"] == "pricing"  # "Preisdifferenz" starts with the keyword "preis"
    assert row["owner"] == "Pricing Desk"
    assert row["opened_date"] == pd.Timestamp("2024-03-08")
    assert row["due_date"] == pd.Timestamp("2024-04-07")  # pricing: 30 days


def test_partial_payments_tiny_rests_and_settled_invoices_are_not_deductions():
    table = candidate_deductions(short_paid_ledger(), pd.Timestamp("2024-03-20"), POLICY, SLA)
    # I2's rest is 50% (a partial payment), I3's 5 (under 10), I5 is settled; I6's rest of 50 came from P8.
    assert sorted(table["invoice_id"]) == ["I1", "I4", "I6"]
    six = table.set_index("invoice_id").loc["I6"]
    assert (six["payment_id"], six["amount"], six["opened_date"]) == ("P8", 50.0, pd.Timestamp("2024-03-12"))
    assert six["reason_code"] == "unknown"


def test_the_owner_follows_the_customer_segment_before_the_reason_code():
    table = candidate_deductions(short_paid_ledger(), pd.Timestamp("2024-03-20"), POLICY, SLA).set_index("invoice_id")
    assert table.loc["I4", "reason_code"] == "damaged"
    assert table.loc["I4", "owner"] == "Key Account Desk"  # C2 is a large customer
    assert table.loc["I4", "due_date"] == pd.Timestamp("2024-03-28")  # damaged: 20 days from 03-08
    assert table.loc["I6", "owner"] == "Deductions Desk"  # unknown reason, mid customer: the default


def test_a_payment_after_as_of_does_not_change_the_deductions_at_as_of():
    as_of = pd.Timestamp("2024-03-20")
    later = short_paid_ledger([("P9", "I1", "2024-03-25", 100.0, "C1", "I1 rest")])
    assert candidate_deductions(later, as_of, POLICY, SLA).equals(
        candidate_deductions(short_paid_ledger(), as_of, POLICY, SLA))
    assert "I1" not in set(candidate_deductions(later, pd.Timestamp("2024-03-25"), POLICY, SLA)["invoice_id"])


def test_an_invoice_in_open_dispute_or_with_a_recorded_deduction_is_not_proposed_again():
    disputes = pd.DataFrame({
        "dispute_id": ["D1", "D2"], "invoice_id": ["I1", "I4"], "opened_date": dates("2024-03-02", "2024-03-08"),
        "resolved_date": dates(None, "2024-03-15"), "reason": ["pricing", "deduction: damaged"],
        "amount": [100.0, 20.0],
    })
    table = short_payments(short_paid_ledger(disputes=disputes), pd.Timestamp("2024-03-20"), POLICY)
    assert sorted(table["invoice_id"]) == ["I6"]


@pytest.mark.parametrize(("text", "code"), [
    ("Preisdifferenz RE 4711", "pricing"), ("PRICE difference", "pricing"), ("damaged pallet", "damaged"),
    ("Defekt geliefert", "damaged"), ("Promo Q1", "promotion"), ("year-end rebate", "promotion"),
    ("Freight charged twice", "freight"), ("shipping", "freight"), ("VAT 19%", "tax"), ("tax rate", "tax"),
    ("short delivery", "quantity"), ("2 pcs missing", "quantity"), ("Quantity diff", "quantity"),
    ("private invoice 12", "unknown"),  # "vat" only counts at the start of a word
    ("RE 4711", "unknown"), ("", "unknown"), (None, "unknown"),
])
def test_the_reason_code_comes_from_memo_line_keywords(text, code):
    assert reason_code(POLICY, text) == code


def test_the_default_owner_takes_what_no_rule_matches():
    assert owner(POLICY, "tax", "small") == "Deductions Desk"
    assert owner(POLICY, "freight", "small") == "Logistics Desk"
    assert owner(POLICY, "freight", "large") == "Key Account Desk"


def test_a_policy_with_an_unknown_key_or_reason_code_is_refused(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("reason_codes: [pricing, unknown]\nmax_shar: 0.2\n")
    with pytest.raises(DeductionPolicyError, match="max_shar"):
        load_deduction_policy(typo)
    stray = tmp_path / "stray.yaml"
    stray.write_text("reason_codes: [pricing, unknown]\nkeywords: {tax: [vat]}\n")
    with pytest.raises(DeductionPolicyError, match="tax"):
        load_deduction_policy(stray)


def test_a_decision_sets_the_status_and_an_unknown_one_is_refused():
    assert decision_changes("credit_memo", pd.Timestamp("2024-04-01")) == {
        "status": "valid", "decision": "credit_memo", "decided_date": "2024-04-01"}
    assert decision_changes("rebilled", pd.Timestamp("2024-04-01"))["status"] == "invalid"
    with pytest.raises(BadInput, match="decision must be one of in_review"):
        decision_changes("ignore", pd.Timestamp("2024-04-01"))


# -- reports -----------------------------------------------------------------------------------------------


def record(item_id, opened, due, amount, reason="pricing", status="open", decided=None, invoice="I1", decision=None):
    return {"item_id": item_id, "queue": "deduction", "customer_id": "C1", "invoice_id": invoice, "payment_id": "P1",
            "amount": f"{amount:.2f}", "currency": "EUR", "reason_code": reason, "owner": "Pricing Desk",
            "status": status, "decision": decision, "opened_date": opened, "due_date": due, "decided_date": decided}


ITEMS = item_frame([
    record("Q1", "2024-01-01", "2024-01-31", 300.0, status="valid", decided="2024-01-20", decision="credit_memo"),
    record("Q2", "2024-01-10", "2024-02-09", 200.0, status="invalid", decided="2024-03-01", decision="rebilled"),
    record("Q3", "2024-02-15", "2024-03-06", 100.0, reason="freight"),
    record("Q4", "2024-03-20", "2024-04-19", 400.0),
    record("Q5", "2024-03-25", "2024-04-24", 50.0, status="valid", decided="2024-04-30", decision="write_off"),
])
AS_OF = pd.Timestamp("2024-03-31")


def test_open_deductions_by_age_and_reason():
    table = open_by_age_and_reason(ITEMS, AS_OF)
    # Open at 03-31: Q3 (freight, 45 days), Q4 (pricing, 11 days) and Q5 (decided only on 04-30).
    assert table.to_dict("records") == [
        {"reason_code": "freight", "age_bucket": "31-60", "count": 1, "amount_base": 100.0},
        {"reason_code": "pricing", "age_bucket": "0-30", "count": 2, "amount_base": 450.0},
    ]
    assert list(age_bucket(pd.Series([0, 30, 31, 60, 61, 90, 91]))) == [
        "0-30", "0-30", "31-60", "31-60", "61-90", "61-90", "90+"]


def test_days_deduction_outstanding_is_open_amount_over_the_amount_opened_in_90_days():
    # Open at 03-31: 100 + 400 + 50 = 550. Opened after 01-01 (the 90 days ending 03-31): Q2..Q5 = 750.
    assert days_deduction_outstanding(ITEMS, AS_OF) == pytest.approx(550 / 750 * 90)
    assert pd.isna(days_deduction_outstanding(ITEMS.iloc[:0], AS_OF))


def test_share_resolved_within_sla_counts_the_decided_ones_by_as_of():
    # Decided by 03-31: Q1 on 01-20 (due 01-31, in time) and Q2 on 03-01 (due 02-09, late): one of two.
    assert share_resolved_within_sla(ITEMS, AS_OF) == 0.5
    # By 04-30 Q5 is decided too, on 04-30 after its due date 04-24: one of three.
    assert share_resolved_within_sla(ITEMS, pd.Timestamp("2024-04-30")) == pytest.approx(1 / 3)


def test_the_recovery_rate_of_invalid_deductions_is_what_the_invoice_received_after_the_decision():
    # Q2 (I1, 200) was decided invalid on 03-01; P1's 900 came on 03-01 (not after), P9 brings 150 on 03-10
    # and P10 another 100 on 04-05, after as_of: 150 / 200 at 03-31, capped at the amount on 04-05.
    ledger = short_paid_ledger([("P9", "I1", "2024-03-10", 150.0, "C1", "I1 rebilled"),
                                ("P10", "I1", "2024-04-05", 100.0, "C1", "I1 rest")])
    assert invalid_recovery_rate(ITEMS, ledger, AS_OF) == pytest.approx(0.75)
    assert invalid_recovery_rate(ITEMS, ledger, pd.Timestamp("2024-04-05")) == 1.0
    summary = deduction_summary(ITEMS, ledger, AS_OF)
    assert summary["open_count"] == 3 and summary["open_amount_base"] == 550.0
    assert summary["invalid_recovery_rate"] == 0.75 and summary["share_resolved_within_sla"] == 0.5


def test_amounts_are_reported_in_the_company_currency_at_the_rate_of_the_invoice():
    ledger = short_paid_ledger()
    invoices = ledger.invoices.assign(currency=["USD", "EUR", "EUR", "EUR", "EUR", "EUR"],
                                      amount_base=[900.0, 1000.0, 1000.0, 400.0, 1000.0, 1000.0])
    items = item_frame([record("Q1", "2024-03-08", "2024-04-07", 100.0)], ledger.replace(invoices=invoices))
    # I1: 1000 USD booked as 900 EUR, so the deduction of 100 USD is 90 EUR.
    assert items["amount_base"].tolist() == [90.0]
    assert open_by_age_and_reason(items, AS_OF)["amount_base"].tolist() == [90.0]


# -- SLA clocks --------------------------------------------------------------------------------------------


def sla_records() -> pd.DataFrame:
    disputes = [{"dispute_id": "DSP1", "customer_id": "C1", "owner": "alice", "reason_code": "pricing",
                 "opened_date": "2024-03-01", "resolved_date": None}]
    items = [
        {"item_id": "ESC1", "queue": "escalation", "customer_id": "C1", "owner": "AR Manager",
         "reason_code": "non_responsive", "opened_date": "2024-03-01", "due_date": "2024-03-06",
         "decided_date": "2024-03-05"},
        {"item_id": "DED1", "queue": "deduction", "customer_id": "C2", "owner": "Pricing Desk",
         "reason_code": "tax", "opened_date": "2024-03-01", "due_date": "2024-03-16", "decided_date": "2024-03-20"},
    ]
    return clock_records(disputes, items, SLA)


def test_an_sla_breach_shows_the_day_after_its_due_date_not_on_it():
    records = sla_records()
    # The dispute opened 03-01 is due 03-31 (30 days): within its SLA on 03-31, breached on 04-01.
    on_due = sla_clocks(records, pd.Timestamp("2024-03-31"), SLA).set_index("record_id")
    assert on_due.loc["DSP1", "due_date"] == pd.Timestamp("2024-03-31")
    assert not on_due.loc["DSP1", "breached"]
    day_after = sla_clocks(records, pd.Timestamp("2024-04-01"), SLA).set_index("record_id")
    assert day_after.loc["DSP1", "breached"] and day_after.loc["DSP1", "is_open"]
    assert day_after.loc["DSP1", "days_open"] == 31


def test_a_record_closed_after_its_due_date_stays_breached_and_one_closed_in_time_does_not():
    clocks = sla_clocks(sla_records(), pd.Timestamp("2024-04-01"), SLA).set_index("record_id")
    assert not clocks.loc["ESC1", "breached"] and clocks.loc["ESC1", "turnaround_days"] == 4
    assert clocks.loc["DED1", "breached"] and clocks.loc["DED1", "turnaround_days"] == 19
    assert clocks.loc["DED1", "team"] == "deductions" and clocks.loc["DSP1", "team"] == "collections"
    # Before its decision date the deduction is still open, and breached from 03-17 on.
    early = sla_clocks(sla_records(), pd.Timestamp("2024-03-17"), SLA).set_index("record_id")
    assert early.loc["DED1", "is_open"] and early.loc["DED1", "breached"]
    assert pd.isna(early.loc["DED1", "turnaround_days"])


def test_the_sla_report_per_team_counts_open_breached_and_closed_in_time():
    clocks = sla_clocks(sla_records(), pd.Timestamp("2024-04-01"), SLA)
    report = sla_report(clocks, by="team").set_index(["team", "queue"])
    assert report.loc[("collections", "dispute")].to_dict() == {
        "records": 1, "open": 1, "breached_open": 1, "median_turnaround_days": pytest.approx(float("nan"),
                                                                                            nan_ok=True),
        "closed": 0, "share_closed_within_sla": pytest.approx(float("nan"), nan_ok=True)}
    assert report.loc[("management", "escalation"), "share_closed_within_sla"] == 1.0
    assert report.loc[("deductions", "deduction"), "share_closed_within_sla"] == 0.0
    assert report.loc[("deductions", "deduction"), "median_turnaround_days"] == 19
    assert list(sla_report(clocks, by="owner")["owner"]) == ["AR Manager", "Pricing Desk", "alice"]


# -- the command line, and the store's effect on the ledger ---------------------------------------------------


def test_deductions_from_the_shell_hold_their_invoice_out_of_dunning_and_a_valid_one_closes_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ledger import write_ledger
    from rules.dunning import dunning_proposal, load_policy
    from serving.activity import open_store, with_activity
    from serving.cli import app

    runner = CliRunner()
    write_ledger(short_paid_ledger(), tmp_path / "ledger")
    database = f"sqlite:///{tmp_path / 'activity.sqlite'}"
    monkeypatch.setenv("ARRISK_DATABASE_URL", database)
    ledger_args = ["--ledger", str(tmp_path / "ledger"), "--as-of", "2024-03-20"]

    listed = runner.invoke(app, ["deductions", "candidates", *ledger_args, "--out", str(tmp_path / "found.csv")])
    assert listed.exit_code == 0, listed.output
    assert sorted(pd.read_csv(tmp_path / "found.csv")["invoice_id"]) == ["I1", "I4", "I6"]
    opened = runner.invoke(app, ["deductions", "open", *ledger_args, "--user", "ana"])
    assert opened.exit_code == 0 and "3 deductions opened" in opened.output, opened.output
    again = runner.invoke(app, ["deductions", "open", *ledger_args, "--user", "ana"])
    assert "0 deductions opened" in again.output, again.output  # recorded ones are no candidates any more

    store = open_store(database)
    items = {item["invoice_id"]: item for item in store.list_queue_items(queue="deduction")}
    assert (items["I1"]["reason_code"], items["I1"]["amount"], items["I1"]["due_date"]) == ("pricing", "100.00",
                                                                                             "2024-04-07")
    # An open deduction is a dispute of its invoice in the ledger with the recorded activity: dunning holds it.
    policy = load_policy(config_path("dunning", "default.yaml"))
    proposal = dunning_proposal(with_activity(short_paid_ledger(), store.ledger_tables()), pd.Timestamp("2024-03-20"),
                                policy).set_index("invoice_id")
    assert proposal.loc["I1", "status"] == "held" and "deduction: pricing" in proposal.loc["I1", "reason"]

    decided = runner.invoke(app, ["deductions", "decide", items["I1"]["item_id"], "--user", "ana", "--decision",
                                  "credit_memo", "--version", "1", "--decided-date", "2024-03-20"])
    assert decided.exit_code == 0, decided.output
    refused = runner.invoke(app, ["deductions", "decide", items["I4"]["item_id"], "--user", "ana", "--decision",
                                  "write_off", "--version", "1"])
    assert refused.exit_code == 1 and "--decided-date is required" in refused.output
    merged = with_activity(short_paid_ledger(), store.ledger_tables())
    # The valid deduction's credit memo closes I1's rest of 100: it is no longer open, nor proposed again.
    state = document_state(known_at(merged, pd.Timestamp("2024-03-20")), pd.Timestamp("2024-03-20"), 0.005)
    assert not state.set_index("invoice_id").loc["I1", "is_open"]

    report = runner.invoke(app, ["deductions", "report", *ledger_args])
    assert report.exit_code == 0 and "open count: 2" in report.output, report.output
    sla = runner.invoke(app, ["sla", "--as-of", "2024-04-08", "--by", "team", "--out", str(tmp_path / "sla.csv")])
    assert sla.exit_code == 0, sla.output
    # I4 (damaged, due 03-28) and I6 (unknown, due 04-11): at 04-08 one open record is past its due date.
    assert "2 open, 1 open past their due date" in sla.output
    table = pd.read_csv(tmp_path / "sla.csv")
    assert set(table["team"]) == {"collections", "deductions"} and table["records"].sum() == 3
