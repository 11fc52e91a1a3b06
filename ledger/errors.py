"""Errors that name what is wrong: table or file, row or key, column, and what was expected.

The named errors of ar-risk live here, in the one package every layer may import. Code raises these (or a
subclass) for a failure a user can cause, and only these become a 4xx answer or a one-line CLI error;
anything else is our bug: logged with its traceback and answered as a 500 with a request id.

    ArRiskError
    ├── BadInput   (400/422, CLI exit 1): a file, row, field or option that is not acceptable
    │   └── LedgerError: every problem of a ledger or an import at once
    ├── NotFound   (404): no such customer, invoice, record or file
    ├── Conflict   (409): the record changed meanwhile, or a key was reused for another request
    └── NoModel    (409 in the API, exit 1): no champion model to score with yet
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One failure: `where` is a ledger table or a source file; `row` counts from 0 in a table and
    is the line number (header = line 1) in a source file."""

    where: str
    row: int | None
    column: str | None
    message: str
    key: str | None = None

    def __str__(self) -> str:
        parts = [self.where]
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.key:
            parts.append(f"({self.key})")
        if self.column:
            parts.append(f"column {self.column}")
        return " ".join(parts) + f": {self.message}"


class ArRiskError(Exception):
    """A failure the user can cause and fix; its message is written for them."""


class BadInput(ArRiskError):
    """A file, row, field, option or setting that is not acceptable."""


class NotFound(ArRiskError):
    """What was asked for does not exist (a customer, invoice, record, report or file)."""


class Conflict(ArRiskError):
    """The request clashes with the current state (a newer version, a reused key)."""


class NoModel(ArRiskError):
    """No trained (champion) model to answer with; train one first."""


class NotReady(ArRiskError):
    """The service is still loading what the request needs; the same request succeeds shortly."""


class LedgerError(BadInput):
    """Bad input: carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem] | Problem, title: str = "invalid ledger"):
        self.problems = sorted(problems, key=_reading_order) if isinstance(problems, list) else [problems]
        self.title = title
        super().__init__(self.summary())

    def __reduce__(self):  # sent back from a Dask worker with its problems, not only its text
        return (type(self), (self.problems, self.title))

    def summary(self, limit: int = 20) -> str:
        lines = [f"{self.title}: {len(self.problems)} problem(s)"]
        lines += [f"  {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            counts = Counter((p.where, p.column, p.message) for p in self.problems[limit:])
            lines.append(f"  ... and {len(self.problems) - limit} more:")
            lines += [f"    {n} x {w} column {c}: {m}" for (w, c, m), n in counts.most_common(10)]
        return "\n".join(lines)


def _reading_order(problem: Problem) -> tuple:
    """Table or file, then whole-table problems before row problems, then row, column, message."""
    return (problem.where, problem.row is not None, problem.row or 0, problem.column or "", problem.message)
