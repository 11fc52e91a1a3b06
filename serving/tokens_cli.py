"""`arrisk token create | list`: manage API tokens; the token file only ever holds their SHA-256.

Errors exit 1 with one line on stderr and no traceback.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import yaml
from rich.console import Console
from rich.table import Table

from serving.auth import (
    SCOPES,
    AuthConfigError,
    TokenEntry,
    hash_token,
    new_token,
    read_token_file,
    token_entry,
)

tokens_app = typer.Typer(help="Create and list API tokens (only their SHA-256 is stored).",
                         no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
console = Console()
errors = Console(stderr=True)

NEW_FILE_HEADER = ("# API tokens for the ar-risk service (see configs/tokens.example.yaml); only SHA-256 hashes.\n"
                   "# Written by `arrisk token create`.\n")
LIST_INDENT = 2

F = TypeVar("F", bound=Callable)


def reports_bad_config(command: F) -> F:
    """Turn `AuthConfigError` into one line on stderr and exit code 1."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except AuthConfigError as error:
            errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@tokens_app.command()
@reports_bad_config
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
@reports_bad_config
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
