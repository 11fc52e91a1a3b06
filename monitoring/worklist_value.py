"""The backtest check of the worklist's value (issue 6): at each backtest origin, do the customers the
worklist ranks in its top 20% hold more of the money still unpaid 30 days later than the top 20% by
overdue amount alone?

Each origin uses the models fitted on cutoffs before it (labels censored at it), the features known
at it, and the rules of `rules.worklist`, so it measures the ranking collectors would have been given.
The universe is the worklist's: customers with an overdue open invoice at the origin.

It lives in `monitoring/`, not `training/` (where the issue put it): it applies the worklist's rules, and
training may not import `rules` (DESIGN.md §2); monitoring may import both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ledger.errors import NoModel
from rules.worklist import WorklistPolicy, customer_priority, item_rule_inputs, top_share
from training.pipeline import BacktestRun


def unpaid_later(items: pd.DataFrame, days: int) -> pd.Series:
    """Open amount (invoices, company currency) still unpaid `days` after the cutoff: the money at risk."""
    settled = items["paid"].astype(bool) & (items["days_to_pay"] <= days)
    return items["open_amount_base"].clip(lower=0).where(~settled, 0.0)


def origin_ranking(run: BacktestRun, origin_index: int, policy: WorklistPolicy) -> pd.DataFrame:
    """The worklist priority at one origin with each customer's realised money at risk."""
    result = run.result.per_origin[origin_index]
    origin, fitted = result.origin, result.fitted
    if fitted is None or fitted.timing is None:
        raise NoModel(f"no receipt-timing model was fitted for the origin {origin:%Y-%m-%d}: the worklist's value "
                      "cannot be measured there")
    datasets = run.datasets
    items = datasets.invoices[datasets.invoices["cutoff"] == origin]
    customers = datasets.customers[datasets.customers["cutoff"] == origin]
    items = items.assign(p_unpaid=1 - fitted.timing.predict_cdf(items, [policy.horizon_days])[:, 0],
                         realised=unpaid_later(items, policy.horizon_days))
    flags = fitted.deterioration.flag(customers) if fitted.deterioration is not None else np.zeros(len(customers), bool)
    customers = customers.assign(deteriorating=flags)
    ruled = item_rule_inputs(run.ledger, origin, items, policy)
    priority = customer_priority(ruled, customers, policy)
    realised = ruled.groupby("customer_id")["realised"].sum()
    # What a collector could act on: the realised money at risk of items not on hold at the origin.
    actionable = ruled["realised"].where(ruled["hold_reason"] == "", 0.0).groupby(ruled["customer_id"]).sum()
    return priority.assign(origin=origin, realised_at_risk_base=priority["customer_id"].map(realised).fillna(0.0),
                           actionable_at_risk_base=priority["customer_id"].map(actionable).fillna(0.0))


def worklist_value(run: BacktestRun, policy: WorklistPolicy | None = None, share: float = 0.2) -> pd.DataFrame:
    """Per origin: the share of the realised money at risk held by the top `share` of customers ranked
    by the worklist, by the model's money at risk without rules, and by overdue amount alone; and the
    same for the part of it not on hold (disputed or promised money the worklist rightly does not chase)."""
    policy = policy or WorklistPolicy()
    rows = []
    for index in range(len(run.result.per_origin)):
        ranking = origin_ranking(run, index, policy)
        outcome = ranking["realised_at_risk_base"]
        ids = ranking["customer_id"]
        rows.append({
            "origin": ranking["origin"].iloc[0] if len(ranking) else run.result.per_origin[index].origin,
            "customers": len(ranking),
            "top_customers": int(np.ceil(share * len(ranking))),
            "money_at_risk_base": float(outcome.sum()),
            "share_worklist": top_share(-ranking["rank"].astype(float), outcome, share, ids),
            "share_model_only": top_share(ranking["money_at_risk_base"] + ranking["held_at_risk_base"], outcome,
                                          share, ids),
            "share_overdue_amount": top_share(ranking["overdue_amount_base"], outcome, share, ids),
            "actionable_at_risk_base": float(ranking["actionable_at_risk_base"].sum()),
            "share_worklist_actionable": top_share(-ranking["rank"].astype(float), ranking["actionable_at_risk_base"],
                                                   share, ids),
            "share_overdue_actionable": top_share(ranking["overdue_amount_base"], ranking["actionable_at_risk_base"],
                                                  share, ids),
        })
    return pd.DataFrame(rows)
