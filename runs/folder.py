"""Run folders: `RUNS_DIR/<as_of>/`, one Parquet file per table and `manifest.json`, written atomically.

A run is written into a private staging folder (`RUNS_DIR/.staging-<as_of>-<pid>-<random>/`) table by
table as its steps end; the manifest (status `complete`) is written last and the folder renamed into
place. A run that fails or is killed leaves only its staging folder, which no reader ever looks at and
the next run removes; the previous run for the date, if any, stays until the new one replaces it.

A reader trusts a folder only when its manifest says `complete` and every table it lists is there,
readable and as long as the manifest says (`read_run` refuses anything else with one line naming the file).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ledger.errors import BadInput, Conflict, NotFound
from ledger.store import pid_alive
from runs.day import Day

MANIFEST = "manifest.json"
COMPLETE = "complete"
STAGING_PREFIX = ".staging-"
REPLACED_PREFIX = ".replaced-"
LOCK = ".lock"
DATE_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RunError(BadInput):
    """A run folder that cannot be used: missing, incomplete or corrupt (the message names the file)."""


@dataclass(frozen=True)
class RunFolder:
    """A complete run on disk: its date, folder and manifest."""

    as_of: pd.Timestamp
    path: Path
    manifest: dict


def folder_name(as_of: pd.Timestamp) -> str:
    return f"{pd.Timestamp(as_of):%Y-%m-%d}"


class RunWriter:
    """Writes one run: tables into a staging folder as they are made, then the manifest and the rename."""

    def __init__(self, runs_dir: str | Path, as_of: pd.Timestamp) -> None:
        self.runs_dir = Path(runs_dir)
        self.as_of = pd.Timestamp(as_of).normalize()
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise RunError(f"{self.runs_dir}: not a folder, cannot write runs in it") from None
        check_replaceable(self.runs_dir / folder_name(self.as_of))
        self.staging = self.runs_dir / f"{STAGING_PREFIX}{folder_name(self.as_of)}-{os.getpid()}-{secrets.token_hex(4)}"
        self.staging.mkdir()
        self.rows: dict[str, int] = {}

    def write_tables(self, tables: dict[str, pd.DataFrame]) -> None:
        """Write the tables not written yet (a step's new outputs)."""
        for name, frame in tables.items():
            if name not in self.rows:
                frame.reset_index(drop=True).to_parquet(self.staging / f"{name}.parquet", index=False)
                self.rows[name] = len(frame)

    def finish(self, day: Day, manifest: dict) -> Path:
        """Write the remaining tables and the manifest, then move the run into place (replacing an older run
        for the same date); returns the run's folder."""
        self.write_tables(day.tables)
        document = {**manifest, "as_of": folder_name(day.as_of), "status": COMPLETE, "tables": dict(self.rows),
                    "steps": day.steps, "facts": day.facts}
        manifest_path = self.staging / MANIFEST
        with manifest_path.open("w", encoding="utf-8") as file:
            json.dump(document, file, indent=2, default=str)
            file.flush()
            os.fsync(file.fileno())
        final = self.runs_dir / folder_name(day.as_of)
        replaced = None
        if final.exists():
            replaced = self.runs_dir / f"{REPLACED_PREFIX}{final.name}-{secrets.token_hex(4)}"
            os.rename(final, replaced)
        os.rename(self.staging, final)
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
        return final

    def abandon(self) -> None:
        """Remove the staging folder (a failed run)."""
        shutil.rmtree(self.staging, ignore_errors=True)


def check_replaceable(final: Path) -> None:
    """`RunError` unless `final` is absent or a complete run ar-risk wrote: a run never replaces anything else."""
    if not os.path.lexists(final):
        return
    if final.is_symlink() or not final.is_dir():
        raise RunError(f"{final}: is not a run folder; refusing to replace it (nothing was changed)")
    try:
        read_manifest(final)
    except RunError:
        raise RunError(f"{final}: is a folder that is not a complete ar-risk run; refusing to replace it "
                       "(nothing was changed)") from None


def read_manifest(folder: Path) -> dict:
    """The manifest of a run folder, if it says `complete`; `RunError` naming the file otherwise."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: missing: the run is not complete") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{path}: not a readable manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("status") != COMPLETE:
        raise RunError(f"{path}: status is {manifest.get('status') if isinstance(manifest, dict) else None!r}, "
                       f"expected {COMPLETE!r}")
    if not isinstance(manifest.get("tables"), dict):
        raise RunError(f"{path}: no 'tables' listing the run's files")
    return manifest


def read_run(folder: str | Path) -> tuple[Day, dict]:
    """The day of a complete run folder and its manifest; `RunError` with one line naming the first missing,
    unreadable or short table."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    tables = {}
    for name, rows in manifest["tables"].items():
        path = folder / name if (folder / name).is_dir() else folder / f"{name}.parquet"
        try:
            frame = read_table(path)
        except FileNotFoundError:
            raise RunError(f"{path}: missing (the manifest lists it)") from None
        except (OSError, ValueError, pa.ArrowException) as error:
            raise RunError(f"{path}: not a readable Parquet file ({str(error).splitlines()[0]})") from None
        if len(frame) != rows:
            raise RunError(f"{path}: {len(frame)} rows, the manifest says {rows}")
        tables[name] = frame
    day = Day(pd.Timestamp(manifest["as_of"]), tables, manifest.get("facts", {}), manifest.get("steps", []))
    return day, manifest


def read_table(path: Path) -> pd.DataFrame:
    """A run's table: one Parquet file, or a folder of one file per bucket (a run of the Dask engine), read in
    bucket order; the dunning proposal is put back in its order (`rules.dunning.proposal_order`)."""
    if not path.is_dir():
        return pd.read_parquet(path)
    from rules.dunning import proposal_order

    parts = sorted(path.glob("part-*.parquet"))
    if not parts:
        raise FileNotFoundError(path)
    frame = pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)
    return proposal_order(frame) if path.name == "dunning" else frame


