"""Rolling-origin backtest: for each origin T, train on cutoffs before T with labels censored at T,
then test every model and baseline on the same open items at T, with outcomes seen in full.

Late payment is scored only on invoices whose outcome is still open at the cutoff (not yet past due
by more than the grace): for an item already late, P(late) is 1 by definition and would only flatter
the AUC.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone

from features.registry import feature_names
from models.baselines import ClassPriorBaseline, CustomerLateRateBaseline, PastDueBaseline, PayDateBaseline
from models.boosting import NotEnoughLabels, TimeCalibratedClassifier
from models.deterioration import DeteriorationModel
from models.late_payment import LatePaymentModel, known_late
from models.receipt_timing import ReceiptTimingModel
from rules.forecast import (
    CASH_RHO_ATTRIBUTE,
    DEFAULT_CUSTOMER_RHO,
    customer_rho_of,
    fitted_customer_rho,
    simulate_receipts,
)
from training import metrics as m
from training.datasets import Datasets, censor_customer_labels, censor_invoice_labels

HORIZON_WEEKS = 13
# The backtest's cash band: 500 draws (the band's quantiles to about +-2% of the week's spread) with a fixed
# seed; the copula's rho is fitted on the latest training cutoffs with 13 weeks of known outcomes (about a
# second on 30,000 rows, plus one more fit of the timing model).
CASH_BAND_DRAWS = 500
CASH_BAND_SEED = 0
RHO_CUTOFFS = 4
RHO_MAX_ROWS = 30_000
MONOTONE = {"days_past_due": 1, "has_broken_promise": 1, "max_days_past_due": 1}


@dataclass(frozen=True)
class ModelSettings:
    """Sizes of the three models; the defaults are the ones the backtest judges."""

    late_grace_days: int = 5
    n_estimators: int = 300
    learning_rate: float = 0.05
    timing_horizon_weeks: int = 26
    timing_period_days: int = 7
    timing_max_rows: int = 1_500_000
    random_state: int = 0
    features: tuple[str, ...] | None = None  # the invoice models' inputs; None: invoice_model_features()

    def invoice_features(self) -> list[str]:
        return invoice_model_features() if self.features is None else list(self.features)

    def late_model(self) -> LatePaymentModel:
        classifier = TimeCalibratedClassifier(features=self.invoice_features(), monotone=MONOTONE,
                                              n_estimators=self.n_estimators, learning_rate=self.learning_rate,
                                              random_state=self.random_state)
        return LatePaymentModel(classifier, late_grace_days=self.late_grace_days)

    def timing_model(self) -> ReceiptTimingModel:
        return ReceiptTimingModel(features=self.invoice_features(), horizon_weeks=self.timing_horizon_weeks,
                                  period_days=self.timing_period_days,
                                  max_rows=self.timing_max_rows, n_estimators=self.n_estimators,
                                  learning_rate=self.learning_rate, random_state=self.random_state)

    def deterioration_model(self) -> DeteriorationModel:
        return DeteriorationModel(features=feature_names("customer"), monotone=MONOTONE,
                                  n_estimators=max(100, self.n_estimators // 2),
                                  learning_rate=self.learning_rate, random_state=self.random_state)


def invoice_model_features() -> list[str]:
    """The invoice models see the invoice's own features and its customer's."""
    return feature_names("invoice") + feature_names("customer")


@dataclass
class FittedModels:
    """Everything fitted on one training window."""

    late: LatePaymentModel | None
    timing: ReceiptTimingModel | None
    deterioration: DeteriorationModel | None
    late_baselines: dict
    timing_baselines: dict
    deterioration_baselines: dict
    skipped: dict = field(default_factory=dict)


def undecided(frame: pd.DataFrame, late_grace_days: int) -> np.ndarray:
    """Rows whose lateness is not yet settled at the cutoff (at most `late_grace_days` past due)."""
    return (frame["days_past_due"] <= late_grace_days).to_numpy()


def fit_models(invoices: pd.DataFrame, customers: pd.DataFrame, settings: ModelSettings,
               recipes: Mapping | None = None) -> FittedModels:
    """Fit the three models and their baselines on training rows whose labels are already censored.

    `recipes` ({"late", "timing", "deterioration"} -> estimator) replaces a model by an unfitted copy
    of the one given, e.g. to backtest the current champion's recipe on today's data."""
    recipes = recipes or {}
    late_model = clone(recipes["late"]) if "late" in recipes else settings.late_model()
    timing_model = clone(recipes["timing"]) if "timing" in recipes else settings.timing_model()
    deterioration_model = (clone(recipes["deterioration"]) if "deterioration" in recipes
                           else settings.deterioration_model())
    grace = settings.late_grace_days
    late_rows = invoices[undecided(invoices, grace)]
    late_y = late_rows[["days_late", "paid", "observed_days_past_due"]]
    timing_y = invoices[["days_to_pay", "paid"]]
    customer_rows = customers[customers["deteriorates"].notna()]
    customer_y = customer_rows["deteriorates"].astype(int)
    skipped: dict = {}
    return FittedModels(
        late=fit_or_skip("late", late_model, late_rows, late_y, skipped),
        timing=with_cash_rho(fit_or_skip("timing", timing_model, invoices, timing_y, skipped), invoices),
        deterioration=fit_or_skip("deterioration", deterioration_model, customer_rows, customer_y, skipped),
        late_baselines={
            "class_prior": ClassPriorBaseline(grace).fit(late_rows, late_y),
            "customer_late_rate": CustomerLateRateBaseline(grace).fit(late_rows, late_y),
        },
        timing_baselines={
            "pays_on_due_date": PayDateBaseline().fit(invoices),
            "due_date_plus_customer_average": PayDateBaseline(delay_column="avg_days_late_last_10").fit(invoices),
        },
        deterioration_baselines={"past_due_60_plus": PastDueBaseline().fit(customer_rows)},
        skipped=skipped,
    )


def fit_or_skip(task: str, model, X: pd.DataFrame, y, skipped: dict):
    """The fitted model, or None with the reason in `skipped` when the data hold nothing to learn
    (a ledger where no customer ever deteriorated, say); the rest of the backtest goes on."""
    try:
        return model.fit(X, y)
    except NotEnoughLabels as error:
        skipped[task] = str(error)
        return None


@dataclass
class OriginResult:
    """Predictions of every model and baseline on one origin's test rows."""

    origin: pd.Timestamp
    late: pd.DataFrame
    timing: pd.DataFrame
    cash: pd.DataFrame
    deterioration: pd.DataFrame
    skipped: dict = field(default_factory=dict)
    fitted: FittedModels | None = None
    cash_band: pd.DataFrame | None = None  # the model's simulated p10 and p90 of `cash` per week


