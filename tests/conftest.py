"""Shared fixtures: a small synthetic ledger, champion models fitted on it (small and fast), and an
MLflow store holding them as champions, for the scoring, CLI and service tests."""

from __future__ import annotations

import pandas as pd
import pytest

from ledger.synthetic import generate_ledger

# The ledger's last month is the scoring date of the tests; models are fitted on what came before.
SCORING_DATE = pd.Timestamp("2023-06-30")


def pytest_collection_modifyitems(items):
    """The slow tests (a wheel built and installed, real servers) first, in their order: under `-n 2` the
    first worker takes them at the start while the other works through the rest, instead of one worker
    starting them last and the whole run waiting for it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def own_activity_database(tmp_path_factory):
    """Every test reads and writes a throwaway activity store and key, never a developer's out/activity.sqlite."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("activity")
        patch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{folder / 'activity.sqlite'}")
        # The audit key of the tests' stores, never a developer's out/audit.key.
        patch.setenv("ARRISK_AUDIT_KEY_FILE", str(folder / "audit.key"))
        yield


@pytest.fixture(scope="session")
def scoring_ledger():
    """120 customers over 18 months from 2022-01-01 (history up to the end of June 2023)."""
    ledger, _ = generate_ledger(customers=120, months=18, seed=5, start=pd.Timestamp("2022-01-01"))
    return ledger


@pytest.fixture(scope="session")
def champions(scoring_ledger):
    """The three models fitted on monthly cutoffs known by the scoring date (small settings)."""
    from features import FeatureConfig, known_at
    from runs.scoring import Champions
    from training.backtest import ModelSettings, fit_models
    from training.datasets import (
        build_datasets,
        censor_customer_labels,
        censor_invoice_labels,
        monthly_cutoffs,
    )

    settings = ModelSettings(n_estimators=40, timing_horizon_weeks=16)
    known = known_at(scoring_ledger, SCORING_DATE)
    cutoffs = [cutoff for cutoff in monthly_cutoffs(known) if cutoff < SCORING_DATE]
    datasets = build_datasets(known, cutoffs, FeatureConfig())
    fitted = fit_models(censor_invoice_labels(datasets.invoices, SCORING_DATE),
                        censor_customer_labels(datasets.customers, SCORING_DATE), settings)
    return Champions(fitted.late, fitted.timing, fitted.deterioration, {"late": "1", "timing": "1",
                                                                         "deterioration": "1"})


@pytest.fixture(scope="session")
def champion_store(champions, scoring_ledger, tmp_path_factory):
    """An MLflow SQLite store with the fitted models registered and aliased `champion`."""
    from features import features_at
    from training.pipeline import MODEL_NAMES
    from training.tracking import GateDecision, log_model_run

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    invoices = features_at(scoring_ledger, SCORING_DATE)
    from features import customer_features_at

    customers = customer_features_at(scoring_ledger, SCORING_DATE)
    for task, frame in (("late", invoices), ("timing", invoices), ("deterioration", customers)):
        model = getattr(champions, task)
        log_model_run(tracking_uri=uri, model_name=MODEL_NAMES[task], model=model, params={"test": True},
                      metrics={}, features={}, ledger_fingerprint=scoring_ledger.fingerprint(),
                      input_example=frame[list(model.feature_names_in_)].head(3),
                      decision=GateDecision(True, "test fixture"))
    return uri


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A URL to an empty database, on each database the store supports."""
    from tests.stores import empty_database

    yield from empty_database(request.param, tmp_path)


@pytest.fixture
def store(database_url):
    """A migrated, empty store."""
    from tests.stores import new_store

    activity = new_store(database_url)
    activity.migrate()
    yield activity
    activity.close()


@pytest.fixture(scope="session")
def dask_scheduler(tmp_path_factory):
    """The address of a Dask scheduler with two workers, all three separate processes (tests/dask_cluster.py)."""
    from tests.dask_cluster import running_cluster

    with running_cluster(tmp_path_factory.mktemp("dask")) as address:
        yield address
