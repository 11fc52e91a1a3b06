"""Credit deterioration per customer: P(90+ days past due or written off within 90 days) and a flag."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from models.boosting import TimeCalibratedClassifier
from models.encoding import time_split


class DeteriorationModel(TimeCalibratedClassifier):
    """Calibrated LightGBM on customer features, its settings chosen on the training rows as in
    `TimeCalibratedClassifier`. The flag threshold is the one that maximises F1 on the later (calibration)
    slice, so the flag trades precision and recall as the data allow; pass `threshold` to fix it instead."""

    def __init__(self, features=None, monotone=None, calibration_share: float = 0.25,
                 time_column: str = "cutoff", n_estimators: int = 200, learning_rate: float = 0.05,
                 num_leaves: int | None = None, min_child_samples: int | None = None,
                 reg_lambda: float | None = None, search: bool = True, calibration: str = "auto",
                 random_state: int = 0, threshold: float | None = None):
        super().__init__(features=features, monotone=monotone, calibration_share=calibration_share,
                         time_column=time_column, n_estimators=n_estimators, learning_rate=learning_rate,
                         num_leaves=num_leaves, min_child_samples=min_child_samples, reg_lambda=reg_lambda,
                         search=search, calibration=calibration, random_state=random_state)
        self.threshold = threshold

    def fit(self, X: pd.DataFrame, y) -> DeteriorationModel:
        super().fit(X, y)
        if self.threshold is not None:
            self.threshold_ = float(self.threshold)
        else:
            _, later = time_split(X[self.time_column], self.calibration_share)
            self.threshold_ = best_f1_threshold(np.asarray(y, dtype=int)[later], self.predict_proba(X[later])[:, 1])
        return self

    def flag(self, X: pd.DataFrame) -> np.ndarray:
        """True where P(deteriorate) reaches the threshold."""
        check_is_fitted(self, "threshold_")
        return self.predict_proba(X)[:, 1] >= self.threshold_


def best_f1_threshold(y_true: np.ndarray, p: np.ndarray) -> float:
    """The probability threshold with the highest F1 (0.5 when there is nothing to learn from)."""
    if y_true.sum() == 0 or len(p) == 0:
        return 0.5
    candidates = np.unique(p)
    tp = np.array([(y_true & (p >= t)).sum() for t in candidates])
    flagged = np.array([(p >= t).sum() for t in candidates])
    f1 = 2 * tp / (flagged + y_true.sum())
    return float(candidates[int(np.argmax(f1))])
