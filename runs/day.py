"""The daily run's steps and the `Day` they build: every table the day's work reads, for one `as_of`.

A step is a named function of the `Work` in progress; `build_day` runs them in order, times each one
(seconds, and the process's peak memory when it ended) and reports progress. The same steps build a run
folder (`arrisk run`, `runs.folder`) and answer a date on demand (`arrisk serve --ledger`), so an answer
served from a run equals the direct computation.

Explanations are computed for every open document and customer in one TreeSHAP call per model, not per
request: the reasons are columns of `scores` and `customers`.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from features import FeatureConfig, feature_frames
from ledger import Ledger
from models.late_payment import BUCKET_NAMES
from models.receipt_timing import QUANTILES, cdf_at, quantiles_of
from provision import ProvisionPolicy, load_provision_policy
from rules.dunning import DunningPolicy, dunning_proposal, load_policy
from rules.forecast import HORIZON_WEEKS, customer_rho_of
from rules.worklist import DEFAULT_POLICY, WorklistPolicy, load_worklist_policy, money_at_risk, worklist
from runs.reasons import customer_reason_table, reason_table
from runs.scoring import (
    DEFAULT_DUNNING_POLICY,
    SCORE_COLUMNS,
    Champions,
    Scores,
    build_forecast,
    fill_reasons,
    open_documents,
    scored,
    with_pay_dates,
)

BUCKET_COLUMNS = [f"p_{name}" for name in BUCKET_NAMES]
REASON_COLUMNS = ["reason_1", "reason_2", "reason_3"]
CONTRIBUTION_COLUMNS = [f"{column}_contribution" for column in REASON_COLUMNS]
CUSTOMER_INFO = ["name", "segment", "collector", "credit_limit"]
KPI_MONTHS = 3  # the customer view's KPIs: the months up to as_of
CHART_FEATURES = 8  # the deterioration explanation chart: largest contributions of either sign
FORECAST_FREQS = ("week", "day")
AGING_VIEWS = [(basis, amounts) for basis in ("due_date", "invoice_date") for amounts in ("base", "document")]


@dataclass(frozen=True)
class DaySettings:
    """What a day is computed with besides the ledger and the models."""

    policy: WorklistPolicy = field(default_factory=lambda: load_worklist_policy(DEFAULT_POLICY))
    dunning_policy: DunningPolicy = field(default_factory=lambda: load_policy(DEFAULT_DUNNING_POLICY))
    feature_config: FeatureConfig | None = None
    horizon_weeks: int = HORIZON_WEEKS
    draws: int = 1000
    seed: int = 0
    peers: pd.DataFrame | None = None  # the peer sums of all customers at as_of, for a bucket's day (features.peers)
    provision_policy: ProvisionPolicy = field(default_factory=load_provision_policy)


@dataclass
class Day:
    """The tables of one day (see `TABLES`) and what was measured building them."""

    as_of: pd.Timestamp
    tables: dict[str, pd.DataFrame]
    facts: dict = field(default_factory=dict)  # e.g. the drift verdict, the forecast horizon
    steps: list[dict] = field(default_factory=list)  # name, seconds, peak_rss_mb


@dataclass
class Work:
    """A day in the making: the inputs, and what the steps so far produced."""

    ledger: Ledger
    as_of: pd.Timestamp
    champions: Champions
    settings: DaySettings
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    invoice_features: pd.DataFrame | None = None
    customer_features: pd.DataFrame | None = None
    scores: Scores | None = None
    item_contributions: pd.DataFrame | None = None


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Work], None]
    about: str = ""


def validate(work: Work) -> None:
    """The ledger's schema and cross-table rules; a bad ledger stops the run before anything is computed."""
    work.ledger.validate()
    work.facts["ledger_fingerprint"] = work.ledger.fingerprint()


def features(work: Work) -> None:
    work.invoice_features, work.customer_features = feature_frames(work.ledger, work.as_of,
                                                                   work.settings.feature_config, work.settings.peers)


