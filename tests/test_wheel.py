"""The wheel (issue 15): built from the project, installed outside the repository without network, and run
from a temporary working folder, every writable file lands in that folder; none in the repository or in
the installed package.

Slow (builds a wheel, creates a virtual environment, trains small models, starts the service three
times): 95 s on a quiet machine, about 6 minutes when the cores are shared. The wheel is built without
build isolation (no index needed), so this environment needs setuptools 77 or later (`make install` puts it
there). The new environment borrows the project's dependencies from this environment's site-packages through a `.pth` file: a folder named by a `.pth` file is not a site folder, so the
editable install's finder there is never run and `import ledger` finds the wheel's copy only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
IBM_SAMPLE = ROOT / "samples" / "ibm" / "ibm_wa_accounts_receivable.csv"
FIXTURES = ROOT / "tests" / "fixtures"
# Not the sources: what a build leaves behind, the environment, and the state a run writes.
NOT_SOURCES = (".git", ".venv", "build", "dist", "out", "mlflow", "node_modules", ".pytest_cache", ".ruff_cache",
               "__pycache__", "*.egg-info", "*.pyc")
PACKAGES = ("configs", "ledger", "features", "models", "training", "rules", "activity", "runs", "monitoring",
            "serving")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A fresh virtual environment outside the repository with the project's wheel installed, and the
    environment variables its commands run with."""
    base = tmp_path_factory.mktemp("wheel")
    sources = base / "sources"
    # Built from a copy, so the build's own leftovers (build/, *.egg-info) stay out of the repository.
    shutil.copytree(ROOT, sources, ignore=shutil.ignore_patterns(*NOT_SOURCES), symlinks=True)
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(sources), "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(dist)], check=True, timeout=300)
    wheel = next(dist.glob("ar_risk-*.whl"))

    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site_packages = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    (site_packages / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    "--disable-pip-version-check", str(wheel)], check=True, timeout=300)

    home = base / "home"
    work = base / "work"
    home.mkdir()
    work.mkdir()
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("ARRISK_", "PYTHON", "BENTOML_", "MLFLOW_", "VIRTUAL_ENV"))}
    environment |= {"HOME": str(home), "BENTOML_HOME": str(home / "bentoml"), "BENTOML_DO_NOT_TRACK": "True",
                    "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1", "COLUMNS": "150",
                    "PATH": f"{venv / 'bin'}{os.pathsep}{environment.get('PATH', '')}"}
    return {"python": python, "arrisk": venv / "bin" / "arrisk", "site_packages": site_packages,
            "work": work, "environment": environment}


def files_under(folder: Path) -> dict[Path, float]:
    return {path: path.stat().st_mtime for path in folder.rglob("*") if path.is_file()
            and "__pycache__" not in path.parts}


