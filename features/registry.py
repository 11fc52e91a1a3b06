"""The feature registry: every feature column's name, level and one-line description.

Training selects its inputs from here and logs the registry with each model; a test checks that the
columns the builders produce and the registry's names are the same set. Window lengths come from
the `FeatureConfig`, so the names say which window they use (`share_paid_late_90d`).

A description is written once, as the first paragraph of the docstring of the function that computes the
column (`features/invoice.py`, `features/customer.py`, `features/peers.py`), with `{config.<field>}` placeholders for the
windows; a function returning several columns (one per window or bucket) has a placeholder per column.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import pandas as pd

from features import customer, invoice, peers
from features.config import FeatureConfig, aging_bucket_names

Level = Literal["invoice", "customer"]


@dataclass(frozen=True)
class Feature:
    """One feature column: its name, the entity it describes, and what it means."""

    name: str
    level: Level
    description: str


def feature_registry(config: FeatureConfig | None = None) -> dict[str, Feature]:
    """All feature columns for `config` (defaults when None), invoice level first, by name."""
    config = config or FeatureConfig()
    return {name: Feature(name, level, describe(function, config, **values))
            for level, columns in (("invoice", invoice_columns(config)), ("customer", customer_columns(config)))
            for name, function, values in columns}


Column = tuple[str, Callable, dict]


def invoice_columns(config: FeatureConfig) -> list[Column]:
    """(column, the function computing it, its own placeholder values), in the builder's order."""
    functions = (invoice.open_amount_base, invoice.open_amount_base_log1p, invoice.share_paid, invoice.days_past_due,
                 invoice.days_to_due, invoice.terms_days, invoice.invoice_age_days, invoice.invoice_month_end,
                 invoice.invoice_quarter_end, invoice.is_credit_memo, invoice.paperless, invoice.in_open_dispute,
                 invoice.has_pending_promise, invoice.has_broken_promise, invoice.dunning_level)
    return [(function.__name__, function, {}) for function in functions]


def customer_columns(config: FeatureConfig) -> list[Column]:
    """(column, the function computing it, its own placeholder values), in the builder's order."""
    c, n = config, config.last_paid_invoices
    buckets = zip(aging_bucket_names(c.aging_limits), bucket_words(c.aging_limits), strict=True)
    return [
        ("open_ar_base", customer.open_ar_base, {}),
        ("open_documents", customer.open_documents_count, {}),
        ("overdue_amount_base", customer.overdue_amount_base, {}),
        ("max_days_past_due", customer.max_days_past_due, {}),
        *[(f"share_ar_{name}", customer.share_ar_by_bucket, {"bucket": words}) for name, words in buckets],
        ("credit_utilisation", customer.credit_utilisation, {}),
        ("tenure_days", customer.tenure_days, {}),
        ("payment_terms_days", customer.payment_terms_days, {}),
        (f"invoices_{c.invoice_count_days}d", customer.invoices_count, {}),
        (f"invoice_volume_{c.volume_history_days}d_base", customer.invoice_volume_base, {}),
        ("invoice_volume_trend", customer.invoice_volume_trend, {}),
        (f"payment_frequency_{c.payment_frequency_days}d", customer.payment_frequency, {}),
        ("days_since_last_payment", customer.days_since_last_payment, {}),
        (f"avg_days_late_last_{n}", customer.avg_days_late_last_n, {}),
        (f"ewm_days_late_last_{n}", customer.ewm_days_late_last_n, {}),
        *[(f"share_paid_late_{days}d", customer.share_paid_late, {"days": days})
          for days in c.late_share_windows_days],
        ("days_late_trend", customer.days_late_trend, {}),
        ("late_share_trend", customer.late_share_trend, {}),
        ("recency_days_late", customer.recency_days_late, {}),
        ("recency_late_rate", customer.recency_late_rate, {}),
        ("recency_days_late_incl_open", customer.recency_days_late_incl_open, {}),
        ("recency_late_rate_incl_open", customer.recency_late_rate_incl_open, {}),
        (f"overdue_share_change_{c.overdue_trend_days}d", customer.overdue_share_change, {}),
        ("median_payment_gap_days", customer.median_payment_gap_days, {}),
        ("payment_gap_ratio", customer.payment_gap_ratio, {}),
        (f"partial_payment_share_{c.partial_payment_days}d", customer.partial_payment_share, {}),
        ("unapplied_cash_base", customer.unapplied_cash_base, {}),
        (f"disputes_{c.dispute_days}d", customer.disputes_opened, {}),
        ("open_disputes", customer.open_disputes_count, {}),
        (f"broken_promises_{c.broken_promise_days}d", customer.broken_promises, {}),
        ("pending_promises", customer.pending_promises, {}),
        (f"writeoffs_{c.writeoff_days}d", customer.writeoffs_count, {}),
        ("days_since_last_contact", customer.days_since_last_contact, {}),
        (f"contacts_{c.contact_days}d", customer.contacts_count, {}),
        *[column for kind in peers.PEER_KINDS for column in (
            (f"peer_{kind}_days_late", peers.peer_days_late, {"kind": kind}),
            (f"peer_{kind}_late_rate", peers.peer_late_rate, {"kind": kind}),
            (f"{kind}_days_late_vs_peers", peers.days_late_vs_peers, {"kind": kind}),
            (f"{kind}_late_rate_vs_peers", peers.late_rate_vs_peers, {"kind": kind}))],
    ]


def describe(function: Callable, config: FeatureConfig, **values) -> str:
    """The first paragraph of `function`'s docstring on one line, its placeholders filled from `config`
    and `values`."""
    summary = inspect.getdoc(function).split("\n\n", 1)[0]
    return " ".join(summary.split()).format(config=config, **values)


def bucket_words(limits: tuple[int, ...]) -> list[str]:
    """The aging buckets of `limits` in words, in the order of `aging_bucket_names`."""
    words = [f"at most {limits[0]} days past due (current)" if limits[0] == 0 else
             f"at most {limits[0]} days past due"]
    words += [f"{low + 1}-{high} days past due" for low, high in pairwise(limits)]
    return [*words, f"more than {limits[-1]} days past due"]


def feature_names(level: Level | None = None, config: FeatureConfig | None = None) -> list[str]:
    """Feature column names in registry order, of one level or (None) all of them."""
    return [f.name for f in feature_registry(config).values() if level is None or f.level == level]


def registry_frame(config: FeatureConfig | None = None) -> pd.DataFrame:
    """The registry as a table (name, level, description), e.g. to log with a model."""
    return pd.DataFrame([vars(f) for f in feature_registry(config).values()])


def current_state_groups(config: FeatureConfig | None = None) -> dict[str, list[str]]:
    """The customer features that describe its current state and its peers (issue 19), by group, the two
    behaviour trends included (they were there before); `benchmarks/ablation.py` leaves each group out in
    turn."""
    config = config or FeatureConfig()
    return {
        "recency": ["recency_days_late", "recency_late_rate", "recency_days_late_incl_open",
                    "recency_late_rate_incl_open"],
        "behaviour change": ["days_late_trend", "late_share_trend"],
        "overdue share": [f"overdue_share_change_{config.overdue_trend_days}d"],
        "payment rhythm": ["median_payment_gap_days", "payment_gap_ratio"],
        "peers": [name for name in feature_names("customer", config) if any(kind in name for kind in peers.PEER_KINDS)],
    }