def scores(work: Work) -> None:
    """P(late), its buckets, expected days late, pay dates and P(unpaid) per open document; P(deteriorate)
    and the flag per customer. The receipt-timing hazard is predicted once for every document and period;
    P(unpaid), the pay dates and the forecast all read it."""
    timing = work.champions.require("timing")
    documents = open_documents(work.ledger, work.invoice_features)
    work.champions = replace(work.champions, timing=TimingOnce(timing, documents))
    result = scored(work.ledger, work.as_of, work.invoice_features, work.customer_features, work.champions,
                    work.settings.policy.horizon_days)
    items = result.items.reset_index(drop=True)
    items = pd.concat([items, bucket_probabilities(work.champions, items)], axis=1)
    work.scores = Scores(result.as_of, with_pay_dates(items, work.champions, result.as_of),
                         result.customers.reset_index(drop=True))


def explanations(work: Work) -> None:
    """One TreeSHAP call per model for the whole book: three reasons per open document (late-payment
    model), per customer from its items weighted by money at risk (the worklist's reasons), and the
    deterioration model's reasons and chart per customer."""
    items, customers = work.scores.items, work.scores.customers
    late, deterioration = work.champions.late, work.champions.deterioration
    if late is not None and len(items):
        contributions = late.contributions(items)
        item_reasons = reason_table(contributions, items)
        weights = money_at_risk(items["open_amount_base"], items["p_unpaid"]).to_numpy()
        worklist_reasons = customer_reason_table(items, contributions, weights)
    else:
        item_reasons = empty_reasons(len(items))
        worklist_reasons = empty_reasons(0)
    if deterioration is not None and len(customers):
        customer_contributions = deterioration.contributions(customers)
        customer_reasons = reason_table(customer_contributions, customers)
        chart = chart_rows(customers, customer_contributions)
    else:
        customer_reasons, chart = empty_reasons(len(customers)), pd.DataFrame(columns=CHART_COLUMNS)
    work.scores.items = pd.concat([items, item_reasons.set_axis(items.index)], axis=1)
    worklist_reasons = worklist_reasons.reindex(customers["customer_id"]).add_prefix("worklist_")
    info = work.ledger.customers.set_index("customer_id")
    work.tables["scores"] = work.scores.items[SCORE_COLUMNS + BUCKET_COLUMNS + REASON_COLUMNS + CONTRIBUTION_COLUMNS]
    work.tables["customers"] = pd.concat([
        customers,
        customer_reasons.set_axis(customers.index),
        worklist_reasons.set_axis(customers.index),
        info.reindex(customers["customer_id"])[[c for c in CUSTOMER_INFO if c in info and c not in customers]]
        .set_axis(customers.index),
        customer_money(items, customers).set_axis(customers.index),
    ], axis=1)
    work.tables["contributions"] = chart


def dunning(work: Work) -> None:
    """The dunning proposal with its letters (what `GET /dunning` answers)."""
    work.tables["dunning"] = dunning_proposal(work.ledger, work.as_of, work.settings.dunning_policy)


def worklist_base(work: Work) -> None:
    """The whole ranked worklist: the rules on the scores, the free reason slots filled with the models'."""
    table = worklist(work.ledger, work.as_of, work.scores.items, work.scores.customers, work.settings.policy,
                     dunning=work.tables["dunning"])
    work.tables["worklist"] = fill_reasons(table, model_reasons(work.tables["customers"]))


def forecast(work: Work) -> None:
    """The cash forecast by week and by day over the horizon, per currency and in base currency."""
    frames = [build_forecast(work.ledger, work.as_of, work.champions, horizon_weeks=work.settings.horizon_weeks,
                             freq=freq, draws=work.settings.draws, seed=work.settings.seed,
                             scores=work.scores).assign(freq=freq)
              for freq in FORECAST_FREQS]
    work.tables["forecast"] = pd.concat(frames, ignore_index=True)
    work.facts.update(horizon_weeks=work.settings.horizon_weeks, forecast_draws=work.settings.draws,
                      forecast_seed=work.settings.seed,
                      forecast_customer_rho=customer_rho_of(work.champions.require("timing")))


def aging(work: Work) -> None:
    """Aging by customer and bucket in its four views (due or invoice date; base or document amounts).
    (The KPIs of a period are computed when asked, for one customer from its slice of the ledger: the
    whole book's took 50 s of a 20,000-customer run.)"""
    work.tables["aging"] = aging_table(work.ledger, work.as_of)


def aging_table(ledger: Ledger, as_of: pd.Timestamp) -> pd.DataFrame:
    """The aging report in the day's four views, one table with `basis` and `amounts` columns."""
    from rules.aging import aging_views

    views = aging_views(ledger, as_of, AGING_VIEWS)
    return pd.concat([table.assign(basis=basis, amounts=amounts) for (basis, amounts), table in views.items()],
                     ignore_index=True)