def run(installed: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([str(installed["arrisk"]), *args], cwd=installed["work"], env=installed["environment"],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"arrisk {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def test_the_installed_packages_are_the_wheels_not_the_repositorys(installed):
    code = f"import importlib, json; print(json.dumps([importlib.import_module(p).__file__ for p in {PACKAGES!r}]))"
    done = subprocess.run([str(installed["python"]), "-c", code], cwd=installed["work"],
                          env=installed["environment"], capture_output=True, text=True, check=True)
    for location in json.loads(done.stdout):
        assert Path(location).is_relative_to(installed["site_packages"]), location
    # ... while the dependencies come from this environment (no network was needed).
    done = subprocess.run([str(installed["python"]), "-c", "import pandas; print(pandas.__file__)"],
                          env=installed["environment"], capture_output=True, text=True, check=True)
    assert Path(done.stdout.strip()).is_relative_to(sysconfig.get_paths()["purelib"])


@pytest.fixture(scope="module")
def package_files(installed) -> dict[Path, float]:
    """The installed package's files before any command ran."""
    return {path: modified for package in PACKAGES
            for path, modified in files_under(installed["site_packages"] / package).items()}


@pytest.fixture(scope="module")
def trained(installed, package_files) -> float:
    """Every stage up to the worklist, run from the working folder; the time it started."""
    started = time.time()
    run(installed, "generate", "--customers", "60", "--months", "12", "--seed", "5", "--start", "2023-01-01",
        "--out", "ledger")
    run(installed, "import", str(IBM_SAMPLE), "--mapping", "ibm_sample", "--out", "imported/ibm")
    run(installed, "import", str(FIXTURES / "fbl5n" / "fbl5n_export.csv"), "--mapping", "sap_fbl5n",
        "--out", "imported/fbl5n")
    run(installed, "import", *sorted(map(str, (FIXTURES / "generic_csv").glob("*.csv"))), "--mapping",
        "generic_csv", "--out", "imported/generic")
    run(installed, "train", "--ledger", "ledger", timeout=900)
    run(installed, "run", "--ledger", "ledger", "--as-of", "2023-12-31", timeout=900)  # into HOME/out/runs
    worklist = run(installed, "worklist", "--ledger", "ledger", "--as-of", "2023-12-31", "--top", "5",
                   "--runs", "out/runs")
    assert worklist.stdout.strip() and "from the run of 2023-12-31" in worklist.stderr
    return started


def assert_nothing_written_into_the_package(installed, package_files) -> None:
    after = {path: modified for package in PACKAGES
             for path, modified in files_under(installed["site_packages"] / package).items()}
    assert after == package_files
    assert not [path.name for path in installed["site_packages"].iterdir()
                if path.name in ("out", "mlflow") or path.suffix in (".db", ".sqlite", ".key", ".log")]


def test_every_stage_runs_from_a_temporary_folder_and_writes_only_there(installed, package_files, trained):
    # The repository cannot be written to: the installed commands import the wheel's packages only (the test
    # above) and run in the working folder. Its own `out/` is not watched: other test runs write there.
    work = installed["work"]
    assert (work / "mlflow" / "mlflow.db").is_file()  # the local MLflow store
    assert (work / "ledger").is_dir() and (work / "imported" / "generic").is_dir()
    assert (work / "out" / "runs" / "2023-12-31" / "manifest.json").is_file()
    assert_nothing_written_into_the_package(installed, package_files)


def test_the_service_starts_from_the_working_folder_named_by_arrisk_home_and_sigterm_stops_it_with_0(
        installed, package_files, trained):
    serve_until_healthy(installed, {"ARRISK_HOME": str(installed["work"])}, exit_code=0)
    assert_nothing_written_into_the_package(installed, package_files)


def test_the_service_starts_from_the_working_folder_without_arrisk_home(installed, package_files, trained):
    # Last in this module: when it fails, the service may have written into the installed package.
    serve_until_healthy(installed, exit_code=None)
    assert_nothing_written_into_the_package(installed, package_files)


def serve_until_healthy(installed: dict, environment: dict[str, str] | None = None, exit_code: int | None = 0,
                        seconds: float = 150) -> None:
    """`arrisk serve` on a free port until /v1/health answers ready, then SIGTERM: it must stop within a
    minute, with `exit_code` unless None."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = installed["work"] / "serve.log"
    with open(log, "w") as output:
        server = subprocess.Popen([str(installed["arrisk"]), "serve", "--ledger", "ledger", "--port", str(port)],
                                  cwd=installed["work"], env=installed["environment"] | (environment or {}),
                                  stdout=output,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + seconds
            healthy = False
            while time.monotonic() < deadline and server.poll() is None and not healthy:
                if "Application startup failed" in log.read_text():
                    break  # BentoML would restart the worker over and over
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=2) as answer:
                        healthy = answer.status == 200
                except OSError:
                    time.sleep(1)
            assert healthy, f"no healthy answer (exit {server.poll()}):\n{log.read_text()[-3000:]}"
            server.send_signal(signal.SIGTERM)
            stopped = server.wait(timeout=60)
            assert exit_code is None or stopped == exit_code, log.read_text()[-3000:]
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
