"""Cash application (`cash_application.apply_cash`, `arrisk cash-apply`): each kind of payment a bank
statement brings (issue 20, point 1) matched on a small generated ledger whose history the ranker learns
from, plus bank statements, the policy, leakage and the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cash_application import apply_cash, load_match_policy
from cash_application.candidates import subset_sums
from cash_application.matching import deduction_reason, spread_over
from cash_application.policy import MatchPolicyError
from features.asof import known_at
from features.settlement import document_state
from ledger import write_ledger
from ledger.synthetic import generate_ledger
from serving.cli import app

STATEMENTS = Path(__file__).parent / "fixtures" / "statements"
CAMT = STATEMENTS / "camt053_example.xml"
AS_OF = pd.Timestamp("2024-03-06")
START = pd.Timestamp("2023-03-01")
CASES = ("prefix", "no_prefix", "word_prefix", "typo", "truncated", "multi_invoice", "no_reference", "name_variant",
         "partial", "deduction", "discount", "overpayment", "duplicate", "unknown_payer")
runner = CliRunner()


def open_items(ledger, as_of: pd.Timestamp) -> pd.DataFrame:
    state = document_state(known_at(ledger, as_of), as_of, 0.005)
    return state[state["is_open"] & state["is_invoice"]]


def payers(ledger) -> pd.DataFrame:
    """Per customer: the master name and the account its payments came from most."""
    paid = ledger.payments.dropna(subset=["customer_id"])
    account = paid.groupby("customer_id")["payer_account"].agg(lambda s: s.value_counts().index[0])
    return ledger.customers.set_index("customer_id")[["name", "parent_id"]].join(account.rename("account"))


def case_customers(ledger, items: pd.DataFrame) -> list[str]:
    """Customers outside any group with at least three open invoices of distinct amounts, in one currency."""
    parents = ledger.customers.get("parent_id", pd.Series(None, index=ledger.customers.index))
    grouped = set(parents.dropna())
    counts = items.groupby("customer_id")["amount"].agg(lambda s: s.round(2).nunique())
    currencies = ledger.invoices.groupby("customer_id")["currency"].nunique()
    chosen = [customer for customer, n in counts.items() if n >= 3 and currencies[customer] == 1
              and customer not in grouped and pd.isna(parents[ledger.customers["customer_id"] == customer].iat[0])]
    return chosen


def crafted_payment(payment_id: str, day: int, amount: float, currency: str, name: str, account: str,
                    text: str | None) -> dict:
    return {"payment_id": payment_id, "customer_id": None, "received_date": AS_OF - pd.Timedelta(days=day),
            "amount": round(amount, 2), "currency": currency, "amount_base": round(amount, 2), "payer_name": name,
            "payer_account": account, "remittance_text": text, "statement_ref": None}


@pytest.fixture(scope="module")
def matched():
    """A generated ledger (its history applied), one crafted bank payment per case on a customer of its own,
    matched once; returns (result rows, expected invoice ids per case, the items used, the ledger)."""
    ledger, _ = generate_ledger(120, 12, 11, start=START, remittance=True)
    items = open_items(ledger, AS_OF)
    who = payers(ledger)
    customers = case_customers(ledger, items)
    assert len(customers) >= len(CASES) - 2, "the generated ledger has too few customers with open invoices"
    rows, expected = [], {}
    for case, customer in zip(CASES, customers, strict=False):
        mine = items[items["customer_id"] == customer].sort_values("due_date").drop_duplicates("amount")
        ids = mine["invoice_id"].tolist()
        amounts = mine["amount"].tolist()
        currency = ledger.invoices.set_index("invoice_id").at[ids[0], "currency"]
        name, account = who.at[customer, "name"], who.at[customer, "account"]
        one, number = ids[0], ids[0].lstrip("INV")
        text, amount, paid = f"INV {one}", amounts[0], [one]
        if case == "prefix":
            text = one
        elif case == "no_prefix":
            text = f"{int(number)}"
        elif case == "word_prefix":
            text = f"Rechnung {number}"
        elif case == "typo":
            text = f"{number[:-1]}{(int(number[-1]) + 5) % 10}"
        elif case == "truncated":  # the third number was cut off by the bank: the amount finds it
            paid = ids[:3]
            text, amount = f"{ids[0]}, {ids[1]}, {ids[2][:4]}", sum(amounts[:3])
        elif case == "multi_invoice":
            paid = ids[:3]
            text, amount = f"RE {ids[0]} / {ids[1].lstrip('INV')} + {ids[2]}", sum(amounts[:3])
        elif case == "no_reference":
            text = "PAYMENT"
        elif case == "name_variant":  # an account never seen and the name as the bank writes it
            name, account = name.upper().replace("GMBH", "GESELLSCHAFT MBH") + " ZAHLUNGSVERKEHR", "DE00999999990000000001"
        elif case == "partial":
            amount = round(amounts[0] * 0.4, 2)
        elif case == "deduction":
            amount = amounts[0] - 300.0 if amounts[0] > 1000 else amounts[0] * 0.85
        elif case == "discount":
            amount = round(amounts[0] * 0.98, 2)
        elif case == "overpayment":
            amount = amounts[0] + 125.0
        elif case == "duplicate":
            rows.append(crafted_payment("BANK-duplicate-original", 3, amount, currency, name, account, text))
            expected["duplicate-original"], paid = [one], []
        elif case == "unknown_payer":
            name, account, text, paid = "Nobody Known Ltd", "GB00NOBODY0000000000000", "PAYMENT", []
        rows.append(crafted_payment(f"BANK-{case}", 1, amount, currency, name, account, text))
        expected[case] = paid
    payments = pd.concat([ledger.payments, pd.DataFrame(rows)], ignore_index=True)
    result = apply_cash(ledger.replace(payments=payments), AS_OF)
    return result, expected, ledger


def rows_of(result: pd.DataFrame, payment_id: str) -> pd.DataFrame:
    return result[result["payment_id"] == payment_id]


def applied_set(result: pd.DataFrame, payment_id: str) -> set[str]:
    return set(rows_of(result, payment_id)["invoice_id"].dropna())


@pytest.mark.parametrize("case", ["prefix", "no_prefix", "word_prefix", "multi_invoice"])
def test_invoice_numbers_quoted_in_any_form_are_applied_without_review(matched, case):
    result, expected, _ = matched
    rows = rows_of(result, f"BANK-{case}")
    assert applied_set(result, f"BANK-{case}") == set(expected[case])
    assert set(rows["decision"]) == {"auto"}
    assert rows["identified_by"].iat[0] == "account"
    assert rows["amount"].sum() == pytest.approx(rows["payment_amount"].iat[0])


@pytest.mark.parametrize("case", ["typo", "truncated", "no_reference"])
def test_a_wrong_cut_or_missing_reference_still_finds_the_invoices(matched, case):
    result, expected, _ = matched
    assert applied_set(result, f"BANK-{case}") == set(expected[case])
    assert set(rows_of(result, f"BANK-{case}")["decision"]) <= {"auto", "proposed"}


def test_a_payer_name_that_differs_from_the_master_identifies_the_customer(matched):
    result, expected, _ = matched
    rows = rows_of(result, "BANK-name_variant")
    assert rows["identified_by"].iat[0] == "name"
    assert applied_set(result, "BANK-name_variant") == set(expected["name_variant"])


def test_a_short_payment_keeps_its_residual_with_a_suggested_reason(matched):
    result, _, _ = matched
    reasons = {case: rows_of(result, f"BANK-{case}") for case in ("partial", "deduction", "discount")}
    for case, rows in reasons.items():
        assert rows["decision"].iat[0] in {"auto", "proposed"}, case
        assert rows["residual"].iat[0] < 0, case
    assert reasons["partial"]["deduction_reason"].iat[0] == "partial payment"
    assert reasons["discount"]["deduction_reason"].iat[0] == "cash discount"
    assert reasons["deduction"]["deduction_reason"].iat[0] in {"short payment", "bank charges"}
    # A payment applies no more than it brought.
    for rows in reasons.values():
        assert rows["amount"].sum() == pytest.approx(rows["payment_amount"].iat[0])


def test_an_overpayment_leaves_the_surplus_unapplied(matched):
    result, expected, _ = matched
    rows = rows_of(result, "BANK-overpayment")
    assert applied_set(result, "BANK-overpayment") == set(expected["overpayment"])
    assert rows["residual"].iat[0] == pytest.approx(125.0)
    assert rows["amount"].sum() == pytest.approx(rows["payment_amount"].iat[0] - 125.0)


def test_a_duplicate_payment_is_left_unmatched_and_names_the_original(matched):
    result, expected, _ = matched
    original, copy = rows_of(result, "BANK-duplicate-original"), rows_of(result, "BANK-duplicate")
    assert applied_set(result, "BANK-duplicate-original") == set(expected["duplicate-original"])
    assert original["decision"].iat[0] != "unmatched"
    assert copy["decision"].tolist() == ["unmatched"]
    assert copy["reason"].iat[0] == "possible duplicate of payment BANK-duplicate-original"


def test_a_payer_nobody_knows_is_unmatched_with_the_reason(matched):
    result, _, _ = matched
    rows = rows_of(result, "BANK-unknown_payer")
    assert rows["decision"].tolist() == ["unmatched"]
    assert rows["reason"].iat[0].startswith("payer not identified")


def test_no_document_is_applied_beyond_its_open_amount(matched):
    result, _, ledger = matched
    items = open_items(ledger, AS_OF).set_index("invoice_id")["open_amount"]
    applied = result.dropna(subset=["invoice_id"]).groupby("invoice_id")["amount"].sum()
    assert (applied <= items.reindex(applied.index) + 0.005).all()


def test_a_parent_company_paying_for_its_subsidiary_is_applied_to_the_subsidiary():
    ledger, _ = generate_ledger(120, 12, 11, start=START, remittance=True)
    items = open_items(ledger, AS_OF)
    who = payers(ledger)
    subsidiaries = [customer for customer in ledger.customers.dropna(subset=["parent_id"])["customer_id"]
                    if (items["customer_id"] == customer).any()]
    subsidiary = subsidiaries[0]
    parent = who.at[subsidiary, "parent_id"]
    invoice = items[items["customer_id"] == subsidiary].iloc[0]
    currency = ledger.invoices.set_index("invoice_id").at[invoice["invoice_id"], "currency"]
    payment = crafted_payment("BANK-parent", 1, invoice["open_amount"], currency, who.at[parent, "name"],
                              who.at[parent, "account"], f"Rechnung {invoice['invoice_id']}")
    result = apply_cash(ledger.replace(payments=pd.concat([ledger.payments, pd.DataFrame([payment])],
                                                          ignore_index=True)), AS_OF)
    rows = rows_of(result, "BANK-parent")
    assert rows["invoice_id"].tolist() == [invoice["invoice_id"]]
    assert rows["customer_id"].tolist() == [subsidiary]


def test_a_bank_statement_read_twice_adds_its_payments_once_and_they_are_matched(tmp_path: Path):
    ledger, _ = generate_ledger(60, 12, 5, start=START, remittance=True)
    customers = pd.concat([ledger.customers, ledger.customers.iloc[[0]].assign(customer_id="CACME", name="Acme GmbH",
                                                                              parent_id=None)], ignore_index=True)
    new = ledger.invoices.iloc[[0, 0]].assign(
        invoice_id=["INV-1001", "INV-1002"], customer_id="CACME", currency="EUR", amount=[700.0, 490.0],
        amount_base=[700.0, 490.0], invoice_date=pd.Timestamp("2024-02-01"), due_date=pd.Timestamp("2024-03-02"),
        cleared_date=pd.NaT)
    ledger = ledger.replace(customers=customers, invoices=pd.concat([ledger.invoices, new], ignore_index=True))
    once = apply_cash(ledger, AS_OF, statements=[CAMT])
    twice = apply_cash(ledger, AS_OF, statements=[CAMT, CAMT])
    bank = once[once["payment_id"].str.startswith("BANK-")]
    assert bank["payment_id"].nunique() == 5  # the camt.053 fixture's five credits
    pd.testing.assert_frame_equal(once, twice)
    acme = bank[bank["invoice_id"].isin(["INV-1001", "INV-1002"])]
    assert set(acme["invoice_id"]) == {"INV-1001", "INV-1002"}
    assert acme["identified_by"].iat[0] == "name"


def test_nothing_received_or_issued_after_as_of_is_matched():
    ledger, _ = generate_ledger(60, 12, 5, start=START, remittance=True)
    from ledger.remittance import with_cash_to_apply

    ledger = with_cash_to_apply(ledger, pd.Timestamp("2024-02-01"))
    as_of = pd.Timestamp("2024-02-15")
    result = apply_cash(ledger, as_of)
    assert (result["received_date"] <= as_of).all()
    issued = ledger.invoices.set_index("invoice_id")["invoice_date"]
    assert (result["invoice_id"].dropna().map(issued) <= as_of).all()
    # The same date gives the same answer whatever the ledger holds after it.
    later_cut = known_at(ledger, as_of)
    pd.testing.assert_frame_equal(result, apply_cash(later_cut, as_of))


def test_subset_search_finds_the_set_and_stops_at_its_bound():
    cents = np.array([1_000, 2_500, 4_000, -700, 9_999, 3_300])
    found = subset_sums(5_800, cents, tolerance=0, max_items=8, max_nodes=1_000)
    assert set(found) == {(1, 5), (1, 2, 3)}  # 2500 + 3300; 2500 + 4000 - 700 (a credit memo)
    assert subset_sums(5_800, cents, tolerance=0, max_items=2, max_nodes=1_000) == [(1, 5)]
    assert subset_sums(5_801, cents, tolerance=1, max_items=8, max_nodes=1_000)
    assert subset_sums(5_800, cents, tolerance=0, max_items=8, max_nodes=1) == []
    assert subset_sums(999_999, cents, tolerance=0, max_items=8, max_nodes=1_000) == []


def test_a_payment_is_spread_oldest_first_and_credit_memos_are_taken_in_full():
    assert spread_over(1_000, [600, -200, 800]) == [600, -200, 600]
    assert spread_over(2_000, [600, 800]) == [600, 800]  # 600 left over: unapplied
    policy = load_match_policy()
    assert deduction_reason(200, 10_000, policy) == "cash discount"
    assert deduction_reason(1_500, 1_000_000, policy) == "bank charges"
    assert deduction_reason(60_000, 100_000, policy) == "partial payment"
    assert deduction_reason(20_000, 100_000, policy) == "short payment"


def test_a_bad_policy_is_named(tmp_path: Path):
    bad = tmp_path / "policy.yaml"
    bad.write_text("auto_threshold: 0.4\nproposal_threshold: 0.9\n")
    with pytest.raises(MatchPolicyError, match=r"policy.yaml: .*proposal_threshold must not be above"):
        load_match_policy(bad)
    bad.write_text("auto_treshold: 0.9\n")
    with pytest.raises(MatchPolicyError, match="auto_treshold"):
        load_match_policy(bad)


@pytest.fixture(scope="module")
def arriving(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger folder whose payments from 2024-02-01 on have just come in from the bank."""
    from ledger.remittance import with_cash_to_apply

    ledger, _ = generate_ledger(60, 12, 5, start=START, remittance=True)
    folder = tmp_path_factory.mktemp("arriving") / "ledger"
    write_ledger(with_cash_to_apply(ledger, pd.Timestamp("2024-02-01")), folder)
    return folder


