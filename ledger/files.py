"""Files written whole or not at all: a temporary sibling filled, then renamed over the target.

The one single-file writer of ar-risk (reports, metrics, workbooks); it sits in `ledger` because every
layer writes files and `ledger` is the one package all of them may import.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ledger.errors import BadInput


class OutputError(BadInput, ValueError):
    """The output file cannot be written as asked (unknown suffix, a folder or a link in its place)."""


def write_file_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Let `write` fill a temporary sibling of `path`, then rename it over `path`; on failure nothing changes.

    Only a file is ever replaced: a folder or a symbolic link at `path` is refused (`OutputError`)."""
    path = Path(path)
    check_file_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{path.parent}: not a folder, cannot write {path.name} in it") from None
    # mkstemp opens with O_EXCL: the staging file is always new, never a link planted at a known name.
    # It keeps the suffix because some writers pick the format by it.
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        write(Path(staging))
        os.chmod(staging, 0o644)  # mkstemp makes it private; a report is for others to read
        os.replace(staging, path)
    finally:
        if os.path.lexists(staging):
            os.unlink(staging)
    return path


def check_file_target(path: Path) -> None:
    """Raise `OutputError` unless `path` is absent or a regular file (a file may replace only a file)."""
    if path.is_symlink():
        raise OutputError(f"{path}: is a symbolic link; refusing to write over it (nothing was changed)")
    if os.path.lexists(path) and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise OutputError(f"{path}: is {kind}; refusing to replace it with a file (nothing was changed)")
