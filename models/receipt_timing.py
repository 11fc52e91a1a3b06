"""Receipt timing per open invoice: a distribution over the pay date, aware of censoring.

Method: a discrete-time hazard over periods of days from the cutoff, fitted with LightGBM: periods of
`fine_period_days` days over the first `fine_days` days (where the due dates of most open items fall,
so the pay-date quantiles are not held to week edges), then of `period_days` days (a week) out to the
horizon. Each open invoice at a cutoff becomes one row per period it was observed at risk; the target
says whether it was paid in that period. An invoice still open when observation ends contributes its
fully observed periods with no event and nothing after, so censored invoices are neither dropped
(which would bias towards quick payers) nor imputed. Each period row knows how many days past the due
date the invoice is at the period's start (signed, negative before it, when `days_to_due_column` is
given), so the hazard can rise at the due date.
We chose it over censored quantile regression because one model then gives P(paid by day d) for every
d, the quantiles and the weekly cash expectation, all consistent with each other.
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


def period_edges(horizon_days: float, period_days: int = 7, fine_days: int = 0, fine_period_days: int = 1) -> np.ndarray:
    """Day edges of the periods from the cutoff: 0, steps of `fine_period_days` up to `fine_days`, then
    steps of `period_days` until the horizon is covered."""
    fine_days = min(int(fine_days), int(np.ceil(horizon_days / fine_period_days)) * fine_period_days) if fine_days > 0 else 0
    fine = np.arange(0, fine_days + 1, fine_period_days) if fine_days > 0 else np.array([0])
    start = fine[-1]
    coarse = start + period_days * np.arange(1, int(np.ceil(max(horizon_days - start, 0) / period_days)) + 1)
    return np.concatenate([fine, coarse]).astype(float)


def person_period(days_to_pay: np.ndarray, paid: np.ndarray, periods: int,
                  period_days: int = 7) -> tuple[np.ndarray, ...]:
    """Expand invoices to rows per period at risk on a grid of equal periods (`person_period_on`)."""
    return person_period_on(days_to_pay, paid, np.arange(periods + 1) * float(period_days))


def person_period_on(days_to_pay: np.ndarray, paid: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, ...]:
    """Expand invoices to rows per period at risk: (row index, period 1.., paid in that period); period k
    covers the days (edges[k-1], edges[k]]."""
    days = np.asarray(days_to_pay, dtype=float)
    paid = np.asarray(paid, dtype=bool)
    periods = len(edges) - 1
    event_period = np.searchsorted(edges, np.maximum(days, 1), side="left")
    # Paid: at risk up to and including the event period. Censored: only the periods seen in full.
    at_risk = np.where(paid, event_period, np.searchsorted(edges, days, side="right") - 1)
    at_risk = np.clip(at_risk, 0, periods)
    rows = np.repeat(np.arange(len(days)), at_risk)
    starts = np.cumsum(at_risk) - at_risk
    period = np.arange(len(rows)) - np.repeat(starts, at_risk) + 1
    event = paid[rows] & (period == event_period[rows])
    return rows, period, event.astype(int)


class ReceiptTimingModel(BaseEstimator):
    """Discrete-time hazard (see the module docstring) over `horizon_weeks`, in periods of
    `fine_period_days` days over the first `fine_days` days, then of `period_days` days.

    `fit(X, y)` takes `y` as a frame with `days_to_pay` (days from the cutoff to payment, or to the end
    of observation when unpaid) and `paid` (bool)."""

    def __init__(self, features: Sequence[str] | None = None, horizon_weeks: int = 26, period_days: int = 7,
                 fine_days: int = 0, fine_period_days: int = 1,
                 days_past_due_column: str | None = "days_past_due", days_to_due_column: str | None = None,
                 max_rows: int = 4_000_000, n_estimators: int = 300, learning_rate: float = 0.05,
                 num_leaves: int = 31, min_child_samples: int = 100, random_state: int = 0):
        self.features = features
        self.horizon_weeks = horizon_weeks
        self.period_days = period_days
        self.fine_days = fine_days
        self.fine_period_days = fine_period_days
        self.days_past_due_column = days_past_due_column
        self.days_to_due_column = days_to_due_column
        self.max_rows = max_rows
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.random_state = random_state

    def __setstate__(self, state: dict) -> None:
        # A model saved before the fine periods and the signed days from the due date: equal periods, and
        # its hazard was fitted on the days past due (0 while not yet due) at each period's start.
        state = {"fine_days": 0, "fine_period_days": 1, "days_to_due_column": None, **state}
        super().__setstate__(state)

    @property
    def edges(self) -> np.ndarray:
        """Day edges of the periods, from 0 to the horizon."""
        return period_edges(self.horizon_weeks * 7, self.period_days, self.fine_days, self.fine_period_days)

    @property
    def periods(self) -> int:
        """Number of periods covering the horizon."""
        return len(self.edges) - 1

    @property
    def horizon_days(self) -> float:
        """Days from the cutoff the periods cover."""
        return float(self.edges[-1])

    def fit(self, X: pd.DataFrame, y: pd.DataFrame) -> ReceiptTimingModel:
        self.encoder_ = FrameEncoder(self.features).fit(X)
        days, paid = y["days_to_pay"].to_numpy(dtype=float), y["paid"].to_numpy(dtype=bool)
        keep = self._sample(days, paid)
        X, days, paid = X.iloc[keep], days[keep], paid[keep]
        rows, period, event = person_period_on(days, paid, self.edges)
        if event.sum() == 0 or event.sum() == len(event):
            raise NotEnoughLabels("need both paid and unpaid periods to fit the hazard")
        matrix = self._period_matrix(self.encoder_.transform(X), rows, period)
        params = lgbm_params(self.n_estimators, self.learning_rate, self.num_leaves,
                             self.min_child_samples, self.random_state)
        self.hazard_ = lgb.LGBMClassifier(**params).fit(matrix, event)
        self.feature_names_in_ = self.encoder_.feature_names_in_
        self.rows_ = {"invoices": len(days), "person_periods": len(rows)}
        return self

    def _sample(self, days: np.ndarray, paid: np.ndarray) -> np.ndarray:
        """Row positions to train on: all, or a seeded random subset when the expansion is too big."""
        edges = self.edges
        periods = np.clip(np.searchsorted(edges, np.maximum(days, 1), side="left"), 0, len(edges) - 1)
        total = periods.sum()
        if total <= self.max_rows:
            return np.arange(len(days))
        rng = np.random.default_rng(self.random_state)
        return np.sort(rng.choice(len(days), size=int(len(days) * self.max_rows / total), replace=False))

    def _period_matrix(self, encoded: pd.DataFrame, rows: np.ndarray, period: np.ndarray) -> pd.DataFrame:
        edges = self.edges
        matrix = encoded.iloc[rows].reset_index(drop=True)
        start = edges[period - 1]
        matrix["period_start_day"] = start
        if self.days_past_due_column and self.days_past_due_column in encoded:
            past_due = matrix[self.days_past_due_column]
            if self.days_to_due_column and self.days_to_due_column in encoded:
                # Signed: negative while the invoice is not yet due at the period's start.
                past_due = past_due - matrix[self.days_to_due_column]
            matrix["days_past_due_in_period"] = past_due + start
        return matrix

    def period_hazard(self, X: pd.DataFrame, periods: int | None = None) -> np.ndarray:
        """P(paid in period k | unpaid at its start) for the first `periods` periods (all when None),
        shape (invoices, periods)."""
        check_is_fitted(self, "hazard_")
        n = len(X)
        periods = self.periods if periods is None else max(1, min(int(periods), self.periods))
        rows = np.repeat(np.arange(n), periods)
        period = np.tile(np.arange(1, periods + 1), n)
        matrix = self._period_matrix(self.encoder_.transform(X), rows, period)
        return self.hazard_.predict_proba(matrix)[:, 1].reshape(n, periods)

    def paid_share(self, X: pd.DataFrame, periods: int | None = None) -> np.ndarray:
        """P(paid by the end of period k), shape (invoices, periods), non-decreasing along k."""
        return 1 - np.cumprod(1 - self.period_hazard(X, periods), axis=1)

    def predict_cdf(self, X: pd.DataFrame, days: Sequence[float]) -> np.ndarray:
        """P(paid within d days of the cutoff) for each d (linear within a period), shape (invoices, days).
        Only the periods up to the largest d are predicted (the hazard of a period depends on no later one)."""
        edges = self.edges
        days = np.clip(np.asarray(days, dtype=float), 0, edges[-1])
        needed = max(1, int(np.searchsorted(edges, days.max(), side="left"))) if days.size else 1
        return cdf_at(self.paid_share(X, needed), days, edges[:needed + 1])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Median days from the cutoff to payment (the pyfunc / serving default)."""
        return self.predict_quantiles(X, (0.5,))["p50"].to_numpy()

    def predict_quantiles(self, X: pd.DataFrame, quantiles: Sequence[float] = QUANTILES) -> pd.DataFrame:
        """Days from the cutoff by which each quantile of the pay-date distribution is reached; the
        horizon where the model puts less mass than that inside it."""
        return quantiles_of(self.paid_share(X), quantiles, self.edges, X.index)


