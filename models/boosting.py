"""A LightGBM classifier whose probabilities are calibrated on a later time slice than its trees."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.utils.validation import check_is_fitted

from ledger.errors import BadInput
from models.encoding import FrameEncoder, time_split


class NotEnoughLabels(BadInput, ValueError):
    """The training rows do not hold the outcomes a model needs (e.g. no deterioration ever happened)."""


def lgbm_params(n_estimators: int, learning_rate: float, num_leaves: int, min_child_samples: int,
                random_state: int) -> dict:
    """LightGBM settings shared by our models: deterministic, quiet; threads from OMP_NUM_THREADS (all cores
    by default; the test suite runs one per xdist worker so workers do not fight over cores). No column
    subsampling: with LightGBM 4.7 it made some fits on frames with all-missing columns run for minutes."""
    return {"n_estimators": n_estimators, "learning_rate": learning_rate, "num_leaves": num_leaves,
            "min_child_samples": min_child_samples, "subsample": 0.8, "subsample_freq": 1,
            "reg_lambda": 1.0, "random_state": random_state, "n_jobs": None,
            "deterministic": True, "force_row_wise": True, "verbose": -1}


def monotone_vector(columns: Sequence[str], monotone: Mapping[str, int] | None) -> list[int]:
    """LightGBM's monotone_constraints in column order (0 = free, +1 rising, -1 falling)."""
    monotone = monotone or {}
    return [int(monotone.get(column, 0)) for column in columns]


class TimeCalibratedClassifier(ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees fitted on the earlier cutoffs, isotonic calibration fitted on the later
    ones, so calibration is learnt out of time, as the model will be used."""

    def __init__(self, features: Sequence[str] | None = None, monotone: Mapping[str, int] | None = None,
                 calibration_share: float = 0.25, time_column: str = "cutoff", n_estimators: int = 300,
                 learning_rate: float = 0.05, num_leaves: int = 31, min_child_samples: int = 40,
                 random_state: int = 0):
        self.features = features
        self.monotone = monotone
        self.calibration_share = calibration_share
        self.time_column = time_column
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y) -> TimeCalibratedClassifier:
        y = np.asarray(y, dtype=int)
        if len(np.unique(y)) < 2:
            raise NotEnoughLabels("the training rows hold only one class")
        earlier, later = time_split(X[self.time_column], self.calibration_share)
        if len(np.unique(y[later])) < 2 or len(np.unique(y[earlier])) < 2:
            earlier = later = np.ones(len(y), dtype=bool)  # too little data to hold a slice out
        self.encoder_ = FrameEncoder(self.features).fit(X)
        matrix = self.encoder_.transform(X)
        params = lgbm_params(self.n_estimators, self.learning_rate, self.num_leaves,
                             self.min_child_samples, self.random_state)
        self.booster_ = lgb.LGBMClassifier(
            **params, monotone_constraints=monotone_vector(matrix.columns, self.monotone),
            monotone_constraints_method="intermediate",
        ).fit(matrix[earlier], y[earlier])
        raw = self.booster_.predict_proba(matrix[later])[:, 1]
        self.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y[later])
        self.classes_ = np.array([0, 1])
        self.feature_names_in_ = self.encoder_.feature_names_in_
        self.rows_ = {"trees": int(earlier.sum()), "calibration": int(later.sum())}
        return self

    def raw_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated P(class 1) from the trees."""
        check_is_fitted(self, "booster_")
        return self.booster_.predict_proba(self.encoder_.transform(X))[:, 1]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.calibrator_.predict(self.raw_proba(X))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-row SHAP contributions (log-odds of the trees) by feature, from LightGBM's TreeSHAP."""
        check_is_fitted(self, "booster_")
        values = self.booster_.predict(self.encoder_.transform(X), pred_contrib=True)
        # The last column is the expected value (bias); rows add up to the trees' raw log-odds.
        return pd.DataFrame(values[:, :-1], columns=self.feature_names_in_, index=X.index)
