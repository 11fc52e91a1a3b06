"""Model tests on small data made here: the estimator contract, censoring, calibration, behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from models.baselines import ClassPriorBaseline, CustomerLateRateBaseline, PastDueBaseline, PayDateBaseline
from models.boosting import TimeCalibratedClassifier, candidate_settings
from models.deterioration import DeteriorationModel, best_f1_threshold
from models.encoding import FrameEncoder, time_split
from models.late_payment import BUCKET_NAMES, LatePaymentModel, known_bucket, known_late, late_buckets
from models.receipt_timing import ReceiptTimingModel, person_period

FEATURES = ["days_past_due", "customer_risk", "segment"]


def invoice_frame(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Invoices at six monthly cutoffs; true days late grow with customer risk and days past due."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "days_past_due": rng.integers(-30, 60, n).astype(float),
        "customer_risk": rng.normal(size=n),
        "segment": rng.choice(["small", "mid", "enterprise"], n),
        "cutoff": pd.Timestamp("2024-01-31") + pd.to_timedelta(rng.integers(0, 6, n) * 30, "D"),
    })
    true_days_late = 4 + 12 * frame["customer_risk"] + 0.4 * frame["days_past_due"].clip(lower=0)
    return frame, (true_days_late + rng.normal(0, 4, n)).to_numpy()


def late_labels(frame: pd.DataFrame, days_late: np.ndarray, observed_days: float = 150) -> pd.DataFrame:
    """Censor at `observed_days` after the cutoff: unpaid invoices carry the lower bound they reached."""
    days_to_pay = np.maximum(days_late - (-frame["days_past_due"].to_numpy()), 1)  # due in -dpd days
    paid = days_to_pay <= observed_days
    lower_bound = frame["days_past_due"].to_numpy() + observed_days
    return pd.DataFrame({"days_late": np.where(paid, days_late, lower_bound), "paid": paid,
                         "days_to_pay": np.minimum(days_to_pay, observed_days)})


@pytest.fixture(scope="module")
def fitted_late_model():
    frame, days_late = invoice_frame()
    classifier = TimeCalibratedClassifier(features=FEATURES, monotone={"days_past_due": 1}, n_estimators=120)
    return LatePaymentModel(classifier).fit(frame, late_labels(frame, days_late)), frame, days_late


def test_label_helpers_handle_censoring():
    days_late = np.array([-3.0, 10.0, 2.0, 95.0, 40.0])
    paid = np.array([True, True, False, False, False])
    np.testing.assert_array_equal(known_late(days_late, paid, 5), [0.0, 1.0, np.nan, 1.0, 1.0])
    np.testing.assert_array_equal(late_buckets(days_late, 5), [0, 1, 0, 4, 2])
    np.testing.assert_array_equal(known_bucket(days_late, paid, 5), [0, 1, -1, 4, -1])


def test_estimator_contract(fitted_late_model):
    model, frame, _ = fitted_late_model
    unfitted = clone(model)
    assert unfitted.get_params()["classifier__monotone"] == {"days_past_due": 1}
    assert unfitted.classifier is not model.classifier  # cloned with its recipe, sklearn-style
    assert not hasattr(model.classifier, "booster_")  # fit cloned the recipe, never fitted it in place
    with pytest.raises(NotFittedError):
        unfitted.predict_proba(frame)
    assert list(model.feature_names_in_) == FEATURES
    assert model.classifier_.rows_["trees"] > 0 and model.classifier_.rows_["calibration"] > 0


def test_a_late_model_saved_before_the_classifier_was_a_parameter_still_predicts_and_clones(fitted_late_model):
    model, frame, _ = fitted_late_model
    # The state an older version pickled: the classifier's arguments on the model itself, no `classifier`.
    state = {key: value for key, value in model.__getstate__().items() if key != "classifier"}
    state |= {"features": FEATURES, "monotone": {"days_past_due": 1}, "calibration_share": 0.25,
              "time_column": "cutoff", "n_estimators": 120, "learning_rate": 0.05, "num_leaves": 31,
              "min_child_samples": 40, "random_state": 0}
    old = LatePaymentModel.__new__(LatePaymentModel)
    old.__setstate__(state)
    np.testing.assert_array_equal(old.predict_proba(frame.head(50)), model.predict_proba(frame.head(50)))
    recipe = clone(old).get_params()
    # Its recipe keeps the fixed settings and isotonic calibration it was trained with (no settings search).
    assert recipe.pop("classifier").get_params() == model.classifier.get_params() | {
        "num_leaves": 31, "min_child_samples": 40, "reg_lambda": 1.0, "search": False, "calibration": "isotonic"}
    assert recipe == {key: value for key, value in model.get_params().items() if not key.startswith("classifier")} | {
        f"classifier__{key}": value for key, value in old.classifier.get_params().items()}


def test_settings_are_chosen_on_the_latest_cutoffs_of_the_tree_slice_only():
    frame, days_late = invoice_frame(n=3000, seed=3)
    y = (days_late > 5).astype(int)
    recipe = TimeCalibratedClassifier(features=FEATURES, n_estimators=150)
    model = clone(recipe).fit(frame, y)
    # Six cutoffs: trees on the first four (validation: the fourth), calibration on the last two.
    assert len(model.search_) == len(candidate_settings(model.rows_["trees"])) == 4
    best = min(model.search_, key=lambda row: row["validation_logloss"])
    assert model.settings_ == {k: v for k, v in best.items() if k != "validation_logloss"} | {
        "calibration": model.settings_["calibration"]}
    assert 0 < model.settings_["n_estimators"] <= 150  # early stopping, never past the cap
    assert model.booster_.n_estimators == model.settings_["n_estimators"]
    # Scrambling the calibration slice's labels changes nothing the search saw; scrambling the validation
    # cutoff's labels changes its losses.
    cutoffs = np.sort(frame["cutoff"].unique())
    scrambled_calibration = np.where(frame["cutoff"].isin(cutoffs[-2:]), y[::-1], y)
    assert clone(recipe).fit(frame, scrambled_calibration).search_ == model.search_
    scrambled_validation = np.where(frame["cutoff"] == cutoffs[-3], y[::-1], y)
    assert clone(recipe).fit(frame, scrambled_validation).search_ != model.search_


def test_given_settings_are_kept_and_search_can_be_turned_off():
    frame, days_late = invoice_frame(n=2000, seed=4)
    y = (days_late > 5).astype(int)
    fixed = TimeCalibratedClassifier(features=FEATURES, n_estimators=40, num_leaves=5, search=False,
                                     calibration="platt").fit(frame, y)
    assert fixed.search_ == [] and fixed.booster_.n_estimators == 40
    assert fixed.settings_["num_leaves"] == 5 and fixed.settings_["calibration"] == "platt"
    leaves = TimeCalibratedClassifier(features=FEATURES, n_estimators=40, num_leaves=5).fit(frame, y)
    assert {row["num_leaves"] for row in leaves.search_} == {5}  # only the settings left open are searched


def test_default_settings_grow_with_the_rows():
    small, large = candidate_settings(2_000), candidate_settings(1_000_000)
    assert [c["num_leaves"] for c in small] == [7, 15, 31, 15]
    assert [c["num_leaves"] for c in large] == [15, 31, 63, 31]
    assert small[0]["min_child_samples"] == 20 and large[0]["min_child_samples"] == 200


def test_a_classifier_saved_before_the_settings_search_still_predicts_and_clones(fitted_late_model):
    model, frame, _ = fitted_late_model
    state = {k: v for k, v in model.classifier_.__getstate__().items()
             if k not in ("reg_lambda", "search", "calibration", "settings_", "search_")}
    old = TimeCalibratedClassifier.__new__(TimeCalibratedClassifier)
    old.__setstate__(state)
    np.testing.assert_array_equal(old.predict_proba(frame.head(20)), model.predict_proba(frame.head(20)))
    assert clone(old).get_params()["search"] is False and clone(old).calibration == "isotonic"


def test_calibration_is_fitted_on_later_cutoffs_than_the_trees():
    cutoffs = pd.Series(pd.to_datetime(["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"] * 3))
    earlier, later = time_split(cutoffs, 0.25)
    assert cutoffs[earlier].max() < cutoffs[later].min()
    assert set(cutoffs[later]) == {pd.Timestamp("2024-04-30")}


def test_late_model_beats_the_prior_and_is_calibrated(fitted_late_model):
    model, _, _ = fitted_late_model
    frame, days_late = invoice_frame(seed=1)
    y = (days_late > 5).astype(int)
    p = model.predict_proba(frame)[:, 1]
    from training.metrics import brier, ece, roc_auc
    prior = ClassPriorBaseline().fit(frame, late_labels(frame, days_late)).predict_proba(frame)[:, 1]
    assert roc_auc(y, p) > 0.9
    assert brier(y, p) < brier(y, prior)
    assert ece(y, p) < 0.05


def test_buckets_add_up_and_agree_with_p_late(fitted_late_model):
    model, frame, _ = fitted_late_model
    buckets = model.predict_buckets(frame)
    assert list(buckets.columns) == list(BUCKET_NAMES)
    np.testing.assert_allclose(buckets.sum(axis=1), 1.0)
    np.testing.assert_allclose(buckets.iloc[:, 1:].sum(axis=1), model.predict_proba(frame)[:, 1])


def test_more_days_past_due_never_lowers_p_late_or_expected_days(fitted_late_model):
    model, frame, _ = fitted_late_model
    sample = frame.head(200)
    base_p, base_days = model.predict_proba(sample)[:, 1], model.predict_days_late(sample)
    for extra in (1, 10, 45):
        later = sample.assign(days_past_due=sample["days_past_due"] + extra)
        assert (model.predict_proba(later)[:, 1] >= base_p - 1e-12).all()
        assert (model.predict_days_late(later) >= base_days - 1e-9).all()


def test_unseen_category_and_missing_values_still_score(fitted_late_model):
    model, frame, _ = fitted_late_model
    odd = frame.head(3).assign(segment=["government", None, "mid"], customer_risk=[np.nan, 0.0, 1.0])
    p = model.predict_proba(odd)[:, 1]
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()


def test_missing_feature_column_is_a_clear_error(fitted_late_model):
    model, frame, _ = fitted_late_model
    with pytest.raises(ValueError, match="lacks columns: segment"):
        model.predict_proba(frame.drop(columns="segment"))


def test_person_period_expansion():
    rows, week, event = person_period(np.array([3.0, 10.0, 20.0, 6.0]), np.array([True, True, False, False]), 26)
    # paid on day 3 -> week 1; paid on day 10 -> weeks 1-2; censored at day 20 -> 2 full weeks; day 6 -> none
    np.testing.assert_array_equal(rows, [0, 1, 1, 2, 2])
    np.testing.assert_array_equal(week, [1, 1, 2, 1, 2])
    np.testing.assert_array_equal(event, [1, 0, 1, 0, 0])
    # 3-day periods: day 3 -> period 1; day 10 -> periods 1-4; censored at 20 -> 6 full; day 6 -> 2 full
    rows, period, event = person_period(np.array([3.0, 10.0, 20.0, 6.0]), np.array([True, True, False, False]),
                                        60, period_days=3)
    np.testing.assert_array_equal(np.bincount(rows), [1, 4, 6, 2])
    assert event.sum() == 2 and period[event == 1].tolist() == [1, 4]


def test_receipt_timing_handles_censoring_without_bias():
    """Exponential pay times (median 35 days) censored heavily at 42 days: the hazard model recovers the
    median, while dropping the censored invoices would put it far too early."""
    rng = np.random.default_rng(3)
    n = 5000
    frame = pd.DataFrame({"x": rng.normal(size=n), "cutoff": pd.Timestamp("2024-01-31")})
    days = np.ceil(rng.exponential(35 / np.log(2), n))
    paid = days <= 42
    y = pd.DataFrame({"days_to_pay": np.minimum(days, 42), "paid": paid})
    model = ReceiptTimingModel(features=["x"], days_past_due_column=None, n_estimators=60).fit(frame, y)
    median = model.predict_quantiles(frame)["p50"].median()
    naive_median = np.median(days[paid])
    assert abs(median - 35) < 4, median
    assert naive_median < 25


def test_receipt_timing_quantiles_cdf_and_coverage():
    frame, days_late = invoice_frame(n=3000)
    labels = late_labels(frame, days_late, observed_days=200)
    model = ReceiptTimingModel(features=FEATURES, n_estimators=80).fit(frame, labels)
    quantiles = model.predict_quantiles(frame)
    assert (quantiles["p10"] <= quantiles["p50"]).all() and (quantiles["p50"] <= quantiles["p90"]).all()
    inside = (labels["days_to_pay"] >= quantiles["p10"] - 7) & (labels["days_to_pay"] <= quantiles["p90"] + 7)
    assert inside.mean() > 0.7
    cdf = model.predict_cdf(frame.head(50), [0, 3, 7, 30, 91])
    assert (np.diff(cdf, axis=1) >= -1e-12).all() and (cdf[:, 0] == 0).all()
    # Asking for early days only predicts fewer periods and gives the same probabilities.
    np.testing.assert_allclose(model.predict_cdf(frame.head(50), [28, 30]),
                               model.predict_cdf(frame.head(50), [0, 28, 30, 91])[:, 1:3])
    full = np.column_stack([np.zeros(50), model.paid_share(frame.head(50))])
    np.testing.assert_allclose(cdf[:, 2], full[:, 1])  # day 7 is the end of period 1
    np.testing.assert_allclose(model.predict_cdf(frame.head(50), [7, 14]), full[:, [1, 2]])


def test_deterioration_model_flags_and_threshold():
    rng = np.random.default_rng(5)
    n = 3000
    frame = pd.DataFrame({"max_days_past_due": rng.integers(0, 120, n).astype(float),
                          "trend": rng.normal(size=n),
                          "cutoff": pd.Timestamp("2024-01-31") + pd.to_timedelta(rng.integers(0, 8, n) * 30, "D")})
    risk = 1 / (1 + np.exp(-(frame["max_days_past_due"] / 20 - 4 + 1.5 * frame["trend"])))
    y = (rng.random(n) < risk).astype(int)
    model = DeteriorationModel(features=["max_days_past_due", "trend"], n_estimators=80).fit(frame, y)
    assert 0 < model.threshold_ < 1
    from training.metrics import roc_auc
    assert roc_auc(y, model.predict_proba(frame)[:, 1]) > roc_auc(y, PastDueBaseline().fit(frame).flag(frame))
    assert model.flag(frame).dtype == bool


def test_best_f1_threshold_picks_the_separating_value():
    assert best_f1_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.7, 0.9])) == 0.7


def test_baselines():
    frame = pd.DataFrame({"days_to_due": [10.0, 0.0], "days_past_due": [0.0, 5.0], "avg_days_late": [3.0, 8.0],
                          "share_paid_late_365d": [0.25, np.nan], "max_days_past_due": [0.0, 75.0]})
    labels = pd.DataFrame({"days_late": [0.0, 10.0, 20.0, -2.0], "paid": [True] * 4})
    prior = ClassPriorBaseline().fit(frame, labels)
    assert prior.predict_proba(frame)[:, 1].tolist() == [0.5, 0.5]
    assert CustomerLateRateBaseline().fit(frame, labels).predict_proba(frame)[:, 1].tolist() == [0.25, 0.5]
    assert PayDateBaseline().fit(frame).predict_days(frame).tolist() == [10.0, 1.0]
    assert PayDateBaseline(delay_column="avg_days_late").fit(frame).predict_days(frame).tolist() == [13.0, 3.0]
    assert PastDueBaseline().fit(frame).flag(frame).tolist() == [False, True]
    np.testing.assert_array_equal(PayDateBaseline().fit(frame).predict_cdf(frame, [5, 10]), [[0, 1], [1, 1]])


def test_frame_encoder_keeps_fitted_levels():
    encoder = FrameEncoder(["kind"]).fit(pd.DataFrame({"kind": ["b", "a"]}))
    encoded = encoder.transform(pd.DataFrame({"kind": ["a", "z"]}))
    assert list(encoded["kind"].cat.categories) == ["a", "b"]
    assert encoded["kind"].isna().tolist() == [False, True]


def test_late_model_trains_only_on_rows_whose_outcome_is_determined():
    frame, days_late = invoice_frame(n=3000)
    labels = late_labels(frame, days_late)
    observed = np.where(np.arange(len(frame)) % 3 == 0, 2.0, 200.0)  # a third due too recently to tell
    model = LatePaymentModel(TimeCalibratedClassifier(features=FEATURES, n_estimators=40)).fit(
        frame, labels.assign(observed_days_past_due=observed))
    used = model.classifier_.rows_["trees"] + model.classifier_.rows_["calibration"]
    assert used == int(((observed > 5) & ~np.isnan(known_late(labels["days_late"], labels["paid"], 5))).sum())


def test_contributions_explain_the_raw_log_odds(fitted_late_model):
    model, frame, _ = fitted_late_model
    sample = frame.head(20)
    contributions = model.contributions(sample)
    assert list(contributions.columns) == FEATURES
    raw = model.classifier_.raw_proba(sample)
    log_odds = np.log(raw / (1 - raw))
    bias = log_odds - contributions.sum(axis=1).to_numpy()
    np.testing.assert_allclose(bias, bias[0], atol=1e-6)  # one shared expected value
    worst = contributions.loc[sample["customer_risk"].idxmax(), "customer_risk"]
    assert worst > 0  # the riskiest customer's risk pushes P(late) up


def test_a_window_without_invoices_observed_90_days_past_due_is_a_clear_refusal():
    from models.boosting import NotEnoughLabels

    frame, days_late = invoice_frame(n=1500)
    labels = late_labels(frame, days_late).assign(observed_days_past_due=30.0)  # nothing seen 90 days on
    with pytest.raises(NotEnoughLabels, match="late buckets need late invoices of at least two buckets"):
        LatePaymentModel(TimeCalibratedClassifier(features=FEATURES, n_estimators=20)).fit(frame, labels)
