"""The `arrisk` command line (DESIGN.md §9): one command per stage, each usable alone.

Bad input exits non-zero with the problems listed and no traceback.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, TypeVar

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from ledger import Ledger, LedgerError, Problem, read_ledger, write_ledger
from ledger.store import refuse_unless_replaceable
from rules.output import OutputError
from serving.activity_cli import activity_app, audit_app
from serving.tokens_cli import tokens_app

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

app = typer.Typer(help="ar-risk: accounts-receivable risk, worklists and cash forecasts.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
console = Console()
errors = Console(stderr=True)

F = TypeVar("F", bound=Callable)

# Options several commands share, declared once.
LedgerDir = Annotated[Path, typer.Option("--ledger", help="Ledger directory to read.")]
OutFile = Annotated[Path | None, typer.Option(help="File to write: .csv, .xlsx, .parquet or .json.")]
TrackingUri = Annotated[str | None, typer.Option(help="MLflow tracking URI (default: local mlflow/).")]


app.add_typer(tokens_app, name="token", help="Create and list API tokens (stored hashed).")
app.add_typer(activity_app, name="activity")
app.add_typer(audit_app, name="audit")


@app.callback()
def arrisk() -> None:
    """ar-risk: accounts-receivable risk, worklists and cash forecasts."""


def reports_bad_input(command: F) -> F:
    """Turn `LedgerError` (and friends) into a readable message and exit code 1."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except LedgerError as error:
            errors.print(f"error: {error_text(error)}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except OutputError as error:
            errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def error_text(error: LedgerError) -> str:
    """One line for one problem; the title and a line per problem when there are several."""
    if len(error.problems) == 1:
        return f"{error.title}: {error.problems[0]}"
    return error.summary()


@app.command()
@reports_bad_input
def generate(
    out: Annotated[Path, typer.Option(help="Ledger directory to write (ground truth goes to OUT/truth/).")],
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 1000,
    months: Annotated[int, typer.Option(min=1, max=240, help="Months of history.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same ledger.")] = 0,
    start: Annotated[str, typer.Option(help="First day of the history, YYYY-MM-DD.")] = "2022-01-01",
) -> None:
    """Generate a synthetic B2B receivables ledger with its ground truth."""
    refuse_unless_replaceable(Path(os.path.abspath(out)))
    start_date = parse_date(start, "--start")
    from ledger.synthetic import generate_ledger, write_synthetic

    ledger, truth = generate_ledger(customers=customers, months=months, seed=seed, start=start_date)
    write_synthetic(ledger, truth, out)
    console.print(ledger_summary(ledger, title=f"{out}: generated (seed {seed})"))


@app.command("import")
@reports_bad_input
def import_(
    sources: Annotated[list[Path], typer.Argument(help="ERP export file(s), or one folder for generic_csv.")],
    mapping: Annotated[str, typer.Option(help="Mapping name (ibm_sample, sap_fbl5n, generic_csv) or YAML file.")],
    out: Annotated[Path, typer.Option(help="Ledger directory to write; left untouched on any error.")],
) -> None:
    """Import ERP exports into a validated ledger using a column mapping."""
    from ledger.importing import import_ledger

    refuse_unless_replaceable(Path(os.path.abspath(out)))
    ledger = import_ledger(sources, mapping)
    write_ledger(ledger, out)
    console.print(ledger_summary(ledger, title=f"{out}: imported with {mapping}"))


@app.command()
@reports_bad_input
def validate(ledger_dir: Annotated[Path, typer.Argument(help="Ledger directory to check.")]) -> None:
    """Check a ledger against the data contract; print a summary when valid."""
    ledger = read_ledger(ledger_dir)
    console.print(ledger_summary(ledger, title=f"{ledger_dir}: valid"))


@app.command()
@reports_bad_input
def features(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="Cutoff date, YYYY-MM-DD: only what was known then is used.")],
    out: Annotated[Path, typer.Option(help="File to write: .parquet, .csv, .xlsx or .json.")],
) -> None:
    """Write the features of every document open at a date (one row per invoice, customer features joined)."""
    from features import features_at
    from rules.output import write_frame

    checked_out(out)
    cutoff = parse_date(as_of, "--as-of")
    frame = features_at(read_ledger(ledger_dir), cutoff)
    write_frame(frame, out)
    console.print(f"{out}: {len(frame):,} open documents of {frame['customer_id'].nunique():,} customers "
                  f"as of {cutoff:%Y-%m-%d}, {frame.shape[1] - 2} features")


