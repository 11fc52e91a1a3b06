"""Training pieces on hand-made numbers: metrics, label censoring, the promotion gate, lead time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training import metrics as m
from training.backtest import median_lead_days, weekly_wape
from training.datasets import backtest_origins, censor_customer_labels, censor_invoice_labels
from training.tracking import gate


def test_metrics_against_hand_computed_values():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    assert m.roc_auc(y, p) == pytest.approx(0.75)
    assert m.brier(y, p) == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert m.mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    assert m.pinball([10], [8], 0.9) == pytest.approx(1.8)
    assert m.pinball([10], [12], 0.9) == pytest.approx(0.2)
    assert m.wape([100, 50], [90, 70]) == pytest.approx(30 / 150)
    # paid at 5 (inside), paid at 30 (outside), unpaid when seen at 40 > 20 (a miss), unpaid at 8 (unknown)
    assert m.coverage_censored([5, 30, 40, 8], [True, True, False, False], [2] * 4, [20] * 4) == pytest.approx(1 / 3)
    assert m.precision_at_k([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1], 2) == pytest.approx(0.5)
    assert m.recall([1, 1, 0], [True, False, True]) == pytest.approx(0.5)
    assert np.isnan(m.roc_auc([1, 1], [0.2, 0.3]))


def test_ece_is_zero_when_calibrated_and_large_when_not():
    y = np.array([0] * 8 + [1] * 2)
    assert m.ece(y, np.full(10, 0.2)) == pytest.approx(0.0)
    assert m.ece(y, np.full(10, 0.9)) == pytest.approx(0.7)


def test_reliability_table_bins_rows_by_predicted_probability():
    y = np.array([0, 1, 0, 0, 1, 1])
    p = np.array([0.05, 0.15, 0.12, 0.55, 0.58, 1.0])
    table = m.reliability(y, p, bins=10)
    assert [(b["bin_low"], b["rows"]) for b in table] == [(0.0, 1), (0.1, 2), (0.5, 2), (0.9, 1)]
    assert table[1]["bin_high"] == pytest.approx(0.2)
    assert table[1]["mean_p"] == pytest.approx(0.135) and table[1]["observed"] == pytest.approx(0.5)
    # ECE is the row-weighted gap of this table: (0.05 + 2 * 0.365 + 2 * 0.065 + 0) / 6
    assert m.ece(y, p) == pytest.approx((0.05 + 2 * 0.365 + 2 * 0.065) / 6)


def test_invoice_labels_are_censored_at_the_origin():
    day = pd.Timestamp
    frame = pd.DataFrame({
        "cutoff": [day("2024-01-31")] * 3,
        "due_date": [day("2024-02-10"), day("2024-01-20"), day("2024-02-20")],
        "paid_date": [day("2024-02-12"), day("2024-04-15"), pd.NaT],
    })
    censored = censor_invoice_labels(frame, day("2024-02-29"))
    assert censored["paid"].tolist() == [True, False, False]
    assert censored["days_to_pay"].tolist() == [12.0, 29.0, 29.0]
    assert censored["days_late"].tolist() == [2.0, 41.0, 10.0]  # lower bounds for the unpaid: origin + 1 - due
    assert censored["observed_days_past_due"].tolist() == [19.0, 40.0, 9.0]


def test_customer_labels_are_censored_at_the_origin():
    day = pd.Timestamp
    frame = pd.DataFrame({
        "cutoff": [day("2024-01-31")] * 4,
        "already_deteriorated": [False, False, False, True],
        "deterioration_date": [day("2024-02-15"), day("2024-04-01"), pd.NaT, pd.NaT],
    })
    early = censor_customer_labels(frame, day("2024-03-01"))["deteriorates"]
    assert early[0] == 1.0  # the event on 15 Feb is already known
    assert early[1:].isna().all()  # window not over yet and no event seen; or already deteriorated
    later = censor_customer_labels(frame, day("2024-06-30"))["deteriorates"]
    assert later[:3].tolist() == [1.0, 1.0, 0.0]  # 2024-04-01 lies inside the 90-day window
    assert np.isnan(later[3])


def test_backtest_origins_need_observed_labels_and_history():
    cutoffs = list(pd.date_range("2023-01-31", "2023-12-31", freq="ME"))
    origins = backtest_origins(cutoffs, pd.Timestamp("2023-12-31"), count=3)
    assert origins == [pd.Timestamp("2023-07-31"), pd.Timestamp("2023-08-31"), pd.Timestamp("2023-09-30")]


def test_gate_promotes_only_a_model_that_beats_every_rival():
    rules = {"roc_auc": True, "brier": False}
    better = gate({"roc_auc": 0.8, "brier": 0.10}, {"prior": {"roc_auc": 0.5, "brier": 0.2}}, rules)
    assert better.promote
    worse_brier = gate({"roc_auc": 0.8, "brier": 0.25}, {"prior": {"roc_auc": 0.5, "brier": 0.2}}, rules)
    assert not worse_brier.promote and "brier" in worse_brier.reason and "prior" in worse_brier.reason
    tie = gate({"roc_auc": 0.8, "brier": 0.1}, {"champion v1": {"roc_auc": 0.8, "brier": 0.1}}, rules)
    assert not tie.promote  # a tie does not replace the champion
    undefined = gate({"roc_auc": float("nan"), "brier": 0.1}, {}, rules)
    assert not undefined.promote


def test_weekly_wape_pools_origins():
    one = pd.DataFrame({"actual": [100.0, 0.0], "model": [90.0, 10.0]})
    two = pd.DataFrame({"actual": [50.0, 40.0], "model": [70.0, 40.0]})
    assert weekly_wape([one, two], "model") == pytest.approx([30 / 150, 10 / 40])


def test_median_lead_days_counts_from_the_first_flag():
    day = pd.Timestamp
    rows = pd.DataFrame({
        "customer_id": ["A", "A", "B", "C"],
        "cutoff": [day("2024-01-31"), day("2024-02-29"), day("2024-02-29"), day("2024-02-29")],
        "y": [1, 1, 1, 0],
        "event_date": [day("2024-03-20"), day("2024-03-20"), day("2024-03-10"), pd.NaT],
        "flag": [True, True, True, True],
    })
    assert median_lead_days(rows, "flag") == pytest.approx((49 + 10) / 2)
