"""Dunning reminders that go out (issue 22): `arrisk reminders draft` renders the dunning proposal into the
outbox of the activity store (one message per customer and level; a customer without an e-mail contact goes to
the letter list), `list` and `show` let a collector read them, `approve` approves a batch, `send` sends the
approved e-mails over SMTP at most once (`ARRISK_SMTP_*`), or with `--dry-run DIR` writes them as .eml files,
and `settle` records a person's word on a message a crash left unconfirmed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from ledger import read_ledger
from serving.cli.activity import Database, User, now, store_for
from serving.cli.common import (
    ACTIVITY,
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

reminders_app = typer.Typer(help="Dunning reminders: draft a run into the outbox, approve, send (or dry-run).",
                            no_args_is_help=True)
app.add_typer(reminders_app, name="reminders", rich_help_panel=ACTIVITY)

AsOf = Annotated[str, typer.Option(help="The run date, YYYY-MM-DD.")]
RunDate = Annotated[str | None, typer.Option("--as-of", help="Only the run of this date, YYYY-MM-DD (default: all).")]
Messages = Annotated[list[str] | None, typer.Option("--message", help="Outbox message id; repeat for several.")]
SHOWN = ["message_id", "customer_id", "level", "run_date", "channel", "language", "state", "recipients", "subject",
         "reason"]


def shown(rows: list[dict]) -> pd.DataFrame:
    """Outbox rows as a table, recipients joined."""
    table = pd.DataFrame(rows, columns=SHOWN)
    return table.assign(recipients=table["recipients"].map(lambda addresses: ", ".join(addresses or [])))


@reminders_app.command("draft")
@reports_errors
def draft(ledger_dir: LedgerDir, as_of: AsOf, user: User,
          policy: Annotated[Path | None, typer.Option(
              help="Dunning policy YAML (default configs/dunning/default.yaml).")] = None,
          reminder_policy: Annotated[Path | None, typer.Option(
              help="Reminder policy YAML (default configs/reminders/default.yaml).")] = None,
          sender: Annotated[str | None, typer.Option(
              help="The From address (default ARRISK_SMTP_SENDER).")] = None,
          database: Database = None) -> None:
    """Render the dunning proposal at --as-of into the outbox (drafted): one message per customer and level,
    held items left out, customers handed to legal excluded; drafting the same run again adds nothing."""
    from configs.settings import Settings
    from reminders.compose import load_reminder_policy
    from rules.dunning import load_policy
    from serving.activity import with_activity
    from serving.reminders import DEFAULT_SENDER, draft_run

    cutoff = parse_date(as_of, "--as-of")
    with about_option("--policy"):
        dunning_policy = load_policy(policy) if policy is not None else None
    with about_option("--reminder-policy"):
        policy_of_reminders = load_reminder_policy(reminder_policy)
    ledger = read_ledger(ledger_dir)
    store = store_for(database, ledger)
    ledger = with_activity(ledger, store.ledger_tables())
    result = draft_run(store, ledger, cutoff, user, now=now(),
                       sender=sender or Settings.from_environ().smtp_sender or DEFAULT_SENDER,
                       dunning_policy=dunning_policy, reminder_policy=policy_of_reminders)
    show_or_write(shown(result["drafted"] + result["existing"]), None, f"Reminders of {cutoff:%Y-%m-%d}")
    console.print(f"{len(result['drafted']):,} messages drafted, {len(result['existing']):,} already in the outbox; "
                  f"{len(result['letters']):,} on the letter list (no e-mail contact)", highlight=False)


@reminders_app.command("list")
@reports_errors
def list_messages(as_of: RunDate = None,
                  state: Annotated[str | None, typer.Option(
                      help="drafted, approved, sending, sent, failed or bounced.")] = None,
                  channel: Annotated[str | None, typer.Option(help="email, or letter (the letter list).")] = None,
                  database: Database = None, out: OutFile = None) -> None:
    """The outbox: each message's customer, level, channel, state (with the reason) and subject."""
    checked_out(out)
    day = None if as_of is None else parse_date(as_of, "--as-of").date()
    table = shown(store_for(database).list_outbox(day, state=state, channel=channel))
    show_or_write(table, out, "Reminders outbox" + ("" if day is None else f" of {day}"))
    unconfirmed = int((table["state"] == "sending").sum())
    if unconfirmed:
        console.print(f"{unconfirmed} unconfirmed (left sending by an interrupted send): check and "
                      "`arrisk reminders settle`", highlight=False)


