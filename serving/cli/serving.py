"""Stage 5, serving: `arrisk serve` (the API, BentoML) and `arrisk token create | list` (its tokens; the token
file only ever holds their SHA-256)."""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table

from configs.settings import Settings
from ledger.errors import NotFound
from serving.auth import (
    SCOPES,
    AuthConfigError,
    TokenEntry,
    hash_token,
    new_token,
    read_token_file,
    token_entry,
)
from serving.cli.common import SERVING, TrackingUri, app, console, errors
from serving.cli.errors import reports_errors
from serving.cli.logs import server_environment


@app.command(rich_help_panel=SERVING)
@reports_errors
def serve(
    runs_dir: Annotated[Path | None, typer.Option("--runs", help="Folder of daily runs (`arrisk run --out`) to "
                                                  "answer from: the newest complete run, new ones picked up "
                                                  "without a restart (default: ARRISK_RUNS).")] = None,
    ledger_dir: Annotated[Path | None, typer.Option("--ledger", help="Ledger to compute each date from on demand "
                                                     "(default: ARRISK_LEDGER, else HOME/out/demo/synthetic); with "
                                                     "--runs, the ledger behind the runs (default: the one the "
                                                     "newest run names).")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="Processes answering requests (default: "
                                                "ARRISK_RUNS_WORKERS, 1); each holds the served days.")] = None,
    tracking_uri: TrackingUri = None,
    tokens_file: Annotated[Path | None, typer.Option(help="API tokens YAML (else ARRISK_TOKENS_FILE / "
                                                          "ARRISK_API_TOKENS).")] = None,
) -> None:
    """Start the API (BentoML) on HOST:PORT; OpenAPI docs at /v1/docs."""
    from runs.folder import read_run, run_for

    settings = Settings.from_environ()
    runs_dir = runs_dir or settings.runs
    environment = server_environment(ARRISK_HOME=str(settings.home.resolve()))
    if runs_dir is not None:
        newest = run_for(runs_dir, None)
        read_run(newest)  # a missing or corrupt table is a clear error now, not a server that will not start
        environment["ARRISK_RUNS"] = str(runs_dir.resolve())
        console.print(f"serving the runs of {runs_dir} (newest: {newest.name})")
        if ledger_dir is not None:
            environment["ARRISK_LEDGER"] = str(ledger_dir.resolve())
    else:
        ledger_dir = ledger_dir or settings.ledger
        if not ledger_dir.is_dir():
            raise NotFound(f"{ledger_dir}: no ledger there (run `make demo` or pass --ledger)")
        environment["ARRISK_LEDGER"] = str(ledger_dir.resolve())
    if tracking_uri:
        environment["ARRISK_TRACKING_URI"] = tracking_uri
    if tokens_file:
        environment["ARRISK_TOKENS_FILE"] = str(tokens_file.resolve())
    console.print(f"ar-risk API on http://{host}:{port}/v1 (docs: http://{host}:{port}/v1/docs); Ctrl-C stops it")
    # BentoML runs the service in --working-dir (the installed package): HOME keeps writable state here.
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:ARRiskService", "--host", host,
               "--port", str(port), "--working-dir", str(root)]
    # BentoML reads its service options from this variable on top of the decorator's (workers=1).
    options = f"services.ar_risk.workers={workers or settings.runs_workers}"
    environment["BENTOML_CONFIG_OPTIONS"] = " ".join(filter(None, [environment.get("BENTOML_CONFIG_OPTIONS"), options]))
    raise typer.Exit(run_server(command, environment))


STOP_GRACE_SECONDS = 20


def run_server(command: list[str], environment: dict[str, str]) -> int:
    """Run the server in its own process group, pass SIGTERM, SIGINT and SIGHUP on to that whole group,
    and return its exit code (128 + N when signal N ended it) once it has stopped.

    A plain `kill` of `arrisk serve` would otherwise orphan the server and its workers, still listening."""
    import signal
    import subprocess
    import time

    servers: list[subprocess.Popen] = []
    stop_requests: list[tuple[float, int]] = []

    def forward(signum: int, _frame) -> None:
        stop_requests.append((time.monotonic(), signum))
        if servers:
            _signal_group(servers[0].pid, signum)

    # The handlers are in place before the server starts, so a stop asked for meanwhile is not lost.
    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {signum: signal.signal(signum, forward) for signum in forwarded}
    try:
        servers.append(subprocess.Popen(command, env=environment, start_new_session=True,
                                        preexec_fn=_stop_with_parent))
        server = servers[0]
        if stop_requests:
            _signal_group(server.pid, stop_requests[0][1])
        while True:
            try:
                code = server.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                # A server that ignores the request to stop is killed, so a stop always ends in a stop.
                if stop_requests and time.monotonic() - stop_requests[0][0] > STOP_GRACE_SECONDS:
                    _signal_group(server.pid, signal.SIGKILL)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if servers:
            _signal_group(servers[0].pid, signal.SIGTERM)  # workers that outlived the server's main process
    return 128 - code if code < 0 else code


