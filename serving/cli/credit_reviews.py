"""The credit reviews queue from the command line (issue 21): `arrisk credit-reviews list | open | decide`.

`list` shows the recorded reviews and the day's candidates (deteriorating, near the limit, new) with the
recommended limit and its formula; `open` records a review for a candidate with the day's figures; `decide`
records the analyst's decision (approve, change, credit_hold), audited under `--user`. The ledger is read
with what the activity store recorded (a decided limit is the customer's limit), the day's deterioration
scores come from the run of the date when there is one, else from the champion deterioration model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from serving.cli.activity import Database, Key, User, now, run, store_for
from serving.cli.common import (
    QUEUES,
    LedgerDir,
    OutFile,
    TrackingUri,
    about_option,
    app,
    checked_out,
    parse_date,
    show_or_write,
)
from serving.cli.errors import reports_errors
from serving.cli.reports import RunsDir, champions_from, served_run, with_recorded_activity

credit_reviews_app = typer.Typer(help="The credit team's queue: reviews, recommended limits, decisions.",
                                 no_args_is_help=True)
app.add_typer(credit_reviews_app, name="credit-reviews", rich_help_panel=QUEUES)

AsOf = Annotated[str, typer.Option(help="Review date, YYYY-MM-DD: only what was known then is used.")]
Policy = Annotated[Path | None, typer.Option(help="Credit-review policy YAML (default configs/credit_reviews/default.yaml).")]
SHOWN = ["kind", "item_id", "customer_id", "reason_code", "status", "triggers", "credit_limit", "utilisation",
         "deterioration_probability", "recommended_limit", "decision", "decided_amount", "due_date", "formula"]
ON_SCREEN = ["kind", "item_id", "customer_id", "reason_code", "status", "credit_limit", "recommended_limit",
             "decided_amount", "due_date"]  # the formula and its inputs: with --out


def day_scores(ledger, ledger_dir: Path, as_of: pd.Timestamp, runs_dir: Path | None,
               tracking_uri: str | None) -> pd.DataFrame:
    """The day's deterioration probability and flag per customer: the run's, else the champion model's."""
    state = served_run(runs_dir, as_of, ledger_dir)
    if state is not None:
        return state.view(as_of, actions=False).customers
    from features import customer_features_at

    model = champions_from(tracking_uri).require("deterioration")
    customers = customer_features_at(ledger, as_of)
    return customers.assign(deterioration_probability=model.predict_proba(customers)[:, 1],
                            deteriorating=model.flag(customers))


def review_table(ledger_dir: Path, as_of: pd.Timestamp, runs_dir: Path | None, tracking_uri: str | None,
                 policy_path: Path | None):
    """The ledger with its records, the policy, and the day's review table."""
    from ledger import read_ledger
    from queues.credit_reviews import credit_review_table, load_credit_review_policy

    with about_option("--policy"):
        policy = load_credit_review_policy(policy_path)
    ledger = with_recorded_activity(read_ledger(ledger_dir))
    scores = day_scores(ledger, ledger_dir, as_of, runs_dir, tracking_uri)
    return ledger, policy, credit_review_table(ledger, as_of, scores, policy)


