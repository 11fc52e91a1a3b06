"""A ledger partitioned by customer: each table a folder of Parquet files, one sub-folder per bucket.

    LEDGER/ledger.json                      {"layout": "partitioned", "partitions": N, ...}
    LEDGER/invoices/part-00000/*.parquet    the invoices of the customers in bucket 0
    ...
    LEDGER/invoices/part-<N-1>/*.parquet

A customer's bucket is `hash(customer_id) % N` with pandas' stable hash (the same in every process
and on every machine), and every row of every table sits in the bucket of the customer it belongs to
(tables without `customer_id` follow their invoice's customer). So each bucket is a ledger of its own,
with the whole history of its customers: the per-customer as-of code runs on one bucket at a time
(`read_partition`) and gives what it gives on the whole ledger. `read_ledger` reads either layout.

A bucket folder may hold several files (a generator or an import writes one per chunk); they are read in
name order. `PartitionedWriter` writes such a ledger chunk by chunk, never holding it whole: it checks each
bucket as a ledger of its own and the unique keys across buckets, then swaps the ledger into place atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ledger.errors import BadInput, LedgerError, Problem
from ledger.schema import OPTIONAL_TABLES, TABLES, empty_table
from ledger.store import (
    META_FILE,
    Ledger,
    _normalise_dtypes,
    _read_meta,
    _remove_if_ours,
    commit_staging,
    open_staging,
    write_extras,
)

PARTITIONED = "partitioned"
# The keys the contract makes unique: unique within a bucket is not enough, they must be unique across buckets.
UNIQUE_KEYS = (("customers", "customer_id"), ("invoices", "invoice_id"), ("payments", "payment_id"),
               ("disputes", "dispute_id"), ("promises", "promise_id"), ("writeoffs", "invoice_id"),
               ("contacts", "contact_id"))


def bucket_of(customer_ids, partitions: int) -> np.ndarray:
    """The bucket (0..partitions-1) of each customer id: a stable hash, not Python's salted `hash`."""
    ids = np.asarray(customer_ids, dtype=object)
    return (pd.util.hash_array(ids) % np.uint64(partitions)).astype(np.int64)


def part_name(bucket: int) -> str:
    return f"part-{bucket:05d}"


def is_partitioned(path: str | Path) -> bool:
    """True when `path` is a ledger written in the partitioned layout."""
    try:
        return _read_meta(Path(path)).get("layout") == PARTITIONED
    except LedgerError:
        return False


def partition_count(path: str | Path) -> int:
    """The number of buckets of a partitioned ledger (1 for a ledger in the single-file layout)."""
    meta = _read_meta(Path(path))
    return int(meta.get("partitions", 1)) if meta.get("layout") == PARTITIONED else 1


def row_buckets(ledger: Ledger, partitions: int) -> dict[str, np.ndarray]:
    """Per table: the bucket of each row (its customer's; an invoice's customer for tables keyed by invoice).
    A payment applied to an invoice of a customer in another bucket cannot sit with both: `LedgerError`."""
    # The first owner of a key (a duplicate key is the validation's to report, not this function's).
    customer_of_invoice = ledger.invoices.drop_duplicates("invoice_id").set_index("invoice_id")["customer_id"]
    buckets = {}
    for name, table in ledger.tables().items():
        owner = table["customer_id"] if "customer_id" in table else table["invoice_id"].map(customer_of_invoice)
        buckets[name] = bucket_of(owner.to_numpy(), partitions)
    problems = []
    payer = ledger.payment_applications["payment_id"].map(
        ledger.payments.drop_duplicates("payment_id").set_index("payment_id")["customer_id"])
    apart = np.flatnonzero(bucket_of(payer.to_numpy(), partitions) != buckets["payment_applications"])
    problems += [Problem("payment_applications", int(row), "payment_id",
                         f"the payment's customer and the invoice's customer fall in different buckets of "
                         f"{partitions}: a ledger with payments applied across customers cannot be "
                         "partitioned by customer (write it unpartitioned)") for row in apart[:20]]
    promised = ledger.promises["invoice_id"].map(customer_of_invoice)
    apart = np.flatnonzero(promised.notna().to_numpy()
                           & (bucket_of(promised.fillna("").to_numpy(), partitions) != buckets["promises"]))
    problems += [Problem("promises", int(row), "invoice_id",
                         f"the promise's customer and its invoice's customer fall in different buckets of "
                         f"{partitions}: a ledger with promises across customers cannot be partitioned by "
                         "customer (write it unpartitioned)") for row in apart[:20]]
    if problems:
        raise LedgerError(problems, title="cannot partition")
    return buckets


def write_buckets(ledger: Ledger, folder: Path, partitions: int, chunk: int = 0) -> dict[str, int]:
    """Write the ledger's rows into `folder/<table>/part-<bucket>/chunk-<chunk>.parquet` (a file for every
    bucket, empty ones too, so every bucket has every table's columns); returns rows written per table."""
    buckets = row_buckets(ledger, partitions)
    rows = {}
    for name, table in ledger.tables().items():
        order = np.argsort(buckets[name], kind="stable")
        bounds = np.searchsorted(buckets[name][order], np.arange(partitions + 1))
        arrow = pa.Table.from_pandas(table.iloc[order], preserve_index=False)
        for bucket in range(partitions):
            target = folder / name / part_name(bucket)
            target.mkdir(parents=True, exist_ok=True)
            pq.write_table(arrow.slice(bounds[bucket], bounds[bucket + 1] - bounds[bucket]),
                           target / f"chunk-{chunk:05d}.parquet")
        rows[name] = len(table)
    return rows


