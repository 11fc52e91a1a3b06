"""The command line contract: --help everywhere, exit codes, one readable error and no traceback."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from ledger import write_ledger
from serving.cli import app
from tests.ledgers import tiny_ledger

runner = CliRunner()


def command_names() -> list[str]:
    return sorted(typer.main.get_command(app).commands)


def test_every_subcommand_has_help():
    names = command_names()
    assert {"generate", "import", "validate"} <= set(names)
    for name in names:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage" in result.output


def test_validate_prints_a_summary_of_a_valid_ledger(tmp_path):
    write_ledger(tiny_ledger(), tmp_path / "ledger")
    result = runner.invoke(app, ["validate", str(tmp_path / "ledger")])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and "invoices" in result.output and "2 open documents" in result.output


def test_validate_names_every_problem_and_exits_non_zero(tmp_path):
    ledger = tiny_ledger()
    invoices = ledger.invoices.assign(currency=["EUR", "EURO", "EUR", "EUR", "EUR"])
    write_ledger(ledger.replace(invoices=invoices), tmp_path / "ledger", validate=False)
    result = runner.invoke(app, ["validate", str(tmp_path / "ledger")])
    assert result.exit_code == 1
    assert "invoices row 1 (invoice_id=I2) column currency" in result.output
    assert "Traceback" not in result.output


def test_validate_of_a_missing_directory_is_one_clear_error(tmp_path):
    result = runner.invoke(app, ["validate", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "no such ledger directory" in result.output
    assert "Traceback" not in result.output


def test_a_bad_date_option_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["generate", "--out", str(tmp_path / "x"), "--start", "31/12/2023"])
    assert result.exit_code == 1
    assert "--start" in result.output and "YYYY-MM-DD" in result.output
    assert not (tmp_path / "x").exists()


def test_backtest_without_enough_history_is_a_clear_error(tmp_path):
    write_ledger(tiny_ledger(), tmp_path / "ledger")
    result = runner.invoke(app, ["backtest", "--ledger", str(tmp_path / "ledger"), "--out", str(tmp_path / "bt")])
    assert result.exit_code == 1
    assert "not enough history for a backtest" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "bt" / "metrics.json").exists()


def test_train_rejects_a_bad_until_date(tmp_path):
    write_ledger(tiny_ledger(), tmp_path / "ledger")
    result = runner.invoke(app, ["train", "--ledger", str(tmp_path / "ledger"), "--until", "2024-13-01",
                                 "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert result.exit_code == 1
    assert "--until" in result.output and "Traceback" not in result.output
