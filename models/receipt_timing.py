"""Receipt timing per open invoice: a distribution over the pay date, aware of censoring.

Method: a discrete-time hazard over weekly intervals, fitted with LightGBM. Each open invoice at a
cutoff becomes one row per week it was observed at risk; the target says whether it was paid in that
week. An invoice still open when observation ends contributes its fully observed weeks with no event
and nothing after, so censored invoices are neither dropped (which would bias towards quick payers)
nor imputed. We chose it over censored quantile regression because one model then gives P(paid by
day d) for every d, the quantiles and the weekly cash expectation, all consistent with each other,
and because the hazard can depend on how overdue the invoice will be in that week.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from models.boosting import NotEnoughLabels, lgbm_params
from models.encoding import FrameEncoder

QUANTILES = (0.1, 0.5, 0.9)


def person_period(days_to_pay: np.ndarray, paid: np.ndarray, horizon_weeks: int) -> tuple[np.ndarray, ...]:
    """Expand invoices to weekly rows at risk: (row index, week 1.., paid in that week)."""
    days = np.asarray(days_to_pay, dtype=float)
    paid = np.asarray(paid, dtype=bool)
    event_week = np.ceil(np.maximum(days, 1) / 7).astype(int)
    # Paid: at risk up to and including the event week. Censored: only the weeks seen in full.
    weeks_at_risk = np.where(paid, event_week, np.floor(days / 7).astype(int))
    weeks_at_risk = np.clip(weeks_at_risk, 0, horizon_weeks)
    rows = np.repeat(np.arange(len(days)), weeks_at_risk)
    starts = np.cumsum(weeks_at_risk) - weeks_at_risk
    week = np.arange(len(rows)) - np.repeat(starts, weeks_at_risk) + 1
    event = paid[rows] & (week == event_week[rows])
    return rows, week, event.astype(int)


class ReceiptTimingModel(BaseEstimator):
    """Weekly discrete-time hazard (see the module docstring) over `horizon_weeks`.

    `fit(X, y)` takes `y` as a frame with `days_to_pay` (days from the cutoff to payment, or to the end
    of observation when unpaid) and `paid` (bool)."""

    def __init__(self, features: Sequence[str] | None = None, horizon_weeks: int = 26,
                 days_past_due_column: str | None = "days_past_due", max_rows: int = 4_000_000,
                 n_estimators: int = 300, learning_rate: float = 0.05, num_leaves: int = 31,
                 min_child_samples: int = 100, random_state: int = 0):
        self.features = features
        self.horizon_weeks = horizon_weeks
        self.days_past_due_column = days_past_due_column
        self.max_rows = max_rows
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: pd.DataFrame) -> ReceiptTimingModel:
        self.encoder_ = FrameEncoder(self.features).fit(X)
        days, paid = y["days_to_pay"].to_numpy(dtype=float), y["paid"].to_numpy(dtype=bool)
        keep = self._sample(days, paid)
        X, days, paid = X.iloc[keep], days[keep], paid[keep]
        rows, week, event = person_period(days, paid, self.horizon_weeks)
        if event.sum() == 0 or event.sum() == len(event):
            raise NotEnoughLabels("need both paid and unpaid weeks to fit the hazard")
        matrix = self._weekly_matrix(self.encoder_.transform(X), rows, week)
        params = lgbm_params(self.n_estimators, self.learning_rate, self.num_leaves,
                             self.min_child_samples, self.random_state)
        self.hazard_ = lgb.LGBMClassifier(**params).fit(matrix, event)
        self.feature_names_in_ = self.encoder_.feature_names_in_
        self.rows_ = {"invoices": len(days), "person_weeks": len(rows)}
        return self

    def _sample(self, days: np.ndarray, paid: np.ndarray) -> np.ndarray:
        """Row positions to train on: all, or a seeded random subset when the expansion is too big."""
        weeks = np.clip(np.ceil(np.maximum(days, 1) / 7), 0, self.horizon_weeks)
        total = weeks.sum()
        if total <= self.max_rows:
            return np.arange(len(days))
        rng = np.random.default_rng(self.random_state)
        return np.sort(rng.choice(len(days), size=int(len(days) * self.max_rows / total), replace=False))

    def _weekly_matrix(self, encoded: pd.DataFrame, rows: np.ndarray, week: np.ndarray) -> pd.DataFrame:
        matrix = encoded.iloc[rows].reset_index(drop=True)
        matrix["week"] = week
        if self.days_past_due_column and self.days_past_due_column in encoded:
            matrix["days_past_due_in_week"] = matrix[self.days_past_due_column] + 7 * (week - 1)
        return matrix

    def weekly_hazard(self, X: pd.DataFrame) -> np.ndarray:
        """P(paid in week k | unpaid at its start), shape (invoices, horizon_weeks)."""
        check_is_fitted(self, "hazard_")
        n, weeks = len(X), self.horizon_weeks
        rows = np.repeat(np.arange(n), weeks)
        week = np.tile(np.arange(1, weeks + 1), n)
        matrix = self._weekly_matrix(self.encoder_.transform(X), rows, week)
        return self.hazard_.predict_proba(matrix)[:, 1].reshape(n, weeks)

    def weekly_paid_share(self, X: pd.DataFrame) -> np.ndarray:
        """P(paid by the end of week k), shape (invoices, horizon_weeks), non-decreasing along k."""
        return 1 - np.cumprod(1 - self.weekly_hazard(X), axis=1)

    def predict_cdf(self, X: pd.DataFrame, days: Sequence[float]) -> np.ndarray:
        """P(paid within d days of the cutoff) for each d (linear within a week), shape (invoices, days)."""
        by_week = np.column_stack([np.zeros(len(X)), self.weekly_paid_share(X)])
        days = np.clip(np.asarray(days, dtype=float), 0, self.horizon_weeks * 7.0)
        week = np.minimum((days // 7).astype(int), self.horizon_weeks - 1)
        fraction = days / 7 - week
        return by_week[:, week] + fraction * (by_week[:, week + 1] - by_week[:, week])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Median days from the cutoff to payment (the pyfunc / serving default)."""
        return self.predict_quantiles(X, (0.5,))["p50"].to_numpy()

    def predict_quantiles(self, X: pd.DataFrame, quantiles: Sequence[float] = QUANTILES) -> pd.DataFrame:
        """Days from the cutoff by which each quantile of the pay-date distribution is reached; the
        horizon (`horizon_weeks` x 7) where the model puts less mass than that inside it."""
        by_week = np.column_stack([np.zeros(len(X)), self.weekly_paid_share(X)])
        columns = {f"p{round(q * 100)}": _first_crossing(by_week, q) for q in quantiles}
        return pd.DataFrame(columns, index=X.index)


def _first_crossing(cumulative: np.ndarray, level: float) -> np.ndarray:
    """Per row, the day (linear within a week) where the weekly cumulative curve first reaches `level`."""
    weeks = cumulative.shape[1] - 1
    reached = cumulative >= level
    first = np.where(reached.any(axis=1), reached.argmax(axis=1), weeks + 1)
    days = np.full(len(cumulative), weeks * 7.0)
    inside = (first >= 1) & (first <= weeks)
    rows = np.flatnonzero(inside)
    before, after = cumulative[rows, first[rows] - 1], cumulative[rows, first[rows]]
    fraction = np.where(after > before, (level - before) / np.maximum(after - before, 1e-12), 1.0)
    days[rows] = (first[rows] - 1 + fraction) * 7.0
    days[first == 0] = 0.0
    return days
