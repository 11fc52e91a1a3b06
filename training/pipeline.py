"""`arrisk backtest` and `arrisk train`: build datasets, backtest, write the report, fit, log, gate."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import FeatureConfig, registry_frame
from ledger import Ledger, LedgerError, Problem
from training import report as r
from training.backtest import BacktestResult, FittedModels, ModelSettings, fit_models, run_backtest
from training.datasets import (
    Datasets,
    backtest_origins,
    build_datasets,
    censor_customer_labels,
    censor_invoice_labels,
    monthly_cutoffs,
)

MODEL_NAMES = {"late": "ar_risk_late_payment", "timing": "ar_risk_receipt_timing",
               "deterioration": "ar_risk_deterioration"}
METRIC_SECTIONS = {"late": "late_payment", "timing": "receipt_timing", "deterioration": "deterioration"}
# What the promotion gate compares (metric -> higher is better), per model.
GATE_RULES = {
    "late": {"roc_auc": True, "brier": False},
    "timing": {"mae_days": False, "wape_13w": False},
    "deterioration": {"pr_auc": True},
}


@dataclass
class BacktestRun:
    """A finished backtest with the data it ran on. `ledger` is None when the rows were built bucket by
    bucket on a cluster (`training.distributed`): the whole ledger was never in memory, and `fingerprint`
    then says which data it was."""

    ledger: Ledger | None
    datasets: Datasets
    result: BacktestResult
    seconds: dict
    fingerprint: str | None = None

    def ledger_fingerprint(self) -> str:
        """The content hash of the data the backtest ran on (`Ledger.fingerprint`, or the one given)."""
        return self.fingerprint if self.fingerprint is not None else self.ledger.fingerprint()


def backtest_ledger(ledger: Ledger, *, until: pd.Timestamp | None = None, origins: int = 3,
                    settings: ModelSettings | None = None, config: FeatureConfig | None = None,
                    progress: Callable[[str], None] | None = None) -> BacktestRun:
    """Snapshots at monthly cutoffs (only what was known by `until`), then the rolling-origin backtest."""
    settings = settings or ModelSettings()
    config = config or FeatureConfig(late_grace_days=settings.late_grace_days)
    started = time.perf_counter()
    if until is not None:
        from features import known_at

        ledger = known_at(ledger, until)
    cutoffs = monthly_cutoffs(ledger)
    datasets = build_datasets(ledger, cutoffs, config, progress=progress is not None)
    built = time.perf_counter()
    chosen = chosen_origins(cutoffs, datasets.observation_end, origins)
    result = run_backtest(datasets, chosen, settings, progress=progress)
    return BacktestRun(ledger, datasets, result,
                       {"datasets": built - started, "backtest": time.perf_counter() - built})


def chosen_origins(cutoffs: list[pd.Timestamp], observation_end: pd.Timestamp, origins: int) -> list[pd.Timestamp]:
    """The backtest's `origins` (`backtest_origins`); `LedgerError` when the history holds none."""
    chosen = backtest_origins(cutoffs, observation_end, count=origins)
    if not chosen:
        raise LedgerError(Problem("ledger", None, None, "not enough history for a backtest: need at least 4 "
                                  "monthly cutoffs before the last one with 91 days of outcomes after it"),
                          title="cannot backtest")
    return chosen


def write_backtest(run: BacktestRun, out: Path) -> tuple[Path, Path]:
    """`metrics.json` and `report.html` in `out`, each written whole or not at all."""
    from training.model_card import model_cards

    out.mkdir(parents=True, exist_ok=True)
    cards = model_cards(run)
    metrics = run.result.metrics | {"ledger_fingerprint": run.ledger_fingerprint(),
                                    "seconds": {k: round(v, 2) for k, v in run.seconds.items()},
                                    "model_cards": cards}
    metrics_path = _write_atomically(out / "metrics.json", json.dumps(_json_safe(metrics), indent=2))
    report_path = _write_atomically(out / "report.html", report_html(run, cards))
    return metrics_path, report_path