@reminders_app.command("show")
@reports_errors
def show(message: Annotated[str, typer.Option(help="Outbox message id.")], database: Database = None) -> None:
    """One message as it goes out: headers, text body and attachments."""
    from serving.reminders import preview

    shown_message = preview(store_for(database).get_outbox_message(message))
    console.print(f"From: {shown_message['from']}\nTo: {shown_message['to']}\nSubject: {shown_message['subject']}\n"
                  f"State: {shown_message['state']}\n\n{shown_message['text']}", highlight=False, markup=False)
    for attachment in shown_message["attachments"]:
        console.print(f"attachment: {attachment['filename']} ({attachment['mimetype']}, {attachment['bytes']:,} "
                      "bytes)", highlight=False, markup=False)


@reminders_app.command("approve")
@reports_errors
def approve(user: User, message: Messages = None,
            drafted_of: Annotated[str | None, typer.Option(
                "--all-drafted", help="Approve every drafted e-mail of this run date, YYYY-MM-DD.")] = None,
            database: Database = None) -> None:
    """Approve a batch for sending (all or none): the messages given, or every drafted e-mail of a run."""
    from ledger.errors import BadInput

    store = store_for(database)
    ids = list(message or [])
    if drafted_of is not None:
        day = parse_date(drafted_of, "--all-drafted").date()
        ids += [row["message_id"] for row in store.list_outbox(day, state="drafted", channel="email")]
    if not ids:
        raise BadInput("nothing to approve: give --message ID (repeatable) or --all-drafted DATE")
    rows = store.approve_outbox_messages(user, ids, now=now())
    console.print(f"{len(rows):,} messages approved", highlight=False)


@reminders_app.command("send")
@reports_errors
def send(user: User, as_of: RunDate = None,
         dry_run: Annotated[Path | None, typer.Option(
             help="Write each drafted or approved e-mail as DIR/<key>.eml instead of sending; the outbox is "
                  "left as it is.")] = None,
         database: Database = None) -> None:
    """Send the approved e-mails over SMTP (ARRISK_SMTP_HOST, _PORT, _SECURITY, _USER, _PASSWORD, _SENDER), each
    at most once: temporary failures retried with backoff, permanent ones marked failed with the server's
    reason; messages an interrupted send left unconfirmed are listed, never resent."""
    from configs.settings import Settings
    from reminders.smtp import smtp_server
    from serving.reminders import send_approved, write_dry_run

    store = store_for(database)
    day = None if as_of is None else parse_date(as_of, "--as-of")
    if dry_run is not None:
        paths = write_dry_run(store, dry_run, day)
        console.print(f"dry run: wrote {len(paths):,} messages as .eml files to {dry_run}", highlight=False)
        return
    result = send_approved(store, user, smtp_server(Settings.from_environ()), now=now(), run_date=day)
    for row in result["failed"]:
        console.print(f"failed {row['message_id']} ({row['customer_id']}): {row['reason']}", highlight=False,
                      markup=False)
    for row in result["unconfirmed"]:
        console.print(f"unconfirmed {row['message_id']} ({row['customer_id']}): left sending by an interrupted "
                      "send; check the mail server and run `arrisk reminders settle`", highlight=False, markup=False)
    console.print(f"{len(result['sent']):,} sent, {len(result['failed']):,} failed, "
                  f"{len(result['unconfirmed']):,} unconfirmed", highlight=False)


@reminders_app.command("settle")
@reports_errors
def settle_message(user: User, message: Annotated[str, typer.Option(help="Outbox message id (left sending).")],
                   delivered: Annotated[bool, typer.Option(
                       "--delivered/--not-delivered", help="Whether the message went out (check the mail server).")],
                   note: str = "", database: Database = None) -> None:
    """Settle a message an interrupted send left unconfirmed: delivered (recorded as sent, with the contact and
    the letters) or not (failed; approve it again to send it)."""
    from serving.reminders import settle

    row = settle(store_for(database), user, message, delivered=delivered, note=note, now=now())
    console.print_json(json.dumps(row, default=str))
