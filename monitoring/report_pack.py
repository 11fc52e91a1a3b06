"""The finance report pack (issue 22): what finance reads after the daily run, as one workbook and one HTML
e-mail: the aging summary, the KPIs of the last months with their trend, the worklist by collector, open
disputes and deductions, the 13-week cash forecast and the unapplied cash.

Every number comes from the rules that compute it elsewhere (`rules.aging`, `rules.kpis`, the day's worklist
and forecast, the activity store's deductions, `cash_application.unapplied`); this module selects and lays
them out. `pack_due` says whether a schedule (daily, weekly on a weekday, monthly at month end) sends it on a
date."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from cash_application.unapplied import unapplied_cash
from features.asof import known_at
from features.collections import open_disputes
from ledger import Ledger
from ledger.errors import BadInput
from ledger.files import write_file_atomically
from rules.aging import COMPANY, TOTAL, aging_report, bucket_labels
from rules.kpis import kpi_report

KPI_MONTHS = 6
KPI_COLUMNS = ["period", "dso_countback", "dso_simple", "bpdso", "add", "cei", "share_over_90", "ar_close",
               "unapplied_share"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SHEETS = ("summary", "aging", "kpis", "worklist by collector", "disputes", "deductions", "forecast", "unapplied cash")


def pack_due(schedule: str, day: pd.Timestamp) -> bool:
    """Whether the pack goes out on `day` under `schedule`: `daily`, `weekly:mon` (..`sun`) or `monthly` (the
    last day of the month); a schedule it cannot read is a `BadInput` naming it."""
    day = pd.Timestamp(day).normalize()
    kind, _, weekday = schedule.strip().lower().partition(":")
    if kind == "daily" and not weekday:
        return True
    if kind == "weekly" and weekday in WEEKDAYS:
        return day.weekday() == WEEKDAYS.index(weekday)
    if kind == "monthly" and not weekday:
        return day == day + pd.offsets.MonthEnd(0)
    raise BadInput(f"ARRISK_PACK_SCHEDULE: {schedule!r} is not daily, weekly:mon..sun or monthly")


def aging_summary(ledger: Ledger, as_of: pd.Timestamp, top: int = 10) -> pd.DataFrame:
    """The company's aging by bucket (base currency), then the `top` customers by total open."""
    report = aging_report(ledger, as_of)
    money = [*bucket_labels(), TOTAL]
    company = report[money].sum().to_frame().T.assign(customer_id=COMPANY, name="")
    largest = report.sort_values(TOTAL, ascending=False).head(top)
    return pd.concat([company, largest], ignore_index=True)[["customer_id", "name", *[c for c in money if c in report]]]


def kpi_trend(ledger: Ledger, as_of: pd.Timestamp, months: int = KPI_MONTHS) -> pd.DataFrame:
    """The company's KPIs for each of the last `months` months up to `as_of`, with the change on the month."""
    start = (pd.Timestamp(as_of).normalize() - pd.offsets.MonthBegin(months)).normalize()
    report = kpi_report(ledger, start, pd.Timestamp(as_of).normalize())
    company = report[report["customer_id"] == COMPANY]
    table = company[[column for column in KPI_COLUMNS if column in company]].reset_index(drop=True)
    for column in ("dso_countback", "cei"):
        if column in table:
            table[f"{column}_change"] = table[column].diff()
    return table


def worklist_by_collector(worklist: pd.DataFrame) -> pd.DataFrame:
    """Per collector: customers on the list, how many are escalated or held, overdue and money at risk."""
    if worklist.empty:
        return pd.DataFrame(columns=["collector", "customers", "escalated", "held", "overdue_amount_base",
                                     "money_at_risk_base"])
    rows = worklist.assign(collector=worklist["collector"].fillna("(none)"),
                           escalated=worklist["status"] == "escalated", held=worklist["status"] == "held")
    return rows.groupby("collector", as_index=False).agg(
        customers=("customer_id", "size"), escalated=("escalated", "sum"), held=("held", "sum"),
        overdue_amount_base=("overdue_amount_base", "sum"), money_at_risk_base=("money_at_risk_base", "sum"),
    ).sort_values("money_at_risk_base", ascending=False, ignore_index=True)


def open_dispute_summary(ledger: Ledger, as_of: pd.Timestamp) -> pd.DataFrame:
    """Disputes open at `as_of` (the ledger's and the recorded ones; deductions are their own sheet) by reason."""
    disputes = open_disputes(known_at(ledger, as_of).disputes)
    disputes = disputes[~disputes["reason"].astype(str).str.startswith("deduction")]
    return disputes.groupby("reason", as_index=False).agg(disputes=("dispute_id", "size"), amount=("amount", "sum"))


