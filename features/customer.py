"""Customer-level features: one row per customer known at `as_of`, from that customer's own history.

Each function's docstring begins with the glossary line of the column it returns (`features.registry`
fills in the windows of the `FeatureConfig`). Windows are (as_of - N days, as_of]. "Paid invoices" are
invoices (not credit memos) whose open amount reached zero by payment applications on or before `as_of`;
written-off invoices are not paid and are counted separately. Counts are 0 and averages NaN when there is
nothing to count or average.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.collections import BROKEN, PENDING, open_disputes
from features.config import FeatureConfig, aging_bucket_names
from features.peers import (
    PEER_KINDS,
    customer_sums,
    days_late_vs_peers,
    late_rate_vs_peers,
    lateness_items,
    peer_days_late,
    peer_groups,
    peer_late_rate,
    peer_sums,
    peer_values,
    weighted_days_late,
    weighted_late_rate,
)
from features.settlement import DAY, base_rate, days_between
from ledger import Ledger


def _within(dates: pd.Series, as_of: pd.Timestamp, days: int) -> pd.Series:
    """True for dates in the window (as_of - days, as_of]."""
    return (dates > as_of - days * DAY) & (dates <= as_of)


def _per_customer_mean(values: pd.Series, customer_id: pd.Series) -> pd.Series:
    return values.groupby(customer_id).mean()


# --- Open receivables -------------------------------------------------------------------------

def open_ar_base(open_documents: pd.DataFrame) -> pd.Series:
    """Customer's open receivables net of open credit memos, in company currency."""
    return open_documents.groupby("customer_id")["open_amount_base"].sum()


def open_documents_count(open_documents: pd.DataFrame) -> pd.Series:
    """Customer's number of open documents (invoices and credit memos)."""
    return open_documents.groupby("customer_id").size()


