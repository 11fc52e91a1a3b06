"""Drift report: the features and predictions at a recent date against the training reference.

The reference is the invoice feature rows at the monthly cutoffs of the champion's last training months
(by default the six month ends up to the date it was trained until); the current data are the rows of
the documents open at `as_of`. Evidently compares each column (Wasserstein distance, normed, for
numeric columns with more than 1,000 rows, drifted at `NUM_THRESHOLD`; a Kolmogorov-Smirnov test below
that) and renders the HTML
for people; `drift_summary` turns its result into the JSON for machines: which columns drifted, by how
much, and a retraining recommendation with the rule that made it.

Retraining rule (`RetrainRule`): retrain when at least `max_drifted_share` of the model's features
drifted, when any prediction (P(late), P(unpaid in 30 days)) drifted, or when the champion is more
than `max_model_age_days` older than `as_of`. Features that grow with the calendar by construction
(`tenure_days`) are shown but not counted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import FeatureConfig, feature_frames, feature_names
from ledger import Ledger
from ledger.files import write_file_atomically

PREDICTIONS = ("p_late", "p_unpaid")
# Wasserstein distance (normed by the reference's spread) at or above which a numeric column drifted.
# Evidently's default is 0.1; on the synthetic ledger the same process a few months later already moves
# half the features past 0.1 (customer features repeat on every open invoice, counts are lumpy), 10% past
# 0.2, while a real change in payment behaviour moves the lateness features past 1.5.
NUM_THRESHOLD = 0.2
TIME_TRENDING = ("tenure_days",)
MAX_DRIFT_ROWS = 20_000  # per side, in a daily run's verdict


@dataclass(frozen=True)
class RetrainRule:
    """When drift calls for retraining."""

    max_drifted_share: float = 0.3
    max_model_age_days: int = 180


def reference_cutoffs(reference_end: pd.Timestamp, months: int = 6) -> list[pd.Timestamp]:
    """The `months` month ends up to `reference_end` (itself included when it is a month end)."""
    last = pd.Timestamp(reference_end).normalize()
    last = last if last.is_month_end else last - pd.offsets.MonthEnd(1)
    return [last - pd.offsets.MonthEnd(k) for k in range(months - 1, -1, -1)]


def feature_rows(ledger: Ledger, cutoffs: list[pd.Timestamp], config: FeatureConfig | None = None) -> pd.DataFrame:
    """The invoice feature rows of every open document at each cutoff, stacked, with `cutoff`."""
    frames = [feature_frames(ledger, cutoff, config)[0].assign(cutoff=cutoff) for cutoff in cutoffs]
    return pd.concat(frames, ignore_index=True)


def with_predictions(rows: pd.DataFrame, champions) -> pd.DataFrame:
    """The rows with the champions' P(late) and P(still unpaid 30 days later) where models exist."""
    rows = rows.copy()
    if champions is not None and champions.late is not None and len(rows):
        rows["p_late"] = champions.late.predict_proba(rows)[:, 1]
    if champions is not None and champions.timing is not None and len(rows):
        rows["p_unpaid"] = 1 - champions.timing.predict_cdf(rows, [30])[:, 0]
    return rows


def drift_columns(reference: pd.DataFrame, current: pd.DataFrame | None = None) -> list[str]:
    """The columns compared: every model feature and prediction with values on both sides (a column
    the ledger never fills, such as `paperless` without delivery channels, has nothing to compare)."""
    frames = [reference] if current is None else [reference, current]
    return [c for c in (*feature_names(), *PREDICTIONS)
            if all(c in frame and frame[c].notna().any() for frame in frames)]


