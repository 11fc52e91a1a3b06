"""Cash application: `arrisk cash-apply` proposes, for every payment not yet applied, the open items it
pays, with a confidence and a decision (`cash_application.apply_cash`); `arrisk unapplied` lists the cash not
applied. Both read the ledger with what the activity store recorded (applications confirmed over the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ledger import read_ledger
from serving.cli.common import (
    CASH,
    LedgerDir,
    OutFile,
    about_option,
    app,
    checked_out,
    console,
    parse_date,
    show_or_write,
)
from serving.cli.errors import reports_errors
from serving.cli.reports import with_recorded_activity

SHOWN = ["payment_id", "customer_id", "invoice_id", "amount", "confidence", "decision", "rule", "reason"]


@app.command("cash-apply", rich_help_panel=CASH)
@reports_errors
def cash_apply(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="Match the payments received on or before this date, YYYY-MM-DD.")],
    statement: Annotated[list[Path] | None, typer.Option(
        help="A bank statement (camt.053 XML or MT940) whose credits are added as payments; repeat for several.")] = None,
    policy: Annotated[Path | None, typer.Option(
        help="Cash-application policy YAML (default configs/cash_application/default.yaml).")] = None,
    out: OutFile = None,
) -> None:
    """Match unapplied payments to open invoices: one row per proposed application (auto or proposed) and one
    per unmatched payment with its reason; a short payment's residual with a suggested deduction reason."""
    from cash_application import apply_cash, load_match_policy
    from cash_application.policy import DEFAULT_POLICY

    checked_out(out)
    cutoff = parse_date(as_of, "--as-of")
    with about_option("--policy"):
        match_policy = load_match_policy(policy or DEFAULT_POLICY)
    table = apply_cash(with_recorded_activity(read_ledger(ledger_dir)), cutoff, match_policy,
                       statements=statement or ())
    show_or_write(table if out is not None else table[SHOWN], out, f"Cash application as of {cutoff:%Y-%m-%d}")
    payments = table.drop_duplicates("payment_id")
    counts = payments["decision"].value_counts()
    console.print(f"{len(payments):,} payments: " + ", ".join(f"{counts.get(decision, 0):,} {decision}"
                                                             for decision in ("auto", "proposed", "unmatched")),
                  highlight=False)


@app.command("unapplied", rich_help_panel=CASH)
@reports_errors
def unapplied(
    ledger_dir: LedgerDir,
    as_of: Annotated[str, typer.Option(help="Report date, YYYY-MM-DD.")],
    match: Annotated[bool, typer.Option(help="Run the matcher for the reason of each unapplied payment.")] = True,
    out: OutFile = None,
) -> None:
    """Unapplied cash: amount, age and reason per payment (or rest of one) not applied to a document."""
    from cash_application import apply_cash
    from cash_application.unapplied import unapplied_cash

    checked_out(out)
    cutoff = parse_date(as_of, "--as-of")
    ledger = with_recorded_activity(read_ledger(ledger_dir))
    table = unapplied_cash(ledger, cutoff, apply_cash(ledger, cutoff) if match else None)
    show_or_write(table, out, f"Unapplied cash as of {cutoff:%Y-%m-%d}")
    console.print(f"{len(table):,} payments, {table['unapplied_amount_base'].sum():,.2f} unapplied "
                  f"(company currency), {int((table['age_days'] > 30).sum()):,} older than 30 days", highlight=False)
