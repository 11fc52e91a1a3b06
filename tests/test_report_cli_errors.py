"""Bad options of the forecast and report commands: a one-line error, exit 1, nothing written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ledger import write_ledger
from serving.cli import app
from tests.ledgers import tiny_ledger

runner = CliRunner()


@pytest.fixture()
def ledger_dir(tmp_path):
    write_ledger(tiny_ledger(), tmp_path / "ledger")
    return tmp_path / "ledger"


@pytest.mark.parametrize("args, message", [
    (["forecast", "--as-of", "2024-04-10", "--freq", "month"], "--freq"),
    (["forecast", "--as-of", "2024-04-31"], "--as-of"),
    (["report", "drift", "--as-of", "2024-13-01"], "--as-of"),
    (["report", "performance", "--from", "last year"], "--from"),
    (["report", "kpis", "--from", "2024-03-01", "--to", "2024-01-01"], "before its start"),
])
def test_bad_report_options_are_one_line_errors_and_write_nothing(ledger_dir, tmp_path, args, message):
    out = tmp_path / "reports"
    tracking = ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    result = runner.invoke(app, [*args, "--ledger", str(ledger_dir), *tracking,
                                 *(["--out", str(out)] if args[0] == "report" else [])])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())
