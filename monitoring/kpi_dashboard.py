"""The KPI dashboard (issue 9): collections KPIs over time as one self-contained HTML page, an .xlsx
workbook for people who live in Excel, and a JSON summary for machines.

Every number comes from `rules.kpis.kpi_report` and `rules.aging.aging_report`; this module only
selects, lays out and plots them. Plots are matplotlib PNGs inlined as base64, so the page opens
without a network. Each file is written to a temporary sibling and renamed into place, so a failed
write never leaves a half-written report where the previous one was.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from features import customer_features_at
from ledger import Ledger
from ledger.files import write_file_atomically
from rules.aging import COMPANY, TOTAL, UNAPPLIED, aging_report, bucket_labels, company_total
from rules.kpis import Freq, kpi_report
from rules.output import format_sheet

TOP = 10
CUSTOMERS_SHOWN = 25
KPIS = ["dso_simple", "dso_countback", "bpdso", "add", "cei", "share_over_90", "average_days_late",
        "promise_kept_rate", "dispute_rate"]
DETERIORATING_COLUMNS = ["period_end", "rank", "customer_id", "name", "deterioration_probability"]
PERCENT = {"share_over_90", "promise_kept_rate", "dispute_rate", "deterioration_probability"}
ONE_DECIMAL = {"dso_simple", "dso_countback", "bpdso", "add", "cei", "average_days_late",
               "average_days_late_first", "average_days_late_last", "change_days"}
COUNTS = {"days", "rank", "paid_invoices", "paid_invoices_first", "paid_invoices_last", "promises_kept",
          "promises_resolved", "disputes_opened", "invoices_issued"}
LABELS = {"dso_simple": "DSO simple", "dso_countback": "DSO countback", "bpdso": "BPDSO", "add": "ADD",
          "cei": "CEI", "share_over_90": "share >90 days past due", "average_days_late": "avg days late",
          "promise_kept_rate": "promise-kept rate", "dispute_rate": "dispute rate", "ar_open": "AR at start",
          "ar_close": "AR at end", "ar_current": "current AR", "credit_sales": "credit sales",
          "deterioration_probability": "P(deterioration)"}


# --- the tables -----------------------------------------------------------------------------------

def kpi_dashboard_data(ledger: Ledger, start: pd.Timestamp | str, end: pd.Timestamp | str, freq: Freq = "month",
                       deterioration: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The dashboard's tables: about, company, aging_mix, customers, deteriorating, rising_lateness."""
    report = kpi_report(ledger, pd.Timestamp(start), pd.Timestamp(end), freq)
    company = company_kpis(report)
    first, last = company["period_start"].iloc[0], company["period_end"].iloc[-1]
    return {
        "about": about_table(ledger, first, last, freq, len(company)),
        "company": company,
        "aging_mix": aging_mix(ledger, company[["period", "period_end"]]),
        "customers": last_period_customers(report, ledger.customers),
        "deteriorating": top_deteriorating(deterioration, ledger.customers, first, last),
        "rising_lateness": rising_lateness(report, ledger.customers),
    }


def about_table(ledger: Ledger, first: pd.Timestamp, last: pd.Timestamp, freq: str, periods: int) -> pd.DataFrame:
    """What the dashboard was built from, as item/value rows: ledger fingerprint and source, range, frequency."""
    items = {
        "ledger_fingerprint": ledger.fingerprint(),
        "ledger_source": ledger.source or "(unnamed)",
        "base_currency": ledger.base_currency,
        "from": f"{first:%Y-%m-%d}",
        "to": f"{last:%Y-%m-%d}",
        "freq": freq,
        "periods": periods,
    }
    return pd.DataFrame({"item": list(items), "value": list(items.values())})


def company_kpis(report: pd.DataFrame) -> pd.DataFrame:
    """The company rows of a `kpi_report`, one per period."""
    company = report[report["customer_id"] == COMPANY]
    return company.drop(columns="customer_id").reset_index(drop=True)


def company_aging(ledger: Ledger, as_of: pd.Timestamp) -> pd.Series:
    """Company-wide open amount per aging bucket, unapplied cash and total at `as_of`, in base currency."""
    columns = [*bucket_labels(), UNAPPLIED, TOTAL]
    total = company_total(aging_report(ledger, as_of))
    if total.empty:  # nothing open at that date
        return pd.Series(0.0, index=columns)
    return total.iloc[0][columns].astype(float)


