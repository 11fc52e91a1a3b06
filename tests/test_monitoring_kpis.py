"""The KPI dashboard: its tables, page, workbook and summary show the `rules/` numbers, and writes are atomic."""

from __future__ import annotations

import html
import json
import math
import re

import numpy as np
import openpyxl
import pandas as pd
import pytest

from ledger.synthetic import generate_ledger
from monitoring import kpi_dashboard
from monitoring.kpi_dashboard import (
    KPIS,
    cell_text,
    deterioration_by_period,
    kpi_dashboard_data,
    kpi_dashboard_html,
    kpi_dashboard_xlsx,
    top_deteriorating,
    write_atomically,
    write_kpi_dashboard,
)
from rules.aging import COMPANY, TOTAL, UNAPPLIED, aging_report, bucket_labels, company_total
from rules.kpis import kpi_report
from tests.ledgers import tiny_ledger

START, END = pd.Timestamp("2022-01-01"), pd.Timestamp("2022-08-31")
TINY_START, TINY_END = pd.Timestamp("2024-01-01"), pd.Timestamp("2024-03-31")


@pytest.fixture(scope="module")
def ledger():
    """30 customers over 8 months from 2022-01-01."""
    ledger, _ = generate_ledger(customers=30, months=8, seed=3, start=START)
    return ledger


@pytest.fixture(scope="module")
def report(ledger):
    return kpi_report(ledger, START, END)


@pytest.fixture(scope="module")
def deterioration(ledger):
    """A score per customer and month end, plus a month outside the range and a missing score."""
    rng = np.random.default_rng(0)
    ends = pd.date_range(START, END + pd.DateOffset(months=1), freq="ME")
    frame = pd.DataFrame([(end, customer, name, rng.random()) for end in ends
                          for customer, name in zip(ledger.customers["customer_id"], ledger.customers["name"],
                                                    strict=True)],
                         columns=["period_end", "customer_id", "name", "deterioration_probability"])
    frame.loc[0, "deterioration_probability"] = np.nan
    return frame


@pytest.fixture(scope="module")
def data(ledger, deterioration):
    return kpi_dashboard_data(ledger, START, END, deterioration=deterioration)


@pytest.fixture(scope="module")
def page(data):
    return kpi_dashboard_html(data)


def test_company_table_is_the_kpi_report_company_rows(data, report):
    expected = report[report["customer_id"] == COMPANY].drop(columns="customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(data["company"], expected)
    assert len(data["company"]) == 8


def test_customers_table_is_the_last_period_of_the_kpi_report(data, report, ledger):
    last = report[(report["period"] == "2022-08") & (report["customer_id"] != COMPANY)].set_index("customer_id")
    customers = data["customers"].set_index("customer_id")
    assert sorted(customers.index) == sorted(last.index)
    pd.testing.assert_frame_equal(customers.loc[last.index, last.columns], last)
    assert customers["ar_close"].is_monotonic_decreasing
    names = ledger.customers.set_index("customer_id")["name"]
    assert (customers["name"] == names.loc[customers.index]).all()


def test_aging_mix_shares_sum_to_one_and_amounts_are_the_aging_report_totals(data, ledger):
    mix, buckets = data["aging_mix"], bucket_labels()
    assert list(mix["period_end"]) == list(data["company"]["period_end"])
    np.testing.assert_allclose(mix[[f"share_{bucket}" for bucket in buckets]].sum(axis=1), 1.0, rtol=1e-12)
    amounts = [*buckets, UNAPPLIED, TOTAL]
    expected = pd.concat([company_total(aging_report(ledger, period_end)) for period_end in mix["period_end"]],
                         ignore_index=True)
    pd.testing.assert_frame_equal(mix[amounts], expected[amounts].astype(float))
    # The aging total is the AR the KPIs divide.
    np.testing.assert_allclose(mix[TOTAL], data["company"]["ar_close"], rtol=1e-12)


def test_workbook_round_trips_with_bold_frozen_headers(data, tmp_path):
    path = kpi_dashboard_xlsx(data, tmp_path / "kpis.xlsx")
    sheets = pd.read_excel(path, sheet_name=None)
    assert list(sheets) == list(data)
    for name, frame in data.items():
        pd.testing.assert_frame_equal(sheets[name], frame, check_dtype=False, obj=name)
    workbook = openpyxl.load_workbook(path)
    for sheet in workbook.worksheets:
        assert sheet.freeze_panes == "A2"
        assert all(cell.font.bold for cell in sheet[1])


def test_page_is_self_contained(page):
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link|iframe)\b", page, flags=re.IGNORECASE)
    sources = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert len(sources) == 5
    assert all(source.startswith("data:image/png;base64,") for source in sources)


