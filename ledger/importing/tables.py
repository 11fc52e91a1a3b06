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
    ids = pd.Index(first_seen.index, name="customer_id")
    name = _per_customer(documents, "name", ids).fillna(pd.Series(ids, index=ids))
    country = _per_customer(documents, "country", ids).fillna(defaults.country)
    currency = most_common(documents, "customer_id", "currency").reindex(ids)
    customers = pd.DataFrame({
        "customer_id": ids.astype(str),
        "name": name.to_numpy(dtype=object),
        "segment": defaults.segment,
        "country": country.to_numpy(dtype=object),
        "currency": currency.to_numpy(dtype=object),
        "payment_terms_days": payment_terms_days(documents, ids, defaults.payment_terms_days).to_numpy(),
        "credit_limit": float("nan") if defaults.credit_limit is None else float(defaults.credit_limit),
        "created_date": first_seen.reindex(ids).astype(DATE).to_numpy(),
    })
    return contract_table("customers", customers)


def payment_terms_days(documents: pd.DataFrame, ids: pd.Index, setting: int | str) -> pd.Series:
    """Per customer: the mapping's constant, or the most common (due date - invoice date) in days
    over its invoices; customers without invoices get the most common terms of all."""
    if isinstance(setting, int):
        return pd.Series(setting, index=ids, dtype="int64")
    invoices = documents[documents["doc_type"] == "invoice"]
    days = (invoices["due_date"] - invoices["invoice_date"]).dt.days.clip(0, 366)
    terms = invoices.assign(days=days)
    overall = int(terms["days"].mode().min()) if len(terms) else 0
    return most_common(terms, "customer_id", "days").reindex(ids).fillna(overall).astype("int64")


def _per_customer(documents: pd.DataFrame, column: str, ids: pd.Index) -> pd.Series:
    if column not in documents:
        return pd.Series(None, index=ids, dtype=object)
    return most_common(documents, "customer_id", column).reindex(ids).astype(object)


def problems_at(rows: pd.DataFrame, bad: pd.Series | np.ndarray, column: str | None,
                message: str | pd.Series) -> list[Problem]:
    """A problem at the `file` and `line` of each row where `bad` is True; `message` may differ per row."""
    mask = np.asarray(pd.Series(bad, index=rows.index).fillna(False), dtype=bool)
    chosen = rows[mask]
    messages = message[mask] if isinstance(message, pd.Series) else pd.Series(message, index=chosen.index)
    return [Problem(str(file), int(line), column, str(text))
            for file, line, text in zip(chosen["file"], chosen["line"], messages, strict=True)]
