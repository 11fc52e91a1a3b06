"""Scoring: the champion models applied to a ledger as of a date, glued to the rules.

Every function takes the ledger and `as_of` and computes features with `features_at`, so the CLI,
the API and the backtest check all score the same rows the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from configs import config_path
from features import FeatureConfig, feature_frames
from features.settlement import base_rate
from ledger import Ledger, LedgerError, Problem
from ledger.errors import NoModel
from runs.reasons import customer_reasons

UNPAID_HORIZON_DAYS = 30
DEFAULT_DUNNING_POLICY = config_path("dunning", "default.yaml")


class NoChampion(NoModel, LedgerError):
    """No champion for a task: `NoModel` for the API (409), a `LedgerError` for the CLI's one-line error."""


@dataclass
class Champions:
    """The three champion models (None where none was promoted) and their registered versions."""

    late: object | None
    timing: object | None
    deterioration: object | None
    versions: dict = field(default_factory=dict)

    def require(self, task: str):
        """The model for `task`, or a clear error saying how to get one."""
        model = getattr(self, task)
        if model is None:
            from training.pipeline import MODEL_NAMES

            raise NoChampion(Problem("models", None, None, f"no champion for {MODEL_NAMES[task]}: run "
                                      "`arrisk train` on a ledger first (or pass --tracking-uri)"),
                              title="no model")
        return model


def load_champions(tracking_uri: str) -> Champions:
    """Load each champion once from the MLflow registry."""
    from training.pipeline import MODEL_NAMES
    from training.tracking import champion_version, load_champion

    models = {task: load_champion(tracking_uri, name) for task, name in MODEL_NAMES.items()}
    versions = {task: champion_version(tracking_uri, name) for task, name in MODEL_NAMES.items()}
    return Champions(models["late"], models["timing"], models["deterioration"], versions)


@dataclass
class Scores:
    """Open documents and known customers at `as_of`, with features and model outputs."""

    as_of: pd.Timestamp
    items: pd.DataFrame
    customers: pd.DataFrame


def open_documents(ledger: Ledger, features: pd.DataFrame) -> pd.DataFrame:
    """The feature rows with the document's currency, due date and open amount in document currency."""
    documents = ledger.invoices.set_index("invoice_id")
    rate = base_rate(documents["amount"], documents["amount_base"])
    ids = features["invoice_id"]
    return features.assign(
        currency=ids.map(documents["currency"]).to_numpy(),
        due_date=ids.map(documents["due_date"]).to_numpy(),
        open_amount=(features["open_amount_base"] / ids.map(rate).replace(0, np.nan)).to_numpy(),
    )


def score(ledger: Ledger, as_of: pd.Timestamp, champions: Champions,
          config: FeatureConfig | None = None, horizon_days: int = UNPAID_HORIZON_DAYS,
          peers: pd.DataFrame | None = None) -> Scores:
    """Per open document: P(late), expected days late and P(still unpaid after `horizon_days`); per
    customer: P(deteriorate) and the flag. Pay-date quantiles need the whole timing distribution, so
    `with_pay_dates` adds them to the rows that show them. `peers`: see `features.feature_frames`."""
    as_of = pd.Timestamp(as_of).normalize()
    invoice_features, customer_features = feature_frames(ledger, as_of, config, peers)
    return scored(ledger, as_of, invoice_features, customer_features, champions, horizon_days)


def scored(ledger: Ledger, as_of: pd.Timestamp, invoice_features: pd.DataFrame, customer_features: pd.DataFrame,
           champions: Champions, horizon_days: int = UNPAID_HORIZON_DAYS) -> Scores:
    """The feature rows at `as_of` with the champions' outputs (see `score`)."""
    items = open_documents(ledger, invoice_features)
    timing = champions.require("timing")
    paid_by_horizon = timing.predict_cdf(items, [horizon_days])[:, 0] if len(items) else np.array([])
    items["p_unpaid"] = 1 - paid_by_horizon
    if champions.late is not None and len(items):
        items["p_late"] = champions.late.predict_proba(items)[:, 1]
        items["expected_days_late"] = champions.late.predict_days_late(items)
    else:
        items["p_late"] = np.nan
        items["expected_days_late"] = np.nan
    customers = customer_features.copy()
    if champions.deterioration is not None and len(customers):
        customers["deterioration_probability"] = champions.deterioration.predict_proba(customers)[:, 1]
        customers["deteriorating"] = champions.deterioration.flag(customers)
    else:
        customers["deterioration_probability"] = np.nan
        customers["deteriorating"] = False
    return Scores(pd.Timestamp(as_of).normalize(), items, customers)


SCORE_COLUMNS = ["invoice_id", "customer_id", "currency", "due_date", "open_amount", "open_amount_base",
                 "days_past_due", "p_late", "expected_days_late", "pay_date_p10", "pay_date_p50", "pay_date_p90",
                 "p_unpaid"]


def with_pay_dates(items: pd.DataFrame, champions: Champions, as_of: pd.Timestamp) -> pd.DataFrame:
    """`items` with the 10/50/90% pay dates of the receipt-timing distribution (days rounded up)."""
    timing = champions.require("timing")
    quantiles = timing.predict_quantiles(items) if len(items) else pd.DataFrame(columns=["p10", "p50", "p90"])
    dates = {f"pay_date_{name}": as_of + pd.to_timedelta(np.ceil(quantiles[name].to_numpy(dtype=float)), unit="D")
             for name in ("p10", "p50", "p90")}
    return items.assign(**dates)


