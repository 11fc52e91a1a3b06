"""The bad-debt provision from the command line (issue 23): `arrisk provision report` computes both methods
as of a date (and the movement from `--from`), `arrisk provision backtest` judges them on past month ends."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from ledger import read_ledger
from serving.cli.common import (
    FINANCE,
    LedgerDir,
    TrackingUri,
    about_option,
    app,
    champions_from,
    console,
    parse_date,
)
from serving.cli.errors import reports_errors
from serving.cli.reports import with_recorded_activity

provision_app = typer.Typer(help="The bad-debt provision (expected credit loss) for the month-end close.",
                            no_args_is_help=True)
app.add_typer(provision_app, name="provision", rich_help_panel=FINANCE)

Policy = Annotated[Path | None, typer.Option(help="Provision policy YAML (default configs/provision/default.yaml).")]
Workbook = Annotated[Path | None, typer.Option(help="Write the workbook (one sheet per view and the method note), "
                                                    ".xlsx.")]


def checked_workbook(out: Path | None) -> None:
    from ledger.errors import BadInput

    if out is not None and out.suffix.lower() != ".xlsx":
        raise BadInput(f"--out: the provision workbook is an .xlsx file, got {out.name!r}")
    if out is not None and out.is_dir():
        raise BadInput(f"--out: {out} is a folder")


def model_probabilities(tracking_uri: str | None, ledger):
    """P(deteriorate) at a date from the champion deterioration model (None when there is none)."""
    from features import customer_features_at

    model = champions_from(tracking_uri).deterioration
    if model is None:
        return None

    def at(as_of: pd.Timestamp) -> pd.Series:
        customers = customer_features_at(ledger, as_of)
        return pd.Series(model.predict_proba(customers)[:, 1], index=customers["customer_id"].to_numpy())

    return at


@provision_app.command("report")
@reports_errors
def provision_report_command(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="The close date, YYYY-MM-DD: only what was known then is used.")],
    from_: Annotated[str | None, typer.Option("--from", help="Start of the movement schedule, YYYY-MM-DD "
                                                             "(the previous close).")] = None,
    policy: Policy = None,
    out: Workbook = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Both methods side by side (the provision matrix and exposure x PD x LGD), the loss rates behind the
    matrix, the customers where they differ most, and with --from the movement schedule."""
    from provision import load_provision_policy
    from provision.report import provision_report, write_workbook
    from rules.output import rich_table

    checked_workbook(out)
    cutoff = parse_date(as_of, "--as-of")
    start = parse_date(from_, "--from") if from_ else None
    with about_option("--policy"):
        settings = load_provision_policy(policy)
    ledger = with_recorded_activity(read_ledger(ledger_dir))
    probabilities = model_probabilities(tracking_uri, ledger)
    report = provision_report(ledger, cutoff, settings, probabilities, start)
    console.print(rich_table(report.summary, f"Bad-debt provision as of {cutoff:%Y-%m-%d} (base currency)"))
    used = report.loss_rates[report.loss_rates["segment"] == "(all)"][["bucket", "observations", "loss_rate_used"]]
    console.print(rich_table(used, "Loss rates, all customers"))
    if len(report.movement):
        console.print(rich_table(report.movement, "Movement of the allowance"))
    if probabilities is None:
        console.print("no deterioration model in the MLflow store: the model-based method is left out")
    if out is not None:
        console.print(f"wrote {write_workbook(report, out)}")


@provision_app.command("backtest")
@reports_errors
def provision_backtest_command(
    ledger_dir: LedgerDir,
    origins: Annotated[int, typer.Option(min=1, max=36, help="Month ends to judge (the latest whose horizon the "
                                                            "ledger covers, and those before).")] = 12,
    policy: Policy = None,
    out: Annotated[Path | None, typer.Option(help="File to write: .csv, .xlsx, .parquet or .json.")] = None,
) -> None:
    """At each past month end, the provision each method would have booked against the write-offs that
    followed; the model's probabilities come from a model trained only on the months before each one."""
    from features.labels import last_event_date
    from provision import load_provision_policy
    from provision.report import provision_backtest
    from rules.output import rich_table
    from serving.cli.common import checked_out, show_or_write
    from training.deterioration_origins import deterioration_at_origins

    checked_out(out)
    with about_option("--policy"):
        settings = load_provision_policy(policy)
    ledger = read_ledger(ledger_dir)
    last = last_event_date(ledger) - pd.DateOffset(months=settings.backtest_horizon_months)
    table = provision_backtest(ledger, last, origins, settings, deterioration_at_origins(ledger))
    show_or_write(table, out, f"Provision backtest: {origins} month ends up to {last:%Y-%m-%d}, write-offs within "
                              f"{settings.backtest_horizon_months} months")
    pooled = table.groupby("method")[["provision_base", "written_off_next_base", "absolute_error_base"]].sum()
    pooled["ratio"] = pooled["provision_base"] / pooled["written_off_next_base"]
    console.print(rich_table(pooled.reset_index(), "Pooled over the origins"))
