"""Stage 3, rules and reports: `arrisk aging | dunning | kpis | score | worklist | forecast` and
`arrisk report drift | performance | kpis`."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from configs.settings import Settings
from ledger import Ledger, read_ledger
from serving.cli.common import (
    REPORTS,
    Engine,
    LedgerDir,
    OutFile,
    Scheduler,
    TrackingUri,
    about_option,
    app,
    bad_option,
    champions_from,
    checked_engine,
    checked_out,
    checked_out_folder,
    console,
    errors,
    parse_date,
    show_or_write,
)
from serving.cli.errors import reports_errors

KPI_FREQS = ("month", "quarter")


# The KPI period, shared by `arrisk kpis` and `arrisk report kpis`.
FirstDay = Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")]
LastDay = Annotated[str, typer.Option(help="Last day, YYYY-MM-DD.")]
KpiPeriod = Annotated[str, typer.Option(help="Period: month or quarter.")]

@app.command(rich_help_panel=REPORTS)
@reports_errors
def aging(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="Aging date, YYYY-MM-DD.")],
    basis: Annotated[str, typer.Option(help="Age from due_date or invoice_date.")] = "due_date",
    currency: Annotated[str, typer.Option(help="base (company currency) or document (per currency).")] = "base",
    limits: Annotated[str, typer.Option(help="Bucket limits in days, comma-separated.")] = "0,30,60,90,120",
    out: OutFile = None,
) -> None:
    """Open items per customer and aging bucket, with unapplied cash and a company total."""
    from rules.aging import aging_report, with_company_total

    cutoff = parse_date(as_of, "--as-of")
    bucket_limits = aging_limits(limits)
    if basis not in ("due_date", "invoice_date"):
        raise bad_option("--basis", f"expected due_date or invoice_date, got {basis!r}")
    if currency not in ("base", "document"):
        raise bad_option("--currency", f"expected base or document, got {currency!r}")
    ledger = read_ledger(ledger_dir)
    report = aging_report(ledger, cutoff, bucket_limits, basis=basis, currency=currency)  # type: ignore[arg-type]
    show_or_write(with_company_total(report), out, f"Aging as of {cutoff:%Y-%m-%d} by {basis}")


def aging_limits(limits: str) -> tuple[int, ...]:
    """The bucket limits of `--limits`: whole numbers, non-negative and strictly increasing."""
    try:
        bucket_limits = tuple(int(part) for part in limits.split(","))
    except ValueError:
        raise bad_option("--limits", f"expected whole numbers separated by commas, got {limits!r}") from None
    if bucket_limits[0] < 0 or any(high <= low for low, high in pairwise(bucket_limits)):
        raise bad_option("--limits", f"aging limits must be non-negative and strictly increasing, got "
                                     f"{list(bucket_limits)}", title="bad input")
    return bucket_limits


@app.command(rich_help_panel=REPORTS)
@reports_errors
def dunning(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="Dunning run date, YYYY-MM-DD.")],
    policy: Annotated[Path, typer.Option(help="Dunning policy YAML (configs/dunning/*.yaml).")],
    out: OutFile = None,
) -> None:
    """Dunning proposal: next level, fee, interest, channel and letter per overdue invoice; holds say why."""
    from rules.dunning import dunning_proposal, load_policy

    cutoff = parse_date(as_of, "--as-of")
    with about_option("--policy"):
        dunning_policy = load_policy(policy)
    ledger = with_recorded_activity(read_ledger(ledger_dir))
    with about_option("--policy"):
        proposal = dunning_proposal(ledger, cutoff, dunning_policy)
    # Letters are too long for a terminal table; they are in every written file.
    show_or_write(proposal if out is not None else proposal.drop(columns=["letter_text"]), out,
                  f"Dunning proposal as of {cutoff:%Y-%m-%d}")


@app.command(rich_help_panel=REPORTS)
@reports_errors
def kpis(
    ledger_dir: LedgerDir,
    from_: FirstDay,
    to: LastDay,
    freq: KpiPeriod = "month",
    out: OutFile = None,
) -> None:
    """DSO (simple, countback), BPDSO, ADD, CEI and collection KPIs per period, company and customers."""
    from rules.kpis import kpi_report

    start, end = kpi_range(from_, to, freq)
    ledger = read_ledger(ledger_dir)
    report = kpi_report(ledger, start, end, freq)  # type: ignore[arg-type]
    show_or_write(report, out, f"KPIs {start:%Y-%m-%d} to {end:%Y-%m-%d} by {freq}")


def kpi_range(from_: str, to: str, freq: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The dates of `--from` and `--to`, checked with `--freq` before any work."""
    start, end = parse_date(from_, "--from"), parse_date(to, "--to")
    if freq not in KPI_FREQS:
        raise bad_option("--from/--to/--freq", f"freq must be 'month' or 'quarter', got {freq!r}", title="bad input")
    if end < start:
        raise bad_option("--from/--to/--freq", f"the period end {end:%Y-%m-%d} is before its start "
                                               f"{start:%Y-%m-%d}", title="bad input")
    return start, end


