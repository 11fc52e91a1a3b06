"""Helpers the readers share: contract-shaped tables, customers built from their documents, and
problems named by the file and line a row came from."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ledger.errors import Problem
from ledger.importing.mappings import CustomerDefaults
from ledger.schema import DATE, SCHEMAS


def contract_table(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame's columns that the contract names for table `name`, in contract order, indexed 0..n-1."""
    columns = [column for column in SCHEMAS[name].columns if column in frame]
    return frame[columns].reset_index(drop=True)


def most_common(frame: pd.DataFrame, by: str, column: str) -> pd.Series:
    """Per `by` value, the most frequent non-null `column` value (ties: the smallest)."""
    counts = frame.dropna(subset=[column]).groupby([by, column]).size().rename("count").reset_index()
    counts = counts.sort_values([by, "count", column], ascending=[True, False, True])
    return counts.drop_duplicates(by).set_index(by)[column]


def customers_table(documents: pd.DataFrame, first_seen: pd.Series, defaults: CustomerDefaults) -> pd.DataFrame:
    """One customer per `customer_id` in `documents` (ledger invoices plus optional `name` and
    `country` columns), the gaps filled from the mapping's defaults.

    `first_seen` is each customer's first document date: the export has no creation date."""
    tally = CustomerTally()
    tally.add(documents, first_seen)
    return tally.customers(defaults)


class CustomerTally:
    """What the customers table is built from, counted chunk by chunk: per customer, how often each
    name, country, currency and payment term occurs, and its first document date. Memory grows with
    customers times distinct values, not with documents; the table equals the one built from all
    documents at once (most frequent value, ties to the smallest)."""

    COLUMNS = ("name", "country", "currency", "days")

    def __init__(self) -> None:
        self.counts: dict[str, pd.Series] = {}
        self.first_seen: pd.Series | None = None

    def add(self, documents: pd.DataFrame, first_seen: pd.Series) -> None:
        """Count one chunk of documents (with `doc_type`; terms from its invoices) and their first dates."""
        invoices = documents[documents["doc_type"] == "invoice"]
        frames = {column: documents for column in ("name", "country", "currency") if column in documents}
        frames["days"] = invoices.assign(days=(invoices["due_date"] - invoices["invoice_date"]).dt.days.clip(0, 366))
        for column, frame in frames.items():
            counts = frame.dropna(subset=[column]).groupby(["customer_id", column]).size()
            self.counts[column] = counts if column not in self.counts else counts.add(self.counts[column], fill_value=0)
        self.first_seen = first_seen if self.first_seen is None else pd.concat([self.first_seen, first_seen]).groupby(
            level=0).min()

    def customers(self, defaults: CustomerDefaults) -> pd.DataFrame:
        """The customers table of everything counted."""
        first_seen = self.first_seen if self.first_seen is not None else pd.Series(dtype=DATE)
        ids = pd.Index(first_seen.index, name="customer_id")
        name = self._most_common("name", ids).fillna(pd.Series(ids, index=ids))
        country = self._most_common("country", ids).fillna(defaults.country)
        customers = pd.DataFrame({
            "customer_id": ids.astype(str),
            "name": name.to_numpy(dtype=object),
            "segment": defaults.segment,
            "country": country.to_numpy(dtype=object),
            "currency": self._most_common("currency", ids).to_numpy(dtype=object),
            "payment_terms_days": self._terms(ids, defaults.payment_terms_days).to_numpy(),
            "credit_limit": float("nan") if defaults.credit_limit is None else float(defaults.credit_limit),
            "created_date": first_seen.reindex(ids).astype(DATE).to_numpy(),
        })
        return contract_table("customers", customers)

    def _most_common(self, column: str, ids: pd.Index) -> pd.Series:
        if column not in self.counts:
            return pd.Series(None, index=ids, dtype=object)
        counts = self.counts[column].rename("count").reset_index()
        counts = counts.sort_values(["customer_id", "count", column], ascending=[True, False, True])
        return counts.drop_duplicates("customer_id").set_index("customer_id")[column].reindex(ids)

    def _terms(self, ids: pd.Index, setting: int | str) -> pd.Series:
        """The mapping's constant, or each customer's most common (due - invoice date) in days; customers
        without invoices get the most common terms of all."""
        if isinstance(setting, int):
            return pd.Series(setting, index=ids, dtype="int64")
        counts = self.counts.get("days")
        if counts is None or not len(counts):
            return pd.Series(0, index=ids, dtype="int64")
        overall = counts.groupby(level="days").sum()
        overall = int(overall[overall == overall.max()].index.min())
        return self._most_common("days", ids).fillna(overall).astype("int64")


def problems_at(rows: pd.DataFrame, bad: pd.Series | np.ndarray, column: str | None,
                message: str | pd.Series) -> list[Problem]:
    """A problem at the `file` and `line` of each row where `bad` is True; `message` may differ per row."""
    mask = np.asarray(pd.Series(bad, index=rows.index).fillna(False), dtype=bool)
    chosen = rows[mask]
    messages = message[mask] if isinstance(message, pd.Series) else pd.Series(message, index=chosen.index)
    return [Problem(str(file), int(line), column, str(text))
            for file, line, text in zip(chosen["file"], chosen["line"], messages, strict=True)]