@app.command()
@reports_bad_input
def backtest(
    ledger_dir: Annotated[Path, typer.Option("--ledger", help="Ledger directory.")],
    out: Annotated[Path, typer.Option(help="Folder for metrics.json and report.html.")],
    origins: Annotated[int, typer.Option(min=1, max=12, help="Number of rolling origins (test months).")] = 3,
) -> None:
    """Rolling-origin backtest of the three models against their baselines."""
    from training.pipeline import backtest_ledger, write_backtest

    checked_out_folder(out)
    ledger = read_ledger(ledger_dir)
    run = backtest_ledger(ledger, origins=origins, progress=lambda step: console.print(f"[dim]{step}[/dim]"))
    metrics_path, report_path = write_backtest(run, out)
    console.print(headline_table(run.result.metrics))
    value_path = report_worklist_value(run, out)
    console.print(f"wrote {metrics_path}, {report_path} and {value_path}")


@app.command()
@reports_bad_input
def train(
    ledger_dir: Annotated[Path, typer.Option("--ledger", help="Ledger directory.")],
    until: Annotated[str | None, typer.Option(help="Use only what was known by this date (YYYY-MM-DD).")] = None,
    tracking_uri: TrackingUri = None,
    report_dir: Annotated[Path | None, typer.Option(help="Also write the backtest report here.")] = None,
) -> None:
    """Backtest, fit the three models on all data, log them to MLflow and promote those that pass the gate."""
    from training.pipeline import train_and_register
    from training.tracking import default_tracking_uri

    if report_dir is not None:
        checked_out_folder(report_dir)
    until_date = parse_date(until, "--until") if until else None
    ledger = read_ledger(ledger_dir)
    outcome = train_and_register(ledger, tracking_uri or default_tracking_uri(), until=until_date,
                                 report_dir=report_dir, progress=lambda step: console.print(f"[dim]{step}[/dim]"))
    console.print(headline_table(outcome.metrics))
    if report_dir is not None and outcome.run is not None:
        report_worklist_value(outcome.run, report_dir)
    for task, decision in outcome.decisions.items():
        verdict = "promoted to champion" if decision.promote else "not promoted"
        version = f"version {outcome.versions[task]} " if task in outcome.versions else ""
        console.print(f"{task}: {version}{verdict}: {decision.reason}", highlight=False)
    console.print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in outcome.seconds.items()))


def report_worklist_value(run, out: Path) -> Path:
    """The check of the worklist's value at each backtest origin: printed, and written to
    `out/worklist_value.json`."""
    from rules.output import write_frame
    from serving.evaluation import worklist_value

    value = worklist_value(run)
    table = Table(title="Worklist value: share of the money still unpaid 30 days later held by the top 20% "
                        "of customers", title_justify="left")
    for column in ("origin", "customers", "money at risk", "worklist", "model only", "overdue amount",
                   "not held: worklist", "not held: overdue"):
        table.add_column(column, justify="left" if column == "origin" else "right")
    for row in value.itertuples():
        table.add_row(f"{row.origin:%Y-%m-%d}", f"{row.customers:,}", f"{row.money_at_risk_base:,.0f}",
                      f"{row.share_worklist:.3f}", f"{row.share_model_only:.3f}", f"{row.share_overdue_amount:.3f}",
                      f"{row.share_worklist_actionable:.3f}", f"{row.share_overdue_actionable:.3f}")
    console.print(table)
    return write_frame(value, out / "worklist_value.json")