@app.command(rich_help_panel=REPORTS)
@reports_errors
def score(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="Scoring date, YYYY-MM-DD: only what was known then is used.")],
    out: OutFile = None,
    tracking_uri: TrackingUri = None,
    runs_dir: RunsDir = None,
    engine: Engine = "pandas",
    scheduler: Scheduler = None,
) -> None:
    """Per open invoice: P(late), expected days late, pay date p10/p50/p90 and P(unpaid in 30 days).
    With `--engine dask`, one task per bucket of a partitioned ledger, written to the folder OUT."""
    from runs.scoring import SCORE_COLUMNS, score_table
    from runs.scoring import score as score_ledger

    cutoff = parse_date(as_of, "--as-of")
    if checked_engine(engine) == "dask":
        scores_on_cluster(ledger_dir, cutoff, out, tracking_uri, scheduler)
        return
    checked_out(out)
    state = served_run(runs_dir, cutoff, ledger_dir)
    if state is not None:
        table = state.score_invoices(cutoff, None)[SCORE_COLUMNS].sort_values("invoice_id", ignore_index=True)
        show_or_write(table, out, f"Scores as of {cutoff:%Y-%m-%d} (run)")
        return
    ledger = with_recorded_activity(read_ledger(ledger_dir))
    champions = champions_from(tracking_uri)
    scores = score_ledger(ledger, cutoff, champions)
    show_or_write(score_table(scores, champions), out, f"Scores as of {cutoff:%Y-%m-%d}")


@app.command(rich_help_panel=REPORTS)
@reports_errors
def worklist(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="Worklist date, YYYY-MM-DD.")],
    collector: Annotated[str | None, typer.Option(help="Only this collector's customers.")] = None,
    segment: Annotated[str | None, typer.Option(help="Only customers of this segment.")] = None,
    top: Annotated[int | None, typer.Option(min=1, help="Only the first N rows.")] = None,
    policy: Annotated[Path | None, typer.Option(help="Worklist policy YAML (default configs/worklist/default.yaml).")] = None,
    dunning_policy: Annotated[Path | None, typer.Option(help="Dunning policy YAML for the next action.")] = None,
    out: OutFile = None,
    tracking_uri: TrackingUri = None,
    runs_dir: RunsDir = None,
) -> None:
    """Customers to chase, ranked by money at risk with rule overrides, next action and reasons (from the
    run for the date when there is one and no other policy is asked for)."""
    from rules.dunning import load_policy
    from rules.worklist import DEFAULT_POLICY, load_worklist_policy
    from runs.scoring import build_worklist
    from serving.activity import recorded_portfolio, with_recorded_escalations

    checked_out(out)
    cutoff = parse_date(as_of, "--as-of")
    with about_option("--policy"):
        worklist_policy = load_worklist_policy(policy or DEFAULT_POLICY)
    with about_option("--dunning-policy"):
        dunning = load_policy(dunning_policy) if dunning_policy else None
    state = served_run(runs_dir, cutoff, ledger_dir) if policy is None and dunning_policy is None else None
    if state is not None:
        with about_option("--collector"):
            table = state.worklist(cutoff, collector=collector, segment=segment, top=top)
        show_or_write(table if out is not None else compact_worklist(table), out,
                      f"Worklist as of {cutoff:%Y-%m-%d} (run)")
        return
    ledger = with_recorded_activity(read_ledger(ledger_dir))
    with about_option("--collector"):
        table = build_worklist(ledger, cutoff, champions_from(tracking_uri), policy=worklist_policy,
                               dunning_policy=dunning, collector=collector, segment=segment, top=top,
                               portfolio=recorded_portfolio(collector))
    table = with_recorded_escalations(table)
    if out is None:
        table = compact_worklist(table)
    show_or_write(table, out, f"Worklist as of {cutoff:%Y-%m-%d}")


