"""The one error decorator of the CLI (STYLE.md, "Feast: named errors").

Only the named errors are the user's to fix: `ledger.errors.ArRiskError` and its subclasses (`BadInput`,
`LedgerError`, `NotFound`, `Conflict`, `NoModel`; the activity store's errors, `serving.auth.AuthConfigError`,
`rules.output.OutputError` and the rules' policy errors subclass them) and `configs.settings.SettingsError`.
They print one line (`error: ...`) on stderr and exit 1. Typer's own usage errors never reach a command
(click reports them, exit 2) and `typer.Exit` passes through.

Anything else is our bug, never reported as bad input: one line on stderr, `internal error (...)`, naming
the log file that holds the traceback, and exit 2.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

import click
import typer
from rich.console import Console

from configs.settings import SettingsError
from ledger.errors import ArRiskError, LedgerError
from serving.cli.logs import log_file, log_to_file

NAMED_ERRORS = (ArRiskError, SettingsError)
INTERNAL_ERROR_EXIT = 2

errors = Console(stderr=True)
logger = logging.getLogger("arrisk")

F = TypeVar("F", bound=Callable)


def reports_errors(command: F) -> F:
    """Run `command`; a named error becomes one line and exit 1, anything else an internal error, exit 2."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        # typer.Exit is not a click exception in typer 0.2x: an exit code is an answer, never a bug.
        except (typer.Exit, click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except NAMED_ERRORS as error:
            fail(error_text(error))
        except Exception as error:
            log_to_file()  # a sub-app run on its own (tests) has had no app callback
            logger.exception("internal error in `%s`", command.__name__)
            fail(f"internal error ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                 f"this is a bug in ar-risk, the traceback is in {log_file()}", code=INTERNAL_ERROR_EXIT)

    return wrapper  # type: ignore[return-value]


def fail(message: str, code: int = 1) -> None:
    """Print `error: message` on stderr and exit with `code`."""
    errors.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def error_text(error: Exception) -> str:
    """One line for one problem; the title and a line per problem when a ledger error has several."""
    if isinstance(error, LedgerError):
        if len(error.problems) == 1:
            return f"{error.title}: {error.problems[0]}"
        return error.summary()
    return str(error)
