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
