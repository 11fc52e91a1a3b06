"""The ledger on disk: a directory of Parquet tables plus `ledger.json`, read and written whole.

Writes are atomic: the new ledger is written to a hidden sibling directory and swapped in with
one rename, so a crash or an error at any point leaves the previous ledger as it was. A write replaces
only a ledger (a folder with an ar-risk `ledger.json`) or an empty folder, never anything else.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ledger.errors import LedgerError, Problem
from ledger.schema import DATE, OPTIONAL_TABLES, SCHEMAS, TABLES, empty_table
from ledger.validation import validate_tables

FORMAT = "ar-risk-ledger"
FORMAT_VERSION = 1
META_FILE = "ledger.json"


@dataclass(frozen=True)
class Ledger:
    """All tables of one company's receivables, in the contract's columns and dtypes."""

    customers: pd.DataFrame
    invoices: pd.DataFrame
    payments: pd.DataFrame
    payment_applications: pd.DataFrame
    disputes: pd.DataFrame = field(default_factory=lambda: empty_table("disputes"))
    promises: pd.DataFrame = field(default_factory=lambda: empty_table("promises"))
    writeoffs: pd.DataFrame = field(default_factory=lambda: empty_table("writeoffs"))
    dunning_notices: pd.DataFrame = field(default_factory=lambda: empty_table("dunning_notices"))
    contacts: pd.DataFrame = field(default_factory=lambda: empty_table("contacts"))
    email_contacts: pd.DataFrame = field(default_factory=lambda: empty_table("email_contacts"))
    base_currency: str = "EUR"
    source: str = ""

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables by name, in contract order."""
        return {name: getattr(self, name) for name in TABLES}

    def validate(self) -> Ledger:
        """Raise `LedgerError` listing every problem; return self when valid."""
        validate_tables(self.tables())
        return self

    def fingerprint(self) -> str:
        """A short content hash of every table, to tie models and reports to the data they saw."""
        digest = hashlib.sha256(self.base_currency.encode())
        for name, table in self.tables().items():
            if name == "email_contacts" and table.empty:
                continue  # a ledger without contacts keeps the fingerprint it had before the table existed
            digest.update(name.encode())
            digest.update(",".join(table.columns).encode())
            digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
        return digest.hexdigest()[:16]

    def replace(self, **tables: pd.DataFrame) -> Ledger:
        """A copy with some tables swapped (used by tests and perturbations)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return Ledger(**(values | tables))


def read_ledger(path: str | Path, *, validate: bool = True) -> Ledger:
    """Read a ledger directory; raise `LedgerError` naming the file when it cannot be read."""
    path = Path(path)
    meta = _read_meta(path)
    if meta.get("layout") == "partitioned":
        from ledger.partitions import read_partitioned

        ledger = read_partitioned(path, meta)
        return ledger.validate() if validate else ledger
    tables = {}
    for name in TABLES:
        file = path / f"{name}.parquet"
        if not file.exists():
            if name in OPTIONAL_TABLES:
                continue
            raise LedgerError(Problem(str(file), None, None, "table missing"), title="unreadable ledger")
        try:
            tables[name] = _normalise_dtypes(name, pd.read_parquet(file))
        except (OSError, pa.ArrowException) as error:
            raise LedgerError(Problem(str(file), None, None, f"not a readable Parquet file ({error})"),
                              title="unreadable ledger") from None
    ledger = Ledger(**tables, base_currency=meta.get("base_currency", "EUR"), source=meta.get("source", ""))
    return ledger.validate() if validate else ledger


def write_ledger(ledger: Ledger, path: str | Path, *, validate: bool = True,
                 extras: Mapping[str, pd.DataFrame] | None = None, partitions: int | None = None) -> Path:
    """Validate, then write the ledger to `path` atomically, replacing any ledger there.

    `path` must be absent, an empty folder or a ledger written by ar-risk; anything else is refused
    untouched. `extras` are further tables written with it in the same step, by relative path
    (e.g. `{"truth/customers.parquet": frame}` for the generator's ground truth). With `partitions`, each
    table is written as a folder of buckets by customer (`ledger.partitions.PartitionedWriter`)."""
    if validate:
        ledger.validate()
    if partitions:
        from ledger.partitions import PartitionedWriter

        with PartitionedWriter(path, partitions, ledger.base_currency, ledger.source) as writer:
            writer.add(ledger)
            writer.add_extras(extras or {})
            # The whole ledger was validated above: each bucket, a part of it, is valid too.
            return writer.finish(validate=False)
    path = Path(os.path.abspath(path))  # "." and "x/.." get a real name and parent
    staging = open_staging(path)
    try:
        for name, table in ledger.tables().items():
            pq.write_table(pa.Table.from_pandas(table, preserve_index=False), staging / f"{name}.parquet")
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "base_currency": ledger.base_currency,
                "source": ledger.source, "rows": {name: len(t) for name, t in ledger.tables().items()}}
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        write_extras(staging, extras or {})
        commit_staging(staging, path)
    finally:
        _remove_if_ours(staging)
    return path


def open_staging(path: Path) -> Path:
    """A new, empty staging folder beside `path` (an absolute path), after refusing a `path` that is not
    replaceable and removing what killed writers left there."""
    refuse_unless_replaceable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise LedgerError(Problem(str(path.parent), None, None, "is not a folder"), title="refused") from None
    remove_stale_staging(path)
    # The writer's pid is in the staging name, so the next write can tell a dead writer's leftovers
    # from a live writer's work in progress.
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))


def write_extras(staging: Path, extras: Mapping[str, pd.DataFrame]) -> None:
    """Further tables written inside the staging folder, by relative path; none may leave it."""
    for relative, frame in extras.items():
        target = staging / relative
        if not target.resolve().is_relative_to(staging.resolve()):
            raise ValueError(f"extra table path {relative!r} leaves the ledger directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), target)


def commit_staging(staging: Path, path: Path) -> None:
    """Flush a complete staging folder (meta file written) to disk and swap it into place at `path`."""
    _fsync_dir(staging)
    _swap_into_place(staging, path)


def is_ledger_dir(path: Path) -> bool:
    """True when `path` is a real folder holding the meta file of an ar-risk ledger (any format version)."""
    meta_file = path / META_FILE
    if path.is_symlink() or not path.is_dir() or meta_file.is_symlink() or not meta_file.is_file():
        return False
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def replaceable(path: Path) -> bool:
    """True when writing a ledger to `path` loses nothing: absent, an empty real folder, or a ledger."""
    if not os.path.lexists(path):
        return True
    if path.is_symlink() or not path.is_dir():
        return False
    return is_ledger_dir(path) or not any(path.iterdir())


def refuse_unless_replaceable(path: Path) -> None:
    """Raise `LedgerError` naming `path` and what is in it unless a ledger may be written there."""
    if replaceable(path):
        return
    if path.is_symlink():
        what = f"a symbolic link to {os.readlink(path)}"
    elif not path.is_dir():
        what = "a file"
    else:
        what = f"a folder that is not an ar-risk ledger (no ar-risk {META_FILE}; it holds {folder_listing(path)})"
    raise LedgerError(Problem(str(path), None, None, f"is {what}; refusing to replace it (nothing was changed): "
                                                     "pass a new or empty folder or an existing ledger"),
                      title="refused")


def folder_listing(path: Path, limit: int = 5) -> str:
    """The first few names in a folder, folders marked with a slash, and how many more there are."""
    names = sorted(entry.name + ("/" if entry.is_dir() and not entry.is_symlink() else "")
                   for entry in path.iterdir())
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def staging_pid(path: Path, staging: Path) -> int | None:
    """The writer's pid in the name of a staging sibling of `path`, or None when the name is not ours."""
    pattern = rf"\.{re.escape(path.name)}\.(\d+)\.[a-z0-9_]{{8}}\.(tmp|old)"
    match = re.fullmatch(pattern, staging.name)
    return int(match.group(1)) if match else None


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(path: Path) -> list[Path]:
    """Remove the staging folders a killed writer left beside `path`; a live writer's are kept."""
    removed = []
    for sibling in path.parent.iterdir():
        pid = staging_pid(path, sibling)
        if pid is None or sibling.is_symlink() or not sibling.is_dir() or pid_alive(pid):
            continue
        shutil.rmtree(sibling, ignore_errors=True)
        removed.append(sibling)
    return removed


def _read_meta(path: Path) -> dict:
    meta_file = path / META_FILE
    if not path.is_dir():
        raise LedgerError(Problem(str(path), None, None, "no such ledger directory"), title="unreadable ledger")
    if not meta_file.exists():
        raise LedgerError(Problem(str(meta_file), None, None, "missing: not an ar-risk ledger directory"),
                          title="unreadable ledger")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as error:
        raise LedgerError(Problem(str(meta_file), None, None, f"not valid JSON ({error})"),
                          title="unreadable ledger") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise LedgerError(Problem(str(meta_file), None, None,
                                  f"expected format {FORMAT!r} version {FORMAT_VERSION}"), title="unreadable ledger")
    return meta


def _normalise_dtypes(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """Parquet may hand back dates in another unit; the contract's dtype is datetime64[ns]."""
    for column, col in SCHEMAS[name].columns.items():
        if column in table and str(col.dtype) == DATE and str(table[column].dtype).startswith("datetime64"):
            table[column] = table[column].astype(DATE)
    return table


def _swap_into_place(staging: Path, path: Path) -> None:
    """Make `staging` appear at `path` in one step; the old ledger ends up at `staging` and is removed."""
    if not os.path.lexists(path):
        os.rename(staging, path)
        return
    if _rename_exchange(staging, path):
        if not replaceable(staging):
            # Something else took the ledger's place since the check: put it back, untouched.
            _rename_exchange(staging, path)
            refuse_unless_replaceable(path)
        return
    # No atomic exchange on this platform: two renames, the old ledger kept until the new one is in place.
    backup = staging.with_suffix(".old")
    os.rename(path, backup)
    if not replaceable(backup):
        os.rename(backup, path)
        refuse_unless_replaceable(path)
    os.rename(staging, path)
    _remove_if_ours(backup)


def _remove_if_ours(folder: Path) -> None:
    """Delete a staging folder or a replaced ledger, never anything else that ended up at its name."""
    if not os.path.lexists(folder):
        return
    if replaceable(folder) or _holds_only_tables(folder):
        shutil.rmtree(folder, ignore_errors=True)


def _holds_only_tables(folder: Path) -> bool:
    """A staging folder cut short before its meta file: only Parquet tables and the truth subfolder."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    return all(entry.suffix == ".parquet" or entry.is_dir() for entry in folder.rglob("*"))


def _rename_exchange(a: Path, b: Path) -> bool:
    """Linux renameat2(RENAME_EXCHANGE): swap two directories atomically. False when unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result != 0:
        errno = ctypes.get_errno()
        if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: file system cannot exchange
            return False
        raise OSError(errno, os.strerror(errno), str(b))
    return True


def _fsync_dir(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_dir():
            continue
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
