"""Start the API on a free local port, wait for health, ask it for the worklist and the forecast, stop it.

Used by `make demo` to show the service answering end to end: `python -m serving.smoke --ledger DIR`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

from configs import config_path

DEMO_TOKENS = config_path("tokens.example.yaml")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str, token: str | None = None, timeout: float = 60) -> tuple[int, dict]:
    """Status and JSON body of a GET (an HTTP error's body too)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def start_service(ledger: Path | None, port: int, tokens: Path = DEMO_TOKENS, tracking_uri: str | None = None,
                  log: Path | None = None, runs: Path | None = None, workers: int = 1,
                  environ: dict | None = None) -> subprocess.Popen:
    """`arrisk serve` in the background on 127.0.0.1:`port`: from the runs of `runs` when given, else
    computing from `ledger` on demand."""
    command = [sys.executable, "-m", "serving.cli", "serve", "--port", str(port), "--tokens-file", str(tokens),
               "--workers", str(workers)]
    if runs is not None:
        command += ["--runs", str(runs)]
    if ledger is not None:
        command += ["--ledger", str(ledger)]
    if tracking_uri:
        command += ["--tracking-uri", tracking_uri]
    output = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=dict(environ or os.environ),
                            start_new_session=True)


def wait_until_healthy(base: str, process: subprocess.Popen, seconds: float = 180) -> None:
    """Poll /v1/health until it answers ready; an error if the service exits or takes too long."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode} before answering")
        try:
            status, body = get_json(f"{base}/v1/health", timeout=2)
            if status == 200 and body.get("ready"):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no healthy answer from {base} within {seconds:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """Stop the service and its workers."""
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def main(ledger: Annotated[Path | None, typer.Option(help="Ledger to serve (computed on demand).")] = None,
         runs: Annotated[Path | None, typer.Option(help="Runs folder to serve (`arrisk run --out`).")] = None,
         log: Annotated[Path, typer.Option(help="Where the service logs.")] = Path("out/demo/service.log"),
         ) -> None:
    """Start the service, show that it answers, stop it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    process = start_service(ledger if runs is None else None, port, log=log, runs=runs)
    try:
        wait_until_healthy(base, process)
        print(f"healthy {time.perf_counter() - started:.1f} s after start, serving "
              f"{'the runs of ' + str(runs) if runs else 'the ledger ' + str(ledger)}")
        show_answers(base, process)
    except (RuntimeError, OSError, urllib.error.URLError) as error:
        print(f"error: the service did not answer as expected: {error} (log: {log})", file=sys.stderr)
        raise typer.Exit(1) from None
    finally:
        stop(process)
    print("Start it yourself: make serve (demo tokens in configs/tokens.example.yaml), then e.g.\n"
          "  curl -H 'Authorization: Bearer arr_demo_collector' http://127.0.0.1:3000/v1/worklist?top=10")


def show_answers(base: str, process: subprocess.Popen) -> None:
    """Wait for health, then print what the info, worklist and forecast endpoints answer."""
    wait_until_healthy(base, process)
    status, info = get_json(f"{base}/v1/info", "arr_demo_admin")
    print(f"API answering on {base}/v1 (docs {base}/v1/docs): models {info.get('model_versions')}, "
          f"ledger {info.get('ledger_fingerprint', '')[:12]}..., as of {info.get('default_as_of')}")
    status, worklist = get_json(f"{base}/v1/worklist?top=3", "arr_demo_collector")
    for row in worklist.get("rows", []):
        print(f"  GET /v1/worklist (collector {row['collector']}): #{row['rank']} {row['customer_id']} "
              f"{row['name']}: {row['money_at_risk_base']:,.0f} at risk; {row['reason_1']}")
    status, forecast = get_json(f"{base}/v1/forecast?horizon_weeks=13", "arr_demo_treasury")
    total = [row for row in forecast.get("rows", []) if row["converted"]]
    if total:
        print(f"  GET /v1/forecast (treasury): 13 weeks, {total[-1]['expected_cumulative']:,.0f} expected "
              f"(p10 {total[-1]['p10_cumulative']:,.0f}, p90 {total[-1]['p90_cumulative']:,.0f})")
    status, _ = get_json(f"{base}/v1/worklist", None)
    print(f"  GET /v1/worklist without a token: {status}")


if __name__ == "__main__":
    typer.run(main)
