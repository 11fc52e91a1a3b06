"""Collections KPIs per period, company-wide and per customer, as DESIGN.md §5 defines them.

All money is in company currency. AR at a date is the aging total at that date: open invoices and
credit memos less unapplied cash (`rules.aging`); current AR is the open documents not yet past due
(age <= 0 by due date); AR over 90 is the open documents more than 90 days past due. Opening AR of a
period is AR at the day before it starts. Credit sales are the invoices and credit memos issued in
the period (net credit sales). Days in a period are calendar days, both ends included; the first and
last period are cut at `start` and `end`.

- DSO simple = closing AR / credit sales x days.
- DSO countback = calendar days, counted back from the period end, of the most recent daily credit
  sales needed to add up to closing AR (the last day counted in part); missing when the whole history
  of sales does not reach it.
- BPDSO = current AR / credit sales x days; ADD = DSO simple - BPDSO.
- CEI = (opening AR + credit sales - closing AR) / (opening AR + credit sales - current AR) x 100.
- Share over 90 = AR over 90 days past due / closing AR.
- Average days late = mean of (paid date - due date) over the invoices paid in full in the period.
- Promise-kept rate = kept / (kept + broken) among promises whose promised date falls in the period,
  judged at the period end (`features.collections`).
- Dispute rate = disputes opened in the period / invoices issued in the period.
- Unapplied cash = cash received and not applied at the period end (a payer not identified yet counts under
  `(unidentified payer)`), and the part of it received more than 30 days before; unapplied share = unapplied
  cash / (closing AR + unapplied cash), the share of the gross receivables it hides.
A ratio with a zero or negative denominator is missing, not infinite.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from features.asof import known_at
from features.collections import BROKEN, KEPT, promise_status
from features.settlement import DAY, document_state
from ledger import Ledger
from rules.aging import COMPANY, MONEY_TOLERANCE, aging_detail

Freq = Literal["month", "quarter"]
PANDAS_FREQ = {"month": "M", "quarter": "Q"}
OVER_DAYS = 90
UNAPPLIED_OLD_DAYS = 30
ADDITIVE = ["ar_open", "credit_sales", "ar_close", "ar_current", "ar_over_90", "days_late_sum", "paid_invoices",
            "promises_kept", "promises_resolved", "disputes_opened", "invoices_issued", "unapplied_close",
            "unapplied_over_30"]


def kpi_periods(start: pd.Timestamp, end: pd.Timestamp, freq: Freq = "month") -> pd.DataFrame:
    """The calendar periods between `start` and `end` (both included), cut at both ends."""
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    if freq not in PANDAS_FREQ:
        raise ValueError(f"freq must be 'month' or 'quarter', got {freq!r}")
    if end < start:
        raise ValueError(f"the period end {end:%Y-%m-%d} is before its start {start:%Y-%m-%d}")
    periods = pd.period_range(start, end, freq=PANDAS_FREQ[freq])
    first = pd.Series(periods.start_time.normalize()).clip(lower=start)
    last = pd.Series(periods.end_time.normalize()).clip(upper=end)
    return pd.DataFrame({"period": periods.astype(str), "period_start": first, "period_end": last,
                         "days": (last - first).dt.days + 1})


def ar_balances(ledger: Ledger, as_of: pd.Timestamp, tolerance: float = MONEY_TOLERANCE) -> pd.DataFrame:
    """Per customer at `as_of`: total AR (net of unapplied cash), current AR, AR over 90 days past due, and the
    unapplied cash itself (positive) and the part of it received more than 30 days before."""
    detail = aging_detail(ledger, as_of, basis="due_date", currency="base", tolerance=tolerance)
    document = detail["item_type"] != "payment"
    amount = detail["open_amount"]
    return pd.DataFrame({
        "ar": amount,
        "ar_current": amount.where(document & (detail["age_days"] <= 0), 0.0),
        "ar_over_90": amount.where(document & (detail["age_days"] > OVER_DAYS), 0.0),
        "unapplied": (-amount).where(~document, 0.0),
        "unapplied_over_30": (-amount).where(~document & (detail["age_days"] > UNAPPLIED_OLD_DAYS), 0.0),
    }).groupby(detail["customer_id"]).sum()


def period_components(ledger: Ledger, start: pd.Timestamp, end: pd.Timestamp,
                      tolerance: float = MONEY_TOLERANCE) -> pd.DataFrame:
    """Per customer, the additive parts of every KPI for the period from `start` to `end`."""
    opening = ar_balances(ledger, start - DAY, tolerance)["ar"].rename("ar_open")
    closing = ar_balances(ledger, end, tolerance).rename(columns={"ar": "ar_close", "unapplied": "unapplied_close"})
    known = known_at(ledger, end)
    invoices = known.invoices
    issued = invoices[invoices["invoice_date"] >= start]
    state = document_state(known, end, tolerance)
    paid = state[state["is_invoice"] & (state["paid_date"] >= start)]
    promises = known.promises.assign(status=promise_status(
        known.promises, known.payment_applications, known.payments, known.writeoffs, end, tolerance))
    due = promises[promises["promised_date"].between(start, end)]
    disputes = known.disputes[known.disputes["opened_date"] >= start]
    dispute_customer = disputes["invoice_id"].map(invoices.set_index("invoice_id")["customer_id"])
    parts = pd.concat([
        opening,
        issued.groupby("customer_id")["amount_base"].sum().rename("credit_sales"),
        closing,
        paid.groupby("customer_id")["days_late"].agg(days_late_sum="sum", paid_invoices="size"),
        due.groupby("customer_id")["status"].agg(
            promises_kept=lambda status: (status == KEPT).sum(),
            promises_resolved=lambda status: status.isin([KEPT, BROKEN]).sum()),
        disputes.groupby(dispute_customer).size().rename("disputes_opened"),
        issued[issued["doc_type"] == "invoice"].groupby("customer_id").size().rename("invoices_issued"),
    ], axis=1)
    parts = parts.reindex(columns=ADDITIVE).astype(float).fillna(0.0)
    parts.index.name = "customer_id"
    return parts[(parts.abs() > tolerance).any(axis=1)].sort_index()


def daily_credit_sales(ledger: Ledger, end: pd.Timestamp) -> pd.DataFrame:
    """Credit sales per customer (rows) and calendar day (columns) up to `end`, zero on days without."""
    invoices = ledger.invoices[ledger.invoices["invoice_date"] <= end]
    if invoices.empty:
        return pd.DataFrame(index=pd.Index([], name="customer_id"), columns=pd.DatetimeIndex([end]), dtype=float)
    sales = invoices.pivot_table(index="customer_id", columns="invoice_date", values="amount_base",
                                 aggfunc="sum", fill_value=0.0)
    days = pd.date_range(invoices["invoice_date"].min(), end, freq="D")
    return sales.reindex(columns=days, fill_value=0.0)


def countback_days(ar: np.ndarray, daily_sales: np.ndarray) -> np.ndarray:
    """Per row: days of the most recent sales (last column is the period end) that add up to `ar`."""
    ar = np.asarray(ar, dtype=float)
    if daily_sales.shape[1] == 0:
        return np.where(ar <= 0, 0.0, np.nan)
    recent_first = daily_sales[:, ::-1]
    cumulative = recent_first.cumsum(axis=1)
    reached = cumulative >= ar[:, None]
    day = reached.argmax(axis=1)  # index of the first day whose sales complete the AR
    rows = np.arange(len(ar))
    before = np.where(day > 0, cumulative[rows, np.maximum(day - 1, 0)], 0.0)
    # That day's sales are positive: the running sum crossed the AR on it.
    with np.errstate(divide="ignore", invalid="ignore"):
        days = day + (ar - before) / recent_first[rows, day]
    return np.where(ar <= 0, 0.0, np.where(reached.any(axis=1), days, np.nan))


def kpi_ratios(parts: pd.DataFrame) -> pd.DataFrame:
    """The KPI ratios from additive parts and `days` (DSO countback is added separately)."""
    def ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
        return numerator / denominator.where(denominator > 0)

    dso = ratio(parts["ar_close"], parts["credit_sales"]) * parts["days"]
    bpdso = ratio(parts["ar_current"], parts["credit_sales"]) * parts["days"]
    collectible = parts["ar_open"] + parts["credit_sales"]
    return pd.DataFrame({
        "dso_simple": dso,
        "bpdso": bpdso,
        "add": dso - bpdso,
        "cei": ratio(collectible - parts["ar_close"], collectible - parts["ar_current"]) * 100,
        "share_over_90": ratio(parts["ar_over_90"], parts["ar_close"]),
        "average_days_late": ratio(parts["days_late_sum"], parts["paid_invoices"]),
        "promise_kept_rate": ratio(parts["promises_kept"], parts["promises_resolved"]),
        "dispute_rate": ratio(parts["disputes_opened"], parts["invoices_issued"]),
        "unapplied_share": ratio(parts["unapplied_close"], parts["ar_close"] + parts["unapplied_close"]),
    }, index=parts.index)


def kpi_report(ledger: Ledger, start: pd.Timestamp, end: pd.Timestamp, freq: Freq = "month",
               tolerance: float = MONEY_TOLERANCE) -> pd.DataFrame:
    """Per period: the company row (customer_id `(all customers)`) then one row per active customer."""
    periods = kpi_periods(start, end, freq)
    sales = daily_credit_sales(ledger, periods["period_end"].max())
    frames = []
    for period in periods.itertuples(index=False):  # a handful of periods; every step inside is vectorised
        customers = period_components(ledger, period.period_start, period.period_end, tolerance)
        company = customers.sum().to_frame(COMPANY).T
        parts = pd.concat([company, customers])
        parts.index.name = "customer_id"
        window = sales.loc[:, : period.period_end]
        # The company counts back over every customer's sales, not only this period's active ones.
        countback = countback_days(parts["ar_close"].to_numpy(), np.vstack([
            window.sum(axis=0).to_numpy()[None, :], window.reindex(customers.index, fill_value=0.0).to_numpy()]))
        parts = parts.assign(period=period.period, period_start=period.period_start,
                             period_end=period.period_end, days=period.days)
        ratios = kpi_ratios(parts).assign(dso_countback=countback)
        frames.append(pd.concat([parts, ratios], axis=1).reset_index())
    columns = ["period", "period_start", "period_end", "days", "customer_id", "dso_simple", "dso_countback",
               "bpdso", "add", "cei", "share_over_90", "average_days_late", "promise_kept_rate", "dispute_rate",
               "unapplied_share", *ADDITIVE]
    return pd.concat(frames, ignore_index=True)[columns]