def report_html(run: BacktestRun, cards: list[dict] | None = None) -> str:
    """The readable backtest report: tables of every metric, the plots DESIGN §6 asks for and a model card
    per model (`training.model_card`)."""
    from training.model_card import card_html, model_cards

    metrics, results = run.result.metrics, run.result.per_origin
    late = pd.concat([o.late for o in results])
    timing = pd.concat([o.timing for o in results])
    paid = timing[timing["paid"]]
    cash = sum(o.cash for o in results)
    deterioration = pd.concat([o.deterioration for o in results])
    late_scores = {name: late[name].to_numpy() for name in late.columns if name != "y"}
    sections = [
        {"title": "Late payment", "note": "Invoices not yet past the grace at the cutoff; P(late) of the model "
                                          "and of each baseline on the same rows.",
         "table": r.metrics_table(metrics["late_payment"]["model"], metrics["late_payment"]["baselines"]),
         "plots": [("Calibration", r.calibration_plot(late["y"], late_scores)),
                   ("ROC", r.roc_plot(late["y"], late_scores)),
                   ("Lift by decile", r.lift_plot(late["y"], late["model"], "Late payment: lift by decile"))]},
        {"title": "Receipt timing and cash forecast",
         "note": "Days from the cutoff to payment on invoices paid within observation; weekly cash forecast "
                 "per horizon week summed over the origins (WAPE per week in metrics.json).",
         "table": r.metrics_table(metrics["receipt_timing"]["model"], metrics["receipt_timing"]["baselines"]),
         "plots": [("Predicted vs actual pay date", r.pay_date_plot(paid["actual"], paid["p50"])),
                   ("Cash forecast vs actual", r.cash_plot(cash))]},
        {"title": "Credit deterioration",
         "note": "Customers not already 90+ days past due; precision among the top k per cutoff, recall and "
                 "median lead time of the flag.",
         "table": r.metrics_table(metrics["deterioration"]["model"], metrics["deterioration"]["baselines"]),
         "plots": [("ROC", r.roc_plot(deterioration["y"], {"model": deterioration["model"]})),
                   ("Lift by decile", r.lift_plot(deterioration["y"], deterioration["model"],
                                                  "Deterioration: lift by decile"))]},
        {"title": "Model cards",
         "note": "Per model: what it predicts and must not be used for, its data, features and settings, and its "
                 "metrics next to the baselines with 95% intervals from a bootstrap over customers.",
         "table": "".join(card_html(card) for card in (model_cards(run) if cards is None else cards)),
         "plots": []},
    ]
    return r.render_report(metrics, sections, run.ledger_fingerprint())


def gate_metrics(metrics: dict, task: str, who: str = "model") -> dict:
    """The metrics of one model or baseline in the flat form the gate and MLflow use."""
    section = metrics[METRIC_SECTIONS[task]]
    values = section["model"] if who == "model" else section["baselines"][who]
    return {k: v for k, v in values.items() if not isinstance(v, list)}


def rivals_of(metrics: dict, task: str) -> dict:
    """Every baseline's metrics for a task, flat."""
    return {name: gate_metrics(metrics, task, name) for name in metrics[METRIC_SECTIONS[task]]["baselines"]}


@dataclass
class TrainOutcome:
    """What `arrisk train` did: versions registered, gate decisions and timings."""

    versions: dict
    decisions: dict
    metrics: dict
    seconds: dict
    run: BacktestRun | None = None


def train_and_register(ledger: Ledger, tracking_uri: str, *, until: pd.Timestamp | None = None,
                       settings: ModelSettings | None = None, report_dir: Path | None = None, origins: int = 3,
                       progress: Callable[[str], None] | None = None) -> TrainOutcome:
    """Backtest the recipe, fit the final models on everything known, log them to MLflow, and move the
    champion alias for each model that beats its baselines and the current champion."""
    settings = settings or ModelSettings()
    run = backtest_ledger(ledger, until=until, origins=origins, settings=settings, progress=progress)
    return register_models(run, tracking_uri, settings=settings, report_dir=report_dir, progress=progress)


def final_models(datasets: Datasets, settings: ModelSettings) -> FittedModels:
    """The three models fitted on every row, labels as known at the end of observation."""
    end = datasets.observation_end
    return fit_models(censor_invoice_labels(datasets.invoices, end),
                      censor_customer_labels(datasets.customers, end), settings)


