"""The deductions queue and the SLA clocks from the command line (issue 21): `arrisk deductions candidates`
lists the short payments of the ledger at a date with their reason code, owner and due date; `open` records
them in the activity store (a live one is never opened twice); `list` shows the recorded deductions, `decide`
records a step (in_review, credit_memo, write_off, rebilled) and `report` gives the queue's figures.
`arrisk sla` gives every queue's turnaround per owner or team. They read the ledger with what the store
(`--database`) recorded, and write under `--user`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from ledger import read_ledger
from serving.cli.activity import Database, User, now, store_for
from serving.cli.common import (
    QUEUES,
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

deductions_app = typer.Typer(help="Short payments as deductions: find, open, decide, report.", no_args_is_help=True)
app.add_typer(deductions_app, name="deductions", rich_help_panel=QUEUES)

AsOf = Annotated[str, typer.Option(help="The date, YYYY-MM-DD: only what was known by then counts.")]
Policy = Annotated[Path | None, typer.Option(help="Deductions policy YAML (default configs/deductions/default.yaml).")]
SlaPolicyFile = Annotated[Path | None, typer.Option("--sla-policy", help="SLA policy YAML (default configs/sla/default.yaml).")]
SHOWN = ["item_id", "customer_id", "invoice_id", "amount", "currency", "reason_code", "owner", "status", "opened_date",
         "due_date", "age_days", "breached", "version"]


def policies(policy: Path | None, sla_policy: Path | None):
    from queues.deductions import load_deduction_policy
    from queues.sla import load_sla_policy

    with about_option("--policy"):
        deduction_policy = load_deduction_policy(policy)
    with about_option("--sla-policy"):
        return deduction_policy, load_sla_policy(sla_policy)


def ledger_with_store(ledger_dir: Path, store):
    """The ledger with everything the store recorded (deductions hold their invoices, valid ones close them)."""
    from serving.activity import with_activity

    return with_activity(read_ledger(ledger_dir), store.ledger_tables())


def candidates_at(ledger_dir: Path, store, cutoff: pd.Timestamp, policy: Path | None, sla_policy: Path | None):
    from queues.deductions import candidate_deductions

    return candidate_deductions(ledger_with_store(ledger_dir, store), cutoff, *policies(policy, sla_policy))


@deductions_app.command("candidates")
@reports_errors
def candidates(ledger_dir: LedgerDir, as_of: AsOf, policy: Policy = None, sla_policy: SlaPolicyFile = None,
               database: Database = None, out: OutFile = None) -> None:
    """Short payments not yet recorded as deductions: a payment that left at most the policy's share of its
    invoice open, with no further payment within its wait, and the rest still open at --as-of."""
    checked_out(out)
    cutoff = parse_date(as_of, "--as-of")
    table = candidates_at(ledger_dir, store_for(database), cutoff, policy, sla_policy)
    show_or_write(table, out, f"Short payments to open as deductions, as of {cutoff:%Y-%m-%d}")
    console.print(f"{len(table):,} short payments, {table['amount'].sum():,.2f} short (document currencies)",
                  highlight=False)


@deductions_app.command("open")
@reports_errors
def open_candidates(ledger_dir: LedgerDir, as_of: AsOf, user: User, policy: Policy = None,
                    sla_policy: SlaPolicyFile = None, note: str = "", database: Database = None) -> None:
    """Record a deduction for every short payment found at --as-of (running it twice opens nothing new)."""
    from queues.deductions import open_deductions

    cutoff = parse_date(as_of, "--as-of")
    store = store_for(database)
    opened, skipped = open_deductions(store, user, candidates_at(ledger_dir, store, cutoff, policy, sla_policy),
                                      now=now(), note=note)
    console.print(f"{len(opened):,} deductions opened, {len(skipped):,} already recorded", highlight=False)


@deductions_app.command("list")
@reports_errors
def list_deductions(as_of: AsOf, status: Annotated[str | None, typer.Option(
                        help="open, in_review, valid or invalid (default: the live ones, open and in review).")] = None,
                    customer: Annotated[str | None, typer.Option(help="Only this customer's.")] = None,
                    database: Database = None, out: OutFile = None) -> None:
    """The recorded deductions opened by --as-of, most overdue first, with age and SLA breach."""
    from ledger.errors import BadInput
    from queues.deductions import queue_rows

    checked_out(out)
    if status not in (None, "open", "in_review", "valid", "invalid"):
        raise BadInput(f"--status must be open, in_review, valid or invalid, got {status!r}")
    cutoff = parse_date(as_of, "--as-of")
    rows = queue_rows(store_for(database).list_queue_items(queue="deduction", customer_id=customer), cutoff, status)
    table = pd.DataFrame(rows, columns=[*SHOWN, "payment_id", "decision", "decided_date", "note"])
    show_or_write(table if out is not None else table[SHOWN], out, f"Deductions as of {cutoff:%Y-%m-%d}")


@deductions_app.command("decide")
@reports_errors
def decide(item_id: Annotated[str, typer.Argument(help="The deduction's id (DED-...).")], user: User,
           decision: Annotated[str, typer.Option(help="in_review, credit_memo, write_off (valid) or rebilled (invalid).")],
           version: Annotated[int, typer.Option(help="The version you read (`arrisk deductions list`).")],
           decided_date: Annotated[str | None, typer.Option(help="The decision's date, YYYY-MM-DD (not for in_review).")] = None,
           note: Annotated[str | None, typer.Option(help="Why.")] = None, database: Database = None) -> None:
    """Record a step of a deduction: review it, or decide it valid or invalid."""
    from ledger.errors import BadInput
    from queues.deductions import decision_changes

    store = store_for(database)
    if store.get_queue_item(item_id)["queue"] != "deduction":
        raise BadInput(f"{item_id} is not a deduction")
    if decision != "in_review" and decided_date is None:
        raise BadInput("--decided-date is required with a decision")
    day = parse_date(decided_date, "--decided-date") if decided_date is not None else None
    changes = decision_changes(decision, day)
    if note is not None:
        changes["note"] = note
    record = store.update_queue_item(user, item_id, version, now=now(), **changes)
    console.print_json(json.dumps(record, default=str))


@deductions_app.command("report")
@reports_errors
def report(ledger_dir: LedgerDir, as_of: AsOf, database: Database = None, out: OutFile = None) -> None:
    """Open deductions by reason and age, days deduction outstanding (open deduction amount / deductions
    opened over the 90 days to --as-of x 90), the share decided within SLA and the recovery rate of invalid
    deductions (received on the invoice after the decision / the invalid amount)."""
    from queues.deductions import deduction_summary, item_frame, open_by_age_and_reason

    checked_out(out)
    cutoff = parse_date(as_of, "--as-of")
    store = store_for(database)
    ledger = ledger_with_store(ledger_dir, store)
    items = item_frame(store.list_queue_items(queue="deduction"), ledger)
    show_or_write(open_by_age_and_reason(items, cutoff), out, f"Open deductions by reason and age, {cutoff:%Y-%m-%d}")
    summary = deduction_summary(items, ledger, cutoff)
    console.print("; ".join(f"{name.replace('_', ' ')}: {value}" for name, value in summary.items() if name != "as_of"),
                  highlight=False)


@app.command("sla", rich_help_panel=QUEUES)
@reports_errors
def sla(as_of: AsOf, by: Annotated[str, typer.Option(help="owner or team.")] = "owner",
        records: Annotated[bool, typer.Option(help="One row per record (its clock) instead of the report.")] = False,
        sla_policy: SlaPolicyFile = None, database: Database = None, out: OutFile = None) -> None:
    """SLA clocks of every work queue (disputes, deductions, escalations, credit reviews): per owner or team,
    records, open, breached open, median turnaround days and the share closed within SLA. A record is breached
    from the day after its due date."""
    from ledger.errors import BadInput
    from queues.sla import clock_records, load_sla_policy, sla_clocks, sla_report

    checked_out(out)
    if by not in ("owner", "team"):
        raise BadInput(f"--by must be owner or team, got {by!r}")
    cutoff = parse_date(as_of, "--as-of")
    with about_option("--sla-policy"):
        policy = load_sla_policy(sla_policy)
    store = store_for(database)
    clocks = sla_clocks(clock_records(store.list_disputes(), store.list_queue_items(), policy), cutoff, policy)
    table = clocks if records else sla_report(clocks, by)
    show_or_write(table, out, f"SLA clocks as of {cutoff:%Y-%m-%d}" + ("" if records else f", per {by}"))
    breached = int((clocks["is_open"] & clocks["breached"]).sum())
    console.print(f"{len(clocks):,} records, {int(clocks['is_open'].sum()):,} open, {breached:,} open past their due date",
                  highlight=False)