def test_page_shows_the_report_numbers(page, data, ledger):
    latest = data["company"].iloc[-1]
    assert cell_text("dso_simple", latest["dso_simple"]) == f"{latest['dso_simple']:,.1f}"
    for kpi in ["dso_simple", "dso_countback", "bpdso", "add", "cei"]:
        assert f"<td>{cell_text(kpi, latest[kpi])}</td>" in page
    assert f"<td>{latest['dispute_rate']:.1%}</td>" in page
    assert f"<td>{latest['ar_close']:,.2f}</td>" in page
    assert ledger.fingerprint() in page and "2022-01-01 to 2022-08-31" in page


def test_page_escapes_text_from_the_ledger():
    name = '<script>alert("x")</script> & Co'
    tiny = tiny_ledger()
    tiny = tiny.replace(customers=tiny.customers.assign(name=[name, "Bolt SA"]))
    scores = pd.DataFrame({"period_end": [TINY_END, TINY_END], "customer_id": ["C1", "C2"],
                           "name": [name, "Bolt SA"], "deterioration_probability": [0.9, 0.2]})
    page = kpi_dashboard_html(kpi_dashboard_data(tiny, TINY_START, TINY_END, deterioration=scores),
                              title="KPIs <b>tiny</b>")
    assert "<script" not in page and "<b>tiny" not in page
    assert page.count(html.escape(name)) >= 2  # customers table and deterioration table
    assert "KPIs &lt;b&gt;tiny&lt;/b&gt;" in page


def test_deteriorating_is_the_top_ten_per_period_in_range(data, deterioration):
    top = data["deteriorating"]
    assert sorted(top["period_end"].unique()) == list(data["company"]["period_end"])
    for period_end, group in top.groupby("period_end"):
        scores = deterioration[deterioration["period_end"] == period_end].dropna()
        assert list(group["rank"]) == list(range(1, 11))
        assert list(group["deterioration_probability"]) == sorted(scores["deterioration_probability"].nlargest(10),
                                                                  reverse=True)
        expected_ids = scores.nlargest(10, "deterioration_probability")["customer_id"]
        assert list(group["customer_id"]) == list(expected_ids)


def test_deteriorating_ties_go_to_the_lower_id_and_names_come_from_the_ledger():
    tiny = tiny_ledger()
    scores = pd.DataFrame({"period_end": ["2024-03-31"] * 2, "customer_id": ["C2", "C1"],
                           "deterioration_probability": [0.5, 0.5]})
    top = top_deteriorating(scores, tiny.customers, TINY_START, TINY_END)
    assert list(top["customer_id"]) == ["C1", "C2"] and list(top["name"]) == ["Acme GmbH", "Bolt SA"]
    with pytest.raises(ValueError, match="missing: deterioration_probability"):
        top_deteriorating(scores.drop(columns="deterioration_probability"), tiny.customers, TINY_START, TINY_END)


def test_without_scores_the_page_says_not_available(ledger):
    data = kpi_dashboard_data(ledger, "2022-06-01", END)
    assert data["deteriorating"].empty
    assert "Not available: no deterioration scores" in kpi_dashboard_html(data)