T = TypeVar("T")


def rules_call(where: str, call: Callable[[], T]) -> T:
    """Run `call`; a rules-layer `ValueError` (bad policy, option, output suffix) becomes a one-line error."""
    try:
        return call()
    except OutputError:
        raise  # names the file itself; reported as it is
    except ValueError as error:
        raise LedgerError(Problem(where, None, None, str(error)), title="bad input") from None


def show_or_write(frame: pd.DataFrame, out: Path | None, title: str) -> None:
    """Write the report to `out` by its suffix, or print it as a table."""
    from rules.output import rich_table, write_frame

    if out is None:
        console.print(rich_table(frame, title=title))
        return
    rules_call("--out", lambda: write_frame(frame, out))
    console.print(f"{out}: {len(frame):,} rows ({title})", highlight=False)


@app.command()
@reports_bad_input
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
    try:
        bucket_limits = tuple(int(part) for part in limits.split(","))
    except ValueError:
        raise LedgerError(Problem("--limits", None, None, f"expected whole numbers separated by commas, got {limits!r}"),
                          title="bad option") from None
    if basis not in ("due_date", "invoice_date"):
        raise LedgerError(Problem("--basis", None, None, f"expected due_date or invoice_date, got {basis!r}"),
                          title="bad option")
    if currency not in ("base", "document"):
        raise LedgerError(Problem("--currency", None, None, f"expected base or document, got {currency!r}"),
                          title="bad option")
    ledger = read_ledger(ledger_dir)
    report = rules_call("--limits", lambda: aging_report(
        ledger, cutoff, bucket_limits, basis=basis, currency=currency))  # type: ignore[arg-type]
    show_or_write(with_company_total(report), out, f"Aging as of {cutoff:%Y-%m-%d} by {basis}")


@app.command()
@reports_bad_input
def dunning(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="Dunning run date, YYYY-MM-DD.")],
    policy: Annotated[Path, typer.Option(help="Dunning policy YAML (configs/dunning/*.yaml).")],
    out: OutFile = None,
) -> None:
    """Dunning proposal: next level, fee, interest, channel and letter per overdue invoice; holds say why."""
    from rules.dunning import dunning_proposal, load_policy

    cutoff = parse_date(as_of, "--as-of")
    dunning_policy = rules_call("--policy", lambda: load_policy(policy))
    ledger = with_recorded_activity(read_ledger(ledger_dir))
    proposal = rules_call("--policy", lambda: dunning_proposal(ledger, cutoff, dunning_policy))
    # Letters are too long for a terminal table; they are in every written file.
    show_or_write(proposal if out is not None else proposal.drop(columns=["letter_text"]), out,
                  f"Dunning proposal as of {cutoff:%Y-%m-%d}")


@app.command()
@reports_bad_input
def kpis(
    ledger_dir: LedgerDir,
    from_: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    to: Annotated[str, typer.Option(help="Last day, YYYY-MM-DD.")],
    freq: Annotated[str, typer.Option(help="Period: month or quarter.")] = "month",
    out: OutFile = None,
) -> None:
    """DSO (simple, countback), BPDSO, ADD, CEI and collection KPIs per period, company and customers."""
    from rules.kpis import kpi_report

    start, end = parse_date(from_, "--from"), parse_date(to, "--to")
    ledger = read_ledger(ledger_dir)
    report = rules_call("--from/--to/--freq", lambda: kpi_report(ledger, start, end, freq))  # type: ignore[arg-type]
    show_or_write(report, out, f"KPIs {start:%Y-%m-%d} to {end:%Y-%m-%d} by {freq}")


