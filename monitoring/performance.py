"""Model performance over time: the champion's realised metrics per month, beside the baselines.

At each month end whose outcomes are known (at least 91 days of history after it), the champions score
the documents open then, exactly as the backtest scores an origin (`training.backtest.evaluate_origin`),
and the outcomes seen since give: ROC AUC, Brier and calibration error of P(late); MAE in days of the
median pay date; WAPE of the 13-week cash forecast; PR AUC of deterioration. The baselines are those of
the backtest, fitted on the months before each cutoff. Months the champion was trained on are marked:
their figures are in-sample and flatter it.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import pandas as pd

from features import FeatureConfig
from ledger import Ledger
from ledger.files import write_file_atomically
from models.baselines import ClassPriorBaseline, CustomerLateRateBaseline, PastDueBaseline, PayDateBaseline
from training import metrics as m
from training.backtest import FittedModels, ModelSettings, evaluate_origin, pooled_wape, undecided
from training.datasets import build_datasets, censor_invoice_labels, monthly_cutoffs

OUTCOME_DAYS = 91


def scored_months(ledger: Ledger, champions, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None,
                  settings: ModelSettings | None = None) -> list:
    """`OriginResult`s of the champions at each month end in [start, end] whose outcomes are known."""
    settings = settings or ModelSettings()
    cutoffs = monthly_cutoffs(ledger)
    datasets = build_datasets(ledger, cutoffs, FeatureConfig(late_grace_days=settings.late_grace_days))
    known = [c for c in cutoffs if c + pd.Timedelta(days=OUTCOME_DAYS) <= datasets.observation_end
             and (start is None or c >= start) and (end is None or c <= end)]
    results = []
    for cutoff in known:
        history = censor_invoice_labels(datasets.invoices[datasets.invoices["cutoff"] < cutoff], cutoff)
        if history.empty:
            continue
        fitted = FittedModels(champions.late, champions.timing, champions.deterioration,
                              late_baselines=late_baselines(history, settings.late_grace_days),
                              timing_baselines={
                                  "pays_on_due_date": PayDateBaseline().fit(history),
                                  "due_date_plus_customer_average": PayDateBaseline(
                                      delay_column="avg_days_late_last_10").fit(history)},
                              deterioration_baselines={"past_due_60_plus": PastDueBaseline().fit(history)})
        results.append(evaluate_origin(fitted, datasets.invoices[datasets.invoices["cutoff"] == cutoff],
                                       datasets.customers[datasets.customers["cutoff"] == cutoff], cutoff, settings))
    return results


def late_baselines(history: pd.DataFrame, grace: int) -> dict:
    """The late-payment baselines fitted on the undecided rows of earlier months."""
    rows = history[undecided(history, grace)]
    y = rows[["days_late", "paid", "observed_days_past_due"]]
    return {"class_prior": ClassPriorBaseline(grace).fit(rows, y),
            "customer_late_rate": CustomerLateRateBaseline(grace).fit(rows, y)}


def performance_table(results: list, trained_until: pd.Timestamp | None = None) -> pd.DataFrame:
    """One row per month: the champion's and each baseline's metrics, and whether it was in training."""
    rows = []
    for result in results:
        late, timing, cash, deterioration = result.late, result.timing, result.cash, result.deterioration
        paid = timing[timing["paid"]]
        row = {"month": result.origin, "in_training": bool(trained_until is not None and result.origin <= trained_until),
               "late_rows": len(late), "paid_rows": len(paid)}
        for who in [c for c in late.columns if c != "y"]:
            row[f"auc_{who}"] = m.roc_auc(late["y"], late[who])
            row[f"brier_{who}"] = m.brier(late["y"], late[who])
        row["ece_model"] = m.ece(late["y"], late["model"])
        row["mae_days_model"] = m.mae(paid["actual"], paid["p50"])
        for who in [c for c in timing.columns if c not in ("actual", "paid", "p10", "p50", "p90")]:
            row[f"mae_days_{who}"] = m.mae(paid["actual"], paid[who])
        for who in [c for c in cash.columns if c != "actual"]:
            row[f"wape_13w_{who}"] = pooled_wape([cash], who)
        row["deterioration_pr_auc_model"] = m.pr_auc(deterioration["y"], deterioration["model"])
        row["deterioration_pr_auc_past_due_60_plus"] = m.pr_auc(deterioration["y"], deterioration["past_due_60_plus"])
        rows.append(row)
    return pd.DataFrame(rows)


def performance_plots(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(title, PNG as base64) of each metric over time, the champion against the baselines."""
    from matplotlib.figure import Figure

    plots = []
    for title, prefix in (("Late payment: ROC AUC", "auc_"), ("Late payment: Brier score", "brier_"),
                          ("Pay date: MAE in days", "mae_days_"), ("Cash forecast: 13-week WAPE", "wape_13w_")):
        figure = Figure(figsize=(7, 3.2))
        axes = figure.subplots()
        for column in [c for c in table.columns if c.startswith(prefix)]:
            axes.plot(table["month"], table[column], marker="o", label=column.removeprefix(prefix),
                      linewidth=2.5 if column.endswith("_model") else 1.2)
        if table["in_training"].any():
            axes.axvspan(table.loc[table["in_training"], "month"].min(), table.loc[table["in_training"], "month"].max(),
                         color="0.9", label="in training (in-sample)")
        axes.set_title(title)
        axes.legend(fontsize=7)
        figure.autofmt_xdate()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plots.append((title, base64.b64encode(buffer.getvalue()).decode()))
    return plots


def performance_html(table: pd.DataFrame, fingerprint: str) -> str:
    """A self-contained page: the plots (inline PNG) and the table of every number."""
    figures = "".join(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>"
                      for title, png in performance_plots(table))
    shown = table.assign(month=table["month"].dt.strftime("%Y-%m-%d"))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>ar-risk: model performance over time</title>"
            "<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}</style></head><body>"
            f"<h1>Model performance over time</h1><p>Ledger {html.escape(fingerprint[:16])}. Each month end whose "
            f"outcomes are known ({OUTCOME_DAYS}+ days later); shaded months were in the champion's training data."
            f"</p>{figures}<h2>All figures</h2>{shown.to_html(index=False, float_format=lambda v: f'{v:.4f}')}"
            "</body></html>")


def write_performance(table: pd.DataFrame, fingerprint: str, out: Path) -> tuple[Path, Path]:
    """`performance.html` and `performance.json` in `out`, each whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    records = json.loads(table.assign(month=table["month"].dt.strftime("%Y-%m-%d")).to_json(orient="records"))
    page, summary = performance_html(table, fingerprint), json.dumps({"months": records}, indent=2)
    return (write_file_atomically(out / "performance.html", lambda staging: staging.write_text(page)),
            write_file_atomically(out / "performance.json", lambda staging: staging.write_text(summary)))