@app.command(rich_help_panel=REPORTS)
@reports_errors
def forecast(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="Forecast date, YYYY-MM-DD: receipts from the next day on.")],
    horizon_weeks: Annotated[int, typer.Option(min=1, max=26, help="Weeks ahead.")] = 13,
    freq: Annotated[str, typer.Option(help="Period: week or day.")] = "week",
    currency: Annotated[str | None, typer.Option(help="Only this currency's rows (the base total included "
                                                      "when it is the base currency).")] = None,
    draws: Annotated[int, typer.Option(min=100, max=100_000, help="Simulation draws for the intervals.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed of the simulation.")] = 0,
    out: OutFile = None,
    tracking_uri: TrackingUri = None,
    runs_dir: RunsDir = None,
) -> None:
    """Cash receipts per week or day with 10/50/90% intervals, per currency and in base currency, and the
    baselines' forecasts beside them."""
    from runs.scoring import build_forecast

    checked_out(out)
    if freq not in ("week", "day"):
        raise bad_option("--freq", f"expected week or day, got {freq!r}")
    cutoff = parse_date(as_of, "--as-of")
    state = served_run(runs_dir, cutoff, ledger_dir)
    facts = state.view(cutoff, actions=False).day.facts if state is not None else {}
    if (facts.get("forecast_draws"), facts.get("forecast_seed")) == (draws, seed) \
            and horizon_weeks <= facts.get("horizon_weeks", 0):
        table = state.forecast(cutoff, horizon_weeks, freq)
        base_currency = state.base_currency
    else:
        ledger = with_recorded_activity(read_ledger(ledger_dir))
        base_currency = ledger.base_currency
        with about_option("--horizon-weeks"):
            table = build_forecast(ledger, cutoff, champions_from(tracking_uri), horizon_weeks=horizon_weeks,
                                   freq=freq, draws=draws, seed=seed)
    if currency is not None:
        table = table[table["currency"] == currency.upper()]
    if out is None:
        table = compact_forecast(table, base_currency if currency is None else None)
    show_or_write(table, out, f"Cash forecast as of {cutoff:%Y-%m-%d} ({freq}ly, {horizon_weeks} weeks)")


report_app = typer.Typer(help="Monitoring and management reports (HTML for people, JSON for machines).",
                         no_args_is_help=True)
app.add_typer(report_app, name="report", rich_help_panel=REPORTS)