def with_recorded_activity(ledger: Ledger) -> Ledger:
    """The ledger plus the promises, disputes, contacts and letters recorded in the activity store;
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
    from serving.activity import DATABASE_ENV, DEFAULT_DATABASE, database_url, open_store

    if not os.environ.get(DATABASE_ENV) and not DEFAULT_DATABASE.exists():
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


def champions_from(tracking_uri: str | None):
    """The champion models from MLflow (the local store by default)."""
    from serving.scoring import load_champions
    from training.tracking import default_tracking_uri

    return load_champions(tracking_uri or default_tracking_uri())


def checked_out(out: Path | None) -> None:
    """Fail before any work when `--out` has a suffix no writer knows, or is a folder or a link."""
    from rules.output import SUFFIXES, check_file_target

    if out is None:
        return
    if out.suffix.lower() not in SUFFIXES:
        raise LedgerError(Problem("--out", None, None, f"expected a {', '.join(SUFFIXES)} file, got {out.name!r}"),
                          title="bad option")
    check_file_target(out)


def checked_out_folder(out: Path) -> None:
    """Fail before any work when the `--out` folder for report files is a file (or a broken link)."""
    if os.path.lexists(out) and not out.is_dir():
        raise OutputError(f"{out}: is not a folder; refusing to write report files into it (nothing was changed)")


@app.command()
@reports_bad_input
def score(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="Scoring date, YYYY-MM-DD: only what was known then is used.")],
    out: OutFile = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Per open invoice: P(late), expected days late, pay date p10/p50/p90 and P(unpaid in 30 days)."""
    from serving.scoring import score as score_ledger
    from serving.scoring import score_table

    checked_out(out)
    cutoff = parse_date(as_of, "--as-of")
    ledger = with_recorded_activity(read_ledger(ledger_dir))
    champions = champions_from(tracking_uri)
    scores = score_ledger(ledger, cutoff, champions)
    show_or_write(score_table(scores, champions), out, f"Scores as of {cutoff:%Y-%m-%d}")


@app.command()
@reports_bad_input
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
) -> None:
    """Customers to chase, ranked by money at risk with rule overrides, next action and reasons."""
    from rules.dunning import load_policy
    from rules.worklist import DEFAULT_POLICY, load_worklist_policy
    from serving.scoring import build_worklist

    checked_out(out)
    cutoff = parse_date(as_of, "--as-of")
    worklist_policy = rules_call("--policy", lambda: load_worklist_policy(policy or DEFAULT_POLICY))
    dunning = rules_call("--dunning-policy", lambda: load_policy(dunning_policy)) if dunning_policy else None
    ledger = with_recorded_activity(read_ledger(ledger_dir))
    from serving.activity import recorded_portfolio

    table = rules_call("--collector", lambda: build_worklist(
        ledger, cutoff, champions_from(tracking_uri), policy=worklist_policy, dunning_policy=dunning,
        collector=collector, segment=segment, top=top, portfolio=recorded_portfolio(collector)))
    if out is None:
        table = compact_worklist(table)
    show_or_write(table, out, f"Worklist as of {cutoff:%Y-%m-%d}")


@app.command()
@reports_bad_input
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
) -> None:
    """Cash receipts per week or day with 10/50/90% intervals, per currency and in base currency, and the
    baselines' forecasts beside them."""
    from serving.scoring import build_forecast

    checked_out(out)
    if freq not in ("week", "day"):
        raise LedgerError(Problem("--freq", None, None, f"expected week or day, got {freq!r}"), title="bad option")
    cutoff = parse_date(as_of, "--as-of")
    ledger = with_recorded_activity(read_ledger(ledger_dir))
    table = rules_call("--horizon-weeks", lambda: build_forecast(
        ledger, cutoff, champions_from(tracking_uri), horizon_weeks=horizon_weeks, freq=freq, draws=draws, seed=seed))
    if currency is not None:
        table = table[table["currency"] == currency.upper()]
    if out is None:
        table = compact_forecast(table, ledger.base_currency if currency is None else None)
    show_or_write(table, out, f"Cash forecast as of {cutoff:%Y-%m-%d} ({freq}ly, {horizon_weeks} weeks)")


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