def test_rising_lateness_fallback_compares_first_and_last_period(data, report, page):
    rising = data["rising_lateness"]
    assert 0 < len(rising) <= 10
    assert (rising["change_days"] > 0).all() and rising["change_days"].is_monotonic_decreasing
    late = report.set_index(["period", "customer_id"])["average_days_late"]
    for row in rising.itertuples(index=False):
        assert row.average_days_late_first == late[("2022-01", row.customer_id)]
        assert row.average_days_late_last == late[("2022-08", row.customer_id)]
    assert "Rising lateness (rule-based fallback)" in page


def test_end_before_start_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="period end 2024-01-01 is before its start 2024-03-01"):
        kpi_dashboard_data(tiny_ledger(), "2024-03-01", "2024-01-01")
    with pytest.raises(ValueError, match="before its start"):
        write_kpi_dashboard(tiny_ledger(), "2024-03-01", "2024-01-01", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_written_summary_holds_the_latest_kpis_and_their_change(tmp_path):
    tiny = tiny_ledger()
    report_path, workbook_path = write_kpi_dashboard(tiny, TINY_START, TINY_END, tmp_path)
    assert (report_path.name, workbook_path.name) == ("kpis.html", "kpis.xlsx")
    summary = json.loads((tmp_path / "kpis.json").read_text())
    company = kpi_report(tiny, TINY_START, TINY_END).query("customer_id == @COMPANY")
    first, latest = company.iloc[0], company.iloc[-1]
    assert (summary["first_period"], summary["latest_period"]) == ("2024-01", "2024-03")
    assert summary["ledger_fingerprint"] == tiny.fingerprint()
    for kpi in KPIS:
        expected, change = latest[kpi], latest[kpi] - first[kpi]
        assert summary["latest"][kpi] == (None if math.isnan(expected) else pytest.approx(expected))
        assert summary["change_from_first"][kpi] == (None if math.isnan(change) else pytest.approx(change))


def test_a_failed_write_keeps_the_previous_files(tmp_path, monkeypatch):
    tiny = tiny_ledger()
    write_kpi_dashboard(tiny, TINY_START, TINY_END, tmp_path)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    def fail_after_first_sheet(sheet):
        raise OSError(f"disk full while writing sheet {sheet.title}")

    monkeypatch.setattr(kpi_dashboard, "format_sheet", fail_after_first_sheet)
    with pytest.raises(OSError, match="disk full"):
        write_kpi_dashboard(tiny, TINY_START, "2024-02-29", tmp_path)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_write_atomically_leaves_no_partial_file(tmp_path):
    path = tmp_path / "kpis.html"
    path.write_text("previous report")

    def write_half(staging):
        staging.write_text("<html><body>half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_atomically(path, write_half)
    assert path.read_text() == "previous report"
    assert [entry.name for entry in tmp_path.iterdir()] == ["kpis.html"]


class ConstantModel:
    """A stand-in deterioration model: P(deteriorate) = 0.25 for every customer."""

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        return np.tile([0.75, 0.25], (len(rows), 1))


def test_deterioration_by_period_scores_every_customer_at_each_period_end_after_the_first_invoice(ledger):
    first = ledger.invoices["invoice_date"].min()
    ends = pd.Series([first - pd.Timedelta(days=1), pd.Timestamp("2022-03-31"), pd.Timestamp("2022-06-30")])
    scores = deterioration_by_period(ledger, ConstantModel(), ends)
    # The period end before any invoice is skipped; the others hold one row per customer known then.
    assert sorted(scores["period_end"].unique()) == [pd.Timestamp("2022-03-31"), pd.Timestamp("2022-06-30")]
    assert (scores["deterioration_probability"] == 0.25).all()
    assert not scores.duplicated(["period_end", "customer_id"]).any()
    assert deterioration_by_period(ledger, ConstantModel(), ends.head(1)) is None
