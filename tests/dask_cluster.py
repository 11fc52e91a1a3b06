"""A real Dask cluster for the tests: a scheduler and two workers, each its own process, as a user runs them
(`dask scheduler`, `dask worker`), started on 127.0.0.1 for the session and stopped after it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

WORKERS = 2
START_SECONDS = 60


@contextlib.contextmanager
def running_cluster(folder: Path, workers: int = WORKERS, memory_limit: str = "2GB") -> Iterator[str]:
    """Start `python -m distributed.cli.dask_scheduler` and `workers` worker processes; yield the scheduler's
    address once every worker has joined; terminate them all afterwards."""
    scheduler_file = folder / "scheduler.json"
    common = ["--no-dashboard"]
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--scheduler-file", str(scheduler_file), *common],
                                 stdout=subprocess.DEVNULL, stderr=(folder / "scheduler.log").open("w"))
    processes = [scheduler]
    try:
        address = _wait_for_file(scheduler_file, scheduler)
        for index in range(workers):
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1",
                 "--nthreads", "1", "--memory-limit", memory_limit, "--name", f"worker-{index}", *common],
                stdout=subprocess.DEVNULL, stderr=(folder / f"worker-{index}.log").open("w")))
        _wait_for_workers(address, workers)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_for_file(scheduler_file: Path, scheduler: subprocess.Popen) -> str:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {scheduler.returncode}")
        if scheduler_file.exists():
            try:
                return json.loads(scheduler_file.read_text())["address"]
            except (ValueError, KeyError):
                pass
        time.sleep(0.2)
    raise RuntimeError("dask scheduler did not start")


def _wait_for_workers(address: str, workers: int) -> None:
    from distributed import Client

    with Client(address, timeout=START_SECONDS) as client:
        client.wait_for_workers(workers, timeout=START_SECONDS)
