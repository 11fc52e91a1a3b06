"""The escalations queue from the command line (issue 21): `arrisk escalations list` shows the customers the
escalation rules send to a manager at a date, ranked by the deterioration champion's probability, with the
escalations recorded; `open` records one with its reasons, `decide` records the manager's decision. They read
the ledger with what the activity store recorded, and write to the store (`--database`) under `--user`."""

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
    TrackingUri,
    about_option,
    app,
    champions_from,
    checked_out,
    console,
    parse_date,
    show_or_write,
)
from serving.cli.errors import reports_errors
from serving.cli.reports import with_recorded_activity

escalations_app = typer.Typer(help="The escalations queue: candidates, open one, the manager's decision.",
                              no_args_is_help=True)
app.add_typer(escalations_app, name="escalations", rich_help_panel=QUEUES)

Policy = Annotated[Path | None, typer.Option(help="Escalation policy YAML (default configs/escalations/default.yaml).")]
AsOf = Annotated[str, typer.Option(help="The day, YYYY-MM-DD.")]
SHOWN = ["rank", "customer_id", "segment", "reason_code", "reasons", "deterioration_probability", "open_ar_base",
         "owner", "item_id", "status", "decision"]


def scores_at(ledger, as_of: pd.Timestamp, tracking_uri: str | None) -> pd.DataFrame | None:
    """The deterioration champion's probability and flag per customer at `as_of`; None without a champion
    (the deterioration rule then never fires and the queue is ranked by open AR)."""
    from features import customer_features_at

    model = champions_from(tracking_uri).deterioration
    if model is None:
        return None
    features = customer_features_at(ledger, as_of)
    return pd.DataFrame({"customer_id": features["customer_id"],
                         "deterioration_probability": model.predict_proba(features)[:, 1],
                         "deteriorating": model.flag(features)})


def candidates(ledger_dir: Path, as_of: pd.Timestamp, policy: Path | None, tracking_uri: str | None):
    """(the ledger with the recorded activity, the escalation candidates at `as_of`, whether a model ranked them)."""
    from queues.escalations import escalation_queue, load_escalation_policy

    with about_option("--policy"):
        escalation_policy = load_escalation_policy(policy)
    ledger = with_recorded_activity(read_ledger(ledger_dir))
    scores = scores_at(ledger, as_of, tracking_uri)
    return ledger, escalation_queue(ledger, as_of, scores, escalation_policy), scores is not None


@escalations_app.command("list")
@reports_errors
def list_escalations(ledger_dir: LedgerDir, as_of: AsOf, policy: Policy = None, tracking_uri: TrackingUri = None,
                     recorded_only: Annotated[bool, typer.Option(help="Only the live escalations recorded.")] = False,
                     database: Database = None, out: OutFile = None) -> None:
    """The customers the rules escalate at --as-of, highest deterioration probability first, with every reason,
    and the live escalations recorded (status, decision, SLA due date)."""
    from serving.routes.escalations import queue_rows

    checked_out(out)
    cutoff = parse_date(as_of, "--as-of")
    _, table, ranked = candidates(ledger_dir, cutoff, policy, tracking_uri)
    rows = pd.DataFrame(queue_rows(table, store_for(database).list_queue_items(queue="escalation"), cutoff,
                                   recorded_only))
    for column in SHOWN:
        if column not in rows:
            rows[column] = None
    if out is None:
        rows = rows[SHOWN].assign(reasons=rows["reasons"].map(lambda reasons: "; ".join(reasons or [])))
    else:
        rows = rows.assign(**{column: rows[column].map(json.dumps) for column in ("triggers", "reasons", "evidence")
                              if column in rows})
    show_or_write(rows, out, f"Escalations as of {cutoff:%Y-%m-%d}")
    live = int(rows["item_id"].notna().sum())
    console.print(f"{len(table):,} customers escalated by the rules, {live:,} escalations recorded"
                  + ("" if ranked else " (no deterioration champion: the deterioration rule was skipped)"),
                  highlight=False)


@escalations_app.command("open")
@reports_errors
def open_escalation(ledger_dir: LedgerDir, as_of: AsOf, customer: Annotated[str, typer.Option(help="Customer id.")],
                    user: User, note: str = "", policy: Policy = None, tracking_uri: TrackingUri = None,
                    database: Database = None) -> None:
    """Record the escalation of --customer with every reason the rules give at --as-of (owner: its segment's
    manager; due date: the SLA's). Fails when no rule escalates it, or while an escalation of it is live."""
    from ledger.errors import BadInput
    from queues.escalations import QUEUE, opening_fields
    from queues.sla import due_date, load_sla_policy

    cutoff = parse_date(as_of, "--as-of")
    ledger, table, _ = candidates(ledger_dir, cutoff, policy, tracking_uri)
    row = table[table["customer_id"] == customer]
    if row.empty:
        raise BadInput(f"no escalation rule fires for {customer} on {cutoff:%Y-%m-%d}")
    fields = opening_fields(row.iloc[0].to_dict(), cutoff, due_date(load_sla_policy(), QUEUE, cutoff),
                            ledger.base_currency)
    console.print_json(json.dumps(store_for(database).open_queue_item(user, **fields, note=note, now=now()),
                                  default=str))


@escalations_app.command("decide")
@reports_errors
def decide(item_id: Annotated[str, typer.Argument(help="The escalation's id, e.g. ESC-...")], user: User,
           expected_version: Annotated[int, typer.Option(min=1, help="The version you read; a newer one fails.")],
           decision: Annotated[str, typer.Option(help="keep_chasing, legal, credit_hold or write_off_proposal.")],
           decided_date: Annotated[str, typer.Option(help="YYYY-MM-DD.")],
           close: Annotated[bool, typer.Option(help="Also close the escalation.")] = False,
           note: Annotated[str | None, typer.Option(help="Why.")] = None, database: Database = None) -> None:
    """Record the manager's decision on an escalation (audited under --user)."""
    from ledger.errors import BadInput
    from queues.escalations import DECISIONS, QUEUE

    if decision not in DECISIONS:
        raise BadInput(f"--decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    day = parse_date(decided_date, "--decided-date")
    store = store_for(database)
    if store.get_queue_item(item_id)["queue"] != QUEUE:
        raise BadInput(f"{item_id} is not an escalation")
    changes = {"status": "closed" if close else "decided", "decision": decision, "decided_date": day.date()}
    if note is not None:
        changes["note"] = note
    console.print_json(json.dumps(store.update_queue_item(user, item_id, expected_version, now=now(), **changes),
                                  default=str))
