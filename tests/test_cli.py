"""The command line contract: --help everywhere, exit codes, one readable error and no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ledger import write_ledger
from serving.cli import app
from tests.ledgers import tiny_ledger

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


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


# -- writers never replace what they did not write (issue 14) ----------------------------------------


def one_line_error(result) -> str:
    """The error a command printed, after checking it is one line, the last, with no traceback (MLflow
    may log before it)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert result.stderr.endswith(line + "\n")
    return line


def test_generate_refuses_a_folder_that_is_not_a_ledger_before_any_work(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "important.txt").write_text("precious")
    result = runner.invoke(app, ["generate", "--out", str(tmp_path / "x"), "--customers", "5", "--months", "2"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{tmp_path / 'x'}: is a folder that is not an ar-risk ledger" in result.stderr
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["important.txt"]
    assert (tmp_path / "x" / "important.txt").read_text() == "precious"


def test_a_report_file_never_replaces_a_folder_or_a_link(tmp_path):
    write_ledger(tiny_ledger(), tmp_path / "ledger")
    aging = ["aging", "--ledger", str(tmp_path / "ledger"), "--as-of", "2024-03-01", "--out"]
    (tmp_path / "report.csv").mkdir()
    (tmp_path / "report.csv" / "kept.txt").write_text("mine")
    line = one_line_error(runner.invoke(app, [*aging, str(tmp_path / "report.csv")]))
    assert line == f"error: {tmp_path / 'report.csv'}: is a folder; refusing to replace it with a file (nothing was changed)"
    assert (tmp_path / "report.csv" / "kept.txt").read_text() == "mine"

    (tmp_path / "elsewhere.csv").write_text("someone else's file")
    (tmp_path / "link.csv").symlink_to(tmp_path / "elsewhere.csv")
    line = one_line_error(runner.invoke(app, [*aging, str(tmp_path / "link.csv")]))
    assert "link.csv: is a symbolic link" in line
    assert (tmp_path / "elsewhere.csv").read_text() == "someone else's file" and (tmp_path / "link.csv").is_symlink()


def test_report_files_are_not_written_over_a_folder_inside_the_output_folder(tmp_path):
    write_ledger(tiny_ledger(), tmp_path / "ledger")
    (tmp_path / "reports" / "kpis.html").mkdir(parents=True)
    result = runner.invoke(app, ["report", "kpis", "--ledger", str(tmp_path / "ledger"), "--from", "2024-01-01",
                                 "--to", "2024-03-31", "--out", str(tmp_path / "reports"), "--tracking-uri",
                                 f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert "kpis.html: is a folder; refusing to replace it with a file" in one_line_error(result)
    assert (tmp_path / "reports" / "kpis.html").is_dir()


def test_a_folder_option_that_is_a_file_is_refused_before_any_work(tmp_path):
    write_ledger(tiny_ledger(), tmp_path / "ledger")
    (tmp_path / "bt").write_text("not a folder")
    result = runner.invoke(app, ["backtest", "--ledger", str(tmp_path / "ledger"), "--out", str(tmp_path / "bt")])
    assert one_line_error(result) == (f"error: {tmp_path / 'bt'}: is not a folder; refusing to write report files "
                                      "into it (nothing was changed)")
    assert (tmp_path / "bt").read_text() == "not a folder"


# -- `arrisk serve` stops what it starts ---------------------------------------------------------------

# A stand-in server: starts a worker (as BentoML does), says its own pid and the worker's, and waits.
SERVER = """
import os, subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(os.getpid(), worker.pid, flush=True)
time.sleep(120)
"""


def start_run_server(server_code: str) -> subprocess.Popen:
    """`serving.cli.run_server` in a process of its own, running `server_code` as the server."""
    runner_code = ("import os, sys; from serving.cli import run_server; "
                   f"sys.exit(run_server([sys.executable, '-c', {server_code!r}], dict(os.environ)))")
    return subprocess.Popen([sys.executable, "-c", runner_code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(pid) for pid in pids)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_to_serve_reaches_the_server_and_its_workers(signum):
    serve = start_run_server(SERVER)
    try:
        server, worker = map(int, serve.stdout.readline().split())
        os.kill(serve.pid, signum)
        assert serve.wait(timeout=15) == 128 + signum  # the server died of that signal, and serve says so
        assert gone_within([server, worker], 10)
    finally:
        serve.kill()


def test_serve_exits_with_the_servers_code_when_the_server_dies():
    serve = start_run_server("import sys; sys.exit(3)")
    assert serve.wait(timeout=15) == 3


def test_the_server_stops_when_serve_is_killed_with_sigkill():
    # SIGKILL cannot be forwarded: the kernel tells the server instead (PR_SET_PDEATHSIG).
    serve = start_run_server(SERVER)
    try:
        server, worker = map(int, serve.stdout.readline().split())
        os.kill(serve.pid, signal.SIGKILL)
        assert gone_within([server], 10)
    finally:
        serve.kill()
        if alive(worker):  # the stand-in, unlike BentoML, does not stop its worker
            os.kill(worker, signal.SIGKILL)


def test_help_lists_the_commands_by_stage_in_the_readme_order():
    from serving.cli.common import STAGES

    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    text = result.output
    # One panel per stage, in order, each command inside its own stage's panel.
    panels = [text.index(stage.split(":")[0]) for stage in STAGES]
    assert panels == sorted(panels)
    for stage, commands in zip(panels, (["generate", "import", "validate", "features"], ["backtest", "train"],
                                         ["aging", "dunning", "kpis", "score", "worklist", "forecast", "report"],
                                         ["cash-apply", "unapplied"],
                                         ["sla", "credit-reviews", "deductions", "escalations"], ["provision"],
                                         ["activity", "audit", "reminders"], ["serve", "token"]),
                                 strict=True):
        later = [p for p in panels if p > stage]
        end = later[0] if later else len(text)
        positions = [text.index(f"│ {name} ", stage) for name in commands]
        assert positions == sorted(positions) and positions[-1] < end, commands


def test_a_bug_is_an_internal_error_never_bad_input_and_its_traceback_goes_to_the_log(tmp_path, monkeypatch):
    def broken(_path):
        raise KeyError("invoice_date")  # our bug, not the user's input

    monkeypatch.setattr("serving.cli.ledger.read_ledger", broken)
    monkeypatch.setenv("ARRISK_LOG_FILE", str(tmp_path / "logs" / "arrisk.log"))
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: internal error (KeyError") and str(tmp_path / "logs" / "arrisk.log") in line
    assert "bad input" not in result.output and "Traceback" not in result.output
    log = (tmp_path / "logs" / "arrisk.log").read_text()
    assert "Traceback" in log and "KeyError: 'invoice_date'" in log


def test_importing_the_cli_runs_nothing_and_python_m_serving_cli_works():
    code = ("import os; before = set(os.environ); import serving.cli; import sys; "
            "print(sorted(set(os.environ) - before)); print(sorted(m for m in ('mlflow', 'bentoml') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k not in ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    changed, imported = out.stdout.splitlines()
    assert "BENTOML_DO_NOT_TRACK" not in changed and "MLFLOW_DISABLE_TELEMETRY" not in changed
    assert imported == "[]"
    help_text = subprocess.run([sys.executable, "-m", "serving.cli", "--help"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout
    assert "generate" in help_text and "serve" in help_text


def test_train_shows_no_library_chatter_which_goes_to_the_log(tmp_path, monkeypatch):
    from ledger.synthetic import generate_ledger
    from training import pipeline
    from training.backtest import ModelSettings

    ledger, _ = generate_ledger(customers=60, months=14, seed=1)
    write_ledger(ledger, tmp_path / "ledger")
    # Small models, so the test is quick; the command is the same.
    monkeypatch.setattr(pipeline, "ModelSettings", lambda: ModelSettings(n_estimators=20, timing_horizon_weeks=20))
    monkeypatch.setenv("ARRISK_LOG_FILE", str(tmp_path / "arrisk.log"))
    result = runner.invoke(app, ["train", "--ledger", str(tmp_path / "ledger"),
                                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert result.exit_code == 0, result.output
    assert "late: version 1 promoted to champion" in result.output
    for chatter in (" INFO ", "Creating initial MLflow database tables", "alembic", "Successfully registered model",
                    "Created version"):
        assert chatter not in result.output, chatter
    log = (tmp_path / "arrisk.log").read_text()
    assert "Creating initial MLflow database tables" in log and "Successfully registered model" in log
