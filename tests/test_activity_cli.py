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


def test_dates_outside_the_ledger_window_are_refused_and_nothing_is_stored(scoring_ledger, tmp_path, monkeypatch):
    # The ledger runs from 2022-01 to mid-2023; with the default 10 years before and 5 after, 2040 is outside.
    from ledger import write_ledger

    write_ledger(scoring_ledger, tmp_path / "ledger")
    monkeypatch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{tmp_path / 'activity.sqlite'}")
    invoice = scoring_ledger.invoices.iloc[0]
    with_ledger = ["--user", "ana", "--ledger", str(tmp_path / "ledger")]
    attempts = {
        "made_date": ["activity", "promise", *with_ledger, "--customer", invoice["customer_id"], "--amount", "100",
                      "--made-date", "2040-01-01", "--promised-date", "2040-01-15"],
        "opened_date": ["activity", "dispute", *with_ledger, "--invoice", invoice["invoice_id"], "--customer",
                        invoice["customer_id"], "--opened-date", "2011-01-01", "--reason", "pricing", "--amount", "10"],
        "contact_date": ["activity", "contact", *with_ledger, "--customer", invoice["customer_id"],
                         "--contact-date", "9999-12-31", "--channel", "call"],
    }
    for field, command in attempts.items():
        result = runner.invoke(app, command)
        assert result.exit_code == 1, (field, result.output)
        assert result.stderr.startswith(f"error: {field}: ") and len(result.stderr.splitlines()) == 1
        assert "Traceback" not in result.output
    for listed in ("promises", "disputes", "contacts"):
        assert json.loads(runner.invoke(app, ["activity", "list", listed]).stdout) == []

    # An update is held to the same window: the promise keeps its date and its version.
    created = runner.invoke(app, ["activity", "promise", *with_ledger, "--customer", invoice["customer_id"],
                                  "--amount", "100", "--made-date", "2023-06-01", "--promised-date", "2023-06-15"])
    assert created.exit_code == 0, created.output
    promise_id = json.loads(created.stdout)["promise_id"]
    moved = runner.invoke(app, ["activity", "update", "promise", promise_id, *with_ledger, "--expected-version", "1",
                                "--set", "promised_date=2040-01-01"])
    assert moved.exit_code == 1 and "promised_date" in moved.stderr
    [kept] = json.loads(runner.invoke(app, ["activity", "list", "promises"]).stdout)
    assert (str(kept["promised_date"]), kept["version"]) == ("2023-06-15", 1)


def old_version_store_with_a_bad_contact(url: str, customer: str) -> None:
    """A store as the first schema (migration 0001) left it, holding a contact dated 9999-12-31, which that
    version accepted."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    from activity.store import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(text(
            "INSERT INTO contacts (contact_id, customer_id, contact_date, channel, outcome, note, created_by, "
            "recorded_at, version) VALUES ('CON-OLD-1', :customer, '9999-12-31', 'call', '', '', 'ana', "
            "'2023-06-01 09:00:00.000000', 1)"), {"customer": customer})
    engine.dispose()


def test_reports_still_run_over_a_bad_record_from_an_older_version_and_name_it(scoring_ledger, champion_store,
                                                                               tmp_path, monkeypatch):
    from ledger import write_ledger

    write_ledger(scoring_ledger, tmp_path / "ledger")
    url = f"sqlite:///{tmp_path / 'activity.sqlite'}"
    old_version_store_with_a_bad_contact(url, scoring_ledger.customers["customer_id"].iloc[0])
    monkeypatch.setenv("ARRISK_DATABASE_URL", url)
    reading = ["--ledger", str(tmp_path / "ledger"), "--as-of", "2023-06-30"]
    models = ["--tracking-uri", champion_store]
    commands = {"worklist": [*reading, *models, "--top", "3"],
                "dunning": [*reading, "--policy", "configs/dunning/default.yaml", "--out",
                            str(tmp_path / "dunning.csv")],
                "forecast": [*reading, *models, "--draws", "100", "--horizon-weeks", "2"],
                "score": [*reading, *models, "--out", str(tmp_path / "scores.csv")]}
    for name, options in commands.items():
        result = runner.invoke(app, [name, *options])
        assert result.exit_code == 0, (name, result.output)
        [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert "1 unreadable activity record(s): contacts CON-OLD-1 (contact_date: 9999-12-31 is outside" in warning