@app.command()
def serve(
    ledger_dir: Annotated[Path, typer.Option("--ledger", help="Ledger the service answers from.")] = Path(
        "out/demo/synthetic"),
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    tracking_uri: TrackingUri = None,
    tokens_file: Annotated[Path | None, typer.Option(help="API tokens YAML (else ARRISK_TOKENS_FILE / "
                                                          "ARRISK_API_TOKENS).")] = None,
) -> None:
    """Start the API (BentoML) on HOST:PORT; OpenAPI docs at /v1/docs."""
    if not ledger_dir.is_dir():
        errors.print(f"error: {ledger_dir}: no ledger there (run `make demo` or pass --ledger)", highlight=False)
        raise typer.Exit(1)
    environment = dict(os.environ, ARRISK_LEDGER=str(ledger_dir.resolve()))
    if tracking_uri:
        environment["ARRISK_TRACKING_URI"] = tracking_uri
    if tokens_file:
        environment["ARRISK_TOKENS_FILE"] = str(tokens_file.resolve())
    console.print(f"ar-risk API on http://{host}:{port}/v1 (docs: http://{host}:{port}/v1/docs); Ctrl-C stops it")
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:ARRiskService", "--host", host,
               "--port", str(port), "--working-dir", str(root)]
    raise typer.Exit(run_server(command, environment))


STOP_GRACE_SECONDS = 20


def run_server(command: list[str], environment: dict[str, str]) -> int:
    """Run the server in its own process group, pass SIGTERM, SIGINT and SIGHUP on to that whole group,
    and return its exit code (128 + N when signal N ended it) once it has stopped.

    A plain `kill` of `arrisk serve` would otherwise orphan the server and its workers, still listening."""
    import signal
    import subprocess
    import time

    servers: list[subprocess.Popen] = []
    stop_requests: list[tuple[float, int]] = []

    def forward(signum: int, _frame) -> None:
        stop_requests.append((time.monotonic(), signum))
        if servers:
            _signal_group(servers[0].pid, signum)

    # The handlers are in place before the server starts, so a stop asked for meanwhile is not lost.
    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {signum: signal.signal(signum, forward) for signum in forwarded}
    try:
        servers.append(subprocess.Popen(command, env=environment, start_new_session=True,
                                        preexec_fn=_stop_with_parent))
        server = servers[0]
        if stop_requests:
            _signal_group(server.pid, stop_requests[0][1])
        while True:
            try:
                code = server.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                # A server that ignores the request to stop is killed, so a stop always ends in a stop.
                if stop_requests and time.monotonic() - stop_requests[0][0] > STOP_GRACE_SECONDS:
                    _signal_group(server.pid, signal.SIGKILL)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if servers:
            _signal_group(servers[0].pid, signal.SIGTERM)  # workers that outlived the server's main process
    return 128 - code if code < 0 else code


def _signal_group(group: int, signum: int) -> None:
    import contextlib

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _stop_with_parent() -> None:
    """In the server, before it starts: Linux sends it SIGTERM if `arrisk serve` dies, even by SIGKILL."""
    import contextlib
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    # Not Linux: no prctl, and the signal forwarding in `run_server` still covers kill and Ctrl-C.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


report_app = typer.Typer(help="Monitoring and management reports (HTML for people, JSON for machines).",
                         no_args_is_help=True)
app.add_typer(report_app, name="report")