def evidently_run(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str],
                  num_threshold: float = NUM_THRESHOLD):
    """The Evidently data-drift evaluation of `columns` (current against reference)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=columns)
    report = Report([DataDriftPreset(columns=columns, num_threshold=num_threshold)])
    return report.run(Dataset.from_pandas(current[columns].astype(float), data_definition=definition),
                      Dataset.from_pandas(reference[columns].astype(float), data_definition=definition))


def column_drift(evaluation) -> pd.DataFrame:
    """Per column: drift score, method, threshold and whether it drifted, from an Evidently result."""
    rows = []
    for metric in evaluation.dict()["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        score, threshold, method = float(metric["value"]), float(config["threshold"]), config["method"]
        # p-value tests drift below the threshold; distances drift at or above it.
        drifted = score < threshold if "p_value" in method else score >= threshold
        rows.append({"column": config["column"], "method": method, "score": score, "threshold": threshold,
                     "drifted": bool(drifted)})
    return pd.DataFrame(rows, columns=["column", "method", "score", "threshold", "drifted"])


def drift_summary(columns: pd.DataFrame, as_of: pd.Timestamp, reference: list[pd.Timestamp],
                  trained_until: pd.Timestamp | None, rule: RetrainRule = RetrainRule(),
                  rows: tuple[int, int] = (0, 0)) -> dict:
    """The verdict for machines: drifted columns by score, shares, and the retraining recommendation."""
    features = columns[~columns["column"].isin(PREDICTIONS) & ~columns["column"].isin(TIME_TRENDING)]
    predictions = columns[columns["column"].isin(PREDICTIONS)]
    share = float(features["drifted"].mean()) if len(features) else 0.0
    age = int((as_of - trained_until).days) if trained_until is not None else None
    reasons = []
    if share >= rule.max_drifted_share:
        reasons.append(f"{share:.0%} of features drifted (rule: retrain at {rule.max_drifted_share:.0%} or more)")
    for column in predictions.loc[predictions["drifted"], "column"]:
        reasons.append(f"prediction {column} drifted")
    if age is not None and age > rule.max_model_age_days:
        reasons.append(f"champion trained {age} days before {as_of:%Y-%m-%d} (rule: at most {rule.max_model_age_days})")
    # Strongest first: distances high-first, p-values low-first.
    strength = np.where(columns["method"].str.contains("p_value"), 1 - columns["score"], columns["score"])
    drifted = columns.assign(strength=strength)[columns["drifted"]].sort_values(["strength", "column"],
                                                                               ascending=[False, True])
    return {
        "as_of": f"{as_of:%Y-%m-%d}",
        "reference_cutoffs": [f"{cutoff:%Y-%m-%d}" for cutoff in reference],
        "trained_until": None if trained_until is None else f"{trained_until:%Y-%m-%d}",
        "rows": {"reference": rows[0], "current": rows[1]},
        "features_compared": len(features),
        "drifted_share": round(share, 4),
        "drifted_features": [_column_record(row) for row in drifted.itertuples() if row.column not in PREDICTIONS],
        "predictions": [_column_record(row) for row in predictions.itertuples()],
        "retrain": bool(reasons),
        "reasons": reasons,
        "rule": asdict(rule) | {"not_counted": list(TIME_TRENDING)},
    }


def _column_record(row) -> dict:
    return {"column": row.column, "method": row.method, "score": round(row.score, 6),
            "threshold": row.threshold, "drifted": row.drifted}


@dataclass
class DriftReport:
    """The summary for machines and the Evidently evaluation that renders the HTML."""

    summary: dict
    columns: pd.DataFrame
    evaluation: object


def drift_report(ledger: Ledger, as_of: pd.Timestamp, champions=None, trained_until: pd.Timestamp | None = None,
                 reference_months: int = 6, rule: RetrainRule = RetrainRule()) -> DriftReport:
    """Drift of the open documents' features and predictions at `as_of` against the training reference
    (the `reference_months` month ends up to `trained_until`, or up to three months before `as_of`)."""
    as_of = pd.Timestamp(as_of).normalize()
    reference_end = trained_until if trained_until is not None else as_of - pd.offsets.MonthEnd(3)
    if reference_end >= as_of:
        raise ValueError(f"the reference (up to {reference_end:%Y-%m-%d}) must end before as_of {as_of:%Y-%m-%d}")
    cutoffs = [c for c in reference_cutoffs(reference_end, reference_months)
               if c >= ledger.invoices["invoice_date"].min()]
    if not cutoffs:
        raise ValueError(f"no month end with invoices before {reference_end:%Y-%m-%d} to use as the reference")
    reference = with_predictions(feature_rows(ledger, cutoffs), champions)
    current = with_predictions(feature_rows(ledger, [as_of]), champions)
    columns = drift_columns(reference, current)
    evaluation = evidently_run(reference, current, columns)
    table = column_drift(evaluation)
    summary = drift_summary(table, as_of, cutoffs, trained_until, rule, (len(reference), len(current)))
    return DriftReport(summary, table, evaluation)


def drift_verdict(ledger: Ledger, as_of: pd.Timestamp, current: pd.DataFrame, champions,
                  trained_until: pd.Timestamp | None = None, reference_months: int = 6,
                  cache_dir: Path | None = None, rule: RetrainRule = RetrainRule()) -> dict:
    """The drift summary of a daily run: `current` (the run's open documents with their features and
    predictions) against the training reference. The reference rows depend only on the ledger's history
    up to the reference month ends and on the champions, so they are kept in `cache_dir` by those month
    ends and the model versions, and computed once per champion rather than every night."""
    as_of = pd.Timestamp(as_of).normalize()
    reference_end = trained_until if trained_until is not None and trained_until < as_of \
        else as_of - pd.offsets.MonthEnd(3)
    cutoffs = [c for c in reference_cutoffs(reference_end, reference_months)
               if c >= ledger.invoices["invoice_date"].min()]
    if not cutoffs:
        return {"as_of": f"{as_of:%Y-%m-%d}", "retrain": None,
                "reasons": [f"no month end with invoices before {reference_end:%Y-%m-%d} to compare with"]}
    reference = sampled(cached_reference(ledger, cutoffs, champions, cache_dir))
    current = sampled(current)
    columns = drift_columns(reference, current)
    table = column_drift(evidently_run(reference, current, columns))
    return drift_summary(table, as_of, cutoffs, trained_until, rule, (len(reference), len(current)))


def sampled(rows: pd.DataFrame, limit: int = MAX_DRIFT_ROWS) -> pd.DataFrame:
    """At most `limit` rows, a seeded random sample when there are more (the distance of two distributions
    of 20,000 rows each is as telling, and Evidently's cost grows with the rows)."""
    return rows if len(rows) <= limit else rows.sample(limit, random_state=0)


def cached_reference(ledger: Ledger, cutoffs: list[pd.Timestamp], champions, cache_dir: Path | None) -> pd.DataFrame:
    """The reference rows with predictions, read from `cache_dir` when computed before for the same month
    ends, models and ledger source."""
    if cache_dir is None:
        return with_predictions(feature_rows(ledger, cutoffs), champions)
    versions = "-".join(str(v) for v in sorted((getattr(champions, "versions", None) or {}).items()))
    key = hashlib.sha256(f"{ledger.source}|{[f'{c:%Y-%m-%d}' for c in cutoffs]}|{versions}".encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"drift-reference-{key}.parquet"
    if path.is_file():
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError):
            pass  # a damaged cache is computed again
    rows = with_predictions(feature_rows(ledger, cutoffs), champions)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(path, lambda staging: rows.to_parquet(staging, index=False))
    return rows


def write_drift_report(report: DriftReport, out: Path) -> tuple[Path, Path]:
    """`drift.html` (Evidently, self-contained) and `drift.json` in `out`, each whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out / "drift.html", out / "drift.json"
    write_file_atomically(html_path, lambda staging: report.evaluation.save_html(str(staging)))
    write_file_atomically(json_path, lambda staging: staging.write_text(json.dumps(report.summary, indent=2)))
    return html_path, json_path
