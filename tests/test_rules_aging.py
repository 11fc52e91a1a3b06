"""Aging against a hand-built ledger: every bucket worked out by hand, as of the leap day 2024-02-29."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ledger import Ledger
from rules.aging import (
    COMPANY,
    aging_bucket,
    aging_detail,
    aging_report,
    bucket_labels,
    company_total,
    with_company_total,
)
from tests.ledgers import dates

AS_OF = pd.Timestamp("2024-02-29")
BUCKETS = ["Current", "1-30", "31-60", "61-90", "91-120", "120+"]


def aging_ledger() -> Ledger:
    """Customer A: partial payment, item due today, credit memo, written-down old invoice, a payment
    applied after the date and unapplied cash. B: only unapplied cash. C: fully paid. D: a USD invoice."""
    customers = pd.DataFrame({
        "customer_id": ["A", "B", "C", "D"], "name": ["Alpha", "Beta", "Gamma", "Delta"],
        "segment": ["mid"] * 4, "country": ["DE"] * 4, "currency": ["EUR", "EUR", "EUR", "USD"],
        "payment_terms_days": [30] * 4, "credit_limit": [5000.0] * 4, "created_date": dates(*["2023-01-01"] * 4),
    })
    invoices = pd.DataFrame({
        "invoice_id": ["INV1", "INV2", "INV3", "CM1", "INV4", "CINV", "DINV", "LATER"],
        "customer_id": ["A", "A", "A", "A", "A", "C", "D", "A"],
        "doc_type": ["invoice", "invoice", "invoice", "credit_memo", "invoice", "invoice", "invoice", "invoice"],
        "invoice_date": dates("2023-12-31", "2024-01-30", "2023-12-30", "2023-11-01", "2023-10-01",
                              "2024-01-01", "2024-02-14", "2024-03-01"),
        "due_date": dates("2024-01-30", "2024-02-29", "2024-01-29", "2023-11-01", "2023-10-31",
                          "2024-01-31", "2024-03-15", "2024-03-31"),
        "amount": [1000.0, 500.0, 200.0, -150.0, 300.0, 700.0, 110.0, 999.0],
        "currency": ["EUR"] * 6 + ["USD", "EUR"],
        "amount_base": [1000.0, 500.0, 200.0, -150.0, 300.0, 700.0, 100.0, 999.0],
        "cleared_date": dates(None, None, "2024-03-05", None, None, "2024-02-10", None, None),
    })
    payments = pd.DataFrame({
        "payment_id": ["PA", "PB", "PC", "PA2"],
        "customer_id": ["A", "B", "C", "A"],
        "received_date": dates("2024-02-10", "2024-02-20", "2024-02-10", "2024-03-05"),
        "amount": [450.0, 250.0, 700.0, 200.0],
        "currency": ["EUR"] * 4,
        "amount_base": [450.0, 250.0, 700.0, 200.0],
    })
    applications = pd.DataFrame({
        "payment_id": ["PA", "PC", "PA2"],
        "invoice_id": ["INV1", "CINV", "INV3"],
        "applied_date": dates("2024-02-10", "2024-02-10", "2024-03-05"),
        "amount": [400.0, 700.0, 200.0],
    })
    writeoffs = pd.DataFrame({"invoice_id": ["INV4"], "date": dates("2024-02-01"), "amount": [100.0]})
    return Ledger(customers, invoices, payments, applications, writeoffs=writeoffs, base_currency="EUR")


def row(report: pd.DataFrame, customer: str, currency: str = "EUR") -> pd.Series:
    match = report[(report["customer_id"] == customer) & (report["currency"] == currency)]
    assert len(match) == 1, match
    return match.iloc[0]


def test_bucket_labels_and_boundaries():
    assert bucket_labels() == BUCKETS
    assert bucket_labels((0, 45)) == ["Current", "1-45", "45+"]
    ages = pd.Series([-3.0, 0.0, 1.0, 30.0, 31.0, 60.0, 61.0, 90.0, 91.0, 120.0, 121.0])
    assert list(aging_bucket(ages)) == ["Current", "Current", "1-30", "1-30", "31-60", "31-60", "61-90",
                                        "61-90", "91-120", "91-120", "120+"]
    with pytest.raises(ValueError, match="strictly increasing"):
        bucket_labels((30, 30))


def test_customer_buckets_by_hand_on_a_leap_day():
    report = aging_report(aging_ledger(), AS_OF)
    alpha = row(report, "A")
    # INV1: 1000 - 400 paid = 600, due 2024-01-30: age = 1 (to Jan 31) + 29 (February 2024) = 30 -> 1-30.
    # INV2: 500 due today -> Current. INV3: 200 due 2024-01-29, age 31 -> 31-60 (paid only on 2024-03-05).
    # CM1: -150 due 2023-11-01, age 29 + 31 + 31 + 29 = 120 -> 91-120, negative as in ERP reports.
    # INV4: 300 - 100 written off = 200, due 2023-10-31, age 121 -> 120+.
    # Unapplied: PA 450 received, 400 applied -> -50. LATER (issued 2024-03-01) and PA2 are unknown yet.
    expected = {"Current": 500.0, "1-30": 600.0, "31-60": 200.0, "61-90": 0.0, "91-120": -150.0,
                "120+": 200.0, "Unapplied": -50.0, "Total": 1300.0}
    assert alpha[list(expected)].to_dict() == pytest.approx(expected)
    assert alpha["name"] == "Alpha"


def test_only_unapplied_cash_and_paid_customers():
    report = aging_report(aging_ledger(), AS_OF)
    beta = row(report, "B")
    assert beta[BUCKETS].abs().sum() == 0
    assert (beta["Unapplied"], beta["Total"]) == (-250.0, -250.0)
    assert "C" not in set(report["customer_id"])  # paid in full: nothing open


def test_base_and_document_currency():
    ledger = aging_ledger()
    base = aging_report(ledger, AS_OF, currency="base")
    document = aging_report(ledger, AS_OF, currency="document")
    assert row(base, "D")["Current"] == 100.0  # 110 USD booked at 100 EUR
    assert row(document, "D", "USD")["Current"] == 110.0
    assert row(document, "A", "EUR")["Total"] == 1300.0


def test_totals_reconcile_to_the_account_balance():
    ledger = aging_ledger()
    report = aging_report(ledger, AS_OF)
    # Account balance = documents issued - payments received - write-offs, all by AS_OF:
    # A: (1000 + 500 + 200 - 150 + 300) - 450 - 100 = 1300; B: -250; C: 700 - 700 = 0; D: 100.
    assert report.set_index("customer_id")["Total"].to_dict() == pytest.approx({"A": 1300.0, "B": -250.0, "D": 100.0})
    total = company_total(report).iloc[0]
    assert total["customer_id"] == COMPANY
    assert total["Total"] == pytest.approx(1300.0 - 250.0 + 100.0)
    assert total[[*BUCKETS, "Unapplied"]].sum() == pytest.approx(total["Total"])
    assert with_company_total(report).iloc[-1]["customer_id"] == COMPANY


def test_invoice_date_basis_and_custom_limits():
    detail = aging_detail(aging_ledger(), AS_OF, limits=(0, 45), basis="invoice_date").set_index("item_id")
    # INV1 issued 2023-12-31: 31 + 29 = 60 days -> 45+; INV2 issued 2024-01-30: 30 days -> 1-45.
    assert detail.loc["INV1", "age_days"] == 60
    assert (detail.loc["INV1", "bucket"], detail.loc["INV2", "bucket"]) == ("45+", "1-45")
    assert detail.loc["PA", "bucket"] == "Unapplied" and detail.loc["PA", "open_amount"] == -50.0


def test_an_empty_ledger_gives_an_empty_report():
    ledger = aging_ledger()
    empty = ledger.replace(invoices=ledger.invoices.iloc[:0], payments=ledger.payments.iloc[:0],
                           payment_applications=ledger.payment_applications.iloc[:0],
                           writeoffs=ledger.writeoffs.iloc[:0])
    report = aging_report(empty, AS_OF)
    assert report.empty
    assert list(report.columns) == ["customer_id", "name", "currency", *BUCKETS, "Unapplied", "Total"]
    assert with_company_total(report).empty


def test_bad_basis_is_rejected():
    with pytest.raises(ValueError, match="basis"):
        aging_report(aging_ledger(), AS_OF, basis="posting_date")  # type: ignore[arg-type]


def test_totals_reconcile_on_a_synthetic_ledger():
    from ledger.synthetic import generate_ledger

    ledger, _truth = generate_ledger(customers=30, months=8, seed=3, start=pd.Timestamp("2023-01-01"))
    as_of = pd.Timestamp("2023-07-15")
    # In document currency: in company currency a payment's rate differs from its invoices' (FX differences).
    report = aging_report(ledger, as_of, currency="document").set_index(["customer_id", "currency"])["Total"]
    # Independent of applications: documents issued - payments received - write-offs (signed like the document).
    invoices = ledger.invoices[ledger.invoices["invoice_date"] <= as_of]
    payments = ledger.payments[ledger.payments["received_date"] <= as_of]
    writeoffs = ledger.writeoffs[ledger.writeoffs["date"] <= as_of].merge(invoices, on="invoice_id",
                                                                          suffixes=("", "_doc"))
    keys = ["customer_id", "currency"]
    balance = (invoices.groupby(keys)["amount"].sum()
               .sub(payments.groupby(keys)["amount"].sum(), fill_value=0.0)
               .sub((writeoffs["amount"] * np.sign(writeoffs["amount_doc"])).groupby(
                   [writeoffs["customer_id"], writeoffs["currency"]]).sum(), fill_value=0.0))
    balance = balance[balance.abs() > 0.05]
    assert len(balance) > 10 and invoices["currency"].nunique() > 1
    # Documents within the 0.005 settlement tolerance leave the report, hence the small absolute tolerance.
    assert report.reindex(balance.index).to_numpy() == pytest.approx(balance.to_numpy(), abs=0.05)
    assert set(report[report.abs() > 0.05].index) == set(balance.index)