@report_app.command("drift")
@reports_bad_input
def report_drift(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="The recent date to compare with the training reference.")],
    out: Annotated[Path, typer.Option(help="Folder for drift.html and drift.json.")] = Path("out/reports"),
    reference_months: Annotated[int, typer.Option(min=1, max=24, help="Month ends in the reference.")] = 6,
    tracking_uri: TrackingUri = None,
) -> None:
    """Feature and prediction drift at a date against the champion's training months, with a verdict."""
    from monitoring.drift import drift_report, write_drift_report
    from training.pipeline import MODEL_NAMES
    from training.tracking import champion_run, default_tracking_uri

    checked_out_folder(out)
    cutoff = parse_date(as_of, "--as-of")
    uri = tracking_uri or default_tracking_uri()
    champions = champions_from(uri)
    logged = champion_run(uri, MODEL_NAMES["late"])
    trained = (logged or {}).get("params", {}).get("trained_until")
    trained_until = pd.Timestamp(trained) if trained else None
    if trained_until is not None and trained_until >= cutoff:
        trained_until = None  # the champion saw this date: compare with the months before it instead
    ledger = read_ledger(ledger_dir)
    report = rules_call("--as-of", lambda: drift_report(ledger, cutoff, champions, trained_until, reference_months))
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
@reports_bad_input
def report_performance(
    ledger_dir: LedgerDir,
    from_: Annotated[str | None, typer.Option("--from", help="First month end to score (YYYY-MM-DD).")] = None,
    to: Annotated[str | None, typer.Option(help="Last month end to score (YYYY-MM-DD).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for performance.html and performance.json.")] = Path("out/reports"),
    tracking_uri: TrackingUri = None,
) -> None:
    """The champions' realised metrics per month once outcomes are known, beside the baselines."""
    from monitoring.performance import performance_table, scored_months, write_performance
    from training.pipeline import MODEL_NAMES
    from training.tracking import champion_run, default_tracking_uri

    checked_out_folder(out)
    start = parse_date(from_, "--from") if from_ else None
    end = parse_date(to, "--to") if to else None
    uri = tracking_uri or default_tracking_uri()
    champions = champions_from(uri)
    champions.require("late")
    champions.require("timing")
    logged = champion_run(uri, MODEL_NAMES["late"]) or {}
    trained = logged.get("params", {}).get("trained_until")
    ledger = read_ledger(ledger_dir)
    table = performance_table(scored_months(ledger, champions, start, end), pd.Timestamp(trained) if trained else None)
    if table.empty:
        raise LedgerError(Problem("--from/--to", None, None, "no month end in that range has 91 days of outcomes "
                                  "after it"), title="nothing to report")
    html_path, json_path = write_performance(table, ledger.fingerprint(), out)
    shown = ["month", "in_training", "auc_model", "auc_customer_late_rate", "mae_days_model",
             "mae_days_pays_on_due_date", "wape_13w_model", "wape_13w_pays_on_due_date"]
    from rules.output import rich_table

    console.print(rich_table(table[shown].assign(month=table["month"].dt.strftime("%Y-%m-%d")).round(3),
                             title="Champion performance by month"))
    console.print(f"wrote {html_path} and {json_path}")


@report_app.command("kpis")
@reports_bad_input
def report_kpis(
    ledger_dir: LedgerDir,
    from_: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    to: Annotated[str, typer.Option(help="Last day, YYYY-MM-DD.")],
    freq: Annotated[str, typer.Option(help="Period: month or quarter.")] = "month",
    out: Annotated[Path, typer.Option(help="Folder for kpis.html, kpis.xlsx and kpis.json.")] = Path("out/reports"),
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow store for the deterioration model "
                                                          "(default: local mlflow/; skipped when it has none).")] = None,
) -> None:
    """KPI dashboard: DSO, BPDSO, ADD, CEI, aging mix, promise and dispute rates and the top deteriorating
    customers over time, as one offline HTML page and an Excel workbook."""
    from monitoring.kpi_dashboard import write_kpi_dashboard
    from rules.kpis import kpi_periods

    checked_out_folder(out)
    start, end = parse_date(from_, "--from"), parse_date(to, "--to")
    ledger = read_ledger(ledger_dir)
    periods = rules_call("--from/--to/--freq", lambda: kpi_periods(start, end, freq))  # type: ignore[arg-type]
    model = champions_from(tracking_uri).deterioration
    deterioration = deterioration_by_period(ledger, model, periods["period_end"]) if model is not None else None
    html_path, xlsx_path = rules_call("--from/--to/--freq", lambda: write_kpi_dashboard(
        ledger, start, end, out, freq, deterioration))  # type: ignore[arg-type]
    console.print(f"wrote {html_path}, {xlsx_path} and {out / 'kpis.json'}"
                  + ("" if model is not None else " (no deterioration model: that section is left out)"))