@report_app.command("drift")
@reports_errors
def report_drift(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="The recent date to compare with the training reference.")],
    out: Annotated[Path, typer.Option(help="Folder for drift.html and drift.json.")] = Path("out/reports"),
    reference_months: Annotated[int, typer.Option(min=1, max=24, help="Month ends in the reference.")] = 6,
    tracking_uri: TrackingUri = None,
) -> None:
    """Feature and prediction drift at a date against the champion's training months, with a verdict."""
    from monitoring.drift import drift_report, reference_cutoffs, write_drift_report
    from training.pipeline import MODEL_NAMES
    from training.tracking import champion_trained_until, default_tracking_uri

    checked_out_folder(out)
    cutoff = parse_date(as_of, "--as-of")
    uri = tracking_uri or default_tracking_uri()
    champions = champions_from(uri)
    trained_until = champion_trained_until(uri, MODEL_NAMES["late"])
    if trained_until is not None and trained_until >= cutoff:
        trained_until = None  # the champion saw this date: compare with the months before it instead
    ledger = read_ledger(ledger_dir)
    # drift_report's own check, made here so that bad input is a named error (it raises a plain ValueError).
    reference_end = trained_until if trained_until is not None else cutoff - pd.offsets.MonthEnd(3)
    if not [c for c in reference_cutoffs(reference_end, reference_months) if c >= ledger.invoices["invoice_date"].min()]:
        raise bad_option("--as-of", f"no month end with invoices before {reference_end:%Y-%m-%d} to use as the "
                                    "reference", title="bad input")
    report = drift_report(ledger, cutoff, champions, trained_until, reference_months)
    html_path, json_path = write_drift_report(report, out)
    summary = report.summary
    console.print(f"{summary['drifted_share']:.0%} of {summary['features_compared']} features drifted "
                  f"(reference {summary['reference_cutoffs'][0]} to {summary['reference_cutoffs'][-1]}, "
                  f"{summary['rows']['reference']:,} rows; current {summary['rows']['current']:,} rows)",
                  highlight=False)
    for item in summary["drifted_features"][:10]:
        console.print(f"  {item['column']}: {item['method']} {item['score']:.3f} (threshold {item['threshold']})",
                      highlight=False)
    verdict = "retrain: " + "; ".join(summary["reasons"]) if summary["retrain"] else "no retraining needed"
    console.print(verdict, highlight=False)
    console.print(f"wrote {html_path} and {json_path}")


@report_app.command("performance")
@reports_errors
def report_performance(
    ledger_dir: LedgerDir,
    from_: Annotated[str | None, typer.Option("--from", help="First month end to score (YYYY-MM-DD).")] = None,
    to: Annotated[str | None, typer.Option(help="Last month end to score (YYYY-MM-DD).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for performance.html and performance.json.")] = Path("out/reports"),
    tracking_uri: TrackingUri = None,
) -> None:
    """The champions' realised metrics per month once outcomes are known, beside the baselines."""
    from monitoring.performance import performance_table, scored_months, write_performance
    from rules.output import rich_table
    from training.pipeline import MODEL_NAMES
    from training.tracking import champion_trained_until, default_tracking_uri

    checked_out_folder(out)
    start = parse_date(from_, "--from") if from_ else None
    end = parse_date(to, "--to") if to else None
    uri = tracking_uri or default_tracking_uri()
    champions = champions_from(uri)
    champions.require("late")
    champions.require("timing")
    trained_until = champion_trained_until(uri, MODEL_NAMES["late"])
    ledger = read_ledger(ledger_dir)
    table = performance_table(scored_months(ledger, champions, start, end), trained_until)
    if table.empty:
        raise bad_option("--from/--to", "no month end in that range has 91 days of outcomes after it",
                         title="nothing to report")
    html_path, json_path = write_performance(table, ledger.fingerprint(), out)
    shown = ["month", "in_training", "auc_model", "auc_customer_late_rate", "mae_days_model",
             "mae_days_pays_on_due_date", "wape_13w_model", "wape_13w_pays_on_due_date"]
    console.print(rich_table(table[shown].assign(month=table["month"].dt.strftime("%Y-%m-%d")).round(3),
                             title="Champion performance by month"))
    console.print(f"wrote {html_path} and {json_path}")