def partitioned_meta(base_currency: str, source: str, partitions: int, rows: dict[str, int]) -> dict:
    from ledger.store import FORMAT, FORMAT_VERSION

    return {"format": FORMAT, "version": FORMAT_VERSION, "layout": PARTITIONED, "partitions": partitions,
            "base_currency": base_currency, "source": source, "rows": rows}


def require_partitioned(path: str | Path) -> None:
    """`BadInput` unless `path` is a partitioned ledger (what the dask engine reads)."""
    if _read_meta(Path(path)).get("layout") != PARTITIONED:  # a missing or foreign ledger is named as such
        raise BadInput(f"{path}: the dask engine reads a partitioned ledger; write one with "
                       "`arrisk generate --partitions N` or `arrisk import --partitions N`")


def read_meta(path: str | Path) -> dict:
    """The ledger's `ledger.json` (`LedgerError` naming it when missing or not ours)."""
    return _read_meta(Path(path))


def read_partition(path: str | Path, bucket: int, *, validate: bool = True) -> Ledger:
    """The ledger of one bucket: the whole history of the customers whose bucket it is."""
    path = Path(path)
    meta = _read_meta(path)
    if meta.get("layout") != PARTITIONED:
        raise LedgerError(Problem(str(path / META_FILE), None, "layout", "not a partitioned ledger"),
                          title="unreadable ledger")
    partitions = int(meta["partitions"])
    if not 0 <= bucket < partitions:
        raise ValueError(f"bucket {bucket} out of range 0..{partitions - 1}")
    tables = {name: _read_files(path, name, sorted((path / name / part_name(bucket)).glob("*.parquet")))
              for name in TABLES}
    ledger = Ledger(**{name: table for name, table in tables.items() if table is not None},
                    base_currency=meta.get("base_currency", "EUR"), source=meta.get("source", ""))
    return ledger.validate() if validate else ledger


def read_partitioned(path: Path, meta: dict) -> Ledger:
    """The whole partitioned ledger in memory: every table's buckets one after another."""
    tables = {name: _read_files(path, name, sorted((path / name).glob("part-*/*.parquet"))) for name in TABLES}
    return Ledger(**{name: table for name, table in tables.items() if table is not None},
                  base_currency=meta.get("base_currency", "EUR"), source=meta.get("source", ""))


def _read_files(path: Path, name: str, files: list[Path]) -> pd.DataFrame | None:
    """A table from its files in order; None for a missing optional table; `LedgerError` naming the file."""
    if not (path / name).is_dir():
        if name in OPTIONAL_TABLES:
            return None
        raise LedgerError(Problem(str(path / name), None, None, "table missing"), title="unreadable ledger")
    frames = []
    for file in files:
        try:
            frames.append(pq.read_table(file).to_pandas())
        except (OSError, pa.ArrowException) as error:
            raise LedgerError(Problem(str(file), None, None, f"not a readable Parquet file ({error})"),
                              title="unreadable ledger") from None
    if not frames:
        return empty_table(name)
    return _normalise_dtypes(name, pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0])


def write_meta(folder: Path, meta: dict) -> None:
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


class PartitionedWriter:
    """Writes a partitioned ledger chunk by chunk into a staging folder beside `path`, then checks it
    bucket by bucket and swaps it into place, so memory holds one chunk or one bucket, never the ledger.

        with PartitionedWriter(out, 16, "EUR", "import:x") as writer:
            for chunk in chunks:
                writer.add(chunk)          # each chunk: whole customers with all their rows
            writer.finish()                # validates, writes ledger.json last, swaps in

    An error, Ctrl-C, or leaving the block without `finish` removes the staging folder and leaves what
    was at `path` (a previous ledger, or nothing) as it was. `path` is refused up front unless it is
    absent, an empty folder or a ledger."""

    def __init__(self, path: str | Path, partitions: int, base_currency: str = "EUR", source: str = "") -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        self.path = Path(os.path.abspath(path))
        self.partitions = partitions
        self.base_currency = base_currency
        self.source = source
        self.rows = dict.fromkeys(TABLES, 0)
        self.chunks = 0
        self.staging: Path | None = open_staging(self.path)

    def __enter__(self) -> PartitionedWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.abandon()

    def add(self, ledger: Ledger) -> None:
        """Write one chunk's rows into their buckets (`LedgerError` when rows of one customer's history
        would fall into different buckets)."""
        for name, count in write_buckets(ledger, self._folder(), self.partitions, chunk=self.chunks).items():
            self.rows[name] += count
        self.chunks += 1

    def add_extras(self, extras: Mapping[str, pd.DataFrame]) -> None:
        """Further tables (e.g. the generator's truth) by path relative to the ledger folder."""
        write_extras(self._folder(), extras)

    def finish(self, *, validate: bool = True) -> Path:
        """Check every bucket and the keys across buckets (one `LedgerError` listing every problem), write
        ledger.json, and swap the ledger into place; the staging folder is gone either way."""
        folder = self._folder()
        try:
            if not self.chunks:  # an empty ledger still has every table
                self.add(Ledger(**{name: empty_table(name) for name in TABLES}))
            if validate:
                problems = bucket_problems(folder, self.partitions, self.path)
                if problems:
                    raise LedgerError(problems, title="invalid ledger")
            write_meta(folder, partitioned_meta(self.base_currency, self.source, self.partitions, self.rows))
            commit_staging(folder, self.path)
        finally:
            self.abandon()
        return self.path

    def abandon(self) -> None:
        """Remove the staging folder (whatever was written so far); the target stays as it was."""
        if self.staging is not None:
            _remove_if_ours(self.staging)
            self.staging = None

    def _folder(self) -> Path:
        if self.staging is None:
            raise RuntimeError("this PartitionedWriter has finished or been abandoned")
        return self.staging


