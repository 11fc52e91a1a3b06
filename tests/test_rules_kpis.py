"""KPIs of March 2024 for a hand-built ledger, every number worked out in the comments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ledger import Ledger
from rules.aging import COMPANY
from rules.kpis import countback_days, kpi_periods, kpi_report
from tests.ledgers import dates

MARCH = ("2024-03-01", "2024-03-31")  # 31 days


def kpi_ledger() -> Ledger:
    """Customer K: an old invoice over 90 days, one paid late, one paid in two parts, two March invoices,
    a March credit memo, two promises and a dispute. Customer L: one March invoice and unapplied cash."""
    customers = pd.DataFrame({
        "customer_id": ["K", "L"], "name": ["Kilo", "Lima"], "segment": ["mid", "mid"], "country": ["DE", "DE"],
        "currency": ["EUR", "EUR"], "payment_terms_days": [30, 30], "credit_limit": [9000.0, 9000.0],
        "created_date": dates("2023-01-01", "2023-01-01"),
    })
    invoices = pd.DataFrame({
        "invoice_id": ["I0", "I5", "I1", "I2", "I3", "CM", "J1"],
        "customer_id": ["K", "K", "K", "K", "K", "K", "L"],
        "doc_type": ["invoice"] * 5 + ["credit_memo", "invoice"],
        "invoice_date": dates("2023-11-01", "2024-01-15", "2024-02-10", "2024-03-01", "2024-03-20",
                              "2024-03-25", "2024-03-10"),
        "due_date": dates("2023-12-01", "2024-02-14", "2024-03-11", "2024-04-04", "2024-04-19",
                          "2024-03-25", "2024-04-09"),
        "amount": [300.0, 200.0, 1000.0, 600.0, 400.0, -100.0, 500.0],
        "currency": ["EUR"] * 7,
        "amount_base": [300.0, 200.0, 1000.0, 600.0, 400.0, -100.0, 500.0],
        "cleared_date": dates(None, "2024-03-04", "2024-03-16", None, None, None, None),
    })
    payments = pd.DataFrame({
        "payment_id": ["P5a", "P5b", "P1", "PL"],
        "customer_id": ["K", "K", "K", "L"],
        "received_date": dates("2024-02-20", "2024-03-04", "2024-03-16", "2024-03-31"),
        "amount": [100.0, 100.0, 1000.0, 50.0], "currency": ["EUR"] * 4,
        "amount_base": [100.0, 100.0, 1000.0, 50.0],
    })
    applications = pd.DataFrame({
        "payment_id": ["P5a", "P5b", "P1"], "invoice_id": ["I5", "I5", "I1"],
        "applied_date": dates("2024-02-20", "2024-03-04", "2024-03-16"), "amount": [100.0, 100.0, 1000.0],
    })
    promises = pd.DataFrame({
        "promise_id": ["PR1", "PR2", "PR3"], "customer_id": ["K", "K", "K"], "invoice_id": ["I1", None, "I2"],
        "made_date": dates("2024-03-01", "2024-03-01", "2024-03-20"),
        "promised_date": dates("2024-03-15", "2024-03-10", "2024-04-05"),
        "amount": [1000.0, 100.0, 600.0], "kept": pd.array([None, None, None], dtype="boolean"),
    })
    disputes = pd.DataFrame({
        "dispute_id": ["D0", "D1"], "invoice_id": ["I0", "I2"], "opened_date": dates("2024-02-01", "2024-03-10"),
        "resolved_date": dates(None, None), "reason": ["quality", "pricing"], "amount": [300.0, 600.0],
    })
    return Ledger(customers, invoices, payments, applications, disputes=disputes, promises=promises)


def march() -> pd.DataFrame:
    return kpi_report(kpi_ledger(), *MARCH, freq="month").set_index("customer_id")


def test_customer_kpis_by_hand():
    kilo = march().loc["K"]
    # Opening AR (2024-02-29): I0 300 + I5 200 - 100 paid + I1 1000 = 1400.
    # Credit sales in March: I2 600 + I3 400 - CM 100 = 900.
    # Closing AR (2024-03-31): I0 300 + I2 600 + I3 400 + CM -100 = 1200; current (not yet due): I2 + I3 = 1000.
    assert (kilo["ar_open"], kilo["credit_sales"], kilo["ar_close"], kilo["ar_current"]) == (1400, 900, 1200, 1000)
    assert kilo["dso_simple"] == pytest.approx(1200 / 900 * 31)  # 41.33
    assert kilo["bpdso"] == pytest.approx(1000 / 900 * 31)  # 34.44
    assert kilo["add"] == pytest.approx(200 / 900 * 31)  # 6.89
    assert kilo["cei"] == pytest.approx((1400 + 900 - 1200) / (1400 + 900 - 1000) * 100)  # 84.62
    # I0 due 2023-12-01 is 30 + 31 + 29 + 31 = 121 days past due on 2024-03-31: over 90.
    assert kilo["share_over_90"] == pytest.approx(300 / 1200)
    # Paid in March: I1 due 03-11 paid 03-16 (5 days late); I5 due 02-14, last part 03-04 (15 + 4 = 19).
    assert kilo["average_days_late"] == pytest.approx((5 + 19) / 2)
    # PR1 (I1 by 03-15, paid 03-16) broken; PR2 (100 on account by 03-10, P5b 100 on 03-04) kept;
    # PR3 is due in April.
    assert kilo["promise_kept_rate"] == pytest.approx(1 / 2)
    # D1 opened in March (D0 in February) over two invoices issued in March (the credit memo is not one).
    assert kilo["dispute_rate"] == pytest.approx(1 / 2)
    # Countback from 03-31 over daily sales: 03-25 -100 (day 7), 03-20 +400 (day 12) -> 300, 03-01 +600
    # (day 31, issued on the first day: not in opening AR) -> 900; 02-10 +1000 is day 31 + 20 = 51 and completes 1200: 50 full days + 300/1000.
    assert kilo["dso_countback"] == pytest.approx(50.3)


def test_company_kpis_add_up_the_customers():
    company = march().loc[COMPANY]
    lima = march().loc["L"]
    # Lima: J1 500 current, 50 unapplied cash: AR 450; sales 500; countback 21 days (03-31..03-11) + 450/500.
    assert (lima["ar_close"], lima["ar_current"], lima["credit_sales"]) == (450, 500, 500)
    assert lima["dso_countback"] == pytest.approx(21.9)
    # Company: AR 1200 + 450 = 1650, current 1500, sales 1400, opening 1400.
    assert company["dso_simple"] == pytest.approx(1650 / 1400 * 31)
    assert company["bpdso"] == pytest.approx(1500 / 1400 * 31)
    assert company["cei"] == pytest.approx((1400 + 1400 - 1650) / (1400 + 1400 - 1500) * 100)
    assert company["share_over_90"] == pytest.approx(300 / 1650)
    # Company daily sales back from 03-31: -100, +400 (300), +500 on 03-10 (800), +600 (1400), then
    # 02-10 +1000 on day 51 reaches 1650: 50 + 250/1000.
    assert company["dso_countback"] == pytest.approx(50.25)


def test_zero_denominators_are_missing_not_infinite():
    lima = march().loc["L"]
    # Lima's CEI denominator is 0 + 500 - 500 = 0; no promises; no paid invoices.
    assert np.isnan(lima["cei"]) and np.isnan(lima["promise_kept_rate"]) and np.isnan(lima["average_days_late"])


def test_periods_are_cut_at_both_ends_and_count_the_leap_day():
    periods = kpi_periods(pd.Timestamp("2024-01-15"), pd.Timestamp("2024-03-10"), "month")
    assert list(periods["period"]) == ["2024-01", "2024-02", "2024-03"]
    assert list(periods["days"]) == [17, 29, 10]
    quarters = kpi_periods(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-06-30"), "quarter")
    assert list(quarters["days"]) == [31 + 29 + 31, 30 + 31 + 30]
    with pytest.raises(ValueError, match="before its start"):
        kpi_periods(pd.Timestamp("2024-02-01"), pd.Timestamp("2024-01-01"))


def test_countback_edges():
    sales = np.array([[100.0, 0.0, 50.0], [100.0, 0.0, 50.0], [100.0, 0.0, 50.0]])  # last column = period end
    # 80: 50 on the last day, then a day of 0, then 30 of the 100 -> 2 + 0.3; 500: more than all history.
    assert countback_days(np.array([80.0, 500.0, -10.0]), sales) == pytest.approx([2.3, np.nan, 0.0], nan_ok=True)


def test_quarters_and_an_empty_ledger():
    ledger = kpi_ledger()
    quarter = kpi_report(ledger, "2024-01-01", "2024-03-31", freq="quarter").set_index("customer_id")
    # The quarter's sales: I5 200 + I1 1000 + 900 (K's March) + 500 (J1) = 2600 over 91 days.
    assert quarter.loc[COMPANY, "credit_sales"] == 2600
    assert quarter.loc[COMPANY, "dso_simple"] == pytest.approx(1650 / 2600 * 91)
    empty = ledger.replace(invoices=ledger.invoices.iloc[:0], payments=ledger.payments.iloc[:0],
                           payment_applications=ledger.payment_applications.iloc[:0],
                           promises=ledger.promises.iloc[:0], disputes=ledger.disputes.iloc[:0])
    report = kpi_report(empty, *MARCH)
    assert list(report["customer_id"]) == [COMPANY]
    assert report["dso_simple"].isna().all() and report.loc[0, "ar_close"] == 0