@report_app.command("kpis")
@reports_errors
def report_kpis(
    ledger_dir: LedgerDir,
    from_: FirstDay,
    to: LastDay,
    freq: KpiPeriod = "month",
    out: Annotated[Path, typer.Option(help="Folder for kpis.html, kpis.xlsx and kpis.json.")] = Path("out/reports"),
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow store for the deterioration model "
                                                          "(default: local mlflow/; skipped when it has none).")] = None,
) -> None:
    """KPI dashboard: DSO, BPDSO, ADD, CEI, aging mix, promise and dispute rates and the top deteriorating
    customers over time, as one offline HTML page and an Excel workbook."""
    from monitoring.kpi_dashboard import deterioration_by_period, write_kpi_dashboard
    from rules.kpis import kpi_periods

    checked_out_folder(out)
    start, end = kpi_range(from_, to, freq)
    ledger = read_ledger(ledger_dir)
    periods = kpi_periods(start, end, freq)  # type: ignore[arg-type]
    model = champions_from(tracking_uri).deterioration
    deterioration = deterioration_by_period(ledger, model, periods["period_end"]) if model is not None else None
    html_path, xlsx_path = write_kpi_dashboard(ledger, start, end, out, freq, deterioration)  # type: ignore[arg-type]
    console.print(f"wrote {html_path}, {xlsx_path} and {out / 'kpis.json'}"
                  + ("" if model is not None else " (no deterioration model: that section is left out)"))


@report_app.command("pack")
@reports_errors
def report_pack_command(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="The day of the pack, YYYY-MM-DD.")],
    out: Annotated[Path, typer.Option(help="Folder for pack-DATE.xlsx and pack-DATE.html.")] = Path("out/reports"),
    runs_dir: Annotated[Path | None, typer.Option("--runs", help="Runs folder: the worklist and forecast of the "
                                                                  "run for the date (default: ARRISK_RUNS).")] = None,
    tracking_uri: TrackingUri = None,
    send: Annotated[bool, typer.Option(help="E-mail it to ARRISK_PACK_RECIPIENTS over the ARRISK_SMTP_* server.")] = False,
    eml: Annotated[Path | None, typer.Option(help="Write the e-mail as an .eml file into this folder instead of "
                                                  "sending it.")] = None,
) -> None:
    """The finance report pack: aging summary, KPIs with their trend, worklist by collector, disputes and
    deductions, the 13-week forecast and unapplied cash, as one workbook and one HTML e-mail."""
    from ledger.errors import BadInput
    from reminders.smtp import SendFailure
    from rules.output import rich_table
    from serving.report_pack import build_pack, send_pack, write_pack

    checked_out_folder(out)
    cutoff = parse_date(as_of, "--as-of")
    settings = Settings.from_environ()
    sheets = build_pack(ledger_dir, cutoff, runs_dir or settings.runs, tracking_uri)
    xlsx, page = write_pack(sheets, cutoff, out)
    console.print(rich_table(sheets["summary"], f"Report pack as of {cutoff:%Y-%m-%d}"))
    console.print(f"wrote {xlsx} and {page}")
    if send or eml is not None:
        try:
            console.print(send_pack(sheets, cutoff, xlsx, settings, eml))
        except SendFailure as failure:
            raise BadInput(f"the pack was written but not sent: {failure.reason}") from None


RunsDir = Annotated[Path | None, typer.Option("--runs", help="Runs folder (`arrisk run --out`): read the run for "
                                             "--as-of when there is one (default: ARRISK_RUNS).")]


def served_run(runs_dir: Path | None, as_of: pd.Timestamp, ledger_dir: Path):
    """The run of `as_of` in `runs_dir` (or ARRISK_RUNS) with the recorded actions on top, as the service
    answers it; None when there is no such run (the command computes directly). Says so on stderr."""
    from runs.folder import complete_runs
    from serving.activity import activity_store_exists, database_url, open_store
    from serving.views import RunDays, ServingState

    runs_dir = runs_dir or Settings.from_environ().runs
    if runs_dir is None or as_of not in complete_runs(runs_dir):
        return None
    store = open_store(database_url()) if activity_store_exists() else None
    errors.print(f"from the run of {as_of:%Y-%m-%d} in {runs_dir}", markup=False, highlight=False)
    return ServingState(RunDays(runs_dir, ledger_dir), store=store)