def evaluate_origin(fitted: FittedModels, invoices: pd.DataFrame, customers: pd.DataFrame,
                    origin: pd.Timestamp, settings: ModelSettings) -> OriginResult:
    """Predictions on the test rows at `origin`, with their true outcomes."""
    grace = settings.late_grace_days
    late_rows = invoices[undecided(invoices, grace)]
    late = pd.DataFrame({"y": known_late(late_rows["days_late"], late_rows["paid"], grace),
                         "model": _proba(fitted.late, late_rows)}, index=late_rows.index)
    for name, baseline in fitted.late_baselines.items():
        late[name] = baseline.predict_proba(late_rows)[:, 1]
    late = late[late["y"].notna()]

    quantiles = (fitted.timing.predict_quantiles(invoices) if fitted.timing is not None
                 else pd.DataFrame(np.nan, index=invoices.index, columns=["p10", "p50", "p90"]))
    timing = pd.DataFrame({"actual": invoices["days_to_pay"], "paid": invoices["paid"],
                           "p10": quantiles["p10"], "p50": quantiles["p50"], "p90": quantiles["p90"]})
    for name, baseline in fitted.timing_baselines.items():
        timing[name] = baseline.predict_days(invoices)

    cash = weekly_cash(fitted, invoices)
    cash_band = weekly_cash_band(fitted, invoices)

    rows = customers[customers["deteriorates"].notna()]
    deterioration = pd.DataFrame({
        "customer_id": rows["customer_id"], "cutoff": rows["cutoff"], "y": rows["deteriorates"].astype(int),
        "event_date": rows["deterioration_date"], "model": _proba(fitted.deterioration, rows),
        "model_flag": fitted.deterioration.flag(rows) if fitted.deterioration is not None else False,
    })
    for name, baseline in fitted.deterioration_baselines.items():
        deterioration[name] = baseline.predict_proba(rows)[:, 1]
        deterioration[f"{name}_flag"] = baseline.flag(rows)
    return OriginResult(origin, late, timing, cash, deterioration, dict(fitted.skipped), fitted, cash_band)