def provision(work: Work) -> None:
    """The bad-debt provision at the day's date by both methods (`provision.report`), the model's PD from
    the day's deterioration scores. Not a step of a bucket's day: loss rates need the whole book."""
    from provision.report import provision_report

    probabilities = work.scores.customers.set_index("customer_id")["deterioration_probability"] \
        if work.champions.deterioration is not None else None
    report = provision_report(work.ledger, work.as_of, work.settings.provision_policy,
                              (lambda _: probabilities) if probabilities is not None else None)
    work.tables.update(provision_tables(report))
    work.facts["provision_lgd"] = report.lgd


def provision_tables(report) -> dict[str, pd.DataFrame]:
    """A provision report's tables as the run writes them (Parquet wants plain column types)."""
    return {"provision_summary": report.summary, "provision_rates": report.loss_rates,
            "provision_matrix": report.matrix.assign(bucket=report.matrix["bucket"].astype(str)),
            "provision_customers": report.customers, "provision_differences": report.differences}


PROVISION_STEP = Step("provision", provision, "the bad-debt provision by both methods")

STEPS: tuple[Step, ...] = (
    Step("validate", validate, "check the ledger, fingerprint it"),
    Step("features", features, "point-in-time features of every open document and customer"),
    Step("scores", scores, "the three models on every open document and customer"),
    Step("explanations", explanations, "TreeSHAP reasons for every document and customer"),
    Step("dunning", dunning, "the dunning proposal"),
    Step("worklist", worklist_base, "the ranked worklist before the day's actions"),
    Step("forecast", forecast, "the 13-week cash forecast"),
    Step("aging", aging, "aging in four views"),
)
ON_DEMAND_STEPS = tuple(step for step in STEPS if step.name != "validate")  # a served ledger was validated on read


def build_day(ledger: Ledger, as_of: pd.Timestamp, champions: Champions, settings: DaySettings | None = None,
              steps: Sequence[Step] = STEPS, on_step: Callable[[int, Step], None] | None = None,
              on_done: Callable[[int, Step, dict[str, pd.DataFrame]], None] | None = None) -> Day:
    """Run `steps` in order for `as_of`; `on_step(index, step)` is told before each starts, `on_done(index,
    step, tables)` after each ends with the tables made so far (a run folder writes them as they come).
    An exception in a step propagates as `StepFailed` naming the step."""
    champions.require("timing")
    work = Work(ledger, pd.Timestamp(as_of).normalize(), champions, settings or DaySettings())
    measured = []
    for index, step in enumerate(steps):
        if on_step is not None:
            on_step(index, step)
        started = time.perf_counter()
        try:
            step.run(work)
        except Exception as error:
            raise StepFailed(step.name, error) from error
        measured.append({"name": step.name, "seconds": round(time.perf_counter() - started, 3),
                         "peak_rss_mb": peak_rss_mb()})
        if on_done is not None:
            on_done(index, step, work.tables)
    return Day(work.as_of, work.tables, work.facts, measured)


class StepFailed(Exception):
    """A step of a run raised: the step's name and the error."""

    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(f"step {step!r} failed: {error}")
        self.step, self.error = step, error

    def __reduce__(self):  # sent back from a Dask worker whole
        return (StepFailed, (self.step, self.error))


