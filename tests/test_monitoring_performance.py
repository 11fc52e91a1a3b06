"""Model performance over time: per-month metrics of the champions equal the metrics of their scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from monitoring.performance import performance_table, scored_months, write_performance
from training import metrics as m


@pytest.fixture(scope="module")
def months(scoring_ledger, champions):
    return scored_months(scoring_ledger, champions, start=pd.Timestamp("2022-10-31"))


def test_only_months_with_known_outcomes_are_scored(months, scoring_ledger):
    origins = [result.origin for result in months]
    assert origins[0] == pd.Timestamp("2022-10-31")
    assert origins[-1] == pd.Timestamp("2023-03-31")  # the ledger ends 2023-06-30: 91 days later at most
    assert origins == sorted(origins)


def test_table_numbers_are_the_metrics_of_each_months_scores(months):
    table = performance_table(months, trained_until=pd.Timestamp("2023-01-31"))
    assert table["in_training"].tolist() == [m_ <= pd.Timestamp("2023-01-31") for m_ in table["month"]]
    first = months[0]
    row = table.iloc[0]
    assert row["auc_model"] == pytest.approx(m.roc_auc(first.late["y"], first.late["model"]))
    assert row["brier_class_prior"] == pytest.approx(m.brier(first.late["y"], first.late["class_prior"]))
    paid = first.timing[first.timing["paid"]]
    assert row["mae_days_model"] == pytest.approx(np.mean(np.abs(paid["actual"] - paid["p50"])))
    cash = first.cash
    assert row["wape_13w_model"] == pytest.approx(np.abs(cash["actual"] - cash["model"]).sum() / cash["actual"].sum())
    # The champion was trained on these months: it must at least beat the class prior in-sample.
    assert (table["auc_model"] > table["auc_class_prior"]).all()


def test_report_files_are_written_whole(months, tmp_path):
    table = performance_table(months)
    html_path, json_path = write_performance(table, "f" * 64, tmp_path)
    html = html_path.read_text()
    assert html.count("data:image/png;base64,") == 4 and "http" not in html.split("<body>")[1]
    records = json.loads(json_path.read_text())["months"]
    assert [r["month"] for r in records] == [f"{d:%Y-%m-%d}" for d in table["month"]]
    assert records[0]["auc_model"] == pytest.approx(table["auc_model"].iloc[0])
    assert not list(tmp_path.glob("*.tmp"))
