"""Model-based expected credit loss per customer: exposure x PD x LGD, in base currency.

- **Default** is the deterioration model's event: 90+ days past due on any item, or a write-off, within
  90 days (DESIGN.md §2). PD is the model's calibrated probability of it over that horizon, which covers
  the remaining life of receivables on terms of up to 90 days; a customer already 90+ days past due has
  defaulted (PD = 1).
- **LGD** is measured on the ledger: the customers that went into default at a month end of the look-back
  whose next `lgd_outcome_months` are known by `as_of`; LGD = what was written off of their documents in
  those months / their whole exposure then (recoveries lower it). Fewer than `lgd_min_observations` such
  customers: the policy's `default_lgd`.
- **Exposure** is the customer's open receivables (credit memos netted, never below zero).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ledger import Ledger
from provision.policy import ProvisionPolicy
from provision.roll_rates import month_ends, open_balances

DEFAULT_DAYS = 90


def loss_given_default(ledger: Ledger, as_of: pd.Timestamp, policy: ProvisionPolicy) -> dict:
    """LGD from the ledger's recoveries as of `as_of`, with the observations behind it: the customers that
    went into default (a document 90+ days past due) at a month end of the look-back whose next
    `lgd_outcome_months` are known; LGD = what was written off of their documents open then, within those
    months / their whole exposure then (the exposure the model's ECL multiplies)."""
    as_of = pd.Timestamp(as_of).normalize()
    outcome = pd.DateOffset(months=policy.lgd_outcome_months)
    ends = [end for end in month_ends(as_of, policy.lookback_months + 1) if end + outcome <= as_of]
    rates = (ledger.invoices["amount_base"] / ledger.invoices["amount"].where(ledger.invoices["amount"] != 0)).fillna(0.0)
    rates = pd.Series(rates.to_numpy(), index=ledger.invoices["invoice_id"].to_numpy())
    balance = written = 0.0
    seen: set[str] = set()
    for end in ends:
        items = open_balances(ledger, end, policy.aging_limits)
        in_default = set(items.loc[items["days_past_due"] > DEFAULT_DAYS, "customer_id"]) - seen
        seen.update(in_default)  # each customer counts once, at its first month end in default
        theirs = items[items["customer_id"].isin(in_default)]
        exposure = theirs.groupby("customer_id")["open_amount_base"].sum().clip(lower=0).sum()
        later = ledger.writeoffs[(ledger.writeoffs["date"] > end) & (ledger.writeoffs["date"] <= end + outcome)
                                 & ledger.writeoffs["invoice_id"].isin(theirs["invoice_id"])]
        lost = (later["amount"].to_numpy() * rates.reindex(later["invoice_id"]).to_numpy()).sum()
        balance += exposure
        written += min(lost, exposure)
    observations = len(seen)
    measured = written / balance if balance > 0 else np.nan
    use = observations >= policy.lgd_min_observations and not np.isnan(measured)
    return {"lgd": float(measured) if use else policy.default_lgd,
            "measured_lgd": None if np.isnan(measured) else float(measured), "defaulted_customers": observations,
            "defaulted_exposure_base": float(balance), "written_off_base": float(written),
            "source": "ledger recoveries" if use else f"policy default_lgd (only {observations} defaulted customers)"}


def model_ecl(items: pd.DataFrame, probabilities: pd.Series, lgd: float) -> pd.DataFrame:
    """Per customer: exposure, PD (1 when already in default, else the model's; NaN without a score), LGD
    and ECL. `items`: the open documents (`provision.roll_rates.open_balances`); `probabilities`: the
    deterioration probability by customer_id."""
    table = items.groupby(["customer_id", "segment"], as_index=False).agg(
        exposure=("open_amount_base", "sum"), max_days_past_due=("days_past_due", "max"))
    table["exposure"] = table["exposure"].clip(lower=0.0)
    model_pd = table["customer_id"].map(probabilities).astype(float)
    defaulted = table["max_days_past_due"] > DEFAULT_DAYS
    table["pd"] = model_pd.where(~defaulted, 1.0)
    table["pd_basis"] = np.where(defaulted, "in default (90+ days past due)",
                                 np.where(model_pd.notna(), "deterioration model (90 days)", "no score"))
    table["lgd"] = lgd
    table["ecl"] = table["exposure"] * table["pd"] * lgd
    return table.sort_values("ecl", ascending=False, ignore_index=True)


def compared(matrix: pd.DataFrame, model: pd.DataFrame, items: pd.DataFrame, top: int = 20) -> pd.DataFrame:
    """Both methods customer by customer, the largest absolute differences first, each explained: what the
    matrix sees (its bucket mix) against what the model sees (its PD and LGD)."""
    both = matrix[["customer_id", "segment", "exposure", "ecl"]].rename(columns={"ecl": "matrix_ecl"}).merge(
        model[["customer_id", "pd", "pd_basis", "lgd", "ecl"]].rename(columns={"ecl": "model_ecl"}),
        on="customer_id", how="outer")
    both["difference"] = both["model_ecl"] - both["matrix_ecl"]
    mix = (items.assign(share=items["open_amount_base"]).groupby(["customer_id", "bucket"])["share"].sum()
           .reset_index())
    text = mix[mix["share"] > 0].groupby("customer_id").apply(
        lambda rows: ", ".join(f"{bucket} {share:,.0f}" for bucket, share in zip(rows["bucket"], rows["share"],
                                                                                   strict=True)),
        include_groups=False)
    implied = both["matrix_ecl"] / (both["exposure"] * both["lgd"]).where(lambda value: value > 0)
    both["explanation"] = [
        f"matrix: buckets {text.get(customer, 'none')} -> {matrix_ecl:,.0f}; model: PD {pd_:.0%} ({basis}) x LGD "
        f"{lgd:.0%} -> {model_ecl:,.0f}; the matrix implies PD {implied_:.0%}" if pd.notna(pd_) and pd.notna(implied_)
        else f"matrix: buckets {text.get(customer, 'none')} -> {matrix_ecl:,.0f}; model: {basis}"
        for customer, matrix_ecl, pd_, basis, lgd, model_ecl, implied_ in zip(
            both["customer_id"], both["matrix_ecl"].fillna(0), both["pd"], both["pd_basis"].fillna("no score"),
            both["lgd"].fillna(0), both["model_ecl"].fillna(0), implied, strict=True)]
    order = both["difference"].abs().fillna(0).sort_values(ascending=False).index
    return both.loc[order].head(top).reset_index(drop=True)
