"""The learned half of cash application: a LightGBM model of "this candidate set is the one the payment
pays", trained on the ledger's own past applications.

For each of the most recent already-applied payments (`TRAINING_PAYMENTS` at most), the open items of its
customer group just before it arrived are rebuilt (documents issued by its received date, less what
earlier payments applied and what was written off before it), its candidate sets are drawn by the same
rules and search as for a new payment (`cash_application.candidates`), and each set is labelled by
whether it is exactly the set of documents the payment was applied to. Only what is known on `as_of`
goes in: the ledger given is already cut there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier

from cash_application.candidates import (
    FEATURES,
    OpenItems,
    candidate_sets,
    cents_of,
    feature_frame,
    open_items_by,
    quoted_items,
    set_features,
)
from cash_application.policy import MatchPolicy
from cash_application.references import text_numbers
from ledger import Ledger
from ledger.validation import TOLERANCE

TRAINING_PAYMENTS = 4000
MIN_TRAINING_SETS = 50


@dataclass(frozen=True)
class Payment:
    """What the candidate search needs to know about one payment."""

    cents: int
    numbers: frozenset[str]
    received: np.datetime64
    customer: object
    habits: tuple[float, float, float]


def payment_candidates(payment: Payment, items: OpenItems, policy: MatchPolicy) -> tuple[list[tuple[int, ...]], list[tuple]]:
    """The payment's candidate sets and their FEATURES, row for row."""
    exact, fuzzy = quoted_items(payment.numbers, items)
    sets = candidate_sets(payment.cents, items, exact | fuzzy, policy)
    features = set_features(payment.cents, items, sets, exact, fuzzy, len(payment.numbers), payment.received,
                            payment.customer, payment.habits, policy)
    return list(sets), features


def customer_habits(known: Ledger) -> pd.DataFrame:
    """Per customer, from its applied payments: documents per payment, share paid to the cent, share of
    memo lines quoting a number (the columns `habit_*` of FEATURES)."""
    applications = known.payment_applications
    per_payment = applications.groupby("payment_id").agg(items=("amount", "size"), applied=("amount", "sum"))
    payments = known.payments.dropna(subset=["customer_id"]).merge(per_payment, left_on="payment_id",
                                                                   right_index=True)
    quoting = (payments["remittance_text"].str.contains(r"\d{3}", regex=True, na=False)
               if "remittance_text" in payments else pd.Series(False, index=payments.index))
    return pd.DataFrame({
        "habit_items": payments["items"].groupby(payments["customer_id"]).mean(),
        "habit_exact_share": ((payments["amount"] - payments["applied"]).abs() <= TOLERANCE)
        .groupby(payments["customer_id"]).mean(),
        "habit_reference_share": quoting.groupby(payments["customer_id"]).mean(),
    })


def habits_of(habits: pd.DataFrame, customer: object) -> tuple[float, float, float]:
    if customer in habits.index:
        return tuple(float(value) for value in habits.loc[customer])
    return (np.nan, np.nan, np.nan)


def items_before_payments(known: Ledger, payments: pd.DataFrame, groups: pd.Series) -> pd.DataFrame:
    """Per payment of `payments` (payment_id, received_date, currency, group): the documents of its
    group in its currency open just before it (applications of payments received earlier, or the same day
    under a smaller id, taken off), with their open amount then."""
    order = received_order(known.payments)
    payments = payments.assign(order=payments["payment_id"].map(order))
    documents = known.invoices[["invoice_id", "customer_id", "currency", "invoice_date", "due_date", "amount"]]
    documents = documents.assign(group=documents["customer_id"].map(groups))
    pairs = payments[["payment_id", "received_date", "currency", "group", "order"]].merge(
        documents, on=["group", "currency"])
    pairs = pairs[pairs["invoice_date"] <= pairs["received_date"]]
    applied = known.payment_applications[["invoice_id", "payment_id", "amount"]].rename(
        columns={"payment_id": "by", "amount": "applied"})
    applied = applied.assign(by_order=applied["by"].map(order))
    earlier = pairs[["payment_id", "invoice_id", "order"]].merge(applied, on="invoice_id")
    earlier = earlier[earlier["by_order"] < earlier["order"]]
    applied_before = earlier.groupby(["payment_id", "invoice_id"])["applied"].sum()
    written = pairs[["payment_id", "invoice_id", "received_date"]].merge(known.writeoffs, on="invoice_id")
    written_before = written[written["date"] < written["received_date"]].groupby(
        ["payment_id", "invoice_id"])["amount"].sum()
    keys = pd.MultiIndex.from_frame(pairs[["payment_id", "invoice_id"]])
    open_amount = (pairs["amount"].to_numpy()
                   - applied_before.reindex(keys).fillna(0.0).to_numpy()
                   - written_before.reindex(keys).fillna(0.0).to_numpy() * np.sign(pairs["amount"].to_numpy()))
    pairs = pairs.assign(open_amount=open_amount)
    return pairs[np.abs(open_amount) > TOLERANCE]


def received_order(payments: pd.DataFrame) -> pd.Series:
    """payment_id -> its place in the order payments were received (ties: by id)."""
    ordered = payments.sort_values(["received_date", "payment_id"], kind="stable")["payment_id"]
    return pd.Series(np.arange(len(ordered)), index=ordered.to_numpy())


def training_sets(known: Ledger, groups: pd.Series, habits: pd.DataFrame, policy: MatchPolicy,
                  most: int = TRAINING_PAYMENTS) -> tuple[pd.DataFrame, np.ndarray]:
    """FEATURES and labels of the candidate sets of the latest `most` applied payments of known payers."""
    applications = known.payment_applications
    paid = applications.groupby("payment_id")["invoice_id"].agg(frozenset)
    payments = known.payments[known.payments["payment_id"].isin(paid.index) & known.payments["customer_id"].notna()]
    payments = payments.assign(group=payments["customer_id"].map(groups)).tail(most)
    before = items_before_payments(known, payments, groups)
    numbers = dict(zip(payments["payment_id"], text_numbers(_texts(payments)), strict=True))
    by_id = payments.set_index("payment_id")
    rows, labels = [], []
    for (payment_id,), items in open_items_by(before, ["payment_id"]).items():
        row = by_id.loc[payment_id]
        payment = Payment(int(cents_of(float(row["amount"]))), numbers[payment_id],
                          np.datetime64(row["received_date"], "D"), row["customer_id"],
                          habits_of(habits, row["customer_id"]))
        sets, features = payment_candidates(payment, items, policy)
        truth = paid[payment_id]
        labels += [frozenset(items.ids[list(found)]) == truth for found in sets]
        rows += features
    return feature_frame(rows), np.asarray(labels, dtype=bool)


def _texts(payments: pd.DataFrame) -> pd.Series:
    return payments["remittance_text"] if "remittance_text" in payments else pd.Series(None, index=payments.index)


def trained_ranker(features: pd.DataFrame, labels: np.ndarray, seed: int = 0) -> LGBMClassifier | None:
    """The set scorer, or None when the history holds too few sets, or sets of one label only."""
    if len(labels) < MIN_TRAINING_SETS or labels.all() or not labels.any():
        return None
    model = LGBMClassifier(n_estimators=300, learning_rate=0.05, num_leaves=31, min_child_samples=20,
                           subsample=0.8, subsample_freq=1, colsample_bytree=0.9, random_state=seed,
                           deterministic=True, force_row_wise=True, verbose=-1)
    return model.fit(features[list(FEATURES)].astype(float), labels)