@credit_reviews_app.command("list")
@reports_errors
def list_reviews(ledger_dir: LedgerDir, as_of: AsOf, policy: Policy = None, out: OutFile = None,
                 tracking_uri: TrackingUri = None, runs_dir: RunsDir = None, database: Database = None) -> None:
    """Recorded reviews, then the customers with a trigger and no open review, with the recommended limit,
    its formula (and, with --out, every input as JSON)."""
    from queues.credit_reviews import review_candidates, review_queue
    from serving.activity import activity_store_exists

    checked_out(out)
    cutoff = parse_date(as_of, "--as-of")
    _, _, table = review_table(ledger_dir, cutoff, runs_dir, tracking_uri, policy)
    recorded = []
    if database is not None or activity_store_exists():
        store = store_for(database)
        try:
            recorded = store.list_queue_items("credit_review")
        finally:
            store.close()
    rows = pd.DataFrame(review_queue(review_candidates(table), recorded))
    rows = rows.reindex(columns=list(dict.fromkeys([*SHOWN, *rows.columns])))
    if "today" in rows:  # a recorded review: the formula and the limit it was opened with
        details = rows["details"].map(lambda text: json.loads(text) if isinstance(text, str) and text else {})
        rows["formula"] = rows["formula"].where(rows["kind"] == "candidate", details.map(lambda d: d.get("formula")))
        rows["recommended_limit"] = rows["recommended_limit"].where(rows["kind"] == "candidate",
                                                                    pd.to_numeric(rows["amount"], errors="coerce"))
        rows = rows.drop(columns="today")
    if out is None:
        show_or_write(rows[ON_SCREEN].dropna(axis=1, how="all"), None, f"Credit reviews as of {cutoff:%Y-%m-%d}")
        return
    rows["inputs"] = rows["inputs"].map(lambda inputs: json.dumps(inputs) if isinstance(inputs, dict) else inputs)
    show_or_write(rows, out, f"Credit reviews as of {cutoff:%Y-%m-%d}")


@credit_reviews_app.command("open")
@reports_errors
def open_review(ledger_dir: LedgerDir, as_of: AsOf, customer: Annotated[str, typer.Option(help="Customer id.")],
                user: User, note: str = "", policy: Policy = None, tracking_uri: TrackingUri = None,
                runs_dir: RunsDir = None, idempotency_key: Key = None, database: Database = None) -> None:
    """Open a review for a customer with a trigger on --as-of: its reason, recommended limit and the formula's
    inputs are recorded, due by the SLA of configs/sla/default.yaml."""
    from ledger.errors import NotFound
    from queues.credit_reviews import opening_fields
    from queues.sla import load_sla_policy

    cutoff = parse_date(as_of, "--as-of")

    def create() -> dict:
        ledger, credit_policy, table = review_table(ledger_dir, cutoff, runs_dir, tracking_uri, policy)
        row = table[table["customer_id"] == customer]
        if row.empty:
            raise NotFound(f"--customer: {customer!r} is not known on {cutoff:%Y-%m-%d}")
        fields = opening_fields(row.iloc[0].to_dict(), cutoff, credit_policy, load_sla_policy(), ledger.base_currency)
        store = store_for(database, ledger)
        try:
            return store.open_queue_item(user, **fields, note=note, idempotency_key=idempotency_key, now=now())
        finally:
            store.close()

    run(create)


@credit_reviews_app.command("decide")
@reports_errors
def decide_review(review: Annotated[str, typer.Option(help="The review's id (CRV-...).")],
                  version: Annotated[int, typer.Option(min=1, help="The version you read; a newer one is refused.")],
                  decision: Annotated[str, typer.Option(help="approve, change or credit_hold.")],
                  decided_date: Annotated[str, typer.Option(help="YYYY-MM-DD.")], user: User,
                  limit: Annotated[str | None, typer.Option(help="The limit set, with --decision change.")] = None,
                  note: str | None = None, database: Database = None) -> None:
    """Record the analyst's decision: approve sets the recommended limit, change the --limit given,
    credit_hold a limit of 0; the decided limit is the customer's credit limit from then on."""
    from ledger.errors import NotFound
    from queues.credit_reviews import QUEUE, decision_changes

    day = parse_date(decided_date, "--decided-date")

    def decide() -> dict:
        store = store_for(database)
        try:
            record = store.get_queue_item(review)
            if record["queue"] != QUEUE:
                raise NotFound(f"--review: {review} is not a credit review")
            changes = decision_changes(record, decision, day, limit=limit, note=note)
            return store.update_queue_item(user, review, version, now=now(), **changes)
        finally:
            store.close()

    run(decide)
