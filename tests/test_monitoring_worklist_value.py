"""The worklist's value on a backtest (monitoring/worklist_value.py): at each origin, the share of the money
still unpaid 30 days later that the worklist's top 20% of customers held."""

from __future__ import annotations

import pytest

from ledger.synthetic import generate_ledger
from monitoring.worklist_value import origin_ranking, worklist_value
from rules.worklist import WorklistPolicy
from training.backtest import ModelSettings
from training.pipeline import backtest_ledger

SMALL = ModelSettings(n_estimators=60, timing_horizon_weeks=20)


@pytest.fixture(scope="module")
def backtest_run():
    ledger, _ = generate_ledger(customers=160, months=20, seed=11)
    return backtest_ledger(ledger, origins=2, settings=SMALL)


def test_worklist_value_is_measured_per_origin_on_realised_money_at_risk(backtest_run):
    value = worklist_value(backtest_run)
    assert list(value["origin"]) == backtest_run.result.origins
    shares = value[["share_worklist", "share_model_only", "share_overdue_amount"]]
    assert ((shares > 0) & (shares <= 1)).all().all()
    # Ranking by the model's money at risk beats ranking by overdue amount on the realised outcome.
    assert value["share_model_only"].mean() > value["share_overdue_amount"].mean()
    # The outcome is the open amount not settled within 30 days of the origin, by customer.
    ranking = origin_ranking(backtest_run, 0, WorklistPolicy())
    origin = backtest_run.result.origins[0]
    rows = backtest_run.datasets.invoices
    rows = rows[(rows["cutoff"] == origin) & rows["customer_id"].isin(ranking["customer_id"])]
    settled = rows["paid"] & (rows["days_to_pay"] <= 30)
    assert ranking["realised_at_risk_base"].sum() == pytest.approx(rows["open_amount_base"].clip(lower=0)[~settled].sum())
    # The actionable part leaves out what was on hold at the origin, and never exceeds the whole.
    assert (ranking["actionable_at_risk_base"] <= ranking["realised_at_risk_base"] + 1e-9).all()
    assert value[["share_worklist_actionable", "share_overdue_actionable"]].notna().all().all()
