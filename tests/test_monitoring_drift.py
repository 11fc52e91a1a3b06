"""Drift report: an injected drift is detected, a stable ledger reports none, the rule is applied."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from ledger.synthetic import generate_ledger
from monitoring.drift import (
    RetrainRule,
    column_drift,
    drift_columns,
    drift_summary,
    evidently_run,
    feature_rows,
    reference_cutoffs,
)

# 30 months: the reference months come after the first year, when the 365-day windows are full.
START, MONTHS = pd.Timestamp("2022-01-01"), 30
REFERENCE = reference_cutoffs(pd.Timestamp("2023-06-30"), 3)
AS_OF = pd.Timestamp("2024-03-31")


def ledger(seed: int, **overrides):
    return generate_ledger(customers=250, months=MONTHS, seed=seed, start=START, **overrides)[0]


@pytest.fixture(scope="module")
def reference_rows():
    return feature_rows(ledger(3), REFERENCE)


def drift_of(reference_rows, current_ledger) -> pd.DataFrame:
    current = feature_rows(current_ledger, [AS_OF])
    return column_drift(evidently_run(reference_rows, current, drift_columns(reference_rows, current)))


def test_reference_cutoffs_are_the_month_ends_up_to_the_date():
    assert reference_cutoffs(pd.Timestamp("2024-03-15"), 3) == [pd.Timestamp("2023-12-31"), pd.Timestamp("2024-01-31"),
                                                               pd.Timestamp("2024-02-29")]


def test_a_stable_ledger_reports_no_drift(reference_rows):
    # The same customers nine months later, nothing changed in how they pay.
    columns = drift_of(reference_rows, ledger(3))
    summary = drift_summary(columns, AS_OF, REFERENCE, trained_until=None)
    assert summary["drifted_share"] < RetrainRule().max_drifted_share
    assert not summary["retrain"] and summary["reasons"] == []
    lateness = columns.set_index("column").loc[["avg_days_late_last_10", "share_paid_late_365d"], "drifted"]
    assert not lateness.any()


def test_injected_late_payment_drift_is_detected_and_calls_for_retraining(reference_rows):
    # Most customers turn into late payers: the lateness features must drift.
    columns = drift_of(reference_rows, ledger(3, late_payer_share=0.85, late_payer_risk_mean=2.0))
    summary = drift_summary(columns, AS_OF, REFERENCE, trained_until=None)
    drifted = {item["column"] for item in summary["drifted_features"]}
    assert {"avg_days_late_last_10", "share_paid_late_90d"} <= drifted
    assert summary["retrain"] and "features drifted" in summary["reasons"][0]


def test_retraining_rule_counts_features_predictions_and_model_age():
    columns = pd.DataFrame({
        "column": ["a", "b", "c", "tenure_days", "p_late"],
        "method": ["Wasserstein distance (normed)"] * 4 + ["K-S p_value"],
        "score": [0.5, 0.05, 0.02, 0.9, 0.01], "threshold": [0.1, 0.1, 0.1, 0.1, 0.05],
        "drifted": [True, False, False, True, True],
    })
    summary = drift_summary(columns, pd.Timestamp("2024-06-30"), [], pd.Timestamp("2023-12-31"),
                            RetrainRule(max_drifted_share=0.5, max_model_age_days=150))
    assert summary["features_compared"] == 3 and summary["drifted_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["reasons"] == ["prediction p_late drifted",
                                  "champion trained 182 days before 2024-06-30 (rule: at most 150)"]
    assert [item["column"] for item in summary["drifted_features"]] == ["tenure_days", "a"]


def test_report_command_writes_html_and_json_with_the_verdict(scoring_ledger, champion_store, tmp_path):
    from ledger import write_ledger
    from serving.cli import app

    write_ledger(scoring_ledger, tmp_path / "ledger")
    result = CliRunner().invoke(app, ["report", "drift", "--ledger", str(tmp_path / "ledger"), "--as-of", "2023-06-30",
                                      "--tracking-uri", champion_store, "--out", str(tmp_path / "reports")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "reports" / "drift.json").read_text())
    assert summary["as_of"] == "2023-06-30" and summary["reference_cutoffs"][-1] == "2023-03-31"
    assert {item["column"] for item in summary["predictions"]} == {"p_late", "p_unpaid"}
    html = (tmp_path / "reports" / "drift.html").read_text()
    # No resource loaded from a network (plotly's bundled code holds a link to its site, which loads nothing).
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=["']https?://""", html)
    assert ("retrain" in result.output) and f"{summary['features_compared']} features" in result.output
