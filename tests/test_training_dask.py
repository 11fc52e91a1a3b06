"""Training at scale (issue 17, item 3): training rows built per ledger partition as Dask tasks, the
stratified sample, the backtest's origins as tasks, and `arrisk train|backtest --engine dask`, on a real
scheduler with two worker processes (the `dask_scheduler` fixture)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ledger import LedgerError, write_ledger
from ledger.cluster import dask_client
from ledger.synthetic import generate_ledger
from serving.cli import app
from training import distributed
from training.backtest import ModelSettings
from training.distributed import (
    PartitionSummary,
    partition_cutoffs,
    proportional_quotas,
    sample_from_partitions,
    stratum_labels,
)

SMALL = ModelSettings(n_estimators=40, timing_horizon_weeks=16)
PARTITIONS = 4
runner = CliRunner()


@pytest.fixture(scope="module")
def whole_ledger():
    ledger, _ = generate_ledger(customers=60, months=12, seed=3)
    return ledger


@pytest.fixture(scope="module")
def ledger_path(whole_ledger, tmp_path_factory):
    path = tmp_path_factory.mktemp("partitioned") / "ledger"
    write_ledger(whole_ledger, path, partitions=PARTITIONS)
    return path


@pytest.fixture(scope="module")
def pandas_datasets(ledger_path):
    """The pandas engine's rows: the same ledger read whole."""
    from ledger import read_ledger
    from training.datasets import build_datasets, monthly_cutoffs

    ledger = read_ledger(ledger_path)
    return build_datasets(ledger, monthly_cutoffs(ledger), _config())


@pytest.fixture(scope="module")
def dask_sample(ledger_path, dask_scheduler):
    with dask_client(dask_scheduler) as client:
        return sample_from_partitions(client, ledger_path, config=_config())


def _config():
    from features import FeatureConfig

    return FeatureConfig(late_grace_days=SMALL.late_grace_days)


def test_the_dask_engine_builds_exactly_the_rows_of_the_pandas_engine(pandas_datasets, dask_sample):
    # Both are in (cutoff, key) order; the rows, columns, values and dtypes are the same, not just close.
    pd.testing.assert_frame_equal(dask_sample.datasets.invoices, pandas_datasets.invoices, check_exact=True)
    pd.testing.assert_frame_equal(dask_sample.datasets.customers, pandas_datasets.customers, check_exact=True)
    assert dask_sample.datasets.observation_end == pandas_datasets.observation_end
    assert dask_sample.facts()["invoices"] == {"rows": len(pandas_datasets.invoices),
                                               "of": len(pandas_datasets.invoices)}


def test_the_backtest_by_origin_tasks_gives_the_pandas_engines_metrics(pandas_datasets, dask_sample, dask_scheduler):
    from training.backtest import run_backtest
    from training.datasets import backtest_origins

    origins = backtest_origins(dask_sample.cutoffs, dask_sample.datasets.observation_end, count=2)
    assert len(origins) == 2
    with dask_client(dask_scheduler) as client:
        by_tasks = distributed.ClusterFits(client).backtest(dask_sample.datasets, origins, SMALL)
    in_process = run_backtest(pandas_datasets, origins, SMALL)
    # The same rows in the same order and LightGBM set deterministic: the fits are identical (in a check, two
    # fits on the same rows gave predictions differing by exactly 0.0), so the metrics agree; 1e-9 is the
    # promise. Rows in another order would not: bagging draws rows by position (a permutation of the same
    # rows moved P by up to 0.12 in that check), hence both engines sort rows by (cutoff, key).
    assert_close(by_tasks.metrics, in_process.metrics, tolerance=1e-9)
    assert by_tasks.origins == in_process.origins


def assert_close(left, right, tolerance: float, where: str = "metrics") -> None:
    if isinstance(left, dict):
        assert set(left) == set(right), where
        for key in left:
            assert_close(left[key], right[key], tolerance, f"{where}.{key}")
    elif isinstance(left, list | tuple):
        assert len(left) == len(right), where
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            assert_close(a, b, tolerance, f"{where}[{index}]")
    elif isinstance(left, float | np.floating):
        assert (np.isnan(left) and np.isnan(right)) or abs(left - right) <= tolerance, (where, left, right)
    else:
        assert left == right, (where, left, right)


def test_a_stratified_sample_keeps_every_cutoff_and_label_within_its_budget(ledger_path, pandas_datasets,
                                                                            dask_scheduler):
    budget = 400
    with dask_client(dask_scheduler) as client:
        sample = sample_from_partitions(client, ledger_path, config=_config(), sample_rows=budget)
    for kind, full in (("invoices", pandas_datasets.invoices), ("customers", pandas_datasets.customers)):
        rows = getattr(sample.datasets, kind)
        assert len(full) > budget and len(rows) == budget, kind  # the cap is used, not exceeded
        strata = set(zip(full["cutoff"], stratum_labels(full, kind), strict=True))
        kept = set(zip(rows["cutoff"], stratum_labels(rows, kind), strict=True))
        assert kept == strata, kind
        # A sampled row is a row of the whole data, unchanged.
        key = "invoice_id" if kind == "invoices" else "customer_id"
        same = full.set_index(["cutoff", key]).loc[pd.MultiIndex.from_frame(rows[["cutoff", key]])]
        pd.testing.assert_frame_equal(rows.set_index(["cutoff", key]), same, check_exact=True)
        # Proportional: each stratum's share is within one row (plus the one every stratum keeps) of its share.
        share = full.groupby([full["cutoff"], stratum_labels(full, kind)]).size() * budget / len(full)
        taken = rows.groupby([rows["cutoff"], stratum_labels(rows, kind)]).size()
        assert ((taken - share).abs() <= 2).all(), kind
    assert sample.facts()["invoices"] == {"rows": budget, "of": len(pandas_datasets.invoices)}


