"""Integer codes for the ledger's string keys, so that joins and group-bys compare integers.

Encoding is an order-preserving relabelling done once per ledger (codes follow the sorted ids, so
"sort by invoice id" means the same before and after) and decoding restores the ids in the output.
It changes no date and no amount, so it cannot let anything leak; the features give the same values
on an encoded and a plain ledger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ledger import Ledger

# Which key each column holds: (table, column) -> key kind.
KEY_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "customer": (("customers", "customer_id"), ("invoices", "customer_id"), ("payments", "customer_id"),
                 ("promises", "customer_id"), ("contacts", "customer_id")),
    "invoice": (("invoices", "invoice_id"), ("payment_applications", "invoice_id"), ("disputes", "invoice_id"),
                ("promises", "invoice_id"), ("writeoffs", "invoice_id"), ("dunning_notices", "invoice_id")),
    "payment": (("payments", "payment_id"), ("payment_applications", "payment_id")),
}
# Output columns to turn back into ids.
DECODED_COLUMNS = {"customer_id": "customer", "invoice_id": "invoice"}


@dataclass(frozen=True)
class KeyCodes:
    """The sorted ids of each key kind; an id's code is its position."""

    ids: dict[str, pd.Index]

    def decode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` with its customer_id / invoice_id codes replaced by the ids."""
        decoded = {column: self.ids[kind].take(frame[column].to_numpy(dtype=np.int64)).to_numpy()
                   for column, kind in DECODED_COLUMNS.items() if column in frame}
        return frame.assign(**decoded)


def encode_keys(ledger: Ledger) -> tuple[Ledger, KeyCodes]:
    """The ledger with customer, invoice and payment ids replaced by int64 codes (nullable Int64 where
    the column may be empty), and the codes to decode them."""
    tables = ledger.tables()
    encoded = {name: table.copy(deep=False) for name, table in tables.items()}
    ids = {}
    for kind, columns in KEY_COLUMNS.items():
        values = [tables[name][column] for name, column in columns]
        codes, ids[kind] = sorted_codes(pd.concat(values, ignore_index=True))
        start = 0
        for (name, column), original in zip(columns, values, strict=True):
            part = codes[start:start + len(original)]
            start += len(original)
            encoded[name][column] = _nullable(part) if (part < 0).any() else part
    return ledger.replace(**encoded), KeyCodes(ids)


def sorted_codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Per value, its position among the sorted distinct values (-1 when missing), and those values.
    Arrow hashes and sorts strings far faster than pandas does Python objects; other ids use pandas."""
    try:
        strings = pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        codes, uniques = pd.factorize(values, sort=True)
        return codes.astype(np.int64), pd.Index(uniques)
    encoded = pc.dictionary_encode(strings, null_encoding="mask")
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    positions = encoded.indices.to_numpy(zero_copy_only=False)  # float with NaN where missing
    missing = np.isnan(positions) if positions.dtype.kind == "f" else np.zeros(len(positions), dtype=bool)
    codes = np.where(missing, -1, rank[np.where(missing, 0, positions).astype(np.int64)])
    return codes, pd.Index(encoded.dictionary.take(pa.array(order)).to_numpy(zero_copy_only=False), dtype=object)


def _nullable(codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """Codes with -1 (a missing id) as <NA>."""
    array = pd.array(codes, dtype="Int64")
    array[codes < 0] = pd.NA
    return array