def register_models(run: BacktestRun, tracking_uri: str, *, settings: ModelSettings,
                    report_dir: Path | None = None, progress: Callable[[str], None] | None = None,
                    fit: Callable[[Datasets, ModelSettings], FittedModels] = final_models,
                    backtest: Callable[..., BacktestResult] = run_backtest) -> TrainOutcome:
    """After the backtest `run`: the final fit, the MLflow runs and the gate. `fit` and `backtest` (how a
    champion's recipe is re-backtested) are the in-process ones, or their Dask twins."""
    from training.tracking import GateDecision, champion_version, gate, load_champion, log_model_run

    metrics = run.result.metrics
    report = None
    if report_dir is not None:
        _, report = write_backtest(run, report_dir)

    started = time.perf_counter()
    end = run.datasets.observation_end
    if progress:
        progress("final fit")
    final = fit(run.datasets, settings)
    fit_seconds = time.perf_counter() - started

    fingerprint = run.ledger_fingerprint()
    champions = {task: load_champion(tracking_uri, MODEL_NAMES[task]) for task in MODEL_NAMES}
    champion_metrics = champion_backtest(run, champions, settings, tracking_uri, progress, backtest)
    versions, decisions = {}, {}
    registry = dict(zip(registry_frame()["name"], registry_frame()["description"], strict=True))
    examples = {"late": run.datasets.invoices, "timing": run.datasets.invoices,
                "deterioration": run.datasets.customers}
    for task, model_name in MODEL_NAMES.items():
        model = getattr(final, task)
        if model is None:
            decisions[task] = GateDecision(False, f"not trained: {final.skipped[task]}")
            continue
        rivals = rivals_of(metrics, task)
        if task in champion_metrics:
            rivals[f"champion v{champion_version(tracking_uri, model_name)}"] = champion_metrics[task]
        decision = gate(gate_metrics(metrics, task), rivals, GATE_RULES[task])
        features = {name: registry.get(name, "") for name in model.feature_names_in_}
        example = examples[task][list(model.feature_names_in_)].head(5)
        versions[task] = log_model_run(
            tracking_uri=tracking_uri, model_name=model_name, model=model,
            params=model.get_params() | {"trained_until": f"{end:%Y-%m-%d}", "origins": metrics["cutoffs"]},
            metrics=gate_metrics(metrics, task), features=features, ledger_fingerprint=fingerprint,
            input_example=example, decision=decision, report=report)
        decisions[task] = decision
    return TrainOutcome(versions, decisions, metrics,
                        run.seconds | {"final_fit": fit_seconds}, run)


def champion_backtest(run: BacktestRun, champions: dict, settings: ModelSettings, tracking_uri: str,
                      progress: Callable[[str], None] | None,
                      backtest: Callable[..., BacktestResult] = run_backtest) -> dict:
    """The current champions' backtest metrics on the same origins and data as the candidate, so the
    comparison is fair whatever data the champions were first trained on. A champion logged from this
    very ledger with these origins already has them; any other is re-backtested from its recipe."""
    from training.tracking import champion_run

    fingerprint, origins = run.ledger_fingerprint(), str(run.result.metrics["cutoffs"])
    known, recipes = {}, {}
    for task, model in champions.items():
        if model is None:
            continue
        logged = champion_run(tracking_uri, MODEL_NAMES[task])
        if logged and logged["fingerprint"] == fingerprint and logged["params"].get("origins") == origins:
            known[task] = logged["metrics"]
            continue
        # A recipe that no longer fits today's features (a feature renamed or dropped since) cannot be
        # re-backtested: it is left out of the comparison, and said so. Checked here, not by catching
        # ValueError/KeyError from the fit, which would hide our own bugs as well.
        rows = run.datasets.customers if task == "deterioration" else run.datasets.invoices
        missing = [name for name in getattr(model, "feature_names_in_", []) if name not in rows.columns]
        if missing:
            if progress:
                progress(f"champion recipe for {task} could not be backtested: today's features lack "
                         f"{', '.join(map(str, missing[:5]))}{' ...' if len(missing) > 5 else ''}")
            continue
        recipes[task] = model
    if not recipes:
        return known
    result = backtest(run.datasets, run.result.origins, settings, progress=progress, recipes=recipes)
    return known | {task: gate_metrics(result.metrics, task) for task in recipes}


def _write_atomically(path: Path, text: str) -> Path:
    from ledger.files import write_file_atomically

    return write_file_atomically(path, lambda staging: staging.write_text(text))


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    return value
