"""Late payment per open invoice: P(late), P(late bucket) and expected days late."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from models.boosting import NotEnoughLabels, TimeCalibratedClassifier, lgbm_params, monotone_vector

# Upper edges (days late) of the late buckets after "on time"; the last bucket is open-ended.
BUCKET_NAMES = ("on_time", "late_1_30", "late_31_60", "late_61_90", "late_90_plus")
BUCKET_EDGES = (30, 60, 90)
DAYS_LATE_CLIP = (-60.0, 365.0)
# The constructor arguments a LatePaymentModel held before it took a `classifier` (read from old artifacts).
OLD_CLASSIFIER_ARGUMENTS = ("features", "monotone", "calibration_share", "time_column", "n_estimators",
                            "learning_rate", "num_leaves", "min_child_samples", "random_state")


def late_buckets(days_late: np.ndarray, late_grace_days: int) -> np.ndarray:
    """Bucket index per invoice: 0 on time (within grace), then 1-30, 31-60, 61-90, 90+ days late."""
    days_late = np.asarray(days_late, dtype=float)
    return np.where(days_late <= late_grace_days, 0, 1 + np.searchsorted(BUCKET_EDGES, days_late, side="left"))


def known_bucket(days_late: np.ndarray, paid: np.ndarray, late_grace_days: int) -> np.ndarray:
    """Bucket index where it is already determined, -1 where censoring leaves it open.

    An unpaid invoice is known to be at least as late as it has been open past due; its bucket is
    settled only when that lower bound has reached the last, open-ended bucket."""
    buckets = late_buckets(days_late, late_grace_days)
    settled = np.asarray(paid, dtype=bool) | (buckets == len(BUCKET_NAMES) - 1)
    return np.where(settled, buckets, -1)


def known_late(days_late: np.ndarray, paid: np.ndarray, late_grace_days: int) -> np.ndarray:
    """1 late, 0 on time, NaN where censoring leaves it open (unpaid and not yet past the grace)."""
    days_late = np.asarray(days_late, dtype=float)
    late = (days_late > late_grace_days).astype(float)
    return np.where(np.asarray(paid, dtype=bool) | (late == 1), late, np.nan)


class LatePaymentModel(ClassifierMixin, BaseEstimator):
    """LightGBM on invoice + customer features, settings chosen and probabilities calibrated on later time
    slices of the training rows (`TimeCalibratedClassifier`).

    `classifier` is the recipe of P(late), cloned in `fit` (default: `TimeCalibratedClassifier()` on every
    column); the bucket and days-late models use its features, monotone constraints and chosen tree settings.

    `fit(X, y)` takes `y` as a frame with `days_late` (paid date - due date, or for an unpaid invoice
    the days it has been open past due at the end of observation: a lower bound), `paid` (bool) and,
    optionally, `observed_days_past_due` (end of observation - due date, for every row).

    Censoring: each part trains only on rows whose due date lies far enough before the end of
    observation for its outcome to be known whatever it is (past the grace for P(late), past 90 days
    for the buckets and the days late). Selecting on the due date, a feature, keeps the sample
    unbiased; selecting on whether the invoice happens to be paid already would not."""

    def __init__(self, classifier: TimeCalibratedClassifier | None = None, late_grace_days: int = 5):
        self.classifier = classifier
        self.late_grace_days = late_grace_days

    def fit(self, X: pd.DataFrame, y: pd.DataFrame) -> LatePaymentModel:
        days_late, paid = y["days_late"].to_numpy(dtype=float), y["paid"].to_numpy(dtype=bool)
        observed = (y["observed_days_past_due"].to_numpy(dtype=float) if "observed_days_past_due" in y
                    else np.full(len(y), np.inf))
        late = known_late(days_late, paid, self.late_grace_days)
        has_label = ~np.isnan(late) & (observed > self.late_grace_days)
        template = TimeCalibratedClassifier() if self.classifier is None else self.classifier
        self.classifier_ = clone(template).fit(X[has_label], late[has_label].astype(int))
        # The bucket and days models read the classifier's encoded features and grow half its trees with its
        # settings: they learn from the late rows only, a fraction of the rows P(late) learns from.
        trees = self.classifier_
        chosen = trees.settings_
        params = lgbm_params(max(50, chosen["n_estimators"] // 2), trees.learning_rate, chosen["num_leaves"],
                             chosen["min_child_samples"], trees.random_state, chosen["reg_lambda"])
        encoder = trees.encoder_

        fully_observed = observed > BUCKET_EDGES[-1]
        bucket = known_bucket(days_late, paid, self.late_grace_days)
        late_rows = (bucket > 0) & fully_observed
        if len(np.unique(bucket[late_rows])) < 2:
            raise NotEnoughLabels("the late buckets need late invoices of at least two buckets observed "
                                  f"{BUCKET_EDGES[-1]} days past due; the training window holds "
                                  f"{int(late_rows.sum())} late invoice(s) observed that long")
        self.bucket_model_ = lgb.LGBMClassifier(**params).fit(encoder.transform(X[late_rows]), bucket[late_rows])

        # Unpaid rows enter with their lower bound (over 90 days late): the mean is then slightly low
        # for the very late, but not biased towards quick payers as paid-only rows would be.
        days_rows = (paid | (days_late > BUCKET_EDGES[-1])) & fully_observed
        matrix_days = encoder.transform(X[days_rows])
        self.days_model_ = lgb.LGBMRegressor(
            **params, monotone_constraints=monotone_vector(matrix_days.columns, trees.monotone),
            monotone_constraints_method="intermediate",
        ).fit(matrix_days, np.clip(days_late[days_rows], *DAYS_LATE_CLIP))
        self.classes_ = np.array([0, 1])
        self.feature_names_in_ = encoder.feature_names_in_
        return self

    def __setstate__(self, state: dict) -> None:
        # A model saved before the classifier became a parameter (issue 15) stored the classifier's nine
        # arguments on itself: gather them into the recipe, so it can still predict and be cloned.
        if "classifier" not in state and "n_estimators" in state:
            state = dict(state)
            arguments = {name: state.pop(name) for name in OLD_CLASSIFIER_ARGUMENTS if name in state}
            state["classifier"] = TimeCalibratedClassifier(**arguments, reg_lambda=1.0, search=False,
                                                           calibration="isotonic")
        super().__setstate__(state)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Columns P(not late), P(late)."""
        check_is_fitted(self, "classifier_")
        return self.classifier_.predict_proba(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def predict_buckets(self, X: pd.DataFrame) -> pd.DataFrame:
        """P(on time), P(1-30), P(31-60), P(61-90), P(90+ days late); rows add up to 1 and the late
        buckets add up to the calibrated P(late)."""
        check_is_fitted(self, "bucket_model_")
        p_late = self.predict_proba(X)[:, 1]
        within_late = np.zeros((len(X), len(BUCKET_NAMES) - 1))
        known = self.bucket_model_.predict_proba(self.classifier_.encoder_.transform(X))
        within_late[:, self.bucket_model_.classes_ - 1] = known
        buckets = np.column_stack([1 - p_late, within_late * p_late[:, None]])
        return pd.DataFrame(buckets, columns=list(BUCKET_NAMES), index=X.index)

    def predict_days_late(self, X: pd.DataFrame) -> np.ndarray:
        """Expected days late (negative = early), from a regressor on invoices observed 90+ days past due."""
        check_is_fitted(self, "days_model_")
        return self.days_model_.predict(self.classifier_.encoder_.transform(X))

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """SHAP contributions to the log-odds of late, per row and feature."""
        return self.classifier_.contributions(X)
