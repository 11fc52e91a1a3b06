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
name order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ledger.errors import LedgerError, Problem
from ledger.schema import OPTIONAL_TABLES, TABLES, empty_table
from ledger.store import META_FILE, Ledger, _normalise_dtypes, _read_meta

PARTITIONED = "partitioned"


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
    customer_of_invoice = ledger.invoices.set_index("invoice_id")["customer_id"]
    buckets = {}
    for name, table in ledger.tables().items():
        owner = table["customer_id"] if "customer_id" in table else table["invoice_id"].map(customer_of_invoice)
        buckets[name] = bucket_of(owner.to_numpy(), partitions)
    payer = ledger.payment_applications["payment_id"].map(ledger.payments.set_index("payment_id")["customer_id"])
    apart = bucket_of(payer.to_numpy(), partitions) != buckets["payment_applications"]
    if apart.any():
        rows = np.flatnonzero(apart)
        raise LedgerError([Problem("payment_applications", int(row), "payment_id",
                                   f"the payment's customer and the invoice's customer fall in different buckets of "
                                   f"{partitions}: a ledger with payments applied across customers cannot be "
                                   "partitioned by customer (write it unpartitioned)") for row in rows[:20]],
                          title="cannot partition")
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
