"""Stage 4, collections activity: `arrisk activity ...` and `arrisk audit verify`: record and list promises,
disputes, contacts and letters from the shell, and check the audit trail.

The database is `--database`, else `ARRISK_DATABASE_URL`, else the embedded SQLite file
`out/activity.sqlite`. Every change is audited under `--user`.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Annotated

import typer

from ledger.errors import BadInput
from serving.cli.common import ACTIVITY, app, console, errors
from serving.cli.errors import reports_errors

activity_app = typer.Typer(help="Record and list promises, disputes, contacts and dunning letters.",
                           no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail of the activity store.", no_args_is_help=True)
app.add_typer(activity_app, name="activity", rich_help_panel=ACTIVITY)
app.add_typer(audit_app, name="audit", rich_help_panel=ACTIVITY)

Database = Annotated[str | None, typer.Option("--database", help="SQLAlchemy URL (default: ARRISK_DATABASE_URL "
                                                                 "or out/activity.sqlite).")]
User = Annotated[str, typer.Option(help="Who records this (kept in the audit log).")]
Key = Annotated[str | None, typer.Option("--idempotency-key", help="Retrying with the same key records nothing new.")]
LedgerDir = Annotated[Path | None, typer.Option(
    "--ledger", help="Check the customer and invoice exist in this ledger, and the dates lie in its window "
                     "(without it: only the store's own date bounds).")]


def store_for(database: str | None, ledger=None):
    """The activity store; business dates are checked against `ledger`'s window when one is given."""
    from configs.settings import Settings
    from serving.activity import database_url, ledger_date_window, open_store

    settings = Settings.from_environ()
    window = ledger_date_window(ledger, settings) if ledger is not None else None
    return open_store(database or database_url(), settings, window)


def ledger_at(ledger_dir: Path | None):
    """The ledger in `ledger_dir`, or None when no `--ledger` was given."""
    from ledger import read_ledger

    return read_ledger(ledger_dir) if ledger_dir is not None else None


def run(action):
    """Print the JSON answer of `action` (its errors are the command's: see `reports_errors`)."""
    console.print_json(json.dumps(action(), default=str))


def customer_of(ledger, customer_id: str | None, invoice_id: str | None) -> str | None:
    """The customer, checked against the ledger when one is given."""
    if ledger is None:
        return customer_id
    from serving.activity import check_known

    return check_known(ledger, customer_id, invoice_id)


def now() -> datetime.datetime:
    """When the change is recorded, for the audit trail only."""
    return datetime.datetime.now(datetime.UTC)


@activity_app.command()
@reports_errors
def promise(user: User, amount: Annotated[str, typer.Option(help="Amount promised.")],
            made_date: Annotated[str, typer.Option(help="When the customer promised, YYYY-MM-DD.")],
            promised_date: Annotated[str, typer.Option(help="When they will pay, YYYY-MM-DD.")],
            customer: Annotated[str | None, typer.Option(help="Customer id.")] = None,
            invoice: Annotated[str | None, typer.Option(help="Invoice id (none: a promise on the account).")] = None,
            note: str = "", ledger: LedgerDir = None, idempotency_key: Key = None, database: Database = None) -> None:
    """Record a promise to pay."""
    def create() -> dict:
        known = ledger_at(ledger)
        return store_for(database, known).create_promise(
            user, customer_id=customer_of(known, customer, invoice), invoice_id=invoice, amount=amount,
            made_date=made_date, promised_date=promised_date, note=note, idempotency_key=idempotency_key, now=now())

    run(create)


@activity_app.command()
@reports_errors
def dispute(user: User, invoice: Annotated[str, typer.Option(help="Invoice id.")],
            customer: Annotated[str, typer.Option(help="Customer id.")],
            opened_date: Annotated[str, typer.Option(help="YYYY-MM-DD.")],
            reason: Annotated[str, typer.Option(help="Reason code, e.g. pricing.")],
            amount: Annotated[str, typer.Option(help="Amount disputed.")],
            ledger: LedgerDir = None, idempotency_key: Key = None, database: Database = None) -> None:
    """Open a dispute on an invoice."""
    def create() -> dict:
        known = ledger_at(ledger)
        return store_for(database, known).create_dispute(
            user, invoice_id=invoice, customer_id=customer_of(known, customer, invoice),
            opened_date=opened_date, reason_code=reason, amount=amount, idempotency_key=idempotency_key, now=now())

    run(create)