def test_cash_apply_writes_the_proposals_and_refuses_a_bad_date(arriving: Path, tmp_path: Path):
    folder = arriving
    out = tmp_path / "cash.csv"
    result = runner.invoke(app, ["cash-apply", "--ledger", str(folder), "--as-of", "2024-02-29", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert {"payment_id", "customer_id", "invoice_id", "amount", "confidence", "decision", "rule", "residual",
            "deduction_reason"} <= set(table.columns)
    assert set(table["decision"]) <= {"auto", "proposed", "unmatched"}
    assert (table["decision"] == "auto").mean() > 0.5
    bad = runner.invoke(app, ["cash-apply", "--ledger", str(folder), "--as-of", "29.02.2024"])
    assert bad.exit_code == 1
    assert "--as-of: expected a date as YYYY-MM-DD" in bad.output


def test_cash_from_an_unidentified_payer_stays_in_the_aging_and_the_company_total():
    from ledger.schema import UNIDENTIFIED_PAYER as UNIDENTIFIED
    from rules.aging import aging_report, company_total
    from tests.ledgers import tiny_ledger

    ledger = tiny_ledger()
    bank_line = pd.DataFrame([{"payment_id": "BANK-1", "customer_id": None, "received_date": pd.Timestamp("2024-03-08"),
                               "amount": 75.0, "currency": "EUR", "amount_base": 75.0}])
    with_line = ledger.replace(payments=pd.concat([ledger.payments, bank_line], ignore_index=True))
    before, after = (aging_report(book, pd.Timestamp("2024-03-10")) for book in (ledger, with_line))
    unidentified = after[after["customer_id"] == UNIDENTIFIED]
    assert unidentified["Unapplied"].tolist() == [-75.0]
    assert company_total(after)["Total"].sum() == pytest.approx(company_total(before)["Total"].sum() - 75.0)


def test_a_confirmed_payer_is_recognised_by_its_account_next_time():
    from runs.actions import with_records

    ledger, _ = generate_ledger(60, 12, 5, start=START, remittance=True)
    items = open_items(ledger, AS_OF)
    customer = case_customers(ledger, items)[0]
    first, second = items[items["customer_id"] == customer].sort_values("due_date")["invoice_id"].iloc[:2]
    owed = items.set_index("invoice_id")["open_amount"]
    currency = ledger.invoices.set_index("invoice_id").at[first, "currency"]
    stranger = ("Holding Verwaltung KG", "CH9300762011623852957")
    pays_first = crafted_payment("BANK-a", 5, owed[first], currency, *stranger, "PAYMENT")
    with_first = ledger.replace(payments=pd.concat([ledger.payments, pd.DataFrame([pays_first])], ignore_index=True))
    assert rows_of(apply_cash(with_first, AS_OF), "BANK-a")["identified_by"].tolist() == ["none"]

    # A cash-application user applies it to the customer's invoice (as the activity store hands it back).
    recorded = {"payments": pd.DataFrame([{**pays_first, "customer_id": customer}]),
                "payment_applications": pd.DataFrame([{"payment_id": "BANK-a", "invoice_id": first,
                                                       "applied_date": AS_OF - pd.Timedelta(days=4),
                                                       "amount": owed[first]}])}
    confirmed = with_records(with_first, recorded)
    pays_second = crafted_payment("BANK-b", 1, owed[second], currency, *stranger, "PAYMENT")
    later = confirmed.replace(payments=pd.concat([confirmed.payments, pd.DataFrame([pays_second])], ignore_index=True))
    result = apply_cash(later, AS_OF)
    assert "BANK-a" not in set(result["payment_id"])  # applied now
    rows = rows_of(result, "BANK-b")
    assert rows["identified_by"].tolist() == ["account"] and rows["invoice_id"].tolist() == [second]


def test_the_unapplied_cash_report_gives_amount_age_and_reason_per_payment():
    from cash_application.unapplied import unapplied_cash
    from ledger.schema import UNIDENTIFIED_PAYER
    from tests.ledgers import tiny_ledger

    ledger = tiny_ledger()
    bank_line = pd.DataFrame([{"payment_id": "BANK-1", "customer_id": None, "received_date": pd.Timestamp("2024-02-01"),
                               "amount": 75.0, "currency": "EUR", "amount_base": 75.0}])
    ledger = ledger.replace(payments=pd.concat([ledger.payments, bank_line], ignore_index=True))
    proposals = pd.DataFrame([{"payment_id": "BANK-1", "decision": "unmatched", "rule": None, "confidence": np.nan,
                               "reason": "payer not identified (account, name and memo line match no customer)"}])
    report = unapplied_cash(ledger, pd.Timestamp("2024-03-10"), proposals).set_index("payment_id")
    # tiny ledger: P3 (50, C2) has no application; P2 (100) applied 300 - 200 = 100 in full; BANK-1 unidentified.
    assert list(report.index) == ["BANK-1", "P3"]
    assert report.loc["BANK-1", "customer_id"] == UNIDENTIFIED_PAYER
    assert (report.loc["BANK-1", "age_days"], report.loc["BANK-1", "age_bucket"]) == (38, "31-60")
    assert report.loc["BANK-1", "reason"].startswith("unmatched: payer not identified")
    assert (report.loc["P3", "unapplied_amount"], report.loc["P3", "reason"]) == (50.0, "not applied")
    # Before BANK-1 arrived it is not there.
    assert "BANK-1" not in set(unapplied_cash(ledger, pd.Timestamp("2024-01-31"))["payment_id"])


def test_arrisk_unapplied_writes_the_report(arriving: Path, tmp_path: Path):
    out = tmp_path / "unapplied.csv"
    result = runner.invoke(app, ["unapplied", "--ledger", str(arriving), "--as-of", "2024-02-29", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert len(table) > 0 and (table["unapplied_amount"] > 0).all()
    assert table["reason"].str.contains("the matcher applies it|awaiting review|unmatched|left after").all()


def test_without_memo_lines_in_the_history_a_quoted_invoice_is_still_matched_by_the_rules():
    ledger, _ = generate_ledger(60, 12, 5, start=START)  # past payments carry no remittance data
    items = open_items(ledger, AS_OF)
    customer = case_customers(ledger, items)[0]
    mine = items[items["customer_id"] == customer].sort_values("due_date")
    exact, short = mine["invoice_id"].iloc[0], mine["invoice_id"].iloc[1]
    owed = items.set_index("invoice_id")["open_amount"]
    currency = ledger.invoices.set_index("invoice_id").at[exact, "currency"]
    name = ledger.customers.set_index("customer_id").at[customer, "name"]
    bank = pd.DataFrame([
        crafted_payment("BANK-exact", 2, owed[exact], currency, name, "DE00000000000000000077", f"Invoice {exact}"),
        crafted_payment("BANK-short", 1, owed[short] * 0.7, currency, name, "DE00000000000000000077", f"RE {short}"),
    ])
    result = apply_cash(ledger.replace(payments=pd.concat([ledger.payments, bank], ignore_index=True)), AS_OF)
    assert rows_of(result, "BANK-exact")[["invoice_id", "decision"]].values.tolist() == [[exact, "auto"]]
    short_rows = rows_of(result, "BANK-short")
    assert short_rows["invoice_id"].tolist() == [short] and short_rows["decision"].iat[0] in {"proposed", "auto"}
    assert short_rows["residual"].iat[0] < 0


def test_a_ledger_with_too_few_applications_to_learn_from_still_applies_by_the_rules():
    from tests.ledgers import tiny_ledger

    ledger = tiny_ledger()  # three payments: no ranker can be trained
    # Invoice numbers as an ERP prints them (the memo line's numbers are read from three digits on).
    renamed = {"I3": "INV-1003", "I4": "INV-1004"}
    ledger = ledger.replace(invoices=ledger.invoices.replace({"invoice_id": renamed}),
                            disputes=ledger.disputes.replace({"invoice_id": renamed}))
    bank = pd.DataFrame([
        {"payment_id": "BANK-1", "customer_id": None, "received_date": pd.Timestamp("2024-03-08"), "amount": 800.0,
         "currency": "EUR", "amount_base": 800.0, "payer_name": "Bolt SA", "payer_account": "FR76300060000112345678",
         "remittance_text": "Facture 1003"},
        {"payment_id": "BANK-2", "customer_id": None, "received_date": pd.Timestamp("2024-03-08"), "amount": 300.0,
         "currency": "EUR", "amount_base": 300.0, "payer_name": "BOLT S.A.", "payer_account": None,
         "remittance_text": "virement"},
    ])
    result = apply_cash(ledger.replace(payments=pd.concat([ledger.payments, bank], ignore_index=True)),
                        pd.Timestamp("2024-03-10"))
    rows = rows_of(result, "BANK-1")
    assert rows[["customer_id", "invoice_id", "decision", "rule"]].values.tolist() == [["C2", "INV-1003", "auto",
                                                                                         "reference"]]
    # No reference: the one open item of exactly the amount is proposed for review, not applied.
    rows = rows_of(result, "BANK-2")
    assert rows[["invoice_id", "decision", "rule"]].values.tolist() == [["INV-1004", "proposed", "amount"]]


def test_the_commands_see_applications_recorded_in_the_activity_store(arriving: Path, tmp_path: Path, monkeypatch):
    from cash_application.confirm import checked_lines
    from ledger import read_ledger
    from serving.activity import open_store

    url = f"sqlite:///{tmp_path / 'activity.sqlite'}"
    monkeypatch.setenv("ARRISK_DATABASE_URL", url)
    monkeypatch.setenv("ARRISK_AUDIT_KEY", "cash-cli-test-audit-key-0123456789abcdef")
    out = tmp_path / "cash.csv"
    ask = ["cash-apply", "--ledger", str(arriving), "--as-of", "2024-02-29", "--out", str(out)]
    assert runner.invoke(app, ask).exit_code == 0
    first = pd.read_csv(out)
    payment_id = first.loc[first["decision"] == "auto", "payment_id"].iloc[0]
    lines = first.loc[first["payment_id"] == payment_id, ["invoice_id", "amount"]].itertuples(index=False, name=None)
    payment, checked = checked_lines(read_ledger(arriving), payment_id, list(lines), pd.Timestamp("2024-02-29"))
    store = open_store(url)
    try:
        store.record_cash_application("carla", payment=payment, lines=checked, decision="confirmed",
                                      applied_date="2024-02-29", now=pd.Timestamp("2026-01-01", tz="UTC").to_pydatetime())
    finally:
        store.close()
    assert runner.invoke(app, ask).exit_code == 0
    assert payment_id not in set(pd.read_csv(out)["payment_id"])
    unapplied = tmp_path / "unapplied.csv"
    assert runner.invoke(app, ["unapplied", "--ledger", str(arriving), "--as-of", "2024-02-29", "--no-match",
                               "--out", str(unapplied)]).exit_code == 0
    assert payment_id not in set(pd.read_csv(unapplied)["payment_id"])
