"""`arrisk activity` and `arrisk audit verify` from the shell, and the worklist command reading them."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from serving.cli import app

runner = CliRunner()


def test_promise_recorded_from_the_shell_holds_the_worklist_row(scoring_ledger, champion_store, tmp_path,
                                                                monkeypatch):
    from ledger import write_ledger

    write_ledger(scoring_ledger, tmp_path / "ledger")
    database = f"sqlite:///{tmp_path / 'activity.sqlite'}"
    monkeypatch.setenv("ARRISK_DATABASE_URL", database)
    listed = tmp_path / "before.csv"
    worklist = ["worklist", "--ledger", str(tmp_path / "ledger"), "--as-of", "2023-06-15", "--tracking-uri",
                champion_store]
    assert runner.invoke(app, [*worklist, "--out", str(listed)]).exit_code == 0
    before = pd.read_csv(listed)
    customer = before.loc[before["status"] == "active", "customer_id"].iloc[0]

    result = runner.invoke(app, ["activity", "promise", "--user", "ana", "--customer", customer, "--amount", "1000000",
                                 "--made-date", "2023-06-15", "--promised-date", "2023-06-30", "--ledger",
                                 str(tmp_path / "ledger"), "--idempotency-key", "k1"])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["activity", "promise", "--user", "ana", "--customer", customer, "--amount", "1000000",
                                "--made-date", "2023-06-15", "--promised-date", "2023-06-30", "--idempotency-key", "k1"])
    assert json.loads(again.output)["promise_id"] == json.loads(result.output)["promise_id"]
    listing = runner.invoke(app, ["activity", "list", "promises", "--customer", customer])
    assert len(json.loads(listing.output)) == 1

    assert runner.invoke(app, [*worklist, "--out", str(listed)]).exit_code == 0
    after = pd.read_csv(listed).set_index("customer_id")
    assert after.loc[customer, "status"] == "held"
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0


def test_bad_activity_input_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{tmp_path / 'activity.sqlite'}")
    result = runner.invoke(app, ["activity", "contact", "--user", "ana", "--customer", "C1", "--contact-date",
                                 "2023-06-01", "--channel", "pigeon"])
    assert result.exit_code == 1 and "channel" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["activity", "list", "invoices"])
    assert result.exit_code == 1 and "promises" in result.output


def test_update_needs_the_version_read_and_portfolios_drive_the_collector_filter(scoring_ledger, champion_store,
                                                                               tmp_path, monkeypatch):
    from ledger import write_ledger

    write_ledger(scoring_ledger, tmp_path / "ledger")
    monkeypatch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{tmp_path / 'activity.sqlite'}")
    customer = scoring_ledger.customers["customer_id"].iloc[0]
    created = json.loads(runner.invoke(app, ["activity", "contact", "--user", "ana", "--customer", customer,
                                             "--contact-date", "2023-06-01", "--channel", "call"]).output)
    update = ["activity", "update", "contact", created["contact_id"], "--user", "ben", "--set", "note=called back"]
    first = runner.invoke(app, [*update, "--expected-version", "1"])
    assert first.exit_code == 0 and json.loads(first.output)["version"] == 2
    stale = runner.invoke(app, [*update, "--expected-version", "1"])
    assert stale.exit_code == 1 and "version" in stale.output.lower()
    assert runner.invoke(app, [*update[:-2], "--set", "colour=red", "--expected-version", "2"]).exit_code == 1

    # A portfolio recorded for a collector decides whose customers `worklist --collector` lists.
    listed = tmp_path / "all.csv"
    worklist = ["worklist", "--ledger", str(tmp_path / "ledger"), "--as-of", "2023-06-30", "--tracking-uri",
                champion_store]
    assert runner.invoke(app, [*worklist, "--out", str(listed)]).exit_code == 0
    chosen = pd.read_csv(listed)["customer_id"].iloc[[1, 4]].tolist()
    assert runner.invoke(app, ["activity", "collector", "Zoe", *chosen]).exit_code == 0
    mine = tmp_path / "zoe.csv"
    assert runner.invoke(app, [*worklist, "--collector", "Zoe", "--out", str(mine)]).exit_code == 0
    assert pd.read_csv(mine)["customer_id"].tolist() == chosen
