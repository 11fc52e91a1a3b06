"""Backtest and training end to end on a small synthetic ledger, with a throwaway MLflow store."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ledger.synthetic import generate_ledger
from training.backtest import ModelSettings, run_backtest
from training.pipeline import (
    MODEL_NAMES,
    BacktestRun,
    backtest_ledger,
    register_models,
    write_backtest,
)
from training.tracking import champion_run, champion_version, load_champion

SMALL = ModelSettings(n_estimators=60, timing_horizon_weeks=20)


@pytest.fixture(scope="module")
def ledger():
    ledger, _ = generate_ledger(customers=160, months=20, seed=11)
    return ledger


@pytest.fixture(scope="module")
def backtest_run(ledger):
    return backtest_ledger(ledger, origins=2, settings=SMALL)


def test_metrics_json_follows_the_contract(backtest_run, tmp_path):
    metrics_path, report_path = write_backtest(backtest_run, tmp_path)
    metrics = json.loads(metrics_path.read_text())
    assert set(metrics["late_payment"]["model"]) == {"roc_auc", "pr_auc", "brier", "ece", "per_origin"}
    per_origin = metrics["late_payment"]["model"]["per_origin"]
    assert [o["origin"] for o in per_origin] == metrics["cutoffs"]
    assert sum(o["rows"] for o in per_origin) == metrics["rows"]["late_payment"]
    for origin in per_origin:  # each origin's reliability table covers its rows, bins in order
        assert sum(b["rows"] for b in origin["reliability"]) == origin["rows"]
        assert all(b["bin_low"] <= b["mean_p"] <= b["bin_high"] for b in origin["reliability"])
    assert set(metrics["late_payment"]["baselines"]) == {"class_prior", "customer_late_rate"}
    timing = metrics["receipt_timing"]["model"]
    assert {"mae_days", "pinball_p10", "pinball_p50", "pinball_p90", "coverage_p10_p90"} <= set(timing)
    assert len(timing["wape_week"]) == 13
    assert set(metrics["receipt_timing"]["baselines"]) == {"pays_on_due_date", "due_date_plus_customer_average"}
    assert {"roc_auc", "pr_auc", "precision_at_k", "recall", "median_lead_days"} <= set(
        metrics["deterioration"]["model"])
    assert "past_due_60_plus" in metrics["deterioration"]["baselines"]
    assert len(metrics["cutoffs"]) == 2 and metrics["rows"]["late_payment"] > 100
    html = report_path.read_text()
    assert html.count("data:image/png;base64,") == 7
    assert "Calibration" in html and "Cash forecast vs actual" in html


def test_models_beat_their_simplest_baselines(backtest_run):
    metrics = backtest_run.result.metrics
    late = metrics["late_payment"]
    assert late["model"]["roc_auc"] > late["baselines"]["class_prior"]["roc_auc"] + 0.1
    assert late["model"]["brier"] < late["baselines"]["class_prior"]["brier"]
    timing = metrics["receipt_timing"]
    assert timing["model"]["mae_days"] < timing["baselines"]["pays_on_due_date"]["mae_days"]
    assert timing["model"]["wape_13w"] < timing["baselines"]["pays_on_due_date"]["wape_13w"]


def test_test_rows_come_after_every_training_row(backtest_run):
    """The backtest trains on cutoffs strictly before each origin (the split is by time, never random)."""
    datasets = backtest_run.datasets
    for origin in backtest_run.result.origins:
        assert (datasets.invoices["cutoff"] < origin).any()
        assert origin in set(datasets.invoices["cutoff"])


def test_a_broken_promise_or_more_days_past_due_never_lowers_p_late(backtest_run):
    model = backtest_run.result.fitted.late
    rows = backtest_run.datasets.invoices.head(300)
    base = model.predict_proba(rows)[:, 1]
    broken = model.predict_proba(rows.assign(has_broken_promise=1.0))[:, 1]
    overdue = model.predict_proba(rows.assign(days_past_due=rows["days_past_due"] + 3))[:, 1]
    assert (broken >= base - 1e-12).all()
    assert (overdue >= base - 1e-12).all()


def test_train_registers_and_only_a_better_model_takes_the_champion_alias(ledger, backtest_run, tmp_path):
    # `register_models` is what `train_and_register` runs after its backtest: the module's backtest is
    # reused, so the three trainings below cost one feature build between them.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    datasets, origins = backtest_run.datasets, backtest_run.result.origins
    first = register_models(backtest_run, uri, settings=SMALL)
    assert first.decisions["late"].promote, first.decisions["late"].reason
    assert champion_version(uri, MODEL_NAMES["late"]) == first.versions["late"]
    champion = load_champion(uri, MODEL_NAMES["late"])
    assert champion.predict_proba(ledger_rows(ledger)).shape[1] == 2
    logged = champion_run(uri, MODEL_NAMES["late"])["params"]  # the settings the fit chose, for the audit
    assert logged["chosen.calibration"] in {"isotonic", "platt"}
    assert int(logged["chosen.n_estimators"]) <= SMALL.n_estimators and "chosen.num_leaves" in logged

    worse = ModelSettings(n_estimators=3, learning_rate=0.01, timing_horizon_weeks=20)
    second = register_models(BacktestRun(ledger, datasets, run_backtest(datasets, origins, worse), {}), uri,
                             settings=worse)
    assert not second.decisions["late"].promote
    assert "champion" in second.decisions["late"].reason
    assert champion_version(uri, MODEL_NAMES["late"]) == first.versions["late"]
    assert int(second.versions["late"]) == int(first.versions["late"]) + 1  # logged and registered all the same

    # On other origins (here: the last one only) the champion's logged metrics do not apply: its recipe is
    # re-backtested on the candidate's origins, so the same recipe ties with it and does not replace it.
    third = register_models(BacktestRun(ledger, datasets, run_backtest(datasets, origins[-1:], SMALL), {}), uri,
                            settings=SMALL)
    assert not third.decisions["late"].promote
    assert "champion" in third.decisions["late"].reason


def test_a_backtest_until_a_date_uses_only_what_was_known_by_it(ledger):
    until = ledger.invoices["invoice_date"].max() - pd.Timedelta(days=62)
    run = backtest_ledger(ledger, until=until, origins=1, settings=ModelSettings(n_estimators=10,
                                                                                timing_horizon_weeks=20))
    assert run.datasets.observation_end <= until
    assert run.datasets.invoices["cutoff"].max() <= until
    assert (run.ledger.invoices["invoice_date"] <= until).all()
    assert len(run.result.origins) == 1


def ledger_rows(ledger):
    from features import features_at

    return features_at(ledger, ledger.invoices["invoice_date"].max())