def deterioration_by_period(ledger: Ledger, model, period_ends: pd.Series) -> pd.DataFrame:
    """P(deteriorate) of every known customer at each period end, from the customer features then."""
    from features import customer_features_at

    frames = []
    for period_end in period_ends:
        if period_end < ledger.invoices["invoice_date"].min():
            continue
        customers = customer_features_at(ledger, period_end)
        frames.append(pd.DataFrame({"period_end": period_end, "customer_id": customers["customer_id"],
                                    "deterioration_probability": model.predict_proba(customers)[:, 1]}))
    return pd.concat(frames, ignore_index=True) if frames else None


def compact_worklist(table: pd.DataFrame) -> pd.DataFrame:
    """The worklist columns that fit a terminal, the reasons one per line."""
    reasons = table[["reason_1", "reason_2", "reason_3"]].apply(
        lambda row: "\n".join(text for text in row if isinstance(text, str) and text), axis=1)
    return pd.DataFrame({"rank": table["rank"], "customer": table["customer_id"] + "\n" + table["name"],
                         "status": table["status"], "at risk": table["money_at_risk_base"].round(0),
                         "overdue": table["overdue_amount_base"].round(0), "dpd": table["max_days_past_due"],
                         "next action": table["next_dunning_action"],
                         "reasons": reasons if len(table) else pd.Series(dtype=object)})


def headline_table(metrics: dict) -> Table:
    """The backtest's key figures, model against each baseline."""
    table = Table(title="Backtest (pooled over origins " + ", ".join(metrics["cutoffs"]) + ")", title_justify="left")
    for column in ("task", "who", "metric", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    shown = {"late_payment": ("roc_auc", "brier", "ece"),
             "receipt_timing": ("mae_days", "coverage_p10_p90", "wape_13w"),
             "deterioration": ("roc_auc", "pr_auc", "precision_at_k", "recall", "median_lead_days")}
    for task, names in shown.items():
        rows = {"model": metrics[task]["model"], **metrics[task]["baselines"]}
        for who, values in rows.items():
            for name in names:
                value = values.get(name)
                table.add_row(task, who, name, "-" if value is None or pd.isna(value) else f"{value:.3f}")
    for task, reason in metrics.get("skipped", {}).items():
        table.add_row(task, "model", "not trained", reason)
    return table


def ledger_summary(ledger: Ledger, title: str) -> Table:
    """A table of row counts, date ranges and amounts, one line per ledger table."""
    table = Table(title=title, title_justify="left")
    for column in ("table", "rows", "first date", "last date", f"amount ({ledger.base_currency})"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name, frame in ledger.tables().items():
        date_columns = [c for c in frame.columns if str(frame[c].dtype).startswith("datetime64")]
        dates = frame[date_columns].stack() if date_columns and len(frame) else None
        # Only tables with a base-currency amount can be summed: the others mix document currencies.
        amount = f"{frame['amount_base'].sum():,.2f}" if "amount_base" in frame and len(frame) else ""
        table.add_row(name, f"{len(frame):,}",
                      "" if dates is None or dates.empty else f"{dates.min():%Y-%m-%d}",
                      "" if dates is None or dates.empty else f"{dates.max():%Y-%m-%d}", amount)
    open_items = ledger.invoices["cleared_date"].isna().sum()
    table.caption = f"{ledger.customers.shape[0]:,} customers, {open_items:,} open documents, source: {ledger.source or '-'}"
    return table


def parse_date(value: str, option: str) -> pd.Timestamp:
    """A calendar date from YYYY-MM-DD, or a clear error naming the option."""
    try:
        return pd.Timestamp(datetime.date.fromisoformat(value))
    except ValueError:
        raise LedgerError(Problem(option, None, None, f"expected a date as YYYY-MM-DD, got {value!r}"),
                          title="bad option") from None


def main() -> None:  # pragma: no cover - entry point for `python -m serving.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
