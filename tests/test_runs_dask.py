"""The daily run on a Dask cluster (issue 17): on a ledger that fits in memory, the dask engine gives the
same features (exactly), scores (to 1e-9), worklist order and served answers as the pandas engine. The
cluster is real: a scheduler and two workers, each its own process (tests/dask_cluster.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import features_at
from ledger import LedgerError, write_ledger
from ledger.cluster import dask_client
from ledger.partitions import bucket_of
from runs.daily import execute_run, execute_run_on_cluster
from runs.day import DaySettings, StepFailed
from runs.distributed import features_on_cluster
from runs.folder import read_run
from serving.cli import app
from serving.views import RunDays, ServingState
from tests.conftest import SCORING_DATE

runner = CliRunner()
PARTITIONS = 4
LIGHT = DaySettings(draws=200)


@pytest.fixture(scope="module")
def partitioned_dir(scoring_ledger, tmp_path_factory):
    folder = tmp_path_factory.mktemp("partitioned") / "ledger"
    write_ledger(scoring_ledger, folder, partitions=PARTITIONS)
    return folder


@pytest.fixture(scope="module")
def both_runs(scoring_ledger, partitioned_dir, champions, dask_scheduler, tmp_path_factory):
    """The same day by both engines: (pandas run folder, dask run folder)."""
    pandas_runs = tmp_path_factory.mktemp("pandas") / "runs"
    dask_runs = tmp_path_factory.mktemp("dask") / "runs"
    pandas_folder = execute_run(scoring_ledger, SCORING_DATE, pandas_runs, champions, settings=LIGHT)
    with dask_client(dask_scheduler) as client:
        dask_folder = execute_run_on_cluster(client, partitioned_dir, SCORING_DATE, dask_runs, champions,
                                             settings=LIGHT)
    return pandas_folder, dask_folder


def by_key(frame: pd.DataFrame, *keys: str) -> pd.DataFrame:
    return frame.sort_values(list(keys), ignore_index=True)


def test_the_dask_features_equal_the_pandas_features_exactly(scoring_ledger, partitioned_dir, dask_scheduler,
                                                             tmp_path):
    out = tmp_path / "features"
    with dask_client(dask_scheduler) as client:
        rows = features_on_cluster(client, partitioned_dir, SCORING_DATE, out)
    written = sorted(out.glob("part-*.parquet"))
    assert len(written) == PARTITIONS
    on_cluster = pd.concat([pd.read_parquet(file) for file in written], ignore_index=True)
    direct = features_at(scoring_ledger, SCORING_DATE)
    assert rows == len(direct)
    pd.testing.assert_frame_equal(by_key(on_cluster, "invoice_id"), by_key(direct, "invoice_id"), check_exact=True)
    # Each file holds whole customers: those of its bucket.
    for file in written:
        customers = pd.read_parquet(file, columns=["customer_id"])["customer_id"]
        assert set(bucket_of(customers, PARTITIONS)) <= {int(file.stem.split("-")[1])}


def test_the_dask_run_gives_the_pandas_scores_worklist_and_tables(both_runs):
    (pandas_day, pandas_manifest), (dask_day, dask_manifest) = (read_run(folder) for folder in both_runs)
    assert dask_manifest["engine"] == "dask" and dask_manifest["partitions"] == PARTITIONS
    assert dask_manifest["workers"] == 2 and dask_manifest["peak_worker_rss_mb"] > 0
    assert (dask_day.tables["scores"].columns == pandas_day.tables["scores"].columns).all()
    pd.testing.assert_frame_equal(by_key(dask_day.tables["scores"], "invoice_id"),
                                  by_key(pandas_day.tables["scores"], "invoice_id"), rtol=1e-9, atol=1e-9)
    pd.testing.assert_frame_equal(by_key(dask_day.tables["customers"], "customer_id"),
                                  by_key(pandas_day.tables["customers"], "customer_id"), rtol=1e-9, atol=1e-9)
    # The worklist: the same customers in the same order, the same rows.
    assert len(pandas_day.tables["worklist"]) > 10
    pd.testing.assert_frame_equal(dask_day.tables["worklist"], pandas_day.tables["worklist"], rtol=1e-9, atol=1e-9)
    pd.testing.assert_frame_equal(dask_day.tables["dunning"], pandas_day.tables["dunning"])
    for name, keys in (("aging", ("basis", "amounts", "customer_id")),
                       ("contributions", ("customer_id", "feature"))):
        pd.testing.assert_frame_equal(by_key(dask_day.tables[name], *keys), by_key(pandas_day.tables[name], *keys),
                                      rtol=1e-9, atol=1e-9)
    assert dask_manifest["tables"] == pandas_manifest["tables"]


def test_the_dask_forecast_adds_up_the_buckets_to_the_books_expected_receipts(both_runs):
    (pandas_day, _), (dask_day, dask_manifest) = (read_run(folder) for folder in both_runs)
    keys = ["freq", "currency", "converted", "period"]
    mine, theirs = by_key(dask_day.tables["forecast"], *keys), by_key(pandas_day.tables["forecast"], *keys)
    pd.testing.assert_frame_equal(mine[keys], theirs[keys])
    for column in ("expected", "expected_cumulative", "baseline_pays_on_due_date",
                   "baseline_due_date_plus_customer_average"):
        np.testing.assert_allclose(mine[column], theirs[column], rtol=1e-9, atol=1e-6)
    # The intervals come from other random numbers (a seed per bucket) of the same model: close, not equal.
    total = mine[(mine["freq"] == "week") & mine["converted"]]
    reference = theirs[(theirs["freq"] == "week") & theirs["converted"]]
    assert (total["p10"] <= total["p90"]).all()
    assert ((reference["p10_cumulative"].to_numpy() <= total["p50_cumulative"].to_numpy())
            & (total["p50_cumulative"].to_numpy() <= reference["p90_cumulative"].to_numpy())).all()
    assert dask_manifest["facts"]["forecast_seeds"] == "[seed, bucket] per bucket"


def test_the_service_answers_the_same_from_either_engines_run(both_runs):
    pandas_runs, dask_runs = (folder.parent for folder in both_runs)
    mine, theirs = ServingState(RunDays(dask_runs, None)), ServingState(RunDays(pandas_runs, None))
    pd.testing.assert_frame_equal(mine.worklist(SCORING_DATE, top=15), theirs.worklist(SCORING_DATE, top=15),
                                  rtol=1e-9, atol=1e-9)
    customer = theirs.worklist(SCORING_DATE, top=1)["customer_id"].iloc[0]
    assert (mine.view(SCORING_DATE, actions=False).risk_document(customer)
            == theirs.view(SCORING_DATE, actions=False).risk_document(customer))
    pd.testing.assert_frame_equal(mine.dunning(SCORING_DATE), theirs.dunning(SCORING_DATE))


def test_a_key_in_two_buckets_stops_the_dask_run_naming_the_buckets(scoring_ledger, champions, dask_scheduler,
                                                                    tmp_path):
    # A contact of a customer in bucket 1 given the id of a contact in bucket 0: each bucket alone is valid,
    # the ledger is not.
    contacts = scoring_ledger.contacts.copy()
    buckets = bucket_of(contacts["customer_id"], PARTITIONS)
    taken = contacts.loc[buckets == 0, "contact_id"].iloc[0]
    contacts.loc[contacts.index[buckets == 1][0], "contact_id"] = taken
    folder = tmp_path / "ledger"
    write_ledger(scoring_ledger.replace(contacts=contacts), folder, partitions=PARTITIONS, validate=False)
    with dask_client(dask_scheduler) as client, pytest.raises(LedgerError, match="more than one bucket") as error:
        execute_run_on_cluster(client, folder, SCORING_DATE, tmp_path / "runs", champions, settings=LIGHT)
    assert "contacts" in str(error.value) and "buckets 0, 1" in str(error.value)
    assert not (tmp_path / "runs" / f"{SCORING_DATE:%Y-%m-%d}").exists()
    assert not [path for path in (tmp_path / "runs").iterdir() if path.name.startswith(".staging")]


def test_a_bad_bucket_fails_its_step_naming_the_bucket_and_row(scoring_ledger, champions, dask_scheduler, tmp_path):
    invoices = scoring_ledger.invoices.copy()
    invoices.loc[invoices.index[7], "currency"] = "EURO"
    folder = tmp_path / "ledger"
    write_ledger(scoring_ledger.replace(invoices=invoices), folder, partitions=PARTITIONS, validate=False)
    bucket = int(bucket_of([invoices.loc[invoices.index[7], "customer_id"]], PARTITIONS)[0])
    with dask_client(dask_scheduler) as client, pytest.raises(StepFailed) as failed:
        execute_run_on_cluster(client, folder, SCORING_DATE, tmp_path / "runs", champions, settings=LIGHT)
    assert failed.value.step == "validate" and isinstance(failed.value.error, LedgerError)
    assert f"invoices/part-{bucket:05d}" in str(failed.value.error) and "currency" in str(failed.value.error)


def test_arrisk_run_engine_dask_builds_a_run_on_an_existing_scheduler(partitioned_dir, champion_store,
                                                                     dask_scheduler, tmp_path):
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["run", "--ledger", str(partitioned_dir), "--as-of", "2023-06-30", "--out", str(runs),
                                 "--tracking-uri", champion_store, "--engine", "dask", "--scheduler", dask_scheduler])
    assert result.exit_code == 0, result.output
    manifest = json.loads((runs / "2023-06-30" / "manifest.json").read_text())
    assert manifest["engine"] == "dask" and manifest["scheduler"] == dask_scheduler
    assert "4 partitions on 2 workers" in result.output
    # The drift verdict, on a sample of buckets (here all four: the ledger is small), is the pandas run's.
    result = runner.invoke(app, ["run", "--ledger", str(partitioned_dir), "--as-of", "2023-06-30", "--out",
                                 str(tmp_path / "pandas"), "--tracking-uri", champion_store])
    assert result.exit_code == 0, result.output
    reference = json.loads((tmp_path / "pandas" / "2023-06-30" / "manifest.json").read_text())["facts"]["drift"]
    drift = manifest["facts"]["drift"]
    assert drift["sample"] == "the customers of buckets 0..3 of 4"
    assert {key: drift[key] for key in reference} == reference


def test_the_dask_engine_refuses_an_unpartitioned_ledger_and_an_unknown_engine(scoring_ledger, champion_store,
                                                                              tmp_path):
    folder = tmp_path / "ledger"
    write_ledger(scoring_ledger, folder)
    result = runner.invoke(app, ["run", "--ledger", str(folder), "--as-of", "2023-06-30", "--out",
                                 str(tmp_path / "runs"), "--tracking-uri", champion_store, "--engine", "dask"])
    assert result.exit_code == 1 and "partitioned ledger" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["run", "--ledger", str(folder), "--as-of", "2023-06-30", "--engine", "spark"])
    assert result.exit_code == 1 and "expected one of pandas, dask" in result.output


def test_arrisk_features_and_score_engine_dask_write_one_file_per_bucket_equal_to_pandas(
        scoring_ledger, partitioned_dir, champion_store, dask_scheduler, tmp_path):
    common = ["--ledger", str(partitioned_dir), "--as-of", "2023-06-30", "--engine", "dask",
              "--scheduler", dask_scheduler]
    result = runner.invoke(app, ["features", *common, "--out", str(tmp_path / "features")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "features").glob("part-*.parquet"))) == PARTITIONS
    result = runner.invoke(app, ["score", *common, "--out", str(tmp_path / "scores"), "--tracking-uri", champion_store])
    assert result.exit_code == 0, result.output
    on_cluster = pd.concat([pd.read_parquet(file) for file in sorted((tmp_path / "scores").glob("part-*.parquet"))])
    result = runner.invoke(app, ["score", "--ledger", str(partitioned_dir), "--as-of", "2023-06-30",
                                 "--out", str(tmp_path / "scores.parquet"), "--tracking-uri", champion_store])
    assert result.exit_code == 0, result.output
    direct = pd.read_parquet(tmp_path / "scores.parquet")
    pd.testing.assert_frame_equal(by_key(on_cluster, "invoice_id"), by_key(direct, "invoice_id"), rtol=1e-9, atol=1e-9)
    # A folder that is not ours is never replaced.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["features", *common, "--out", str(tmp_path / "mine")])
    assert result.exit_code == 1 and "refusing to replace it" in result.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    # Nor one that only looks like ours (bucket file names, no mark of ar-risk's).
    (tmp_path / "lookalike").mkdir()
    (tmp_path / "lookalike" / "part-00000.parquet").write_text("someone else's")
    result = runner.invoke(app, ["features", *common, "--out", str(tmp_path / "lookalike")])
    assert result.exit_code == 1 and "refusing to replace it" in result.output
    assert (tmp_path / "lookalike" / "part-00000.parquet").read_text() == "someone else's"
    # Its own folder is replaced by the next run of the command.
    result = runner.invoke(app, ["features", *common, "--out", str(tmp_path / "features")])
    assert result.exit_code == 0, result.output