def test_proportional_quotas_follow_the_largest_remainder():
    sizes = pd.Series([50, 30, 19, 1])
    # 10 of 100: 5, 3, 1.9 and 0.1 -> floors 5, 3, 1, 0 and the one left over to the largest remainder (0.9).
    assert proportional_quotas(sizes, 10).tolist() == [5, 3, 2, 0]
    # Keeping every group: one each first, then 6 of the remaining 96 (49, 29, 18, 0): 3.06, 1.81, 1.13, 0
    # -> 3, 1, 1, 0 and the one left to 1.81.
    assert proportional_quotas(sizes, 10, keep_every=True).tolist() == [4, 3, 2, 1]
    assert proportional_quotas(sizes, 500).tolist() == [50, 30, 19, 1]  # a budget over the rows takes them all


def test_a_budget_below_the_number_of_strata_is_a_clear_error():
    from ledger.errors import BadInput

    with pytest.raises(BadInput, match="--sample-rows 2 is fewer than the 3"):
        proportional_quotas(pd.Series([5, 5, 5]), 2, keep_every=True)


def test_a_bucket_with_customers_but_no_invoice_at_a_cutoff_is_a_clear_error():
    day = pd.Timestamp
    cutoffs = [day("2022-03-31"), day("2022-04-30"), day("2022-05-31")]
    on_time = PartitionSummary(0, day("2022-01-03"), day("2021-06-01"), day("2022-06-30"), "x")
    assert partition_cutoffs(on_time, cutoffs) == cutoffs
    # Customers created in March whose first invoice is in May have rows at the April cutoff in the whole
    # ledger, which one bucket cannot build alone: refused with what to do, never silently left out.
    late = PartitionSummary(1, day("2022-05-02"), day("2022-03-15"), day("2022-06-30"), "y")
    with pytest.raises(LedgerError, match="2022-03-31 but no invoice until 2022-05-02"):
        partition_cutoffs(late, cutoffs)
    # A bucket whose customers all arrive with their first invoice simply starts later.
    fresh = PartitionSummary(2, day("2022-05-02"), day("2022-05-02"), day("2022-06-30"), "z")
    assert partition_cutoffs(fresh, cutoffs) == [day("2022-05-31")]


def test_arrisk_train_with_the_dask_engine_registers_the_models(ledger_path, dask_scheduler, tmp_path, monkeypatch):
    from training.pipeline import MODEL_NAMES
    from training.tracking import champion_version

    monkeypatch.setattr(distributed, "ModelSettings", lambda: SMALL)  # small models; the settings go to the tasks
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = runner.invoke(app, ["train", "--ledger", str(ledger_path), "--engine", "dask",
                                 "--scheduler", dask_scheduler, "--tracking-uri", uri,
                                 "--report-dir", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "late: version 1 promoted to champion" in result.output
    assert "worklist value check was not run" in result.output
    for task, name in MODEL_NAMES.items():
        assert champion_version(uri, name) == "1", task
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["sample"]["invoices"]["rows"] == metrics["sample"]["invoices"]["of"]


def test_arrisk_backtest_with_the_dask_engine_writes_the_report(ledger_path, dask_scheduler, tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "ModelSettings", lambda: SMALL)
    result = runner.invoke(app, ["backtest", "--ledger", str(ledger_path), "--out", str(tmp_path / "bt"),
                                 "--origins", "1", "--engine", "dask", "--scheduler", dask_scheduler,
                                 "--sample-rows", "1000"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "bt" / "metrics.json").read_text())
    assert metrics["sample"]["invoices"]["rows"] == 1000 < metrics["sample"]["invoices"]["of"]
    assert "fitted on 1,000 of" in result.output
    assert (tmp_path / "bt" / "report.html").exists()


def test_an_unreachable_scheduler_is_one_line_and_exit_1(ledger_path, tmp_path):
    result = runner.invoke(app, ["train", "--ledger", str(ledger_path), "--engine", "dask",
                                 "--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout", "2",
                                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: --scheduler tcp://127.0.0.1:9: cannot reach the Dask scheduler"), lines
    assert not (tmp_path / "mlflow.db").exists()


def test_the_dask_engine_refuses_a_ledger_that_is_not_partitioned(whole_ledger, dask_scheduler, tmp_path):
    write_ledger(whole_ledger, tmp_path / "ledger")
    result = runner.invoke(app, ["backtest", "--ledger", str(tmp_path / "ledger"), "--out", str(tmp_path / "bt"),
                                 "--engine", "dask", "--scheduler", dask_scheduler])
    assert result.exit_code == 1
    assert "is not one (write it with partitions, or use --engine pandas)" in result.output
    assert "Traceback" not in result.output


def test_the_cli_default_sample_budget_is_the_training_one():
    from serving.cli import training as cli

    assert cli.DEFAULT_SAMPLE_ROWS == distributed.DEFAULT_SAMPLE_ROWS
