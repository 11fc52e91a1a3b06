"""The reports open in a browser with no network: headless Chromium renders each one to a screenshot
(kept in out/screenshots/ for a person to look at) that is not blank."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.browser import distinct_colours, screenshot
from tests.conftest import SCORING_DATE

SHOTS = Path(__file__).resolve().parents[1] / "out" / "screenshots"


@pytest.fixture(scope="module")
def reports(scoring_ledger, champions, tmp_path_factory):
    from monitoring.drift import drift_report, write_drift_report
    from monitoring.kpi_dashboard import write_kpi_dashboard
    from monitoring.performance import performance_table, scored_months, write_performance

    out = tmp_path_factory.mktemp("reports")
    write_kpi_dashboard(scoring_ledger, pd.Timestamp("2022-07-01"), SCORING_DATE, out)
    write_drift_report(drift_report(scoring_ledger, SCORING_DATE, champions), out)
    table = performance_table(scored_months(scoring_ledger, champions, start=pd.Timestamp("2022-12-31")))
    write_performance(table, scoring_ledger.fingerprint(), out)
    return out


@pytest.mark.parametrize("page", ["kpis.html", "drift.html", "performance.html"])
def test_report_renders_offline_in_headless_chromium(reports, page):
    SHOTS.mkdir(parents=True, exist_ok=True)
    png = screenshot(reports / page, SHOTS / page.replace(".html", ".png"))
    assert png.stat().st_size > 20_000
    assert distinct_colours(png) > 50