def _signal_group(group: int, signum: int) -> None:
    import contextlib

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _stop_with_parent() -> None:
    """In the server, before it starts: Linux sends it SIGTERM if `arrisk serve` dies, even by SIGKILL."""
    import contextlib
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    # Not Linux: no prctl, and the signal forwarding in `run_server` still covers kill and Ctrl-C.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


tokens_app = typer.Typer(help="Create and list API tokens (only their SHA-256 is stored).",
                         no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(tokens_app, name="token", help="Create and list API tokens (stored hashed).", rich_help_panel=SERVING)

NEW_FILE_HEADER = ("# API tokens for the ar-risk service (see configs/tokens.example.yaml); only SHA-256 hashes.\n"
                   "# Written by `arrisk token create`.\n")
LIST_INDENT = 2

@tokens_app.command()
@reports_errors
def create(
    file: Annotated[Path, typer.Option(help="Token YAML file to append to (created if missing).")],
    name: Annotated[str, typer.Option(help="Unique name of the token, e.g. anna-laptop.")],
    user: Annotated[str, typer.Option(help="Who holds the token (for audit trails).")],
    scope: Annotated[list[str], typer.Option(help=f"A scope, repeatable: {', '.join(SCOPES)}.")],
    collector: Annotated[str | None, typer.Option(help="Collector whose portfolio the user sees and changes.")] = None,
    all_portfolios: Annotated[bool, typer.Option(help="A collector who sees every portfolio.")] = False,
) -> None:
    """Create a token, append its SHA-256 to FILE and print the token once."""
    token = new_token()
    entry = token_entry({"name": name, "user": user, "scopes": scope, "sha256": hash_token(token),
                         "collector": collector, "all_portfolios": all_portfolios}, where="bad option")
    text = existing_text(file)
    if text.strip():
        existing = read_token_file(file).tokens
        if name in {known.name for known in existing}:
            raise AuthConfigError(f"{file}: a token named {name!r} already exists; choose another --name")
    write_token_file(file, with_entry(text, entry))
    errors.print(f"Created token {name!r} for {user} (scopes: {', '.join(entry.scopes)}) in {file}.\n"
                 "Copy it now: it is shown only this once, and only its SHA-256 is stored.",
                 markup=False, highlight=False)
    # The token alone on stdout, so a script can capture it.
    typer.echo(token)


@tokens_app.command("list")
@reports_errors
def list_(file: Annotated[Path, typer.Option(help="Token YAML file to read.")]) -> None:
    """List the tokens of FILE: names, users, scopes, collectors and portfolios seen (never hashes)."""
    entries = read_token_file(file).tokens
    table = Table(title=f"{file}: {len(entries)} token(s)")
    for column in ("name", "user", "scopes", "collector", "portfolios"):
        table.add_column(column)
    for entry in entries:
        table.add_row(entry.name, entry.user, ", ".join(entry.scopes), entry.collector or "",
                      "all" if entry.all_portfolios or "team_lead" in entry.scopes else "own")
    console.print(table)


def existing_text(path: Path) -> str:
    """The text of the token file at `path`, "" when there is none yet."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as error:
        raise AuthConfigError(f"{path}: cannot read the token file ({error})") from None


def rendered_entry(entry: TokenEntry, indent: int) -> str:
    """`entry` as one YAML list item, indented by `indent` spaces."""
    # default_flow_style=None writes the scopes inline, `scopes: [credit]`, as in the example file.
    item = yaml.safe_dump([entry.model_dump(mode="json", exclude_defaults=True)], sort_keys=False,
                          allow_unicode=True, default_flow_style=None)
    return textwrap.indent(item, " " * indent)


def with_entry(text: str, entry: TokenEntry) -> str:
    """The token file `text` ("" for a new file) with `entry` appended, keeping its comments where possible."""
    if not text.strip():
        return NEW_FILE_HEADER + "tokens:\n" + rendered_entry(entry, LIST_INDENT)
    data = yaml.safe_load(text)
    wanted = [*data["tokens"], entry.model_dump(mode="json", exclude_defaults=True)]
    tokens_node = next(value for key, value in yaml.compose(text).value if key.value == "tokens")
    # Appending text keeps the file's comments; it works when the list is a non-empty block list
    # (`tokens` is the only key, so the list ends the file). Checked by parsing, not assumed.
    if not tokens_node.flow_style:
        appended = text.rstrip("\n") + "\n" + rendered_entry(entry, tokens_node.start_mark.column)
        if yaml.safe_load(appended) == {"tokens": wanted}:
            return appended
    return NEW_FILE_HEADER + yaml.safe_dump({"tokens": wanted}, sort_keys=False, allow_unicode=True,
                                            default_flow_style=None)


def write_token_file(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, after checking it is a valid token file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if path.exists():
            # mkstemp makes the file private; a server reading the old file must still be able to.
            os.chmod(temporary, path.stat().st_mode)
        read_token_file(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise AuthConfigError(f"{path}: cannot write the token file ({error.strerror or error})") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