class TimingOnce:
    """A receipt-timing model whose paid shares by period are predicted once for a day's documents (by
    invoice id); other rows are predicted as usual. Same numbers as the model, a quarter of the calls."""

    def __init__(self, model, documents: pd.DataFrame) -> None:
        self.model = model
        self.periods, self.period_days = model.periods, model.period_days
        self.edges, self.horizon_days = model.edges, model.horizon_days
        self.cash_rho_ = customer_rho_of(model)  # the forecast's customer copula, fitted with the model
        self.share = model.paid_share(documents) if len(documents) else np.zeros((0, model.periods))
        self.position = pd.Series(np.arange(len(documents)), index=documents["invoice_id"].to_numpy())
        self.days_past_due = documents["days_past_due"].to_numpy(dtype=float)

    def _share(self, X: pd.DataFrame, periods: int | None = None) -> np.ndarray:
        """The cached shares of X's rows when they are the day's documents (same invoice and days past due:
        a row of another date, such as the drift reference, is predicted), else the model's."""
        positions = self.position.reindex(X["invoice_id"].to_numpy()) if "invoice_id" in X else None
        if positions is None or positions.isna().any() or not np.array_equal(
                self.days_past_due[positions.to_numpy(dtype=int)], X["days_past_due"].to_numpy(dtype=float),
                equal_nan=True):
            return self.model.paid_share(X, periods)
        share = self.share[positions.to_numpy(dtype=int)]
        return share if periods is None else share[:, :max(1, min(int(periods), self.periods))]

    def predict_cdf(self, X: pd.DataFrame, days) -> np.ndarray:
        days = np.clip(np.asarray(days, dtype=float), 0, self.horizon_days)
        needed = max(1, int(np.searchsorted(self.edges, days.max(), side="left"))) if days.size else 1
        return cdf_at(self._share(X, needed), days, self.edges)

    def predict_quantiles(self, X: pd.DataFrame, quantiles=QUANTILES) -> pd.DataFrame:
        return quantiles_of(self._share(X), quantiles, self.edges, X.index)


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (Linux reports kilobytes)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def kpi_start(as_of: pd.Timestamp) -> pd.Timestamp:
    """The first day of the customer view's KPI window: the start of the month `KPI_MONTHS` - 1 before."""
    return (pd.Timestamp(as_of) - pd.offsets.MonthBegin(KPI_MONTHS)).normalize()


def bucket_probabilities(champions: Champions, items: pd.DataFrame) -> pd.DataFrame:
    """P(on time) and P(1-30 / 31-60 / 61-90 / 90+ days late) per item (NaN without a late model)."""
    if champions.late is None or items.empty:
        return pd.DataFrame(np.nan, index=items.index, columns=BUCKET_COLUMNS)
    buckets = champions.late.predict_buckets(items)
    return buckets.rename(columns={name: f"p_{name}" for name in buckets.columns}).set_axis(items.index)


def empty_reasons(rows: int) -> pd.DataFrame:
    return pd.DataFrame({**{column: np.full(rows, "", dtype=object) for column in REASON_COLUMNS},
                         **{column: np.full(rows, np.nan) for column in CONTRIBUTION_COLUMNS}})


def customer_money(items: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """Per customer: its money at risk before holds (open amount x P(unpaid), summed) and open documents."""
    at_risk = money_at_risk(items["open_amount_base"], items["p_unpaid"]).groupby(items["customer_id"]).sum()
    count = items.groupby("customer_id").size()
    ids = customers["customer_id"]
    return pd.DataFrame({"money_at_risk_before_holds_base": ids.map(at_risk).fillna(0.0).to_numpy(),
                         "open_documents_scored": ids.map(count).fillna(0).astype(int).to_numpy()})


def model_reasons(customers: pd.DataFrame) -> dict[str, list[str]]:
    """Per customer: the late-payment model's reasons for its worklist row (the `worklist_reason_*` columns)."""
    slots = customers[[f"worklist_{column}" for column in REASON_COLUMNS]].fillna("").to_numpy(dtype=object)
    return {customer: [text for text in row if text]
            for customer, row in zip(customers["customer_id"], slots, strict=True)}


CHART_COLUMNS = ["customer_id", "feature", "contribution", "value"]


def chart_rows(customers: pd.DataFrame, contributions: pd.DataFrame, count: int = CHART_FEATURES) -> pd.DataFrame:
    """Per customer: its `count` largest contributions of either sign with the feature's value, largest
    first (ties by feature name), for the explanation chart."""
    names = np.asarray(contributions.columns, dtype=object)
    values = contributions.to_numpy(dtype=float)
    by_name = np.argsort(names.astype(str), kind="stable")
    picked = by_name[np.argsort(-np.abs(values[:, by_name]), axis=1, kind="stable")[:, :count]]
    rows = np.repeat(np.arange(len(values)), picked.shape[1])
    # The features' values as one numeric matrix in the contributions' column order (NaN where not numeric).
    matrix = customers.reindex(columns=list(names)).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    return pd.DataFrame({
        "customer_id": customers["customer_id"].to_numpy()[rows],
        "feature": names[picked.ravel()].astype(str),
        "contribution": np.take_along_axis(values, picked, axis=1).ravel(),
        "value": np.take_along_axis(matrix, picked, axis=1).ravel(),
    })
