"""The reminders outbox for the CLI, the API and the web page alike (issue 22): draft a dunning run into the
outbox, approve a batch, send the approved messages at most once, or write them as .eml files (dry run).

At most once: a message is claimed (`sending`, committed) before its SMTP transaction and marked `sent` after.
A message still `sending` when a send starts was claimed by a send that never recorded its end (a crash between
the SMTP transaction and the record): it may or may not have gone out, so it is never sent again automatically;
it is reported as unconfirmed for a person to check and settle (`settle`).
"""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd

from activity.store import ActivityStore
from ledger import Ledger
from reminders.smtp import ATTEMPTS, SendFailure, SmtpServer, send_with_retries, write_eml

DEFAULT_SENDER = "Receivables <receivables@example.invalid>"


def legal_customers(store: ActivityStore) -> frozenset[str]:
    """The customers whose live escalation a manager decided `legal`: handed to the lawyers, never reminded."""
    from queues.escalations import live_escalations

    escalations = live_escalations(store.list_queue_items(queue="escalation"))
    return frozenset(customer for customer, record in escalations.items() if record.get("decision") == "legal")


def draft_run(store: ActivityStore, ledger: Ledger, as_of: pd.Timestamp, user: str, *, now: datetime,
              sender: str = DEFAULT_SENDER, dunning_policy=None, reminder_policy=None,
              customers: frozenset[str] | None = None) -> dict:
    """Render the dunning proposal at `as_of` into the outbox: one message per customer and level (held items
    left out, legal escalations excluded), `email` to the customer's contacts or, without any, `letter` (the
    letter list). A run drafted again adds nothing: each key (customer, level, run date) is there once.
    `customers`: only these (a collector's portfolio); None: every customer."""
    from configs import config_path
    from reminders.compose import compose_reminders, load_reminder_policy, mime_message
    from rules.dunning import dunning_proposal, load_policy

    dunning_policy = dunning_policy or load_policy(config_path("dunning", "default.yaml"))
    reminder_policy = reminder_policy or load_reminder_policy()
    proposal = dunning_proposal(ledger, as_of, dunning_policy)
    if customers is not None:
        proposal = proposal[proposal["customer_id"].isin(customers)]
    reminders = compose_reminders(ledger, as_of, proposal, reminder_policy,
                                  excluded_customers=legal_customers(store))
    drafted, existing = [], []
    for reminder in reminders:
        row, created = store.draft_outbox_message(
            user, key=reminder.key, customer_id=reminder.customer_id, level=reminder.level,
            run_date=as_of.date(), channel="email" if reminder.recipients else "letter",
            language=reminder.language, recipients=reminder.recipients, subject=reminder.subject,
            mime=mime_message(reminder, sender).as_bytes(policy=email.policy.SMTP), items=list(reminder.items),
            totals=reminder.totals, now=now)
        (drafted if created else existing).append(row)
    return {"as_of": as_of.date(), "drafted": drafted, "existing": existing,
            "letters": [row for row in drafted + existing if row["channel"] == "letter"]}


def send_approved(store: ActivityStore, user: str, server: SmtpServer, *, now: datetime,
                  run_date: pd.Timestamp | None = None, attempts: int = ATTEMPTS,
                  sleep: Callable[[float], None] = time.sleep,
                  after_transaction: Callable[[dict], None] | None = None,
                  customers: frozenset[str] | None = None) -> dict:
    """Send every approved e-mail (of `run_date`, or all; of `customers`, or everyone's): claim, SMTP with
    retries, record sent or failed. Answers sent, failed (with the server's reason) and unconfirmed (found
    `sending`: never resent here). `after_transaction` runs between the SMTP transaction and its record (tests
    inject a crash there)."""
    day = None if run_date is None else run_date.date()

    def of_customers(rows: list[dict]) -> list[dict]:
        return rows if customers is None else [row for row in rows if row["customer_id"] in customers]

    unconfirmed = of_customers(store.list_outbox(day, state="sending"))
    sent, failed = [], []
    for row in of_customers(store.list_outbox(day, state="approved", channel="email")):
        claimed = store.claim_outbox_message(row["message_id"], now=now)
        try:
            tries, refused = send_with_retries(claimed["mime"], claimed["recipients"], server, attempts=attempts,
                                               sleep=sleep)
        except SendFailure as failure:
            kind = f"temporary failure, {attempts} attempts" if failure.temporary else "permanent failure"
            failed.append(store.finish_outbox_message(user, row["message_id"], sent=False,
                                                      reason=f"{kind}: {failure.reason}", now=now))
            continue
        if after_transaction is not None:
            after_transaction(claimed)
        reason = "; ".join(f"refused {address}: {why}" for address, why in sorted(refused.items())) or None
        sent.append(store.finish_outbox_message(user, row["message_id"], sent=True, reason=reason,
                                                retries=tries - 1, now=now))
    return {"sent": sent, "failed": failed, "unconfirmed": unconfirmed}


def settle(store: ActivityStore, user: str, message_id: str, *, delivered: bool, note: str, now: datetime) -> dict:
    """A person's word on an unconfirmed message (left `sending`): delivered (recorded as sent, with the contact
    and letters) or not (failed with the note; approve it again to send it)."""
    note = note or ("delivered" if delivered else "not delivered")
    return store.finish_outbox_message(user, message_id, sent=delivered, reason=f"checked by {user}: {note}", now=now)


def write_dry_run(store: ActivityStore, folder: Path, run_date: pd.Timestamp | None = None) -> list[Path]:
    """Write each e-mail of the outbox that is drafted or approved (of `run_date`, or all) as FOLDER/<key>.eml,
    instead of sending it; the outbox is left as it is."""
    day = None if run_date is None else run_date.date()
    rows = [row for state in ("drafted", "approved") for row in store.list_outbox(day, state=state, channel="email")]
    return [write_eml(store.get_outbox_message(row["message_id"])["mime"], folder, row["key"]) for row in rows]


def preview(message: dict) -> dict:
    """What a collector checks before approving: the headers, the text and HTML bodies and the attachments of
    an outbox message (with its `mime` bytes)."""
    parsed = email.message_from_bytes(message["mime"], policy=email.policy.default)
    text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    attachments = [{"filename": part.get_filename(), "mimetype": part.get_content_type(),
                    "bytes": len(part.get_content())} for part in parsed.iter_attachments()]
    return {key: value for key, value in message.items() if key != "mime"} | {
        "from": str(parsed["From"]), "to": str(parsed["To"] or ""), "message_header_id": str(parsed["Message-ID"]),
        "text": text.get_content() if text is not None else "", "html": html.get_content() if html is not None else "",
        "attachments": attachments}
