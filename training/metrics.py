"""Metrics of DESIGN.md §6, one function per metric, on plain arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def _missing(p: np.ndarray) -> bool:
    """True when a scorer produced no scores (a model skipped for lack of labels)."""
    return bool(np.isnan(np.asarray(p, dtype=float)).any())


def roc_auc(y_true: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present or scores are missing."""
    y_true = np.asarray(y_true, dtype=int)
    if _missing(p):
        return float("nan")
    return float(roc_auc_score(y_true, p)) if len(np.unique(y_true)) == 2 else float("nan")


def pr_auc(y_true: np.ndarray, p: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve); NaN when there are no positives."""
    y_true = np.asarray(y_true, dtype=int)
    if _missing(p):
        return float("nan")
    return float(average_precision_score(y_true, p)) if y_true.sum() > 0 else float("nan")


def brier(y_true: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of probabilities."""
    if _missing(p):
        return float("nan")
    return float(brier_score_loss(np.asarray(y_true, dtype=int), np.clip(p, 0, 1)))


def calibration_table(y_true: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Equal-width probability bins: rows, mean predicted, observed rate."""
    y_true = np.asarray(y_true, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 0, 1)
    bin_index = np.minimum((p * bins).astype(int), bins - 1)
    frame = pd.DataFrame({"bin": bin_index, "p": p, "y": y_true})
    table = frame.groupby("bin").agg(rows=("y", "size"), mean_predicted=("p", "mean"), observed=("y", "mean"))
    table["bin_low"] = table.index / bins
    return table.reset_index(drop=True)[["bin_low", "rows", "mean_predicted", "observed"]]


def reliability(y_true: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """The reliability table as records, one per non-empty equal-width bin: its edges, rows, mean
    predicted probability and observed rate (the bins `ece` averages over)."""
    table = calibration_table(y_true, p, bins)
    return [{"bin_low": float(row.bin_low), "bin_high": float(row.bin_low + 1 / bins), "rows": int(row.rows),
             "mean_p": float(row.mean_predicted), "observed": float(row.observed)}
            for row in table.itertuples()]


def ece(y_true: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: row-weighted mean |observed - predicted| over equal-width bins."""
    table = calibration_table(y_true, p, bins)
    if table["rows"].sum() == 0 or _missing(p):
        return float("nan")
    gap = (table["observed"] - table["mean_predicted"]).abs()
    return float((gap * table["rows"]).sum() / table["rows"].sum())


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(actual, dtype=float) - np.asarray(predicted, dtype=float))))


def pinball(actual: np.ndarray, predicted: np.ndarray, quantile: float) -> float:
    """Mean pinball (quantile) loss at `quantile`."""
    diff = np.asarray(actual, dtype=float) - np.asarray(predicted, dtype=float)
    return float(np.mean(np.maximum(quantile * diff, (quantile - 1) * diff)))


def coverage_censored(actual: np.ndarray, event: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """Share of outcomes inside [low, high] where censoring still lets us tell: an unpaid item whose
    censoring time is already past `high` is a miss; one censored before `high` is left out."""
    actual, low, high = (np.asarray(v, dtype=float) for v in (actual, low, high))
    event = np.asarray(event, dtype=bool)
    inside = event & (actual >= low) & (actual <= high)
    known = event | (actual > high)
    return float(inside.sum() / known.sum()) if known.any() else float("nan")


def wape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Weighted absolute percentage error: sum |actual - forecast| / sum |actual|."""
    actual = np.asarray(actual, dtype=float)
    total = np.abs(actual).sum()
    return float(np.abs(actual - np.asarray(forecast, dtype=float)).sum() / total) if total > 0 else float("nan")


def precision_at_k(y_true: np.ndarray, score: np.ndarray, k: int) -> float:
    """Share of positives among the k highest scores (ties broken by position, stable)."""
    y_true = np.asarray(y_true, dtype=int)
    if len(y_true) == 0 or k <= 0 or _missing(score):
        return float("nan")
    top = np.argsort(-np.asarray(score, dtype=float), kind="stable")[: min(k, len(y_true))]
    return float(y_true[top].mean())


def recall(y_true: np.ndarray, flagged: np.ndarray) -> float:
    """Share of positives that were flagged."""
    y_true = np.asarray(y_true, dtype=bool)
    return float(np.asarray(flagged, dtype=bool)[y_true].mean()) if y_true.any() else float("nan")


def lift_by_decile(y_true: np.ndarray, score: np.ndarray) -> pd.DataFrame:
    """Observed rate per score decile (1 = highest scores) and its lift over the overall rate."""
    y_true = np.asarray(y_true, dtype=float)
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    decile = np.empty(len(order), dtype=int)
    decile[order] = np.arange(len(order)) * 10 // max(len(order), 1) + 1
    frame = pd.DataFrame({"decile": decile, "y": y_true})
    table = frame.groupby("decile").agg(rows=("y", "size"), observed=("y", "mean")).reset_index()
    overall = y_true.mean() if len(y_true) else float("nan")
    table["lift"] = table["observed"] / overall if overall else float("nan")
    return table
