"""Receipt-timing model on small data made here: the period grid, the due date, old saved models."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd

from models.receipt_timing import ReceiptTimingModel, period_edges, person_period_on


def test_period_edges_are_fine_first_then_weekly():
    np.testing.assert_array_equal(period_edges(21, 7, fine_days=6, fine_period_days=2), [0, 2, 4, 6, 13, 20, 27])
    np.testing.assert_array_equal(period_edges(21, 7), [0, 7, 14, 21])
    # A fine region beyond the horizon stops at the horizon.
    np.testing.assert_array_equal(period_edges(6, 7, fine_days=42, fine_period_days=3), [0, 3, 6])


def test_person_period_on_uneven_periods():
    edges = np.array([0.0, 2, 4, 11, 18])
    rows, period, event = person_period_on(np.array([3.0, 10.0, 9.0, 1.0, 40.0]),
                                           np.array([True, True, False, False, True]), edges)
    # paid day 3 -> periods 1-2; paid day 10 -> 1-3; censored at day 9 -> 2 full; censored at day 1 -> none;
    # paid after the horizon -> at risk in all 4 periods, no event
    np.testing.assert_array_equal(np.bincount(rows, minlength=5), [2, 3, 2, 0, 4])
    np.testing.assert_array_equal(period[event == 1], [2, 3])
    assert event.sum() == 2


def due_date_payers(n: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Invoices due 3 to 30 days after the cutoff (or up to 10 days past due), paid 0-2 days after the due
    date (at once when already past due); a quarter still open at day 20 are censored there."""
    rng = np.random.default_rng(seed)
    signed_due = rng.integers(-10, 31, n).astype(float)
    frame = pd.DataFrame({"days_past_due": np.maximum(-signed_due, 0), "days_to_due": np.maximum(signed_due, 0),
                          "x": rng.normal(size=n), "cutoff": pd.Timestamp("2024-01-31")})
    days = np.maximum(signed_due, 0) + rng.integers(1, 4, n)
    censored = (rng.random(n) < 0.25) & (days > 20)
    y = pd.DataFrame({"days_to_pay": np.where(censored, 20.0, days), "paid": ~censored})
    return frame, y.assign(true_days=days)


def test_fine_periods_and_signed_due_days_put_the_median_at_the_due_date():
    """Payments bunch just after the due date: with daily periods near the cutoff and the signed days
    from the due date in each period, the median lands within a day; weekly periods cannot do as well."""
    frame, y = due_date_payers()
    features = ["days_past_due", "days_to_due", "x"]
    fine = ReceiptTimingModel(features=features, horizon_weeks=8, fine_days=35, fine_period_days=1,
                              days_to_due_column="days_to_due", n_estimators=60, min_child_samples=20).fit(frame, y)
    weekly = ReceiptTimingModel(features=features, horizon_weeks=8, n_estimators=60,
                                min_child_samples=20).fit(frame, y)
    error_fine = np.abs(fine.predict(frame) - y["true_days"]).mean()
    error_weekly = np.abs(weekly.predict(frame) - y["true_days"]).mean()
    assert error_fine < 1.5, error_fine
    assert error_fine < error_weekly - 0.5, (error_fine, error_weekly)
    # The CDF at any days agrees with the paid shares at the period edges and with the quantiles.
    head = frame.head(40)
    edges = fine.edges
    np.testing.assert_allclose(fine.predict_cdf(head, edges[1:6]), fine.paid_share(head, 5))
    p50 = fine.predict_quantiles(head)["p50"].to_numpy()
    at_p50 = np.array([fine.predict_cdf(head.iloc[[i]], [p50[i]])[0, 0] for i in range(len(head))])
    np.testing.assert_allclose(at_p50[p50 < fine.horizon_days], 0.5, atol=1e-9)


def test_a_model_saved_before_the_fine_periods_loads_and_predicts_as_before():
    frame, y = due_date_payers(n=600)
    old = ReceiptTimingModel(features=["days_past_due", "days_to_due", "x"], horizon_weeks=6, n_estimators=20,
                             days_to_due_column=None, min_child_samples=20).fit(frame, y)
    expected = old.predict_cdf(frame, [0, 3, 7, 20, 42])
    state = dict(old.__dict__)
    for name in ("fine_days", "fine_period_days", "days_to_due_column"):  # what an old pickle lacks
        state.pop(name)
    saved = ReceiptTimingModel.__new__(ReceiptTimingModel)
    saved.__dict__.update(state)
    loaded = pickle.loads(pickle.dumps(saved))
    np.testing.assert_allclose(loaded.predict_cdf(frame, [0, 3, 7, 20, 42]), expected)
    assert loaded.periods == 6 and loaded.horizon_days == 42