def aging_mix(ledger: Ledger, periods: pd.DataFrame) -> pd.DataFrame:
    """Per period end: company AR per aging bucket, unapplied cash, total, and each bucket's share."""
    buckets = bucket_labels()
    amounts = pd.DataFrame([company_aging(ledger, as_of) for as_of in periods["period_end"]]).reset_index(drop=True)
    # Shares are of the open documents: unapplied cash is negative and would make a stacked mix meaningless.
    documents = amounts[buckets].sum(axis=1)
    shares = amounts[buckets].div(documents.where(documents > 0), axis=0).add_prefix("share_")
    return pd.concat([periods.reset_index(drop=True), amounts, shares], axis=1)


def last_period_customers(report: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """Per-customer KPIs of the report's last period, named, largest closing AR first."""
    last = report[(report["period"] == report["period"].iloc[-1]) & (report["customer_id"] != COMPANY)]
    named = last.assign(name=last["customer_id"].map(customers.set_index("customer_id")["name"]))
    columns = ["customer_id", "name", *(column for column in report.columns if column != "customer_id")]
    return named.sort_values(["ar_close", "customer_id"], ascending=[False, True])[columns].reset_index(drop=True)


def top_deteriorating(deterioration: pd.DataFrame | None, customers: pd.DataFrame, first: pd.Timestamp,
                      last: pd.Timestamp, top: int = TOP) -> pd.DataFrame:
    """Per period end between `first` and `last`, the `top` customers by deterioration probability."""
    if deterioration is None:
        return pd.DataFrame(columns=DETERIORATING_COLUMNS)
    missing = [column for column in ("period_end", "customer_id", "deterioration_probability")
               if column not in deterioration.columns]
    if missing:
        raise ValueError(f"the deterioration frame needs columns period_end, customer_id, deterioration_probability "
                         f"(and optionally name); missing: {', '.join(missing)}")
    frame = deterioration.assign(period_end=pd.to_datetime(deterioration["period_end"]).dt.normalize())
    if "name" not in frame.columns:
        frame = frame.assign(name=frame["customer_id"].map(customers.set_index("customer_id")["name"]))
    frame = frame[frame["period_end"].between(first, last)].dropna(subset=["deterioration_probability"])
    # Ties go to the lower customer id, so the table is the same on every run.
    ranked = frame.sort_values(["period_end", "deterioration_probability", "customer_id"],
                               ascending=[True, False, True]).groupby("period_end").head(top)
    ranked = ranked.assign(rank=ranked.groupby("period_end").cumcount() + 1)
    return ranked[DETERIORATING_COLUMNS].reset_index(drop=True)


def rising_lateness(report: pd.DataFrame, customers: pd.DataFrame, top: int = TOP) -> pd.DataFrame:
    """Rule-based fallback: the customers whose average days late rose most from the first to the last period."""
    first, last = report["period"].iloc[0], report["period"].iloc[-1]
    rows = report[report["customer_id"] != COMPANY].set_index("customer_id")
    lateness = ["average_days_late", "paid_invoices"]
    both = rows.loc[rows["period"] == first, lateness].join(
        rows.loc[rows["period"] == last, lateness], lsuffix="_first", rsuffix="_last", how="inner").dropna()
    both = both.assign(change_days=both["average_days_late_last"] - both["average_days_late_first"])
    rising = both[both["change_days"] > 0].reset_index()
    rising = rising.sort_values(["change_days", "customer_id"], ascending=[False, True]).head(top)
    rising.insert(1, "name", rising["customer_id"].map(customers.set_index("customer_id")["name"]))
    rising.insert(2, "first_period", first)
    rising.insert(3, "last_period", last)
    return rising.reset_index(drop=True)[
        ["customer_id", "name", "first_period", "last_period", "average_days_late_first", "average_days_late_last",
         "change_days", "paid_invoices_first", "paid_invoices_last"]]


def kpi_summary(data: Mapping[str, pd.DataFrame]) -> dict:
    """For machines: what the dashboard covers, the latest period's company KPIs and their change since the first."""
    company = data["company"]
    first, latest = company.iloc[0], company.iloc[-1]
    return {
        **dict(zip(data["about"]["item"], data["about"]["value"], strict=True)),
        "first_period": first["period"],
        "latest_period": latest["period"],
        "latest": {kpi: json_number(latest[kpi]) for kpi in KPIS},
        "change_from_first": {kpi: json_number(latest[kpi] - first[kpi]) for kpi in KPIS},
    }


def json_number(value: float) -> float | None:
    """A float for JSON, None when missing (JSON has no NaN)."""
    return None if pd.isna(value) else float(value)


# --- the HTML page --------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #f3f3f3; }
td.text { text-align: left; }
img { max-width: 100%; }
.note { color: #555; font-size: 0.9em; }
"""


def kpi_dashboard_html(data: Mapping[str, pd.DataFrame], title: str = "ar-risk KPI dashboard") -> str:
    """One self-contained HTML page: a header, each plot with its numbers beneath, then the customer tables."""
    about = dict(zip(data["about"]["item"], data["about"]["value"], strict=True))
    company, mix = data["company"], data["aging_mix"]
    buckets = bucket_labels()
    sections = [
        section("Days sales outstanding", kpi_plot(company, ["dso_simple", "dso_countback", "bpdso"], "days"),
                table_html(company, ["period", "period_end", "days", "dso_simple", "dso_countback", "bpdso",
                                     "ar_close", "ar_current", "credit_sales"]),
                "DSO simple = AR at end / credit sales x days; countback = days of the latest sales that add up "
                "to AR at end; BPDSO = current (not yet due) AR / credit sales x days."),
        section("Average days delinquent (ADD)", kpi_plot(company, ["add"], "days", bars=True),
                table_html(company, ["period", "dso_simple", "bpdso", "add"]), "ADD = DSO simple - BPDSO."),
        section("Collection effectiveness index (CEI)", kpi_plot(company, ["cei"], "%"),
                table_html(company, ["period", "cei", "ar_open", "credit_sales", "ar_close", "ar_current"]),
                "CEI = (AR at start + credit sales - AR at end) / (AR at start + credit sales - current AR) x 100."),
        section("Aging mix", aging_mix_plot(mix),
                table_html(mix, ["period", "period_end", *(f"share_{bucket}" for bucket in buckets)])
                + table_html(mix, ["period", "period_end", *buckets, UNAPPLIED, TOTAL]),
                f"Share of open documents per bucket (days past due) at each period end; amounts in "
                f"{about['base_currency']}, unapplied cash negative, total as the aging report."),
        section("Promises and disputes", kpi_plot(company, ["promise_kept_rate", "dispute_rate"], "rate",
                                                  percent=True),
                table_html(company, ["period", "promise_kept_rate", "promises_kept", "promises_resolved",
                                     "dispute_rate", "disputes_opened", "invoices_issued", "share_over_90",
                                     "average_days_late"]),
                "Promise-kept rate = kept / (kept + broken) of promises due in the period; dispute rate = disputes "
                "opened / invoices issued in the period."),
        customers_section(data["customers"]),
        deteriorating_section(data["deteriorating"]),
        rising_lateness_section(data["rising_lateness"]),
    ]
    header = (f"Ledger {about['ledger_fingerprint']} from {about['ledger_source']}; periods {about['from']} to "
              f"{about['to']} by {about['freq']} ({about['periods']} periods); money in {about['base_currency']}. "
              f"A '-' is a ratio whose denominator is zero.")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
            f'<p class="note">{html.escape(header)}</p>\n{"".join(sections)}</body></html>\n')


def section(heading: str, image: str | None, tables: str, note: str = "") -> str:
    """One titled part of the page: a note, a plot (base64 PNG) and the tables of its numbers."""
    plot = f'<img alt="{html.escape(heading)}" src="data:image/png;base64,{image}">\n' if image else ""
    return (f"<h2>{html.escape(heading)}</h2>\n" + (f'<p class="note">{html.escape(note)}</p>\n' if note else "")
            + plot + tables + "\n")


def customers_section(customers: pd.DataFrame) -> str:
    """The largest accounts of the last period with their KPIs (all of them are in the workbook)."""
    period = customers["period"].iloc[0] if len(customers) else ""
    note = (f"Period {period}: the {min(CUSTOMERS_SHOWN, len(customers))} customers with the most AR at the end of "
            f"the period, of {len(customers)} active; every customer is in kpis.xlsx.")
    columns = ["customer_id", "name", "ar_close", "credit_sales", "dso_simple", "dso_countback", "cei",
               "share_over_90", "average_days_late", "promise_kept_rate", "dispute_rate"]
    return section("Customers in the last period", None, table_html(customers.head(CUSTOMERS_SHOWN), columns), note)


def deteriorating_section(deteriorating: pd.DataFrame) -> str:
    """The latest top deteriorating customers and their rank in earlier periods, or a line saying there are none."""
    heading = "Top deteriorating customers"
    if deteriorating.empty:
        return section(heading, None, "", "Not available: no deterioration scores were given for this range.")
    latest = deteriorating[deteriorating["period_end"] == deteriorating["period_end"].max()]
    note = (f"The {TOP} customers with the highest model probability of deterioration at each period end; "
            f"below, the rank of each in every period (blank when outside the top {TOP}).")
    return section(heading, None, table_html(latest, DETERIORATING_COLUMNS) + table_html(rank_history(deteriorating)),
                   note)


def rank_history(deteriorating: pd.DataFrame) -> pd.DataFrame:
    """Per customer ever in a top list: their rank at each period end, latest best first."""
    ranks = deteriorating.pivot_table(index=["customer_id", "name"], columns="period_end", values="rank",
                                      aggfunc="first")
    ranks = ranks.sort_values(list(ranks.columns[::-1]), na_position="last")
    ranks.columns = [f"{period_end:%Y-%m-%d}" for period_end in ranks.columns]
    ranks = ranks.map(lambda rank: "" if pd.isna(rank) else f"{rank:.0f}")
    return ranks.reset_index()


def rising_lateness_section(rising: pd.DataFrame) -> str:
    """The rule-based fallback table, labelled as such."""
    note = ("Rule-based, no model: customers whose average days late (invoices paid in full in the period) rose the "
            "most between the first and the last period; customers without paid invoices in both are left out.")
    table = table_html(rising) if len(rising) else '<p class="note">No customer paid later in the last period.</p>'
    return section("Rising lateness (rule-based fallback)", None, table, note)


def table_html(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    """An HTML table of `frame` (or of the named columns), every cell formatted by `cell_text` and escaped."""
    columns = list(frame.columns) if columns is None else columns
    head = "".join(f"<th>{html.escape(LABELS.get(column, str(column)))}</th>" for column in columns)
    body = "".join(
        "<tr>" + "".join(table_cell(column, value) for column, value in zip(columns, row, strict=True)) + "</tr>\n"
        for row in frame[columns].itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>\n"


def table_cell(column: str, value: object) -> str:
    """One escaped `<td>`, left-aligned when it holds text."""
    numeric = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    css = "" if numeric else ' class="text"'
    return f"<td{css}>{html.escape(cell_text(column, value))}</td>"


def cell_text(column: str, value: object) -> str:
    """How the dashboard prints a value: days with one decimal, rates in percent, counts whole, money with two."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "-"
    if isinstance(value, pd.Timestamp):
        return f"{value:%Y-%m-%d}"
    if isinstance(value, str) or not isinstance(value, int | float | np.number):
        return str(value)
    if column in PERCENT or column.startswith("share_"):
        return f"{value:.1%}"
    if column in ONE_DECIMAL:
        return f"{value:,.1f}"
    if column in COUNTS:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


# --- the plots ------------------------------------------------------------------------------------

def kpi_plot(company: pd.DataFrame, kpis: list[str], ylabel: str, percent: bool = False, bars: bool = False) -> str:
    """Company KPIs over the periods, as lines (or bars), as a base64 PNG."""
    figure, axes = new_figure()
    positions = np.arange(len(company))
    for kpi in kpis:
        values = company[kpi].astype(float).to_numpy()
        if bars:
            axes.bar(positions, np.nan_to_num(values), color="#4472c4", label=LABELS.get(kpi, kpi))
        else:
            axes.plot(positions, values, marker="o", label=LABELS.get(kpi, kpi))
    if percent:
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_ylabel(ylabel)
    axes.legend(fontsize=8)
    return png_base64(figure, axes, company["period"].tolist())


def aging_mix_plot(mix: pd.DataFrame) -> str:
    """Share of open documents per aging bucket at each period end, stacked, as a base64 PNG."""
    figure, axes = new_figure()
    buckets = bucket_labels()
    positions = np.arange(len(mix))
    bottom = np.zeros(len(mix))
    colours = matplotlib.colormaps["RdYlGn_r"](np.linspace(0.05, 0.95, len(buckets)))
    for bucket, colour in zip(buckets, colours, strict=True):
        share = mix[f"share_{bucket}"].astype(float).fillna(0.0).to_numpy()
        axes.bar(positions, share, bottom=bottom, color=colour, label=bucket)
        bottom = bottom + share
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_ylabel("share of open documents")
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return png_base64(figure, axes, mix["period"].tolist())


def new_figure() -> tuple[Figure, Axes]:
    """A figure and its axes; `Figure` needs no pyplot, so nothing global is left open."""
    figure = Figure(figsize=(8.0, 3.6), dpi=90, layout="tight")
    return figure, figure.subplots()


def png_base64(figure: Figure, axes: Axes, periods: list[str]) -> str:
    """Label the x axis with the periods (thinned when many) and return the figure as a base64 PNG."""
    step = max(1, math.ceil(len(periods) / 18))
    positions = np.arange(0, len(periods), step)
    axes.set_xticks(positions, [periods[position] for position in positions], rotation=45, ha="right")
    axes.grid(axis="y", color="#ddd")
    buffer = io.BytesIO()
    # No metadata: the page holds nothing but our numbers (matplotlib would stamp its URL in).
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# --- the files ------------------------------------------------------------------------------------

def kpi_dashboard_xlsx(data: Mapping[str, pd.DataFrame], path: str | Path) -> Path:
    """Write one sheet per table (bold header, frozen top row) to `path`, atomically; return the path."""
    return write_atomically(Path(path), lambda staging: write_sheets(data, staging))


def write_sheets(data: Mapping[str, pd.DataFrame], path: Path) -> None:
    """Write each table to its own sheet of a new workbook at `path`."""
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, frame in data.items():
            frame.to_excel(writer, index=False, sheet_name=name)
            format_sheet(writer.sheets[name])


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Let `write` fill a temporary sibling of `path`, then rename it into place; on failure nothing changes."""
    return write_file_atomically(path, write)


def write_kpi_dashboard(ledger: Ledger, start: pd.Timestamp | str, end: pd.Timestamp | str, out_dir: str | Path,
                        freq: Freq = "month", deterioration: pd.DataFrame | None = None) -> tuple[Path, Path]:
    """Write kpis.html, kpis.xlsx and kpis.json into `out_dir`; return the HTML and workbook paths."""
    out_dir = Path(out_dir)
    # Everything is computed before the first file is touched, so bad input leaves the folder as it was.
    data = kpi_dashboard_data(ledger, start, end, freq, deterioration)
    page = kpi_dashboard_html(data)
    summary = json.dumps(kpi_summary(data), indent=2, allow_nan=False)
    workbook = kpi_dashboard_xlsx(data, out_dir / "kpis.xlsx")
    report = write_atomically(out_dir / "kpis.html", lambda staging: staging.write_text(page, encoding="utf-8"))
    write_atomically(out_dir / "kpis.json", lambda staging: staging.write_text(summary + "\n", encoding="utf-8"))
    return report, workbook


def deterioration_by_period(ledger: Ledger, model, period_ends: pd.Series) -> pd.DataFrame | None:
    """P(deteriorate) of every known customer at each period end, from the customer features then (None when
    no period end falls on or after the first invoice). `model` is the deterioration champion."""
    frames = []
    for period_end in period_ends:
        if period_end < ledger.invoices["invoice_date"].min():
            continue
        customers = customer_features_at(ledger, period_end)
        frames.append(pd.DataFrame({"period_end": period_end, "customer_id": customers["customer_id"],
                                    "deterioration_probability": model.predict_proba(customers)[:, 1]}))
    return pd.concat(frames, ignore_index=True) if frames else None