def bucket_problems(folder: Path, partitions: int, target: Path) -> list[Problem]:
    """Every problem of a partitioned ledger in `folder`, read one bucket at a time: each bucket validated
    as a ledger of its own, then the contract's unique keys checked across buckets. Problems name the file
    under `target` (where the ledger is going) and the row within it."""
    problems: list[Problem] = []
    hashes: dict[tuple[str, str], list[np.ndarray]] = {key: [] for key in UNIQUE_KEYS}
    for bucket in range(partitions):
        tables, files = {}, {}
        for name in TABLES:
            paths = sorted((folder / name / part_name(bucket)).glob("*.parquet"))
            frames = [_read_file(path) for path in paths]
            files[name] = [(path.relative_to(folder), len(frame)) for path, frame in zip(paths, frames, strict=True)]
            tables[name] = (_normalise_dtypes(name, pd.concat(frames, ignore_index=True)) if frames
                            else empty_table(name))
        try:
            Ledger(**tables).validate()
        except LedgerError as error:
            problems += [_in_file(problem, files, target, bucket) for problem in error.problems]
        for table, column in UNIQUE_KEYS:
            hashes[(table, column)].append(pd.util.hash_array(tables[table][column].to_numpy(dtype=object)))
    for (table, column), per_bucket in hashes.items():
        problems += _duplicates_across_buckets(folder, table, column, per_bucket, target)
    return problems


def _read_file(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    try:
        return pq.read_table(path, columns=columns).to_pandas()
    except (OSError, pa.ArrowException) as error:
        raise LedgerError(Problem(str(path), None, None, f"not a readable Parquet file ({error})"),
                          title="unreadable ledger") from None


def _in_file(problem: Problem, files: dict[str, list[tuple[Path, int]]], target: Path, bucket: int) -> Problem:
    """A bucket's problem (row counted over the bucket's files) as a problem at a file and its row."""
    if problem.where not in files or problem.row is None:
        return Problem(f"{target / problem.where} ({part_name(bucket)})", problem.row, problem.column,
                       problem.message, problem.key)
    row = problem.row
    for relative, length in files[problem.where]:
        if row < length:
            return Problem(str(target / relative), row, problem.column, problem.message, problem.key)
        row -= length
    return Problem(f"{target / problem.where} ({part_name(bucket)})", problem.row, problem.column,  # pragma: no cover
                   problem.message, problem.key)


def _duplicates_across_buckets(folder: Path, table: str, column: str, per_bucket: list[np.ndarray],
                               target: Path) -> list[Problem]:
    """Keys found in more than one bucket: suspects by 64-bit hash, confirmed by the strings."""
    owners = pd.DataFrame({"hash": np.concatenate(per_bucket),
                           "bucket": np.repeat(np.arange(len(per_bucket)), [len(h) for h in per_bucket])})
    owners = owners.drop_duplicates()
    suspects = owners["hash"][owners["hash"].duplicated()].unique()
    if not len(suspects):
        return []
    places = []
    for bucket in owners.loc[owners["hash"].isin(suspects), "bucket"].unique():
        for path in sorted((folder / table / part_name(int(bucket))).glob("*.parquet")):
            values = _read_file(path, [column])[column].to_numpy(dtype=object)
            for row in np.flatnonzero(np.isin(pd.util.hash_array(values), suspects)):
                places.append((values[row], int(bucket), str(target / path.relative_to(folder)), int(row)))
    found = pd.DataFrame(places, columns=["key", "bucket", "file", "row"])
    spread = found.groupby("key")["bucket"].transform("nunique")
    problems = []
    for key, rows in found[spread > 1].groupby("key", sort=True):
        for where, row in zip(rows["file"], rows["row"], strict=True):
            others = [f"{file} row {other}" for file, other in zip(rows["file"], rows["row"], strict=True)
                      if (file, other) != (where, row)]
            problems.append(Problem(where, row, column, f"duplicate key: {column} {key} is also at "
                                    + "; ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3
                                                               else ""), key=str(key)))
    return problems
