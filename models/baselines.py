"""The simple rules every model must beat (DESIGN.md §6), with the same interface as the models."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from models.late_payment import known_late
from models.receipt_timing import QUANTILES


class ClassPriorBaseline(ClassifierMixin, BaseEstimator):
    """P(late) = the share of late invoices in training, for everyone."""

    def __init__(self, late_grace_days: int = 5):
        self.late_grace_days = late_grace_days

    def fit(self, X: pd.DataFrame, y: pd.DataFrame) -> ClassPriorBaseline:
        late = known_late(y["days_late"], y["paid"], self.late_grace_days)
        self.prior_ = float(np.nanmean(late))
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "prior_")
        p = np.full(len(X), self.prior_)
        return np.column_stack([1 - p, p])


class CustomerLateRateBaseline(ClassPriorBaseline):
    """P(late) = the customer's own historical share of invoices paid late (a feature known at the
    cutoff), falling back to the class prior for customers with no paid history."""

    def __init__(self, late_grace_days: int = 5, rate_column: str = "share_paid_late_365d"):
        super().__init__(late_grace_days)
        self.rate_column = rate_column

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "prior_")
        p = pd.to_numeric(X[self.rate_column], errors="coerce").fillna(self.prior_).clip(0, 1).to_numpy()
        return np.column_stack([1 - p, p])


class PayDateBaseline(BaseEstimator):
    """Pays on the due date plus a fixed or per-customer delay; when that day has already passed, the
    invoice is expected the day after the cutoff. A point forecast: all quantiles are the same day."""

    def __init__(self, days_to_due_column: str = "days_to_due", days_past_due_column: str = "days_past_due",
                 delay_column: str | None = None):
        self.days_to_due_column = days_to_due_column
        self.days_past_due_column = days_past_due_column
        self.delay_column = delay_column

    def fit(self, X: pd.DataFrame, y=None) -> PayDateBaseline:
        self.fitted_ = True
        return self

    def predict_days(self, X: pd.DataFrame) -> np.ndarray:
        """Days from the cutoff to the expected payment (at least 1)."""
        check_is_fitted(self, "fitted_")
        days = _numbers(X, self.days_to_due_column) - _numbers(X, self.days_past_due_column)
        if self.delay_column:
            days = days + np.nan_to_num(_numbers(X, self.delay_column))
        return np.maximum(days, 1.0)

    def predict_quantiles(self, X: pd.DataFrame, quantiles=QUANTILES) -> pd.DataFrame:
        days = self.predict_days(X)
        return pd.DataFrame({f"p{round(q * 100)}": days for q in quantiles}, index=X.index)

    def predict_cdf(self, X: pd.DataFrame, days) -> np.ndarray:
        """A step: 0 before the expected day, 1 from it on."""
        return (self.predict_days(X)[:, None] <= np.asarray(days, dtype=float)[None, :]).astype(float)


def _numbers(X: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(X[column], errors="coerce").to_numpy(dtype=float)


class PastDueBaseline(ClassifierMixin, BaseEstimator):
    """Deterioration flag = the customer is already `min_days` or more past due on some item."""

    def __init__(self, days_column: str = "max_days_past_due", min_days: int = 60):
        self.days_column = days_column
        self.min_days = min_days

    def fit(self, X: pd.DataFrame, y=None) -> PastDueBaseline:
        self.classes_ = np.array([0, 1])
        return self

    def flag(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return pd.to_numeric(X[self.days_column], errors="coerce").fillna(-np.inf).to_numpy() >= self.min_days

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.flag(X).astype(float)
        return np.column_stack([1 - p, p])