def _as_edges(edges: np.ndarray | float, periods: int) -> np.ndarray:
    """Period edges, given as an array or as the length of equal periods (the old form)."""
    if np.ndim(edges) == 0:
        return np.arange(periods + 1) * float(edges)
    return np.asarray(edges, dtype=float)


def cdf_at(paid_share: np.ndarray, days: np.ndarray, edges: np.ndarray | float) -> np.ndarray:
    """P(paid within d days) for each d, linear within a period, from the paid shares by period end
    (`paid_share`, shape (invoices, periods covering the largest d)) and the periods' day `edges` (or the
    length of equal periods), shape (invoices, days)."""
    days = np.asarray(days, dtype=float)
    needed = paid_share.shape[1]
    edges = _as_edges(edges, needed)[:needed + 1]
    by_period = np.column_stack([np.zeros(len(paid_share)), paid_share])
    period = np.clip(np.searchsorted(edges, days, side="right") - 1, 0, needed - 1)
    fraction = np.clip((days - edges[period]) / (edges[period + 1] - edges[period]), 0, 1)
    return by_period[:, period] + fraction * (by_period[:, period + 1] - by_period[:, period])


def quantiles_of(paid_share: np.ndarray, quantiles: Sequence[float], edges: np.ndarray | float,
                 index: pd.Index) -> pd.DataFrame:
    """The days each quantile of the pay-date distribution is reached, from the paid shares of every
    period and the periods' day `edges` (or the length of equal periods)."""
    edges = _as_edges(edges, paid_share.shape[1])
    by_period = np.column_stack([np.zeros(len(paid_share)), paid_share])
    columns = {f"p{round(q * 100)}": _first_crossing(by_period, q, edges) for q in quantiles}
    return pd.DataFrame(columns, index=index)


def _first_crossing(cumulative: np.ndarray, level: float, edges: np.ndarray) -> np.ndarray:
    """Per row, the day (linear within a period) where the cumulative curve first reaches `level`."""
    periods = cumulative.shape[1] - 1
    reached = cumulative >= level
    first = np.where(reached.any(axis=1), reached.argmax(axis=1), periods + 1)
    days = np.full(len(cumulative), float(edges[periods]))
    inside = (first >= 1) & (first <= periods)
    rows = np.flatnonzero(inside)
    before, after = cumulative[rows, first[rows] - 1], cumulative[rows, first[rows]]
    fraction = np.where(after > before, (level - before) / np.maximum(after - before, 1e-12), 1.0)
    low = edges[first[rows] - 1]
    days[rows] = low + fraction * (edges[first[rows]] - low)
    days[first == 0] = 0.0
    return days