def deduction_summary(deductions: pd.DataFrame) -> pd.DataFrame:
    """The recorded deductions by status and reason code: count and amount."""
    if deductions.empty:
        return pd.DataFrame(columns=["status", "reason_code", "deductions", "amount"])
    return deductions.assign(amount=pd.to_numeric(deductions["amount"])).groupby(
        ["status", "reason_code"], as_index=False).agg(deductions=("item_id", "size"), amount=("amount", "sum"))


def forecast_weeks(forecast: pd.DataFrame) -> pd.DataFrame:
    """The weekly forecast in base currency (the converted all-currency view): expected and its 10-90% band."""
    if forecast.empty:
        return forecast
    rows = forecast[forecast["converted"].astype(bool)] if "converted" in forecast else forecast
    if "freq" in rows:
        rows = rows[rows["freq"] == "week"]
    return rows[[c for c in ("period", "period_start", "period_end", "expected", "p10", "p90") if c in rows]] \
        .reset_index(drop=True)


def unapplied_summary(ledger: Ledger, as_of: pd.Timestamp) -> pd.DataFrame:
    """Unapplied cash by age bucket (base currency)."""
    table = unapplied_cash(ledger, as_of)
    return table.groupby("age_bucket", as_index=False, observed=True).agg(
        payments=("payment_id", "size"), amount_base=("unapplied_amount_base", "sum"))


def report_pack(ledger: Ledger, as_of: pd.Timestamp, worklist: pd.DataFrame, forecast: pd.DataFrame,
                deductions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The pack's sheets as of `as_of`: `ledger` with the recorded activity, the day's `worklist` and
    `forecast`, and the store's deduction records."""
    as_of = pd.Timestamp(as_of).normalize()
    sheets = {
        "aging": aging_summary(ledger, as_of),
        "kpis": kpi_trend(ledger, as_of),
        "worklist by collector": worklist_by_collector(worklist),
        "disputes": open_dispute_summary(ledger, as_of),
        "deductions": deduction_summary(deductions),
        "forecast": forecast_weeks(forecast),
        "unapplied cash": unapplied_summary(ledger, as_of),
    }
    return {"summary": headline(as_of, sheets), **sheets}


def headline(as_of: pd.Timestamp, sheets: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The pack's first lines: what finance reads before the sheets."""
    aging, kpis, forecast = sheets["aging"], sheets["kpis"], sheets["forecast"]
    last = kpis.iloc[-1] if len(kpis) else pd.Series(dtype=object)
    lines = [("as of", f"{as_of:%Y-%m-%d}"),
             ("open receivables (base)", money(aging[TOTAL].iloc[0] if len(aging) else 0.0)),
             ("DSO, count-back days (last month)", number(last.get("dso_countback"))),
             ("CEI % (last month)", number(last.get("cei"))),
             ("customers on the worklist", f"{int(sheets['worklist by collector']['customers'].sum()):,}"),
             ("expected receipts, next 13 weeks (base)", money(forecast["expected"].sum() if len(forecast) else 0.0)),
             ("unapplied cash (base)", money(sheets["unapplied cash"]["amount_base"].sum()))]
    return pd.DataFrame(lines, columns=["item", "value"])


def money(value) -> str:
    return f"{float(value):,.2f}"


def number(value) -> str:
    return "" if value is None or pd.isna(value) else f"{float(value):,.1f}"


def write_pack_xlsx(sheets: dict[str, pd.DataFrame], path: Path) -> Path:
    """The pack as one workbook, a sheet per part, written whole or not at all."""
    def write(target: Path) -> None:
        with pd.ExcelWriter(target, engine="openpyxl") as writer:
            for name in SHEETS:
                sheets[name].to_excel(writer, sheet_name=name, index=False)

    return write_file_atomically(path, write)


def pack_html(sheets: dict[str, pd.DataFrame], as_of: pd.Timestamp, title: str = "AR report pack") -> str:
    """The pack as one self-contained HTML e-mail body (tables only, no scripts, no remote content)."""
    parts = [f"<h1>{html.escape(title)} - {pd.Timestamp(as_of):%Y-%m-%d}</h1>"]
    for name in SHEETS:
        table = sheets[name]
        parts.append(f"<h2>{html.escape(name.capitalize())}</h2>")
        parts.append(table.to_html(index=False, float_format=lambda value: f"{value:,.2f}", na_rep="",
                                   border=0, classes="pack") if len(table) else "<p>none</p>")
    style = ("<style>body{font-family:sans-serif} table.pack{border-collapse:collapse}"
             "table.pack td,table.pack th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}</style>")
    return f"<!doctype html><html><head><meta charset=\"utf-8\">{style}</head><body>{''.join(parts)}</body></html>"