def overdue_amount_base(open_invoices: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Customer's open amount of invoices past their due date, in company currency."""
    overdue = open_invoices[open_invoices["due_date"] < as_of]
    return overdue.groupby("customer_id")["open_amount_base"].sum()


def max_days_past_due(open_invoices: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Days past due of the customer's most overdue open invoice (0 when none is)."""
    return days_between(as_of, open_invoices["due_date"]).clip(lower=0).groupby(open_invoices["customer_id"]).max()


def aging_bucket(due_date: pd.Series, as_of: pd.Timestamp, limits: tuple[int, ...]) -> np.ndarray:
    """Bucket index per item: 0 for at most limits[0] days past due, then one per interval (low, high]."""
    return np.searchsorted(np.asarray(limits, dtype=float), days_between(as_of, due_date).to_numpy(), side="left")


def share_ar_by_bucket(open_invoices: pd.DataFrame, as_of: pd.Timestamp, limits: tuple[int, ...]) -> pd.DataFrame:
    """Share of the customer's open invoice amount {bucket}.

    Columns: `share_ar_<bucket>`, one per aging bucket of `limits` (DESIGN.md §5), `{bucket}` in words.
    """
    names = [f"share_ar_{name}" for name in aging_bucket_names(limits)]
    bucket = aging_bucket(open_invoices["due_date"], as_of, limits)
    amounts = open_invoices.groupby([open_invoices["customer_id"], bucket])["open_amount_base"].sum()
    amounts = amounts.unstack(fill_value=0.0).reindex(columns=range(len(names)), fill_value=0.0)
    shares = amounts.div(amounts.sum(axis=1).where(lambda total: total > 0), axis=0)
    shares.columns = names
    return shares


def credit_utilisation(open_ar: pd.Series, credit_limit: pd.Series) -> pd.Series:
    """Customer's open receivables over its credit limit (NaN without a limit).

    A limit of 0 or less counts as no limit.
    """
    return open_ar / credit_limit.where(credit_limit > 0)


def payment_terms_days(payment_terms_days: pd.Series) -> pd.Series:
    """Customer's standard payment terms in days."""
    return payment_terms_days.astype(float)


# --- Relationship and volume --------------------------------------------------------------------

def tenure_days(created_date: pd.Series, as_of: pd.Timestamp) -> pd.Series:
    """Days since the customer was created or first invoiced."""
    return days_between(as_of, created_date)


def invoices_count(invoices: pd.DataFrame, as_of: pd.Timestamp, days: int) -> pd.Series:
    """Invoices issued to the customer in the last {config.invoice_count_days} days."""
    return invoices[_within(invoices["invoice_date"], as_of, days)].groupby("customer_id").size()


def invoice_volume_base(invoices: pd.DataFrame, as_of: pd.Timestamp, days: int) -> pd.Series:
    """Amount invoiced in the last {config.volume_history_days} days, company currency.

    Also the recent volume of `invoice_volume_trend` (over `volume_recent_days`).
    """
    return invoices[_within(invoices["invoice_date"], as_of, days)].groupby("customer_id")["amount_base"].sum()


def invoice_volume_trend(recent_volume: pd.Series, recent_days: int, history_volume: pd.Series,
                         history_days: int, tenure: pd.Series) -> pd.Series:
    """Daily amount invoiced over the last {config.volume_recent_days} days over that over the last
    {config.volume_history_days} days or the tenure if shorter (1 = steady).

    A window longer than the customer's tenure counts only the days since the customer exists.
    """
    days_known = tenure + 1  # the creation day counts
    recent_rate = recent_volume.reindex(tenure.index, fill_value=0.0) / days_known.clip(upper=recent_days)
    history_rate = history_volume.reindex(tenure.index) / days_known.clip(upper=history_days)
    return recent_rate / history_rate.where(history_rate > 0)


# --- Payment behaviour --------------------------------------------------------------------------

def payment_frequency(payments: pd.DataFrame, as_of: pd.Timestamp, days: int) -> pd.Series:
    """Payments received per 30 days over the last {config.payment_frequency_days} days."""
    return payments[_within(payments["received_date"], as_of, days)].groupby("customer_id").size() * (30 / days)


def days_since_last_payment(payments: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Days since the customer's last payment was received."""
    return days_between(as_of, payments.groupby("customer_id")["received_date"].max())


def last_paid_ranks(paid_invoices: pd.DataFrame) -> pd.Series:
    """Per paid invoice: 0 for the customer's most recently paid, 1 for the one before, ...
    (ties on the paid date broken by invoice id, later id counted as more recent)."""
    keys = paid_invoices[["customer_id", "paid_date", "invoice_id"]]
    order = keys.sort_values(["customer_id", "paid_date", "invoice_id"], ascending=[True, False, False])
    return order.groupby("customer_id").cumcount().reindex(paid_invoices.index)


def avg_days_late_last_n(paid_invoices: pd.DataFrame, rank: pd.Series, n: int) -> pd.Series:
    """Mean days late over the customer's last {config.last_paid_invoices} paid invoices."""
    recent = paid_invoices[rank < n]
    return _per_customer_mean(recent["days_late"], recent["customer_id"])


def ewm_days_late_last_n(paid_invoices: pd.DataFrame, rank: pd.Series, n: int, halflife: float) -> pd.Series:
    """Days late over the last {config.last_paid_invoices} paid invoices, weighted with a half-life
    of {config.ewm_halflife_invoices:g} invoices, latest first.

    Weights 0.5 ** (rank / halflife), rank 0 for the latest paid.
    """
    recent = rank < n
    weight = 0.5 ** (rank[recent] / halflife)
    weighted = (weight * paid_invoices.loc[recent, "days_late"]).groupby(paid_invoices.loc[recent, "customer_id"])
    return weighted.sum() / weight.groupby(paid_invoices.loc[recent, "customer_id"]).sum()


def share_paid_late(paid_invoices: pd.DataFrame, as_of: pd.Timestamp, days: int, grace: int) -> pd.Series:
    """Share of invoices paid in the last {days} days that were paid more than
    {config.late_grace_days} days late.

    Columns: `share_paid_late_<days>d`, one per window of `late_share_windows_days`.
    """
    paid = paid_invoices[_within(paid_invoices["paid_date"], as_of, days)]
    return _per_customer_mean((paid["days_late"] > grace).astype(float), paid["customer_id"])


def _mean_over_paid_between(values: pd.Series, paid_invoices: pd.DataFrame, as_of: pd.Timestamp,
                            newer_days: int, older_days: int) -> pd.Series:
    """Per customer, the mean of `values` (one per paid invoice) over invoices paid in
    (as_of - older_days, as_of - newer_days]."""
    paid = _within(paid_invoices["paid_date"], as_of - newer_days * DAY, older_days - newer_days)
    return _per_customer_mean(values[paid], paid_invoices.loc[paid, "customer_id"])


def days_late_trend(paid_invoices: pd.DataFrame, as_of: pd.Timestamp, recent_days: int,
                    history_days: int) -> pd.Series:
    """Mean days late of invoices paid in the last {config.trend_recent_days} days minus that of
    those paid {config.trend_recent_days}-{config.trend_history_days} days ago."""
    days_late = paid_invoices["days_late"]
    return (_mean_over_paid_between(days_late, paid_invoices, as_of, 0, recent_days)
            - _mean_over_paid_between(days_late, paid_invoices, as_of, recent_days, history_days))


def late_share_trend(paid_invoices: pd.DataFrame, as_of: pd.Timestamp, recent_days: int, history_days: int,
                     grace: int) -> pd.Series:
    """Share paid late in the last {config.trend_recent_days} days minus the share paid late
    {config.trend_recent_days}-{config.trend_history_days} days ago."""
    late = (paid_invoices["days_late"] > grace).astype(float)
    return (_mean_over_paid_between(late, paid_invoices, as_of, 0, recent_days)
            - _mean_over_paid_between(late, paid_invoices, as_of, recent_days, history_days))


# --- Current state (issue 19; recency weights and lateness items: `features.peers`) ----------------

def recency_days_late(settled: pd.DataFrame) -> pd.Series:
    """Days late of the customer's paid invoices, weighted by the paid date's age with a half-life of
    {config.recency_halflife_days:g} days.

    `settled` is `features.peers.customer_sums` of the paid invoices only.
    """
    return weighted_days_late(settled)


def recency_late_rate(settled: pd.DataFrame) -> pd.Series:
    """Share of the customer's paid invoices paid late, weighted by the paid date's age with a half-life
    of {config.recency_halflife_days:g} days."""
    return weighted_late_rate(settled)


def recency_days_late_incl_open(with_open: pd.DataFrame) -> pd.Series:
    """Days late of the customer's paid invoices and open invoices past due, recency-weighted with a
    half-life of {config.recency_halflife_days:g} days.

    An open invoice's days past due so far is a lower bound of how late it will be paid; it counts with
    the weight of today (age 0). Open invoices not yet due are left out.
    """
    return weighted_days_late(with_open)


def recency_late_rate_incl_open(with_open: pd.DataFrame) -> pd.Series:
    """Share late of the customer's paid invoices and open invoices past due, recency-weighted with a
    half-life of {config.recency_halflife_days:g} days.

    An open invoice counts late once more than the grace days past due (a lower bound: it may still
    become late), with the weight of today.
    """
    return weighted_late_rate(with_open)


def _overdue_share(open_invoices: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Per customer: the share of its open invoice amount past due (NaN without an open amount)."""
    amount = open_invoices["open_amount_base"]
    total = amount.groupby(open_invoices["customer_id"]).sum()
    overdue = amount.where(open_invoices["due_date"] < as_of, 0.0).groupby(open_invoices["customer_id"]).sum()
    return overdue / total.where(total > 0)


def overdue_share_change(known: Ledger, invoices: pd.DataFrame, now: pd.Series, as_of: pd.Timestamp, days: int,
                         tolerance: float) -> pd.Series:
    """Share of the customer's open invoice amount past due now minus that share
    {config.overdue_trend_days} days earlier.

    The earlier share is that of the ledger as it was known on that earlier day (what `known_at` keeps for
    it): invoices issued by then, less the applications and write-offs dated by then. The ledger keeps no
    revised history, so this is also all that is known at `as_of` about that day. `invoices` are the
    invoice rows of `document_state` at `as_of`; `now` is `_overdue_share` at `as_of`.
    """
    then = as_of - days * DAY
    # Paid in full by then: closed then too. The others issued by then (open now, paid later, written off)
    # are recomputed as of then.
    issued = invoices[((invoices["invoice_date"] <= then) & ~(invoices["paid_date"] <= then)).to_numpy()]
    applications, writeoffs = known.payment_applications, known.writeoffs
    applied = applications[applications["applied_date"] <= then].groupby("invoice_id", sort=False)["amount"].sum()
    written = writeoffs[writeoffs["date"] <= then].groupby("invoice_id", sort=False)["amount"].sum()
    amount = issued["amount"].to_numpy()
    open_amount = (amount - issued["invoice_id"].map(applied).fillna(0.0).to_numpy()
                   - issued["invoice_id"].map(written).fillna(0.0).to_numpy() * np.sign(amount))
    is_open = np.abs(open_amount) > tolerance
    earlier = pd.DataFrame({"customer_id": issued["customer_id"].to_numpy()[is_open],
                            "due_date": issued["due_date"].to_numpy()[is_open],
                            "open_amount_base": (open_amount * base_rate(issued["amount"], issued["amount_base"])
                                                 .to_numpy())[is_open]})
    return now - _overdue_share(earlier, then)


def median_payment_gap_days(payments: pd.DataFrame) -> pd.Series:
    """Median days between the customer's consecutive payment dates (NaN before a second one)."""
    customer, received = payments["customer_id"].to_numpy(), payments["received_date"].to_numpy()
    order = np.lexsort((received, customer))
    customer, received = customer[order], received[order]
    gap = (received[1:] - received[:-1]) / np.timedelta64(1, "D")
    between_dates = (customer[1:] == customer[:-1]) & (gap > 0)  # two payments on one day: one date
    return pd.Series(gap[between_dates]).groupby(customer[1:][between_dates]).median()


def payment_gap_ratio(days_since_payment: pd.Series, median_gap: pd.Series) -> pd.Series:
    """Days since the customer's last payment over its median gap between payment dates (1 = on rhythm)."""
    return days_since_payment / median_gap.where(median_gap > 0)


def partial_payment_share(invoices: pd.DataFrame, as_of: pd.Timestamp, days: int, tolerance: float) -> pd.Series:
    """Of invoices issued in the last {config.partial_payment_days} days that received a payment,
    the share paid in parts.

    In parts: more than one application, or applications not yet covering the amount.
    """
    issued = invoices[_within(invoices["invoice_date"], as_of, days) & (invoices["applications"] > 0)]
    partial = (issued["applications"] > 1) | ((issued["amount"] - issued["applied"]).abs() > tolerance)
    return _per_customer_mean(partial.astype(float), issued["customer_id"])


def unapplied_cash_base(payments: pd.DataFrame, applications: pd.DataFrame) -> pd.Series:
    """Cash received from the customer and not yet applied, in company currency."""
    applied = payments["payment_id"].map(applications.groupby("payment_id", sort=False)["amount"].sum()).fillna(0.0)
    unapplied = (payments["amount"] - applied) * base_rate(payments["amount"], payments["amount_base"])
    return unapplied.groupby(payments["customer_id"]).sum()


# --- Collections events -------------------------------------------------------------------------

def disputes_opened(disputes: pd.DataFrame, customer_of_invoice: pd.Series, as_of: pd.Timestamp,
                    days: int) -> pd.Series:
    """Disputes opened in the last {config.dispute_days} days."""
    opened = disputes[_within(disputes["opened_date"], as_of, days)]
    return opened.groupby(opened["invoice_id"].map(customer_of_invoice)).size()


def open_disputes_count(disputes: pd.DataFrame, customer_of_invoice: pd.Series) -> pd.Series:
    """Disputes still open on the customer's documents."""
    still_open = open_disputes(disputes)
    return still_open.groupby(still_open["invoice_id"].map(customer_of_invoice)).size()


def broken_promises(promises: pd.DataFrame, status: pd.Series, as_of: pd.Timestamp, days: int) -> pd.Series:
    """Promises to pay broken, with a promised date in the last {config.broken_promise_days} days."""
    broken = promises[(status == BROKEN) & _within(promises["promised_date"], as_of, days)]
    return broken.groupby("customer_id").size()


def pending_promises(promises: pd.DataFrame, status: pd.Series) -> pd.Series:
    """Promises to pay not yet due and not yet kept."""
    return promises[status == PENDING].groupby("customer_id").size()


def writeoffs_count(writeoffs: pd.DataFrame, customer_of_invoice: pd.Series, as_of: pd.Timestamp,
                    days: int) -> pd.Series:
    """Documents written off in the last {config.writeoff_days} days."""
    written = writeoffs[_within(writeoffs["date"], as_of, days)]
    return written.groupby(written["invoice_id"].map(customer_of_invoice)).size()


def days_since_last_contact(contacts: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Days since the last recorded contact with the customer (NaN when none)."""
    return days_between(as_of, contacts.groupby("customer_id")["contact_date"].max())


def contacts_count(contacts: pd.DataFrame, as_of: pd.Timestamp, days: int) -> pd.Series:
    """Contacts with the customer in the last {config.contact_days} days."""
    return contacts[_within(contacts["contact_date"], as_of, days)].groupby("customer_id").size()


def customer_features(known: Ledger, state: pd.DataFrame, status: pd.Series, as_of: pd.Timestamp,
                      config: FeatureConfig, peers: pd.DataFrame | None = None) -> pd.DataFrame:
    """Customer-level features of every customer known at `as_of`: customer_id, features.
    `state` is `document_state(known, ...)`; `status` is `promise_status(...)` of `known.promises`;
    `peers` is the `features.peers.peer_sums` of all customers at `as_of` (None: those of `known`, the
    whole ledger; a bucket of a partitioned ledger passes the buckets' added sums)."""
    customers = known.customers.sort_values("customer_id").set_index("customer_id")
    invoices = state[state["is_invoice"]]
    open_documents = state[state["is_open"]]
    open_invoices = invoices[invoices["is_open"]]
    paid_invoices = invoices[invoices["paid_date"].notna()]
    rank = last_paid_ranks(paid_invoices)
    customer_of_invoice = pd.Series(state["customer_id"].to_numpy(), index=state["invoice_id"].to_numpy())
    grace, n = config.late_grace_days, config.last_paid_invoices
    recent, history = config.trend_recent_days, config.trend_history_days
    volume_recent = invoice_volume_base(invoices, as_of, config.volume_recent_days)
    volume_history = invoice_volume_base(invoices, as_of, config.volume_history_days)

    # Per-customer results cover only customers with something to count: counts and sums are 0 for
    # the others, means and "days since" stay missing.
    def counts(per_customer: pd.Series) -> pd.Series:
        return per_customer.reindex(customers.index, fill_value=0).astype(float)

    def values(per_customer: pd.Series) -> pd.Series:
        return per_customer.reindex(customers.index).astype(float)

    items = lateness_items(state, as_of, config.recency_halflife_days, grace)
    settled, with_open = customer_sums(items[~items["is_open"]]), customer_sums(items)
    groups = peer_groups(known.customers).reindex(customers.index)
    if peers is None:
        peers = peer_sums(groups, with_open)
    own_days_late = values(recency_days_late_incl_open(with_open))
    own_late_rate = values(recency_late_rate_incl_open(with_open))
    overdue_now = _overdue_share(open_invoices, as_of)
    since_payment = values(days_since_last_payment(known.payments, as_of))
    median_gap = values(median_payment_gap_days(known.payments))

    open_ar = counts(open_ar_base(open_documents))
    tenure = tenure_days(customers["created_date"], as_of)
    columns = {
        "open_ar_base": open_ar,
        "open_documents": counts(open_documents_count(open_documents)),
        "overdue_amount_base": counts(overdue_amount_base(open_invoices, as_of)),
        "max_days_past_due": counts(max_days_past_due(open_invoices, as_of)),
        **{name: values(share) for name, share in share_ar_by_bucket(open_invoices, as_of, config.aging_limits).items()},
        "credit_utilisation": credit_utilisation(open_ar, customers["credit_limit"].astype(float)),
        "tenure_days": tenure,
        "payment_terms_days": payment_terms_days(customers["payment_terms_days"]),
        f"invoices_{config.invoice_count_days}d": counts(invoices_count(invoices, as_of, config.invoice_count_days)),
        f"invoice_volume_{config.volume_history_days}d_base": counts(volume_history),
        "invoice_volume_trend": invoice_volume_trend(volume_recent, config.volume_recent_days, volume_history,
                                                     config.volume_history_days, tenure),
        f"payment_frequency_{config.payment_frequency_days}d": counts(
            payment_frequency(known.payments, as_of, config.payment_frequency_days)),
        "days_since_last_payment": since_payment,
        f"avg_days_late_last_{n}": values(avg_days_late_last_n(paid_invoices, rank, n)),
        f"ewm_days_late_last_{n}": values(ewm_days_late_last_n(paid_invoices, rank, n,
                                                                config.ewm_halflife_invoices)),
        **{f"share_paid_late_{days}d": values(share_paid_late(paid_invoices, as_of, days, grace))
           for days in config.late_share_windows_days},
        "days_late_trend": values(days_late_trend(paid_invoices, as_of, recent, history)),
        "late_share_trend": values(late_share_trend(paid_invoices, as_of, recent, history, grace)),
        "recency_days_late": values(recency_days_late(settled)),
        "recency_late_rate": values(recency_late_rate(settled)),
        "recency_days_late_incl_open": own_days_late,
        "recency_late_rate_incl_open": own_late_rate,
        f"overdue_share_change_{config.overdue_trend_days}d": values(overdue_share_change(
            known, invoices, overdue_now, as_of, config.overdue_trend_days, config.money_tolerance)),
        "median_payment_gap_days": median_gap,
        "payment_gap_ratio": payment_gap_ratio(since_payment, median_gap),
        f"partial_payment_share_{config.partial_payment_days}d": values(
            partial_payment_share(invoices, as_of, config.partial_payment_days, config.money_tolerance)),
        "unapplied_cash_base": counts(unapplied_cash_base(known.payments, known.payment_applications)),
        f"disputes_{config.dispute_days}d": counts(
            disputes_opened(known.disputes, customer_of_invoice, as_of, config.dispute_days)),
        "open_disputes": counts(open_disputes_count(known.disputes, customer_of_invoice)),
        f"broken_promises_{config.broken_promise_days}d": counts(
            broken_promises(known.promises, status, as_of, config.broken_promise_days)),
        "pending_promises": counts(pending_promises(known.promises, status)),
        f"writeoffs_{config.writeoff_days}d": counts(
            writeoffs_count(known.writeoffs, customer_of_invoice, as_of, config.writeoff_days)),
        "days_since_last_contact": values(days_since_last_contact(known.contacts, as_of)),
        f"contacts_{config.contact_days}d": counts(contacts_count(known.contacts, as_of, config.contact_days)),
    }
    for kind in PEER_KINDS:
        peer = peer_values(groups, peers, kind)
        columns[f"peer_{kind}_days_late"] = values(peer_days_late(peer))
        columns[f"peer_{kind}_late_rate"] = values(peer_late_rate(peer))
        columns[f"{kind}_days_late_vs_peers"] = days_late_vs_peers(own_days_late, columns[f"peer_{kind}_days_late"])
        columns[f"{kind}_late_rate_vs_peers"] = late_rate_vs_peers(own_late_rate, columns[f"peer_{kind}_late_rate"])
    return pd.DataFrame(columns, index=customers.index).reset_index()
