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
