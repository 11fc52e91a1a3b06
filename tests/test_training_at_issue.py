"""The at-issue protocol: each invoice scored once, on its invoice date, models trained on the earliest 70%
with labels as known at the split, the later 30% tested with outcomes seen in full."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import features_at
from ledger import write_ledger
from ledger.synthetic import generate_ledger
from serving.cli import app
from training.at_issue import at_issue_rows, backtest_at_issue, held_out_rows, split_date, training_rows
from training.backtest import ModelSettings

SMALL = ModelSettings(n_estimators=40, timing_horizon_weeks=13)


@pytest.fixture(scope="module")
def ledger():
    """A generated ledger whose invoices go out in weekly runs (each moved back to the Monday of its week:
    still before its due date and payments), so that its rows are built on 30 dates rather than 200."""
    ledger = generate_ledger(customers=60, months=7, seed=5)[0]
    dates = ledger.invoices["invoice_date"]
    weekly = ledger.invoices.assign(invoice_date=dates - pd.to_timedelta(dates.dt.dayofweek, unit="D"))
    return ledger.replace(invoices=weekly).validate()


@pytest.fixture(scope="module")
def rows(ledger):
    return at_issue_rows(ledger)


@pytest.fixture(scope="module")
def run(ledger, rows):
    return backtest_at_issue(ledger, settings=SMALL, rows=rows)


def test_one_row_per_invoice_on_its_own_invoice_date(ledger, rows):
    invoices = ledger.invoices[ledger.invoices["doc_type"] == "invoice"].set_index("invoice_id")
    assert rows["invoice_id"].is_unique and set(rows["invoice_id"]) == set(invoices.index)
    assert (rows["cutoff"].to_numpy() == invoices.loc[rows["invoice_id"], "invoice_date"].to_numpy()).all()
    assert (rows["days_to_due"] == (rows["due_date"] - rows["cutoff"]).dt.days).all()


def test_each_rows_features_are_those_known_on_its_invoice_date(ledger, rows):
    for _, row in rows.iloc[[0, len(rows) // 2, len(rows) - 1]].iterrows():
        known = features_at(ledger, row["cutoff"]).set_index("invoice_id").loc[row["invoice_id"]]
        for column in known.index:
            assert row[column] == pytest.approx(known[column], nan_ok=True), column


def test_the_split_keeps_the_earliest_share_and_each_date_on_one_side(rows):
    split = split_date(rows, 0.7)
    train, test = training_rows(rows, split), held_out_rows(rows, split)
    assert len(train) + len(test) == len(rows)
    assert len(train) >= 0.7 * len(rows) > len(rows[rows["cutoff"] < split])
    assert train["cutoff"].max() == split < test["cutoff"].min()
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        split_date(rows, 1.0)


def test_training_labels_are_those_known_at_the_split(rows):
    split = split_date(rows, 0.7)
    train = training_rows(rows, split)
    full = rows.set_index("invoice_id").loc[train["invoice_id"]]
    paid_later = (full["paid_date"] > split).to_numpy()
    assert paid_later.any()  # the fixture has invoices settled after the split
    assert not train["paid"].to_numpy()[paid_later].any()
    assert train["paid_date"].max() <= split
    # An unpaid invoice is only known to be late by what it has been open past due on the split day.
    unpaid = train[~train["paid"]]
    assert (unpaid["days_late"] == (split + pd.Timedelta(days=1) - unpaid["due_date"]).dt.days).all()


def test_each_test_invoice_is_scored_once_with_the_month_end_metrics_keys(run, rows):
    metrics = run.result.metrics
    assert metrics["protocol"] == "at_issue"
    split = pd.Timestamp(metrics["at_issue"]["split_date"])
    tested = rows[rows["cutoff"] > split]
    assert metrics["at_issue"]["test_invoices"] == len(tested)
    late = run.result.per_origin[0].late
    assert run.datasets.invoices.loc[late.index, "invoice_id"].is_unique
    assert set(run.datasets.invoices.loc[late.index, "invoice_id"]) <= set(tested["invoice_id"])
    assert {"late_payment", "receipt_timing", "deterioration", "rows", "cutoffs"} <= metrics.keys()
    assert set(metrics["late_payment"]["baselines"]) == {"class_prior", "customer_late_rate"}
    assert 0.5 < metrics["late_payment"]["model"]["roc_auc"] <= 1
    assert np.isfinite(metrics["receipt_timing"]["model"]["mae_days"])


def test_cli_backtest_at_issue_writes_the_metrics(tmp_path, ledger):
    write_ledger(ledger, tmp_path / "ledger")
    result = CliRunner().invoke(app, ["backtest", "--ledger", str(tmp_path / "ledger"), "--out", str(tmp_path / "bt"),
                                      "--at-issue", "--train-share", "0.6", "--late-grace-days", "0"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "bt" / "metrics.json").read_text())
    assert metrics["protocol"] == "at_issue" and metrics["at_issue"]["train_share"] == 0.6
    assert "at issue" in (tmp_path / "bt" / "report.html").read_text()


def test_cli_at_issue_is_refused_on_the_dask_engine(tmp_path, ledger):
    result = CliRunner().invoke(app, ["backtest", "--ledger", str(tmp_path), "--out", str(tmp_path / "bt"),
                                      "--at-issue", "--engine", "dask"])
    assert result.exit_code == 2 and "pandas engine only" in result.output


def test_the_report_has_a_model_card_per_model_with_intervals(run):
    from training.model_card import model_cards

    cards = {card["model"]: card for card in model_cards(run, draws=20)}
    assert set(cards) == {"late", "timing", "deterioration"}
    late = cards["late"]
    assert late["protocol"] == "at_issue" and late["features"]
    assert {"chosen.num_leaves", "chosen.calibration"} <= late["settings"].keys()  # what the fit chose
    by_who = {(m["who"], m["metric"]): m for m in late["metrics"]}
    assert {("model", "roc_auc"), ("customer_late_rate", "roc_auc"), ("class_prior", "brier")} <= by_who.keys()
    auc = by_who["model", "roc_auc"]
    assert auc["low"] <= auc["value"] <= auc["high"]
    assert cards["timing"]["metrics"][0]["metric"] == "mae_days"
