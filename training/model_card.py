"""A model card per model of a backtest: data window, features, settings, metrics next to the baselines
with 95% confidence intervals, and what the model must not be used for.

Intervals are a bootstrap over customers: a customer's invoices are not independent of each other (one
slow payer makes many late invoices), so whole customers are drawn with replacement and each metric is
recomputed with the customers' draw counts as row weights; the interval is the 2.5-97.5% percentiles of
`draws` such recomputations, with a fixed seed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

DRAWS = 200
SEED = 0

# What each model is for, and what it must not be used for: shown on every card.
USES = {
    "late": {
        "title": "Late payment",
        "target": "P(an open invoice not yet past the grace is paid more than the grace after its due date)",
        "intended_use": "ranking and pricing the risk of a customer's open invoices for collections work "
                        "(worklist, dunning holds) and explaining it to a collector",
        "must_not": "decide credit for a new customer without payment history, set credit limits or terms on "
                    "its own, or judge invoices already past the grace (for them P(late) is 1 by definition); "
                    "not for any decision about a person (it sees business payment records only)",
    },
    "timing": {
        "title": "Receipt timing",
        "target": "days from the cutoff until an open invoice is paid (a distribution: p10, p50, p90)",
        "intended_use": "the 13-week cash forecast and expected pay dates of open invoices",
        "must_not": "promise a pay date to anyone, or forecast beyond its horizon; receipts after the horizon "
                    "and invoices never paid are not in the forecast",
    },
    "deterioration": {
        "title": "Credit deterioration",
        "target": "P(a customer goes 91+ days past due on an invoice, or is written off, within 90 days)",
        "intended_use": "flagging customers for a credit review, with the evidence shown",
        "must_not": "block, sue or write off a customer without a person reviewing the evidence; the flag is "
                    "a prompt for review, not a verdict",
    },
}


def bootstrap_interval(metric: Callable[[pd.DataFrame, np.ndarray], float], rows: pd.DataFrame,
                       customer: pd.Series, draws: int = DRAWS, seed: int = SEED) -> tuple[float, float]:
    """The 2.5% and 97.5% percentiles of `metric(rows, weights)` over `draws` bootstrap samples of whole
    customers (weights: how often each row's customer was drawn). NaN when no sample gives a value."""
    codes, uniques = pd.factorize(customer.to_numpy())
    if len(uniques) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        counts = np.bincount(rng.integers(0, len(uniques), len(uniques)), minlength=len(uniques))
        weights = counts[codes].astype(float)
        if weights.sum() > 0:
            value = metric(rows, weights)
            if np.isfinite(value):
                values.append(value)
    if not values:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def weighted_roc_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> float:
    """ROC AUC with row weights (ties count half); NaN when a class is missing or a score is.

    The weighted Mann-Whitney statistic, computed in numpy: the bootstrap calls it hundreds of times, where
    scikit-learn's checks cost more than the sum itself (the test compares the two)."""
    keep = weights > 0
    y, score, weights = np.asarray(y)[keep], np.asarray(score, dtype=float)[keep], np.asarray(weights)[keep]
    if np.isnan(score).any() or len(np.unique(y)) < 2:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    score, positive, weights = score[order], y[order] == 1, weights[order]
    starts = np.flatnonzero(np.r_[True, score[1:] != score[:-1]])  # one group per distinct score
    positives = np.add.reduceat(np.where(positive, weights, 0.0), starts)
    negatives = np.add.reduceat(np.where(positive, 0.0, weights), starts)
    below = np.cumsum(negatives) - negatives  # negative weight with a lower score
    return float(np.sum(positives * (below + 0.5 * negatives)) / (positives.sum() * negatives.sum()))


def weighted_pr_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> float:
    """Average precision with row weights; NaN without a positive or with a missing score."""
    keep = weights > 0
    if np.isnan(score).any() or not (y[keep] == 1).any():
        return float("nan")
    return float(average_precision_score(y[keep], score[keep], sample_weight=weights[keep]))


def weighted_brier(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> float:
    if np.isnan(score).any() or weights.sum() == 0:
        return float("nan")
    return float(np.average((score - y) ** 2, weights=weights))


def weighted_mae(actual: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> float:
    if np.isnan(predicted).any() or weights.sum() == 0:
        return float("nan")
    return float(np.average(np.abs(actual - predicted), weights=weights))


def metric_with_interval(name: str, function: Callable, columns: tuple[str, str], rows: pd.DataFrame,
                         customer: pd.Series, draws: int) -> dict:
    """{metric, value, low, high} of `function(rows[a], rows[b], weights)` on all rows and its interval."""
    a, b = (rows[column].to_numpy(dtype=float) for column in columns)
    value = function(a, b, np.ones(len(rows)))
    low, high = bootstrap_interval(lambda frame, weights: function(a, b, weights), rows, customer, draws)
    return {"metric": name, "value": value, "low": low, "high": high}


def scored_table(rows: pd.DataFrame, customer: pd.Series, who: list[str], metrics: Mapping[str, Callable],
                 truth: str, draws: int) -> list[dict]:
    """Per scorer (model, then baselines) and metric: the value and its customer-bootstrap interval."""
    table = []
    for name in who:
        for metric, function in metrics.items():
            table.append({"who": name, **metric_with_interval(metric, function, (truth, name), rows, customer,
                                                               draws)})
    return table


def model_settings(model) -> dict:
    """The model's plain settings (numbers, strings, booleans), the classifier's inside it included, and
    the settings its fit chose (`settings_` when the model records them)."""
    if model is None:
        return {}
    settings = {key: value for key, value in model.get_params(deep=True).items()
                if isinstance(value, int | float | str | bool) and not key.endswith("features")}
    for holder in (model, getattr(model, "classifier_", None)):
        chosen = getattr(holder, "settings_", None)
        if isinstance(chosen, Mapping):
            settings |= {f"chosen.{key}": value for key, value in chosen.items()}
    return settings


def model_cards(run, draws: int = DRAWS) -> list[dict]:
    """One card per model of the backtest `run` (a `training.pipeline.BacktestRun`)."""
    result, datasets = run.result, run.datasets
    origins = result.origins
    first_origin = min(origins)
    train_cutoffs = datasets.invoices.loc[datasets.invoices["cutoff"] < first_origin, "cutoff"]
    window = {
        "protocol": result.metrics.get("protocol", "month_end"),
        "training_from": f"{train_cutoffs.min():%Y-%m-%d}" if len(train_cutoffs) else None,
        "test_origins": [f"{origin:%Y-%m-%d}" for origin in origins],
        "observation_end": f"{datasets.observation_end:%Y-%m-%d}",
    }
    fitted = result.fitted
    invoice_customer = datasets.invoices["customer_id"]
    late = pd.concat([r.late for r in result.per_origin])
    timing = pd.concat([r.timing for r in result.per_origin])
    paid = timing[timing["paid"].astype(bool)]
    deterioration = pd.concat([r.deterioration for r in result.per_origin])
    scorers = {
        "late": (late, invoice_customer.loc[late.index], [c for c in late.columns if c != "y"], "y",
                 {"roc_auc": weighted_roc_auc, "brier": weighted_brier}),
        "timing": (paid.rename(columns={"p50": "model"}), invoice_customer.loc[paid.index],
                   ["model", *[c for c in paid.columns if c not in ("actual", "paid", "p10", "p50", "p90")]],
                   "actual", {"mae_days": weighted_mae}),
        "deterioration": (deterioration, deterioration["customer_id"],
                          ["model", *[c for c in deterioration.columns
                                      if f"{c}_flag" in deterioration.columns and c != "model"]],
                          "y", {"roc_auc": weighted_roc_auc, "pr_auc": weighted_pr_auc}),
    }
    cards = []
    for task, (rows, customer, who, truth, metrics) in scorers.items():
        model = getattr(fitted, task, None) if fitted is not None else None
        features = list(getattr(model, "feature_names_in_", []))
        cards.append({
            "model": task, **USES[task], **window, "rows_tested": len(rows),
            "customers_tested": int(customer.nunique()),
            "features": features,
            "settings": model_settings(model),
            "trained": model is not None,
            "not_trained_because": result.metrics.get("skipped", {}).get(task),
            "metrics": scored_table(rows, customer, who, metrics, truth, draws) if len(rows) else [],
        })
    return cards


def card_html(card: Mapping) -> str:
    """One model card as HTML: the facts, then the metrics with their intervals."""
    from html import escape

    facts = [("Predicts", card["target"]), ("Intended use", card["intended_use"]),
             ("Must not be used to", card["must_not"]), ("Protocol", card["protocol"]),
             ("Data window", f"training cutoffs from {card['training_from']} to before the first test origin; "
                             f"test origins {', '.join(card['test_origins'])}; outcomes observed to "
                             f"{card['observation_end']}"),
             ("Tested on", f"{card['rows_tested']:,} rows of {card['customers_tested']:,} customers"),
             ("Features", f"{len(card['features'])}: {', '.join(card['features'])}" if card["features"] else "-"),
             ("Settings", ", ".join(f"{k}={v}" for k, v in card["settings"].items()) or "-")]
    if not card["trained"]:
        facts.append(("Not trained", card["not_trained_because"] or "-"))
    rows = "".join(f"<tr><th>{escape(name)}</th><td style='text-align:left'>{escape(str(value))}</td></tr>"
                   for name, value in facts)
    metric_rows = "".join(
        f"<tr><td>{escape(m['who'])}</td><td>{escape(m['metric'])}</td><td>{_number(m['value'])}</td>"
        f"<td>{_number(m['low'])} - {_number(m['high'])}</td></tr>" for m in card["metrics"])
    return (f"<h3>Model card: {escape(card['title'])}</h3><table>{rows}</table>"
            f"<table><tr><th>who</th><th>metric</th><th>value</th><th>95% interval (customers)</th></tr>"
            f"{metric_rows}</table>")


def _number(value: float) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.4f}"