def complete_runs(runs_dir: str | Path) -> dict[pd.Timestamp, Path]:
    """The folders of `runs_dir` named by a date whose manifest says complete, by date (oldest first).
    Staging folders and folders without a complete manifest are not runs."""
    runs_dir = Path(runs_dir)
    found = {}
    if not runs_dir.is_dir():
        return found
    for folder in runs_dir.iterdir():
        if not DATE_NAME.match(folder.name) or not folder.is_dir():
            continue
        with contextlib.suppress(RunError, ValueError):
            read_manifest(folder)
            found[pd.Timestamp(folder.name)] = folder
    return dict(sorted(found.items()))


def run_for(runs_dir: str | Path, as_of: pd.Timestamp | None) -> Path:
    """The folder of the run for `as_of` (None: the newest); `NotFound` listing the dates there are."""
    runs = complete_runs(runs_dir)
    if as_of is None:
        if not runs:
            raise NotFound(f"{runs_dir}: no complete run (run `arrisk run --ledger DIR --as-of DATE --out "
                           f"{runs_dir}` first)")
        return runs[max(runs)]
    as_of = pd.Timestamp(as_of).normalize()
    if as_of not in runs:
        raise NotFound(f"no run for {as_of:%Y-%m-%d} in {runs_dir}; runs: {available_text(runs)}")
    return runs[as_of]


def available_text(runs: dict[pd.Timestamp, Path] | list[pd.Timestamp]) -> str:
    dates = sorted(runs)
    return ", ".join(f"{date:%Y-%m-%d}" for date in dates) if dates else "none"


def prune(runs_dir: str | Path, keep: int) -> list[Path]:
    """Remove all but the newest `keep` complete runs, the staging folders of runs no longer running
    and replaced folders left behind; returns what was removed."""
    runs_dir = Path(runs_dir)
    removed = []
    runs = complete_runs(runs_dir)
    for as_of in sorted(runs)[:-keep] if keep > 0 else []:
        shutil.rmtree(runs[as_of], ignore_errors=True)
        removed.append(runs[as_of])
    for folder in runs_dir.iterdir() if runs_dir.is_dir() else []:
        pid = staging_pid(folder.name)
        stale = folder.name.startswith(REPLACED_PREFIX) or (
            folder.name.startswith(STAGING_PREFIX) and (pid is None or not pid_alive(pid)))
        if stale and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def staging_pid(name: str) -> int | None:
    match = re.match(rf"^{re.escape(STAGING_PREFIX)}\d{{4}}-\d{{2}}-\d{{2}}-(\d+)-", name)
    return int(match.group(1)) if match else None


@contextlib.contextmanager
def run_lock(runs_dir: str | Path):
    """Hold the runs folder's lock for one run (`Conflict` when another process holds it): a nightly cron
    run and one started over the API never write the same folder at once."""
    import fcntl

    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunError(f"{runs_dir}: not a folder, cannot write runs in it (nothing was changed)") from None
    with open(runs_dir / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise Conflict(f"{runs_dir}: another run is in progress ({handle.read().strip() or 'unknown'}); "
                           "one run at a time") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