def score_table(scores: Scores, champions: Champions) -> pd.DataFrame:
    """The `arrisk score` output: one row per open document, in invoice id order."""
    items = with_pay_dates(scores.items, champions, scores.as_of)
    return items[SCORE_COLUMNS].sort_values("invoice_id", ignore_index=True)


def worklist_reasons(scores: Scores, champions: Champions, customer_ids: list[str]) -> dict[str, list[str]]:
    """Per customer: plain-language reasons from the late-payment model's SHAP contributions."""
    if champions.late is None or not customer_ids:
        return {}
    items = scores.items[scores.items["customer_id"].isin(customer_ids)]
    contributions = champions.late.contributions(items)
    weights = (items["open_amount_base"].clip(lower=0) * items["p_unpaid"]).to_numpy()
    return customer_reasons(items, contributions, weights)


def build_worklist(ledger: Ledger, as_of: pd.Timestamp, champions: Champions, *, policy=None, dunning_policy=None,
                   collector: str | None = None, segment: str | None = None, top: int | None = None,
                   scores: Scores | None = None, reasons: bool = True,
                   portfolio: list[str] | None = None) -> pd.DataFrame:
    """The prioritised worklist as of `as_of` with the champions' risk and reasons (`reasons=False`:
    rule reasons only, for a caller that explains just the rows it shows)."""
    from rules.dunning import dunning_proposal, load_policy
    from rules.worklist import DEFAULT_POLICY, load_worklist_policy, worklist

    policy = policy or load_worklist_policy(DEFAULT_POLICY)
    scores = scores or score(ledger, as_of, champions, horizon_days=policy.horizon_days)
    dunning_policy = dunning_policy or load_policy(DEFAULT_DUNNING_POLICY)
    dunning = dunning_proposal(ledger, scores.as_of, dunning_policy, letters=False)
    table = worklist(ledger, scores.as_of, scores.items, scores.customers, policy, dunning=dunning,
                     collector=collector, segment=segment, top=top, portfolio=portfolio)
    if not reasons:
        return table
    return fill_reasons(table, worklist_reasons(scores, champions, table["customer_id"].tolist()))


def fill_reasons(table: pd.DataFrame, reasons: dict[str, list[str]]) -> pd.DataFrame:
    """Fill the empty reason slots of each row with its model reasons, rule reasons kept first."""
    slots = ["reason_1", "reason_2", "reason_3"]
    filled = []
    for row in table[["customer_id", *slots]].itertuples(index=False):
        present = [text for text in row[1:] if text]
        extra = [text for text in reasons.get(row.customer_id, []) if text not in present]
        filled.append(([*present, *extra, "", "", ""])[:3])
    return table.assign(**dict(zip(slots, zip(*filled, strict=True), strict=True))) if filled else table


def build_forecast(ledger: Ledger, as_of: pd.Timestamp, champions: Champions, *, horizon_weeks: int = 13,
                   freq: str = "week", draws: int = 1000, seed: int = 0, scores: Scores | None = None) -> pd.DataFrame:
    """The cash forecast at `as_of`: receipts per period from the receipt-timing distributions of the items
    `rules.forecast` forecasts, with 10/50/90% intervals, per currency and in base currency, beside the
    baselines it names (pays on the due date; due date plus the customer's average delay)."""
    from rules.forecast import forecast_table, period_edges

    scores = scores or score(ledger, as_of, champions)
    sums = forecast_sums_of(ledger, as_of, champions, horizon_weeks=horizon_weeks, freq=freq, draws=draws, seed=seed,
                            scores=scores)
    return forecast_table(scores.as_of, period_edges(horizon_weeks, freq), sums, ledger.base_currency)


def forecast_sums_of(ledger: Ledger, as_of: pd.Timestamp, champions: Champions, *, horizon_weeks: int = 13,
                     freq: str = "week", draws: int = 1000, seed=0, scores: Scores | None = None):
    """The forecast's sums (`rules.forecast.ForecastSums`) over the ledger's forecast items: what a partition
    of the book contributes to the whole book's forecast."""
    from models.baselines import PayDateBaseline
    from rules.forecast import (
        baseline_delays,
        check_horizon,
        customer_rho_of,
        forecast_items,
        forecast_sums,
        period_edges,
    )

    timing = champions.require("timing")
    check_horizon(horizon_weeks, timing.horizon_days)
    scores = scores or score(ledger, as_of, champions)
    items = forecast_items(scores.items)
    edges = period_edges(horizon_weeks, freq)  # type: ignore[arg-type]

    def cdf_of(model) -> np.ndarray:
        return model.predict_cdf(items, edges) if len(items) else np.zeros((0, len(edges)))

    baselines = {name: cdf_of(PayDateBaseline(delay_column=delay).fit(items))
                 for name, delay in baseline_delays().items()}
    # A customer's invoices are tied by the copula with the rho fitted with the champion (none on a model
    # trained before it was: independent draws).
    return forecast_sums(cdf_of(timing), edges, items, draws=draws, seed=seed, shared_by_customer=True,
                         baselines=baselines, rho=customer_rho_of(timing))
