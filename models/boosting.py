"""A LightGBM classifier whose settings are chosen on a later time slice than its trees, and whose
probabilities are calibrated on a later slice still."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from ledger.errors import BadInput
from models.encoding import FrameEncoder, time_split

# Early stopping on the inner validation: stop after this many rounds without a better logloss.
EARLY_STOPPING_ROUNDS = 30
# Below this many rows of each class in a validation slice a choice made on it is noise: keep the defaults.
MIN_CLASS_ROWS = 30
# The settings search fits at most this many rows per candidate (the latest ones), so its cost stays flat on
# a million-row window; the chosen settings are refitted on every tree row.
SEARCH_MAX_ROWS = 200_000


class NotEnoughLabels(BadInput, ValueError):
    """The training rows do not hold the outcomes a model needs (e.g. no deterioration ever happened)."""


def lgbm_params(n_estimators: int, learning_rate: float, num_leaves: int, min_child_samples: int,
                random_state: int, reg_lambda: float = 1.0) -> dict:
    """LightGBM settings shared by our models: deterministic, quiet; threads from OMP_NUM_THREADS (all cores
    by default; the test suite runs one per xdist worker so workers do not fight over cores). No column
    subsampling: with LightGBM 4.7 it made some fits on frames with all-missing columns run for minutes."""
    return {"n_estimators": n_estimators, "learning_rate": learning_rate, "num_leaves": num_leaves,
            "min_child_samples": min_child_samples, "subsample": 0.8, "subsample_freq": 1,
            "reg_lambda": reg_lambda, "random_state": random_state, "n_jobs": None,
            "deterministic": True, "force_row_wise": True, "verbose": -1}


def monotone_vector(columns: Sequence[str], monotone: Mapping[str, int] | None) -> list[int]:
    """LightGBM's monotone_constraints in column order (0 = free, +1 rising, -1 falling)."""
    monotone = monotone or {}
    return [int(monotone.get(column, 0)) for column in columns]