@activity_app.command()
@reports_errors
def contact(user: User, customer: Annotated[str, typer.Option(help="Customer id.")],
            contact_date: Annotated[str, typer.Option(help="YYYY-MM-DD.")],
            channel: Annotated[str, typer.Option(help="call, email, letter, meeting, portal or other.")],
            outcome: str = "", note: str = "", ledger: LedgerDir = None, idempotency_key: Key = None,
            database: Database = None) -> None:
    """Log a contact with a customer."""
    def create() -> dict:
        known = ledger_at(ledger)
        return store_for(database, known).create_contact(
            user, customer_id=customer_of(known, customer, None), contact_date=contact_date,
            channel=channel, outcome=outcome, note=note, idempotency_key=idempotency_key, now=now())

    run(create)


@activity_app.command()
@reports_errors
def update(what: Annotated[str, typer.Argument(help="promise, dispute or contact.")],
           record_id: Annotated[str, typer.Argument(help="Its id, e.g. PTP-...")],
           user: User,
           expected_version: Annotated[int, typer.Option(min=1, help="The version you read; a newer one fails.")],
           changes: Annotated[list[str], typer.Option("--set", help="FIELD=VALUE, repeatable (e.g. status=cancelled, "
                                                                    "promised_date=2024-01-12, resolution=credited).")],
           ledger: LedgerDir = None, database: Database = None) -> None:
    """Change a record, failing if someone changed it since you read it (optimistic concurrency)."""
    updaters = {"promise": "update_promise", "dispute": "update_dispute", "contact": "update_contact"}
    if what not in updaters:
        raise BadInput(f"expected one of {', '.join(updaters)}, got {what!r}")
    fields = {}
    for change in changes:
        name, equals, value = change.partition("=")
        if not equals or not name:
            raise BadInput(f"--set expects FIELD=VALUE, got {change!r}")
        fields[name.strip()] = value
    run(lambda: getattr(store_for(database, ledger_at(ledger)), updaters[what])(
        user, record_id, expected_version, now=now(), **fields))


@activity_app.command()
@reports_errors
def collector(name: Annotated[str, typer.Argument(help="The collector's name.")],
              customers: Annotated[list[str], typer.Argument(help="Customer ids in their portfolio.")],
              database: Database = None) -> None:
    """Register a collector and add customers to their portfolio (the worklist's --collector uses it)."""
    def assign() -> dict:
        store = store_for(database)
        store.upsert_user(name, "collector")
        store.assign_portfolio(name, customers)
        return {"collector": name, "portfolio": store.portfolio(name)}

    run(assign)


@activity_app.command("list")
@reports_errors
def list_records(what: Annotated[str, typer.Argument(help="promises, disputes, contacts or letters.")],
                 customer: Annotated[str | None, typer.Option(help="Only this customer.")] = None,
                 database: Database = None) -> None:
    """List recorded activity as JSON."""
    listers = {"promises": "list_promises", "disputes": "list_disputes", "contacts": "list_contacts",
               "letters": "list_letters"}
    if what not in listers:
        raise BadInput(f"expected one of {', '.join(listers)}, got {what!r}")
    run(lambda: getattr(store_for(database), listers[what])(customer))


@audit_app.command()
@reports_errors
def verify(database: Database = None) -> None:
    """Check the hash chain of the audit log and every record against it; exit 1 on any problem."""
    from activity.audit import verify_audit

    store = store_for(database)
    problems = verify_audit(store)
    for problem in problems:
        errors.print(f"audit: {problem}", markup=False, highlight=False)
    if problems:
        raise typer.Exit(1)
    console.print("audit log intact")
