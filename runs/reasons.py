"""Reason codes: the top SHAP contributions of a model turned into words a collector understands.

A contribution says how much a feature pushed this row's risk up (log-odds); only features that push
it up are reasons. Each phrase states the feature's value for the customer ("pays 18 days late on
average over the last 10 invoices, 12 days later than before"), so a reason is evidence, not jargon.
Features without a phrase fall back to the registry's description and the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

import numpy as np
import pandas as pd

from features import registry_frame


def _days(value: float) -> str:
    return f"{value:.0f} day" + ("" if round(value) == 1 else "s")


def _money(value: float) -> str:
    return f"{value:,.0f}"


def _avg_days_late(value: float, row: pd.Series, name: str) -> str:
    count = name.rsplit("_", 1)[-1]
    text = f"pays {_days(value)} late on average over the last {count} invoices" if value > 0 else \
        f"pays {_days(-value)} early on average over the last {count} invoices"
    trend = row.get("days_late_trend")
    if trend is not None and pd.notna(trend) and abs(trend) >= 1:
        text += f", {_days(abs(trend))} {'later' if trend > 0 else 'earlier'} than before"
    return text


def _window(name: str) -> str:
    match = re.search(r"_(\d+)d(?:_|$)", name)
    return f"the last {match.group(1)} days" if match else "the period"


def _bucket_words(name: str) -> str:
    bucket = name.removeprefix("share_ar_")
    if bucket == "current":
        return "not yet overdue"
    days = bucket.removeprefix("dpd_").replace("over_", "over ").replace("_", "-")
    return f"{days} days past due"


PHRASES: dict[str, Callable[[float, pd.Series, str], str]] = {
    "days_past_due": lambda v, row, name: f"largest open item {_days(v)} past due" if v > 0 else "items not yet due",
    "max_days_past_due": lambda v, row, name: f"oldest open item {_days(v)} past due",
    "avg_days_late_last_": _avg_days_late,
    "ewm_days_late_last_": lambda v, row, name: f"recent invoices paid {_days(v)} late (weighted to the latest)",
    "share_paid_late_": lambda v, row, name: f"{v:.0%} of invoices paid in {_window(name)} were late",
    "days_late_trend": lambda v, row, name: (f"paying {_days(v)} later than before" if v > 0
                                             else f"paying {_days(-v)} earlier than before"),
    "late_share_trend": lambda v, row, name: f"share paid late {'up' if v > 0 else 'down'} {abs(v):.0%} points",
    "credit_utilisation": lambda v, row, name: f"using {v:.0%} of the credit limit",
    "overdue_amount_base": lambda v, row, name: f"{_money(v)} overdue",
    "open_ar_base": lambda v, row, name: f"{_money(v)} open in total",
    "open_amount_base": lambda v, row, name: f"largest open item {_money(v)}",
    "share_ar_": lambda v, row, name: f"{v:.0%} of open receivables {_bucket_words(name)}",
    "disputes_": lambda v, row, name: f"{v:.0f} dispute(s) opened in {_window(name)}",
    "open_disputes": lambda v, row, name: f"{v:.0f} open dispute(s)",
    "broken_promises_": lambda v, row, name: f"{v:.0f} broken promise(s) in {_window(name)}",
    "pending_promises": lambda v, row, name: f"{v:.0f} promise(s) to pay pending",
    "days_since_last_payment": lambda v, row, name: f"no payment received for {_days(v)}",
    "payment_frequency_": lambda v, row, name: f"{v:.1f} payments a month over {_window(name)}",
    "partial_payment_share_": lambda v, row, name: f"pays {v:.0%} of invoices in parts",
    "unapplied_cash_base": lambda v, row, name: f"{_money(v)} received but not applied",
    "invoice_volume_trend": lambda v, row, name: f"invoicing at {v:.1f}x its usual rate",
    "invoices_": lambda v, row, name: f"{v:.0f} invoices in {_window(name)}",
    "invoice_volume_": lambda v, row, name: f"{_money(v)} invoiced in {_window(name)}",
    "tenure_days": lambda v, row, name: f"customer for {_days(v)}",
    "payment_terms_days": lambda v, row, name: f"payment terms of {_days(v)}",
    "days_to_due": lambda v, row, name: f"largest open item due in {_days(v)}" if v > 0 else "largest open item due",
    "invoice_month_end": lambda v, row, name: "invoiced at month end" if v else "invoiced mid-month",
    "invoice_quarter_end": lambda v, row, name: "invoiced at quarter end" if v else "invoiced mid-quarter",
    "invoice_age_days": lambda v, row, name: f"largest open item invoiced {_days(v)} ago",
    "share_paid": lambda v, row, name: f"{v:.0%} of the largest open item paid",
    "paperless": lambda v, row, name: "invoices sent electronically" if v else "invoices sent on paper",
    "is_credit_memo": lambda v, row, name: "open credit memo" if v else "open invoice",
    "open_documents": lambda v, row, name: f"{v:.0f} open documents",
    "terms_days": lambda v, row, name: f"invoice terms of {_days(v)}",
    "dunning_level": lambda v, row, name: f"dunning level {v:.0f} reached",
    "has_broken_promise": lambda v, row, name: "a promise on an open invoice was broken",
    "in_open_dispute": lambda v, row, name: "an open invoice is in dispute",
    "writeoffs_": lambda v, row, name: f"{v:.0f} write-off(s) in {_window(name)}",
    "days_since_last_contact": lambda v, row, name: f"no contact for {_days(v)}",
    "contacts_": lambda v, row, name: f"{v:.0f} contact(s) in {_window(name)}",
}


def phrase(name: str, value, row, descriptions: dict[str, str]) -> str:
    """The words for one feature at its value (`row`: anything with `.get(column)`, for the phrases that
    add a second value)."""
    if value is None or pd.isna(value):
        return f"{descriptions.get(name, name).rstrip('.')}: unknown"
    make = phrase_maker(name)
    if make is not None:
        return make(float(value), row, name)
    return f"{descriptions.get(name, name).rstrip('.')}: {value:g}" if isinstance(value, float | int) else \
        f"{descriptions.get(name, name).rstrip('.')}: {value}"


@cache
def phrase_maker(name: str) -> Callable[[float, pd.Series, str], str] | None:
    """The phrase for feature `name`: its own, else the first prefix (`avg_days_late_last_`) it starts with."""
    for key, make in PHRASES.items():
        if name == key or (key.endswith("_") and name.startswith(key)):
            return make
    return None


def top_reasons(contributions: pd.Series, row: pd.Series, count: int = 3,
                descriptions: dict[str, str] | None = None) -> list[str]:
    """The `count` features that push risk up the most, in words (ties by feature name)."""
    table = reason_table(contributions.to_frame().T, row.to_frame().T, count, descriptions)
    return reason_lists(table, count)[0]


def reason_table(contributions: pd.DataFrame, rows: pd.DataFrame, count: int = 3,
                 descriptions: dict[str, str] | None = None) -> pd.DataFrame:
    """Per row of `contributions` (aligned by position with `rows`, the feature values): `reason_1..count`,
    the features that push risk up the most in words, and `reason_1..count_contribution`, their SHAP
    values; largest first, ties by feature name, "" and NaN where fewer push up. One sort for all rows:
    the whole book is explained in one call."""
    descriptions = descriptions if descriptions is not None else feature_descriptions()
    names = np.asarray(contributions.columns, dtype=object)
    values = contributions.to_numpy(dtype=float)
    by_name = np.argsort(names.astype(str), kind="stable")
    # A stable sort of the name-ordered columns on -value: equal values keep name order.
    picked = by_name[np.argsort(-values[:, by_name], axis=1, kind="stable")[:, :count]]
    top = np.take_along_axis(values, picked, axis=1) if len(values) else np.zeros((0, picked.shape[1]))
    columns = {name: rows[name].to_numpy() for name in rows.columns}
    texts = np.full(top.shape, "", dtype=object)
    for position, slot in zip(*np.nonzero(top > 0), strict=True):
        name = names[picked[position, slot]]
        value = columns[name][position] if name in columns else None
        texts[position, slot] = phrase(name, value, RowValues(columns, position), descriptions)
    table = {}
    for slot in range(count):
        present = slot < top.shape[1]
        table[f"reason_{slot + 1}"] = texts[:, slot] if present else np.full(len(values), "", dtype=object)
        table[f"reason_{slot + 1}_contribution"] = (np.where(top[:, slot] > 0, top[:, slot], np.nan) if present
                                                    else np.full(len(values), np.nan))
    return pd.DataFrame(table, index=contributions.index)


def reason_lists(table: pd.DataFrame, count: int = 3) -> list[list[str]]:
    """The reasons of a `reason_table` as one list per row, empty slots dropped."""
    slots = table[[f"reason_{slot + 1}" for slot in range(count)]].to_numpy(dtype=object)
    return [[text for text in row if text] for row in slots]


class RowValues:
    """One row of column arrays, read like a Series (`row.get(column)`), without building one per row."""

    __slots__ = ("columns", "position")

    def __init__(self, columns: dict[str, np.ndarray], position: int) -> None:
        self.columns, self.position = columns, position

    def get(self, name: str, default=None):
        column = self.columns.get(name)
        return default if column is None else column[self.position]


def customer_reason_table(items: pd.DataFrame, contributions: pd.DataFrame, weights: np.ndarray,
                          count: int = 3) -> pd.DataFrame:
    """Per customer (index, sorted): the `reason_table` of the contributions of its open items averaged
    with `weights` (the money at risk, so large risky items speak loudest); values are those of the item
    weighing most."""
    weights = np.where(np.asarray(weights, dtype=float) > 0, weights, 1e-9)
    customers = items["customer_id"].to_numpy()
    frame = pd.DataFrame(contributions.to_numpy(dtype=float) * weights[:, None], columns=contributions.columns)
    weight_sum = pd.Series(weights).groupby(customers).sum()
    mean = frame.groupby(customers, sort=True).sum().div(weight_sum, axis=0)
    heaviest = items.assign(_w=weights).sort_values(["_w", "invoice_id"], ascending=[False, True])
    heaviest = heaviest.drop_duplicates("customer_id").set_index("customer_id").reindex(mean.index)
    return reason_table(mean, heaviest, count)


def customer_reasons(items: pd.DataFrame, contributions: pd.DataFrame, weights: np.ndarray,
                     count: int = 3) -> dict[str, list[str]]:
    """Per customer: its `customer_reason_table` reasons as a list."""
    table = customer_reason_table(items, contributions, weights, count)
    return dict(zip(table.index, reason_lists(table, count), strict=True))


def feature_descriptions() -> dict[str, str]:
    registry = registry_frame()
    return dict(zip(registry["name"], registry["description"], strict=True))
