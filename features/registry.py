"""The feature registry: every feature column's name, level and one-line description.

Training selects its inputs from here and logs the registry with each model; a test checks that the
columns the builders produce and the registry's names are the same set. Window lengths come from
the `FeatureConfig`, so the names say which window they use (`share_paid_late_90d`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import pandas as pd

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
    n = config.last_paid_invoices
    limits = config.aging_limits
    bucket_words = [f"at most {limits[0]} days past due (current)" if limits[0] == 0 else
                    f"at most {limits[0]} days past due"]
    bucket_words += [f"{low + 1}-{high} days past due" for low, high in pairwise(limits)]
    bucket_words.append(f"more than {limits[-1]} days past due")
    invoice = {
        "open_amount_base": "Amount still open, in company currency (negative for a credit memo).",
        "open_amount_base_log1p": "Signed log(1 + |open amount in company currency|).",
        "share_paid": "Share of the document's amount already settled by payment applications.",
        "days_past_due": "Days since the due date; 0 while not yet due.",
        "days_to_due": "Days until the due date; 0 once due.",
        "terms_days": "Payment terms of this document: due date minus invoice date, in days.",
        "invoice_age_days": "Days since the invoice date.",
        "invoice_month_end": f"1 when issued in the last {config.month_end_days} days of its month.",
        "invoice_quarter_end": f"1 when issued in the last {config.month_end_days} days of a calendar quarter.",
        "is_credit_memo": "1 for a credit memo, 0 for an invoice.",
        "paperless": "1 when the document was sent electronically, 0 on paper, NaN when unknown.",
        "in_open_dispute": "1 when a dispute on the document is open.",
        "has_pending_promise": "1 when a promise to pay this document is not yet due and not yet kept.",
        "has_broken_promise": "1 when a promise to pay this document was broken.",
        "dunning_level": "Highest dunning level issued for the document; 0 when never dunned.",
    }
    customer = {
        "open_ar_base": "Customer's open receivables net of open credit memos, in company currency.",
        "open_documents": "Customer's number of open documents (invoices and credit memos).",
        "overdue_amount_base": "Customer's open amount of invoices past their due date, in company currency.",
        "max_days_past_due": "Days past due of the customer's most overdue open invoice (0 when none is).",
        **{f"share_ar_{name}": f"Share of the customer's open invoice amount {words}."
           for name, words in zip(aging_bucket_names(limits), bucket_words, strict=True)},
        "credit_utilisation": "Customer's open receivables over its credit limit (NaN without a limit).",
        "tenure_days": "Days since the customer was created or first invoiced.",
        "payment_terms_days": "Customer's standard payment terms in days.",
        f"invoices_{config.invoice_count_days}d": f"Invoices issued to the customer in the last "
                                                  f"{config.invoice_count_days} days.",
        f"invoice_volume_{config.volume_history_days}d_base": f"Amount invoiced in the last "
                                                             f"{config.volume_history_days} days, company currency.",
        "invoice_volume_trend": f"Daily amount invoiced over the last {config.volume_recent_days} days over "
                                f"that over the last {config.volume_history_days} days or the tenure if "
                                "shorter (1 = steady).",
        f"payment_frequency_{config.payment_frequency_days}d": f"Payments received per 30 days over the last "
                                                               f"{config.payment_frequency_days} days.",
        "days_since_last_payment": "Days since the customer's last payment was received.",
        f"avg_days_late_last_{n}": f"Mean days late over the customer's last {n} paid invoices.",
        f"ewm_days_late_last_{n}": f"Days late over the last {n} paid invoices, weighted with a half-life "
                                   f"of {config.ewm_halflife_invoices:g} invoices, latest first.",
        **{f"share_paid_late_{days}d": f"Share of invoices paid in the last {days} days that were paid more "
                                       f"than {config.late_grace_days} days late."
           for days in config.late_share_windows_days},
        "days_late_trend": f"Mean days late of invoices paid in the last {config.trend_recent_days} days minus "
                           f"that of those paid {config.trend_recent_days}-{config.trend_history_days} days ago.",
        "late_share_trend": f"Share paid late in the last {config.trend_recent_days} days minus the share "
                            f"paid late {config.trend_recent_days}-{config.trend_history_days} days ago.",
        f"partial_payment_share_{config.partial_payment_days}d": (
            f"Of invoices issued in the last {config.partial_payment_days} days that received a payment, the "
            "share paid in parts."),
        "unapplied_cash_base": "Cash received from the customer and not yet applied, in company currency.",
        f"disputes_{config.dispute_days}d": f"Disputes opened in the last {config.dispute_days} days.",
        "open_disputes": "Disputes still open on the customer's documents.",
        f"broken_promises_{config.broken_promise_days}d": (
            f"Promises to pay broken, with a promised date in the last {config.broken_promise_days} days."),
        "pending_promises": "Promises to pay not yet due and not yet kept.",
        f"writeoffs_{config.writeoff_days}d": f"Documents written off in the last {config.writeoff_days} days.",
        "days_since_last_contact": "Days since the last recorded contact with the customer (NaN when none).",
        f"contacts_{config.contact_days}d": f"Contacts with the customer in the last {config.contact_days} days.",
    }
    return ({name: Feature(name, "invoice", text) for name, text in invoice.items()}
            | {name: Feature(name, "customer", text) for name, text in customer.items()})


def feature_names(level: Level | None = None, config: FeatureConfig | None = None) -> list[str]:
    """Feature column names in registry order, of one level or (None) all of them."""
    return [f.name for f in feature_registry(config).values() if level is None or f.level == level]


def registry_frame(config: FeatureConfig | None = None) -> pd.DataFrame:
    """The registry as a table (name, level, description), e.g. to log with a model."""
    return pd.DataFrame([vars(f) for f in feature_registry(config).values()])
