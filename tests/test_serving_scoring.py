"""Scoring, the worklist with models, reason codes and the `score` / `worklist` commands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import features_at, known_at
from runs.reasons import phrase, top_reasons
from runs.scoring import build_worklist, score, score_table
from serving.cli import app
from tests.conftest import SCORING_DATE

runner = CliRunner()


def test_score_has_one_row_per_open_document_with_consistent_outputs(scoring_ledger, champions):
    scores = score(scoring_ledger, SCORING_DATE, champions)
    table = score_table(scores, champions)
    open_documents = features_at(scoring_ledger, SCORING_DATE)
    assert sorted(table["invoice_id"]) == sorted(open_documents["invoice_id"])
    assert table["p_late"].between(0, 1).all() and table["p_unpaid"].between(0, 1).all()
    assert (table["pay_date_p10"] <= table["pay_date_p50"]).all()
    assert (table["pay_date_p50"] <= table["pay_date_p90"]).all()
    assert (table["pay_date_p10"] > SCORING_DATE).all()
    # Document amounts convert back to the company currency at the document's own rate.
    invoices = scoring_ledger.invoices.set_index("invoice_id")
    rate = invoices["amount_base"] / invoices["amount"]
    assert np.allclose(table["open_amount"] * table["invoice_id"].map(rate), table["open_amount_base"])


def test_score_uses_nothing_known_after_the_date(scoring_ledger, champions):
    as_of = SCORING_DATE - pd.Timedelta(days=45)
    full = score_table(score(scoring_ledger, as_of, champions), champions)
    cut = score_table(score(known_at(scoring_ledger, as_of), as_of, champions), champions)
    pd.testing.assert_frame_equal(full, cut)


def test_worklist_ranks_customers_with_overdue_items_and_gives_reasons(scoring_ledger, champions):
    table = build_worklist(scoring_ledger, SCORING_DATE, champions)
    assert len(table) > 10
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    active = table[table["status"] != "held"]
    assert active["score"].is_monotonic_decreasing
    assert (table["overdue_amount_base"] > 0).all()
    assert (table["reason_1"] != "").all() and (table["reason_2"] != "").all()
    assert table["next_dunning_action"].notna().all()
    collector = table["collector"].iloc[0]
    mine = build_worklist(scoring_ledger, SCORING_DATE, champions, collector=collector, top=3)
    assert set(mine["collector"]) == {collector} and len(mine) <= 3
    assert mine["customer_id"].tolist() == table.loc[table["collector"] == collector, "customer_id"].head(3).tolist()


def test_reasons_are_the_features_pushing_risk_up_in_words():
    contributions = pd.Series({"avg_days_late_last_10": 0.8, "credit_utilisation": 0.3, "tenure_days": -0.5,
                               "days_past_due": 0.3, "open_disputes": 0.0})
    row = pd.Series({"avg_days_late_last_10": 18.0, "days_late_trend": 12.0, "credit_utilisation": 1.25,
                     "tenure_days": 400.0, "days_past_due": 12.0, "open_disputes": 0.0})
    assert top_reasons(contributions, row, descriptions={}) == [
        "pays 18 days late on average over the last 10 invoices, 12 days later than before",
        "using 125% of the credit limit",
        "largest open item 12 days past due",
    ]
    assert phrase("share_paid_late_90d", 0.5, row, {}) == "50% of invoices paid in the last 90 days were late"
    assert phrase("share_ar_dpd_61_90", 0.25, row, {}) == "25% of open receivables 61-90 days past due"
    assert phrase("unknown_feature", 2.0, row, {"unknown_feature": "Something."}) == "Something: 2"


def test_score_and_worklist_commands_write_the_same_numbers_as_the_functions(
        scoring_ledger, champions, champion_store, tmp_path):
    from ledger import write_ledger

    ledger_dir = tmp_path / "ledger"
    write_ledger(scoring_ledger, ledger_dir)
    out = tmp_path / "scores.parquet"
    result = runner.invoke(app, ["score", "--ledger", str(ledger_dir), "--as-of", f"{SCORING_DATE:%Y-%m-%d}",
                                 "--tracking-uri", champion_store, "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = pd.read_parquet(out)
    expected = score_table(score(scoring_ledger, SCORING_DATE, champions), champions)
    assert written["invoice_id"].tolist() == expected["invoice_id"].tolist()
    assert np.allclose(written["p_late"], expected["p_late"]) and np.allclose(written["p_unpaid"], expected["p_unpaid"])

    listed = tmp_path / "worklist.csv"
    result = runner.invoke(app, ["worklist", "--ledger", str(ledger_dir), "--as-of", f"{SCORING_DATE:%Y-%m-%d}",
                                 "--tracking-uri", champion_store, "--top", "5", "--out", str(listed)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(listed)["customer_id"].tolist() == \
        build_worklist(scoring_ledger, SCORING_DATE, champions, top=5)["customer_id"].tolist()


def test_commands_without_a_champion_say_how_to_get_one(scoring_ledger, tmp_path):
    from ledger import write_ledger

    write_ledger(scoring_ledger, tmp_path / "ledger")
    result = runner.invoke(app, ["worklist", "--ledger", str(tmp_path / "ledger"), "--as-of", "2023-06-30",
                                 "--tracking-uri", f"sqlite:///{tmp_path / 'empty.db'}"])
    assert result.exit_code == 1
    assert "no champion for ar_risk_receipt_timing" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (["--as-of", "2023-13-01"], "--as-of"),
    (["--as-of", "2023-06-30", "--out", "list.txt"], "--out"),
])
def test_worklist_bad_options_are_one_line_errors(tmp_path, args, message):
    result = runner.invoke(app, ["worklist", "--ledger", str(tmp_path), *args])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_a_missing_champion_is_no_model_for_the_api_and_a_ledger_error_for_the_cli():
    from ledger import LedgerError
    from ledger.errors import NoModel
    from runs.scoring import Champions

    with pytest.raises(NoModel, match="no champion for ar_risk_receipt_timing") as raised:
        Champions(None, None, None).require("timing")
    assert isinstance(raised.value, LedgerError)


def test_deterioration_evidence_is_named_by_the_feature_settings():
    from features import FeatureConfig
    from serving.views import deterioration_evidence

    assert "avg_days_late_last_10" in deterioration_evidence(FeatureConfig())
    evidence = deterioration_evidence(FeatureConfig(last_paid_invoices=4, broken_promise_days=90))
    assert {"avg_days_late_last_4", "broken_promises_90d"} <= set(evidence)
