"""Errors that name what is wrong: table or file, row or key, column, and what was expected."""

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


class LedgerError(Exception):
    """Bad input: carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem] | Problem, title: str = "invalid ledger"):
        self.problems = sorted(problems, key=_reading_order) if isinstance(problems, list) else [problems]
        self.title = title
        super().__init__(self.summary())

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