def default_min_child_samples(rows: int) -> int:
    """Leaf size that grows with the data: 20 up to 10,000 rows, then rows / 500, at most 200 (1M rows)."""
    return int(np.clip(rows // 500, 20, 200))


def candidate_settings(rows: int) -> list[dict]:
    """The few tree settings the inner validation chooses from, sized to the rows: smaller trees for a
    2,000-row ledger, larger ones for a million rows, and one more strongly regularised variant of each."""
    leaves = (7, 15, 31) if rows < 20_000 else (15, 31, 63)
    min_child = default_min_child_samples(rows)
    plain = [{"num_leaves": n, "min_child_samples": min_child, "reg_lambda": 1.0} for n in leaves]
    return [*plain, {"num_leaves": leaves[1], "min_child_samples": 2 * min_child, "reg_lambda": 10.0}]


class PlattCalibrator(BaseEstimator):
    """Logistic regression on the trees' log-odds: two numbers, so it holds on a small calibration slice."""

    def fit(self, raw: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        self.model_ = LogisticRegression(C=1e4).fit(_logit(raw)[:, None], y)
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(_logit(raw)[:, None])[:, 1]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


CALIBRATORS = {
    "isotonic": lambda: IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0),
    "platt": PlattCalibrator,
}


def enough_of_each_class(y: np.ndarray) -> bool:
    """Both classes present with at least MIN_CLASS_ROWS rows each."""
    return len(y) > 0 and min(int((y == 1).sum()), int((y == 0).sum())) >= MIN_CLASS_ROWS


class TimeCalibratedClassifier(ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees fitted on the earlier cutoffs, calibration fitted on the later ones, so
    calibration is learnt out of time, as the model will be used.

    Settings left as None are chosen inside `fit`, on the training rows only, never on later data:
    with `search`, each of `candidate_settings` is fitted on the earlier cutoffs of the tree slice and
    early-stopped on its latest `calibration_share` of cutoffs (binary logloss); the best one is refitted
    on the whole tree slice with its best number of rounds (at most `n_estimators`). Without `search`, or
    when the validation slice holds fewer than MIN_CLASS_ROWS of a class, the rows-sized defaults and
    `n_estimators` rounds are used. `calibration` "auto" picks isotonic or Platt by the Brier score on the
    latest cutoffs of the calibration slice, fitted on its earlier ones, then refits it on the whole slice
    (Platt when the slice is too small to tell).
    What was chosen is in `settings_` and `search_`."""

    def __init__(self, features: Sequence[str] | None = None, monotone: Mapping[str, int] | None = None,
                 calibration_share: float = 0.25, time_column: str = "cutoff", n_estimators: int = 300,
                 learning_rate: float = 0.05, num_leaves: int | None = None, min_child_samples: int | None = None,
                 reg_lambda: float | None = None, search: bool = True, calibration: str = "auto",
                 random_state: int = 0):
        self.features = features
        self.monotone = monotone
        self.calibration_share = calibration_share
        self.time_column = time_column
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.search = search
        self.calibration = calibration
        self.random_state = random_state

    def __setstate__(self, state: dict) -> None:
        # A model saved before the settings search (issue 19) had fixed settings and isotonic calibration:
        # its recipe, cloned for a re-backtest, keeps them.
        state = {"reg_lambda": 1.0, "search": False, "calibration": "isotonic"} | dict(state)
        super().__setstate__(state)

    def fit(self, X: pd.DataFrame, y) -> TimeCalibratedClassifier:
        if self.calibration not in (*CALIBRATORS, "auto"):
            raise ValueError(f"calibration must be 'auto' or one of {', '.join(CALIBRATORS)}")
        y = np.asarray(y, dtype=int)
        if len(np.unique(y)) < 2:
            raise NotEnoughLabels("the training rows hold only one class")
        cutoffs = X[self.time_column].reset_index(drop=True)
        earlier, later = time_split(cutoffs, self.calibration_share)
        if len(np.unique(y[later])) < 2 or len(np.unique(y[earlier])) < 2:
            earlier = later = np.ones(len(y), dtype=bool)  # too little data to hold a slice out
        self.encoder_ = FrameEncoder(self.features).fit(X)
        matrix = self.encoder_.transform(X)
        self.settings_, self.search_ = self._chosen_settings(matrix[earlier], y[earlier], cutoffs[earlier])
        self.booster_ = self._booster(self.settings_).fit(matrix[earlier], y[earlier])
        raw = self.booster_.predict_proba(matrix[later])[:, 1]
        method = self._chosen_calibration(raw, y[later], cutoffs[later])
        self.calibrator_ = CALIBRATORS[method]().fit(raw, y[later])
        self.settings_ = self.settings_ | {"calibration": method}
        self.classes_ = np.array([0, 1])
        self.feature_names_in_ = self.encoder_.feature_names_in_
        self.rows_ = {"trees": int(earlier.sum()), "calibration": int(later.sum())}
        return self

    def _booster(self, settings: Mapping) -> lgb.LGBMClassifier:
        params = lgbm_params(settings["n_estimators"], self.learning_rate, settings["num_leaves"],
                             settings["min_child_samples"], self.random_state, settings["reg_lambda"])
        return lgb.LGBMClassifier(**params, monotone_constraints=monotone_vector(self.encoder_.feature_names_in_,
                                                                                   self.monotone),
                                  monotone_constraints_method="intermediate")

    def _candidates(self, rows: int) -> list[dict]:
        """`candidate_settings` with the settings given to the constructor fixed (duplicates dropped)."""
        given = {name: getattr(self, name) for name in ("num_leaves", "min_child_samples", "reg_lambda")
                 if getattr(self, name) is not None}
        unique = []
        for candidate in candidate_settings(rows):
            candidate = candidate | given | {"n_estimators": self.n_estimators}
            if candidate not in unique:
                unique.append(candidate)
        return unique

    def _chosen_settings(self, matrix: pd.DataFrame, y: np.ndarray, cutoffs: pd.Series) -> tuple[dict, list]:
        """The tree settings to fit with, and the search's table (each candidate's rounds and logloss)."""
        candidates = self._candidates(len(y))
        default = candidates[min(1, len(candidates) - 1)]  # the middle-sized trees
        inner_train, inner_valid = time_split(cutoffs, self.calibration_share)
        if not (self.search and len(candidates) > 1 and enough_of_each_class(y[inner_valid])
                and enough_of_each_class(y[inner_train])):
            return default, []
        # The latest rows of the inner training slice when it is large (the search's cost stays flat).
        train_rows = np.flatnonzero(inner_train)[-SEARCH_MAX_ROWS:]
        table = []
        for candidate in candidates:
            with warnings.catch_warnings():
                # LightGBM 4.7 renamed eval_set to eval_X/eval_y; we support 4.5, which knows only eval_set.
                warnings.filterwarnings("ignore", message="The argument 'eval_set' is deprecated")
                booster = self._booster(candidate).fit(
                    matrix.iloc[train_rows], y[train_rows], eval_set=[(matrix[inner_valid], y[inner_valid])],
                    eval_metric="binary_logloss",
                    callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)])
            rounds = int(booster.best_iteration_ or candidate["n_estimators"])
            logloss = float(booster.best_score_["valid_0"]["binary_logloss"])
            table.append(candidate | {"n_estimators": rounds, "validation_logloss": round(logloss, 6)})
        best = min(table, key=lambda row: row["validation_logloss"])  # the first on a tie: deterministic
        return {k: v for k, v in best.items() if k != "validation_logloss"}, table

    def _chosen_calibration(self, raw: np.ndarray, y: np.ndarray, cutoffs: pd.Series) -> str:
        """The calibration method: the one given, or the one with the lower Brier score on the latest
        cutoffs of the calibration slice when fitted on its earlier ones (Platt, two numbers, when the slice
        is too small to tell)."""
        if self.calibration != "auto":
            return self.calibration
        fit_part, check_part = time_split(cutoffs, 0.5)
        if not (enough_of_each_class(y[fit_part]) and enough_of_each_class(y[check_part])):
            return "platt"
        brier = {name: float(np.mean((make().fit(raw[fit_part], y[fit_part]).predict(raw[check_part])
                                      - y[check_part]) ** 2))
                 for name, make in CALIBRATORS.items()}
        return min(brier, key=brier.get)

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
