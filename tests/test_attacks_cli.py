"""Replays of the attacks on the command line with real processes and real folders (issue 14): writers
never delete what they did not write, a killed import leaves nothing behind for good, `kill` of
`arrisk serve` stops the server, and out-of-window dates are refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serving.smoke import free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parents[1]
ARRISK = [sys.executable, "-m", "serving.cli"]
IBM_SAMPLE = ROOT / "samples" / "ibm" / "ibm_wa_accounts_receivable.csv"


def arrisk(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run this checkout's `arrisk` command (from any folder) and capture what it prints."""
    return subprocess.run([*ARRISK, *args], cwd=cwd, env=this_checkout(env or dict(os.environ)),
                          capture_output=True, text=True, timeout=300)


def this_checkout(environment: dict[str, str]) -> dict[str, str]:
    """The environment with this checkout first on the import path, whatever the working folder."""
    return environment | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))}


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes, and every subfolder (as b"/")."""
    return {str(p.relative_to(folder)): (b"/" if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def staging_siblings(target: Path) -> list[str]:
    """The hidden staging folders a ledger write leaves beside its target."""
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))


def test_import_over_a_folder_that_is_not_a_ledger_is_refused_and_touches_nothing(tmp_path):
    # The report's reproduction: mkdir -p x/sub; echo precious > x/important.txt; arrisk import ... --out x
    (tmp_path / "x" / "sub").mkdir(parents=True)
    (tmp_path / "x" / "important.txt").write_text("precious\n")
    before = tree(tmp_path / "x")

    result = arrisk("import", str(IBM_SAMPLE), "--mapping", "ibm_sample", "--out", "x", cwd=tmp_path)

    assert result.returncode != 0
    assert tree(tmp_path / "x") == before
    assert (tmp_path / "x" / "important.txt").read_text() == "precious\n" and (tmp_path / "x" / "sub").is_dir()
    assert f"{tmp_path / 'x'}: is a folder that is not an ar-risk ledger" in result.stderr
    assert "important.txt, sub/" in result.stderr and "Traceback" not in result.stderr
    assert staging_siblings(tmp_path / "x") == []


def test_import_with_out_dot_in_a_project_copy_leaves_the_project_as_it_was(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "configs", project / "configs")
    (project / "README.md").write_text("the project\n")
    before = tree(project)

    result = arrisk("import", str(IBM_SAMPLE), "--mapping", "ibm_sample", "--out", ".", cwd=project)

    assert result.returncode != 0
    assert tree(project) == before
    assert f"{project}: is a folder that is not an ar-risk ledger" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]  # no staging folder beside it either


def test_a_killed_import_leaves_no_staging_behind_after_the_next_import(tmp_path):
    # Generating a large ledger spends long enough writing that SIGKILL lands while the staging folder is
    # being filled (the poll below waits for it to appear).
    target = tmp_path / "ledger"
    writer = subprocess.Popen([*ARRISK, "generate", "--customers", "3000", "--months", "24", "--out", str(target)],
                              cwd=ROOT, env=this_checkout(dict(os.environ)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not staging_siblings(target) and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert writer.returncode == -signal.SIGKILL, "the generator finished before it could be killed mid-write"
    assert staging_siblings(target) != [], "SIGKILL mid-write leaves the staging folder (the defect's premise)"

    result = arrisk("import", str(IBM_SAMPLE), "--mapping", "ibm_sample", "--out", str(target))

    assert result.returncode == 0, result.stderr
    assert staging_siblings(target) == []
    assert arrisk("validate", str(target)).returncode == 0


@pytest.fixture
def served_ledger(scoring_ledger, champion_store, tmp_path):
    """A ledger folder and the environment `arrisk serve` reads (models, a throwaway activity store)."""
    from ledger import write_ledger

    write_ledger(scoring_ledger, tmp_path / "ledger")
    environment = dict(os.environ, ARRISK_TRACKING_URI=champion_store, ARRISK_API_TOKENS="",
                       ARRISK_DATABASE_URL=f"sqlite:///{tmp_path / 'activity.sqlite'}")
    environment.pop("ARRISK_TOKENS_FILE", None)
    return tmp_path / "ledger", environment


def descendants(pid: int) -> set[int]:
    """The pids of every process below `pid` (children, their children...), from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_sigterm_to_arrisk_serve_stops_the_server_and_its_workers(served_ledger):
    ledger_dir, environment = served_ledger
    port = free_port()
    serve = subprocess.Popen([*ARRISK, "serve", "--ledger", str(ledger_dir), "--port", str(port)], cwd=ROOT,
                             env=this_checkout(environment), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", serve, seconds=150)
        server_processes = descendants(serve.pid)
        assert server_processes, "arrisk serve runs the server as a child process"

        os.kill(serve.pid, signal.SIGTERM)  # what `kill <pid>` sends

        serve.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(running(pid) for pid in server_processes) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in server_processes if running(pid)] == []
        assert port_free(port)
    finally:
        for pid in [serve.pid, *descendants(serve.pid)]:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_contact_dated_9999_12_31_is_refused_and_nothing_is_stored(scoring_ledger, tmp_path):
    from ledger import write_ledger

    write_ledger(scoring_ledger, tmp_path / "ledger")
    environment = dict(os.environ, ARRISK_DATABASE_URL=f"sqlite:///{tmp_path / 'activity.sqlite'}")
    customer = scoring_ledger.customers["customer_id"].iloc[0]

    result = arrisk("activity", "contact", "--user", "ana", "--customer", customer, "--contact-date", "9999-12-31",
                    "--channel", "call", "--ledger", str(tmp_path / "ledger"), env=environment)

    assert result.returncode == 1
    assert "contact_date" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    listing = arrisk("activity", "list", "contacts", env=environment)
    assert listing.returncode == 0 and json.loads(listing.stdout) == []