def _proba(model, rows: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(rows)[:, 1] if model is not None else np.full(len(rows), np.nan)


def weekly_cash(fitted: FittedModels, invoices: pd.DataFrame, weeks: int = HORIZON_WEEKS) -> pd.DataFrame:
    """Receipts per horizon week: actual (open amount of invoices settled that week) and each forecast
    (open amount x P(settled that week))."""
    amount = invoices["open_amount_base"].to_numpy(dtype=float)
    edges = np.arange(weeks + 1) * 7.0
    actual_week = np.where(invoices["paid"], np.ceil(invoices["days_to_pay"] / 7), np.inf)
    table = {"actual": [amount[actual_week == k].sum() for k in range(1, weeks + 1)]}
    if fitted.timing is not None:
        by_week = fitted.timing.predict_cdf(invoices, edges)
        table["model"] = (np.diff(by_week, axis=1) * amount[:, None]).sum(axis=0)
    else:
        table["model"] = np.full(weeks, np.nan)
    for name, baseline in fitted.timing_baselines.items():
        step = baseline.predict_cdf(invoices, edges)
        table[name] = (np.diff(step, axis=1) * amount[:, None]).sum(axis=0)
    return pd.DataFrame(table, index=pd.RangeIndex(1, weeks + 1, name="week"))


def weekly_cash_band(fitted: FittedModels, invoices: pd.DataFrame, weeks: int = HORIZON_WEEKS,
                     draws: int = CASH_BAND_DRAWS, rho: float | None = None) -> pd.DataFrame:
    """The model's 10% and 90% quantiles of the receipts per horizon week (the amounts of `weekly_cash`),
    simulated by the forecast's sampler with a customer's invoices tied by the copula: `rho`, else the one
    fitted with the timing model on its training window."""
    index = pd.RangeIndex(1, weeks + 1, name="week")
    if fitted.timing is None:
        return pd.DataFrame(np.nan, index=index, columns=["p10", "p90"])
    cdf = fitted.timing.predict_cdf(invoices, np.arange(weeks + 1) * 7.0)
    rho = customer_rho_of(fitted.timing) if rho is None else rho
    simulated = simulate_receipts(cdf, invoices["open_amount_base"].to_numpy(dtype=float), draws=draws,
                                  seed=CASH_BAND_SEED, shared=invoices["customer_id"].to_numpy(), rho=rho)[:, 0, :, 0]
    return pd.DataFrame({"p10": np.quantile(simulated, 0.1, axis=0), "p90": np.quantile(simulated, 0.9, axis=0)},
                        index=index)


def with_cash_rho(timing: ReceiptTimingModel | None, invoices: pd.DataFrame) -> ReceiptTimingModel | None:
    """The fitted receipt-timing model with the cash forecast's customer copula rho fitted on its training
    rows set on it (`rules.forecast.CASH_RHO_ATTRIBUTE`), so the rho travels with the model to the daily
    run's forecast; None stays None."""
    if timing is not None:
        setattr(timing, CASH_RHO_ATTRIBUTE, fitted_cash_rho(timing, invoices))
    return timing


def fitted_cash_rho(timing: ReceiptTimingModel, invoices: pd.DataFrame, weeks: int = HORIZON_WEEKS) -> float:
    """The customer copula's rho, out of sample inside the training window: a copy of the timing model's
    recipe fitted on the cutoffs before the latest `RHO_CUTOFFS` complete ones (`rho_cutoffs`), labels
    censored at the first of those, forecasts them; rho is where its simulated spread meets the actual
    (`customer_rho_on`). The model's own fit would judge rows it learnt: in sample it leaves too little
    error (rho 0 on the IBM sample and the demo ledger, whose out-of-sample bands need more)."""
    chosen = rho_cutoffs(invoices, weeks)
    earlier = invoices[invoices["cutoff"] < min(chosen)] if chosen else invoices.iloc[:0]
    if earlier.empty:
        return DEFAULT_CUSTOMER_RHO
    earlier = censor_invoice_labels(earlier, min(chosen))
    try:
        shadow = clone(timing).fit(earlier, earlier[["days_to_pay", "paid"]])
    except NotEnoughLabels:
        return DEFAULT_CUSTOMER_RHO
    return customer_rho_on(shadow, invoices[invoices["cutoff"].isin(chosen)], weeks)


def rho_cutoffs(invoices: pd.DataFrame, weeks: int = HORIZON_WEEKS) -> list[pd.Timestamp]:
    """The latest `RHO_CUTOFFS` cutoffs whose `weeks` weeks of outcomes are all known in the labels given
    (each invoice paid, or still open `weeks` weeks on), fewer when they exceed `RHO_MAX_ROWS` rows."""
    known = (invoices["paid"] | (invoices["days_to_pay"] >= 7 * weeks)).groupby(invoices["cutoff"]).all()
    sizes = invoices.groupby("cutoff").size()[known[known].index][::-1]
    return sorted(sizes.index[:max(1, min(RHO_CUTOFFS, int((sizes.cumsum() <= RHO_MAX_ROWS).sum())))])


def customer_rho_on(model, rows: pd.DataFrame, weeks: int = HORIZON_WEEKS) -> float:
    """`rules.forecast.fitted_customer_rho` of the model's cdfs on `rows` (open invoices at past cutoffs
    whose `weeks` weeks of outcomes are known): the book's weekly receipts at each cutoff judged, the
    copula's units a customer at a cutoff."""
    if rows.empty:
        return DEFAULT_CUSTOMER_RHO
    cdf = model.predict_cdf(rows, np.arange(weeks + 1) * 7.0)
    # A payment on the cutoff's day (0 days) counts in the first week.
    paid_period = np.where(rows["paid"], np.maximum(np.ceil(rows["days_to_pay"] / 7), 1), np.inf)
    books = rows.groupby("cutoff", sort=False).ngroup().to_numpy()
    customers = rows.groupby(["customer_id", "cutoff"], sort=False).ngroup().to_numpy()
    return fitted_customer_rho(cdf, paid_period, rows["open_amount_base"].to_numpy(dtype=float), books,
                               customers, seed=CASH_BAND_SEED)


@dataclass
class BacktestResult:
    """Pooled predictions over the origins and the metrics of the `metrics.json` contract."""

    origins: list[pd.Timestamp]
    per_origin: list[OriginResult]
    metrics: dict = field(default_factory=dict)
    fitted: FittedModels | None = None


def run_backtest(datasets: Datasets, origins: Sequence[pd.Timestamp], settings: ModelSettings | None = None,
                 progress: Callable[[str], None] | None = None, recipes: Mapping | None = None) -> BacktestResult:
    """Fit on cutoffs before each origin (labels censored at it) and test at the origin."""
    settings = settings or ModelSettings()
    results = []
    for origin in origins:
        if progress:
            progress(f"origin {origin:%Y-%m-%d}")
        results.append(origin_result(datasets, origin, settings, recipes))
    return combined_backtest(datasets, origins, results)


def origin_result(datasets: Datasets, origin: pd.Timestamp, settings: ModelSettings,
                  recipes: Mapping | None = None) -> OriginResult:
    """One origin of the backtest: fit on the cutoffs before it (labels censored at it), test at it."""
    train_invoices = censor_invoice_labels(datasets.invoices[datasets.invoices["cutoff"] < origin], origin)
    train_customers = censor_customer_labels(datasets.customers[datasets.customers["cutoff"] < origin], origin)
    fitted = fit_models(train_invoices, train_customers, settings, recipes)
    test_invoices = datasets.invoices[datasets.invoices["cutoff"] == origin]
    test_customers = datasets.customers[datasets.customers["cutoff"] == origin]
    return evaluate_origin(fitted, test_invoices, test_customers, origin, settings)


def combined_backtest(datasets: Datasets, origins: Sequence[pd.Timestamp],
                      results: Sequence[OriginResult]) -> BacktestResult:
    """The origins' results, in origin order, pooled into the backtest's metrics."""
    result = BacktestResult(list(origins), list(results), fitted=results[-1].fitted if results else None)
    result.metrics = backtest_metrics(result, datasets)
    return result


def backtest_metrics(result: BacktestResult, datasets: Datasets, top_share: float = 0.05) -> dict:
    """The `metrics.json` contract: model and baselines per task, rows and cutoffs."""
    late = pd.concat([r.late for r in result.per_origin])
    timing = pd.concat([r.timing for r in result.per_origin])
    cash = sum(r.cash for r in result.per_origin)
    cash_by_origin = [r.cash for r in result.per_origin]
    deterioration = pd.concat([r.deterioration for r in result.per_origin])

    late_metrics = {name: probability_metrics(late["y"], late[name]) for name in late.columns if name != "y"}
    late_metrics["model"]["per_origin"] = [origin_calibration(r.origin, r.late) for r in result.per_origin]
    paid = timing[timing["paid"]]
    band_coverage = weekly_band_coverage(result.per_origin)
    timing_model = {
        "mae_days": m.mae(paid["actual"], paid["p50"]),
        "pinball_p10": m.pinball(paid["actual"], paid["p10"], 0.1),
        "pinball_p50": m.pinball(paid["actual"], paid["p50"], 0.5),
        "pinball_p90": m.pinball(paid["actual"], paid["p90"], 0.9),
        "coverage_p10_p90": m.coverage_censored(timing["actual"], timing["paid"], timing["p10"], timing["p90"]),
        "wape_week": weekly_wape(cash_by_origin, "model"),
        "wape_13w": pooled_wape(cash_by_origin, "model"),
        "band_coverage_week": band_coverage.tolist(),
        "band_coverage": float(np.mean(band_coverage)),
        "band_customer_rho": [customer_rho_of(r.fitted.timing) if r.fitted is not None and r.fitted.timing is not None
                              else None for r in result.per_origin],
    }
    timing_baselines = {}
    for name in result.per_origin[0].timing.columns.drop(["actual", "paid", "p10", "p50", "p90"]):
        point = paid[name]
        timing_baselines[name] = {
            "mae_days": m.mae(paid["actual"], point),
            "pinball_p10": m.pinball(paid["actual"], point, 0.1),
            "pinball_p50": m.pinball(paid["actual"], point, 0.5),
            "pinball_p90": m.pinball(paid["actual"], point, 0.9),
            "coverage_p10_p90": m.coverage_censored(timing["actual"], timing["paid"], timing[name], timing[name]),
            "wape_week": weekly_wape(cash_by_origin, name),
            "wape_13w": pooled_wape(cash_by_origin, name),
        }
    k = max(1, round(top_share * deterioration.groupby("cutoff").size().mean())) if len(deterioration) else 1
    deterioration_metrics = {
        "model": flag_metrics(deterioration, "model", "model_flag", k),
        "baselines": {name: flag_metrics(deterioration, name, f"{name}_flag", k)
                      for name in result.per_origin[0].deterioration.columns
                      if f"{name}_flag" in deterioration.columns and name != "model"},
    }
    return {
        "late_payment": {"model": late_metrics.pop("model"), "baselines": late_metrics},
        "receipt_timing": {"model": timing_model, "baselines": timing_baselines},
        "deterioration": deterioration_metrics,
        "rows": {"late_payment": len(late), "receipt_timing_paid": len(paid), "receipt_timing": len(timing),
                 "deterioration": len(deterioration), "snapshot_invoices": len(datasets.invoices),
                 "snapshot_customers": len(datasets.customers)},
        "cutoffs": [f"{origin:%Y-%m-%d}" for origin in result.origins],
        "cash_week_totals": {column: cash[column].round(2).tolist() for column in cash.columns},
        "skipped": {task: reason for r in result.per_origin for task, reason in r.skipped.items()},
    }


def probability_metrics(y: pd.Series, p: pd.Series) -> dict:
    """ROC AUC, PR AUC, Brier and ECE of probabilities."""
    return {"roc_auc": m.roc_auc(y, p), "pr_auc": m.pr_auc(y, p), "brier": m.brier(y, p), "ece": m.ece(y, p)}


def origin_calibration(origin: pd.Timestamp, late: pd.DataFrame) -> dict:
    """One origin's late-payment model: its rows, ROC AUC, ECE and reliability table (empty when skipped)."""
    scored = late["model"].notna().all() and len(late) > 0
    return {"origin": f"{origin:%Y-%m-%d}", "rows": len(late), "roc_auc": m.roc_auc(late["y"], late["model"]),
            "ece": m.ece(late["y"], late["model"]),
            "reliability": m.reliability(late["y"], late["model"]) if scored else []}


def weekly_band_coverage(per_origin: Sequence[OriginResult]) -> np.ndarray:
    """Per horizon week, the share of origins whose actual receipts fell within the model's simulated
    [p10, p90] (nominal 80%); NaN without a band."""
    inside = [((r.cash["actual"] >= r.cash_band["p10"]) & (r.cash["actual"] <= r.cash_band["p90"])).to_numpy()
              if r.cash_band is not None and r.cash_band["p10"].notna().all() else np.full(len(r.cash), np.nan)
              for r in per_origin]
    return np.mean(inside, axis=0)


def weekly_wape(cash_by_origin: list[pd.DataFrame], column: str) -> list[float]:
    """WAPE per horizon week, pooled over origins: sum |actual - forecast| / sum actual."""
    actual = np.array([c["actual"].to_numpy() for c in cash_by_origin])
    forecast = np.array([c[column].to_numpy() for c in cash_by_origin])
    return [m.wape(actual[:, week], forecast[:, week]) for week in range(actual.shape[1])]


def pooled_wape(cash_by_origin: list[pd.DataFrame], column: str) -> float:
    """WAPE of the weekly forecast over all horizon weeks and origins together (weeks weighted by their
    receipts, so a nearly empty week 13 cannot dominate as it does in a plain mean of weekly WAPEs)."""
    actual = np.concatenate([c["actual"].to_numpy() for c in cash_by_origin])
    return m.wape(actual, np.concatenate([c[column].to_numpy() for c in cash_by_origin]))


def flag_metrics(rows: pd.DataFrame, score: str, flag: str, k: int) -> dict:
    """ROC/PR AUC of the score, precision among the top k per cutoff, recall and median lead time of the flag."""
    per_cutoff = [m.precision_at_k(group["y"], group[score], k) for _, group in rows.groupby("cutoff")]
    precision = np.nanmean(per_cutoff) if not np.isnan(per_cutoff).all() else float("nan")
    return {"roc_auc": m.roc_auc(rows["y"], rows[score]), "pr_auc": m.pr_auc(rows["y"], rows[score]),
            "precision_at_k": float(precision), "k": int(k), "recall": m.recall(rows["y"], rows[flag]),
            "flag_precision": float(rows.loc[rows[flag].astype(bool), "y"].mean()) if rows[flag].any() else float("nan"),
            "median_lead_days": median_lead_days(rows, flag)}


def median_lead_days(rows: pd.DataFrame, flag: str) -> float:
    """For each deterioration caught, days from the first cutoff whose flag rose to the event; the median."""
    caught = rows[(rows["y"] == 1) & rows[flag].astype(bool)]
    if caught.empty:
        return float("nan")
    first_flag = caught.groupby(["customer_id", "event_date"])["cutoff"].min().reset_index()
    return float((first_flag["event_date"] - first_flag["cutoff"]).dt.days.median())