def scores_on_cluster(ledger_dir: Path, cutoff: pd.Timestamp, out: Path | None, tracking_uri: str | None,
                      scheduler: str | None) -> None:
    """`arrisk score --engine dask`: the scores of every bucket, with its recorded activity, into the folder OUT."""
    from ledger.cluster import dask_client
    from ledger.errors import BadInput
    from ledger.partitions import require_partitioned
    from runs import distributed
    from serving.activity import recorded_tables

    if out is None:
        raise BadInput("--out: the dask engine writes the scores to a folder (one Parquet file per bucket); "
                       "pass --out FOLDER")
    require_partitioned(ledger_dir)
    champions = champions_from(tracking_uri)
    records, _ = recorded_tables()
    with dask_client(scheduler) as client:
        rows = distributed.scores_on_cluster(client, ledger_dir, cutoff, champions, out, records)
    console.print(f"{out}/: scores of {rows:,} open documents as of {cutoff:%Y-%m-%d}, one file per bucket")


def with_recorded_activity(ledger: Ledger) -> Ledger:
    """The ledger plus the promises, disputes, contacts, letters and cash applications recorded in the activity store;
    records it cannot use (bad values an older version stored) are skipped with a one-line warning."""
    from serving.activity import ledger_with_recorded_activity

    merged = ledger_with_recorded_activity(ledger)
    skipped = unreadable_activity()
    if skipped:
        errors.print(f"warning: skipped {skipped_summary(skipped)}; correct or void them", markup=False,
                     highlight=False, soft_wrap=True)
    return merged


def unreadable_activity() -> list[dict]:
    """The records of the activity store that its ledger view skips; none when there is no store."""
    from serving.activity import activity_store_exists, database_url, open_store

    if not activity_store_exists():
        return []
    store = open_store(database_url())
    try:
        return store.unreadable_records()
    finally:
        store.close()


def skipped_summary(records: list[dict], limit: int = 5) -> str:
    """'2 unreadable activity records: contacts CON-1 (contact_date: 9999-12-31 is outside ...), ...'."""
    named = [f"{r['table']} {r['record_id']} ({r['field']}: {r['problem']})" for r in records[:limit]]
    more = f" and {len(records) - limit} more" if len(records) > limit else ""
    return f"{len(records)} unreadable activity record(s): {', '.join(named)}{more}"


def compact_worklist(table: pd.DataFrame) -> pd.DataFrame:
    """The worklist columns that fit a terminal, the reasons one per line."""
    reasons = table[["reason_1", "reason_2", "reason_3"]].apply(
        lambda row: "\n".join(text for text in row if isinstance(text, str) and text), axis=1)
    return pd.DataFrame({"rank": table["rank"], "customer": table["customer_id"] + "\n" + table["name"],
                         "status": table["status"], "at risk": table["money_at_risk_base"].round(0),
                         "overdue": table["overdue_amount_base"].round(0), "dpd": table["max_days_past_due"],
                         "next action": table["next_dunning_action"],
                         "reasons": reasons if len(table) else pd.Series(dtype=object)})


def compact_forecast(table: pd.DataFrame, only: str | None) -> pd.DataFrame:
    """The forecast columns that fit a terminal; the base-currency total only, unless a currency was asked."""
    if only is not None:
        table = table[table["converted"]]
    return pd.DataFrame({"currency": table["currency"], "period": table["period"],
                         "from": table["period_start"].dt.strftime("%Y-%m-%d"),
                         "to": table["period_end"].dt.strftime("%Y-%m-%d"),
                         "expected": table["expected"].round(0), "p10": table["p10"].round(0),
                         "p90": table["p90"].round(0),
                         "on due date": table["baseline_pays_on_due_date"].round(0),
                         "due + avg delay": table["baseline_due_date_plus_customer_average"].round(0)})
