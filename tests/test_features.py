"""Features on hand-made ledgers: values computed by hand, the as-of filter, labels, the registry, the CLI."""

from __future__ import annotations

import ast
import inspect
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest
from typer.testing import CliRunner

import features
from features import (
    FeatureConfig,
    build_customer_snapshots,
    build_snapshots,
    customer,
    customer_features_at,
    feature_frames,
    feature_names,
    feature_registry,
    features_at,
    invoice,
    known_at,
    peers,
)
from features.keys import encode_keys
from features.labels import customer_labels, invoice_labels, label_names, last_event_date
from features.registry import customer_columns, invoice_columns
from features.snapshots import _feature_frames
from ledger import Ledger, LedgerError, write_ledger
from serving.cli import app
from tests.ledgers import dates, tiny_ledger

FEATURES_DIR = Path(__file__).resolve().parents[1] / "features"
T = pd.Timestamp


def invoice_row(frame: pd.DataFrame, invoice_id: str) -> pd.Series:
    return frame.set_index("invoice_id").loc[invoice_id]


def customer_row(frame: pd.DataFrame, customer_id: str) -> pd.Series:
    return frame.set_index("customer_id").loc[customer_id]


def collections_ledger():
    """The tiny ledger plus dunning notices, contacts, an account promise and a month-end credit memo."""
    ledger = tiny_ledger()
    dunning = pd.DataFrame({"invoice_id": ["I4", "I4", "I2"], "level": [1, 2, 1],
                            "issued_date": dates("2024-03-02", "2024-03-16", "2024-03-12")})
    contacts = pd.DataFrame({"contact_id": ["K1", "K2"], "customer_id": ["C2", "C2"],
                             "contact_date": dates("2024-03-04", "2024-03-18"), "channel": ["call", "email"],
                             "outcome": ["promised", "no answer"]})
    promises = pd.concat([ledger.promises, pd.DataFrame({
        "promise_id": ["PR2"], "customer_id": ["C2"], "invoice_id": [None], "made_date": dates("2024-03-04"),
        "promised_date": dates("2024-03-06"), "amount": [50.0], "kept": pd.array([True], dtype="boolean")})],
        ignore_index=True)
    invoices = pd.concat([ledger.invoices, pd.DataFrame({
        "invoice_id": ["CM2"], "customer_id": ["C2"], "doc_type": ["credit_memo"],
        "invoice_date": dates("2024-03-29"), "due_date": dates("2024-03-29"), "amount": [-100.0],
        "currency": ["EUR"], "amount_base": [-100.0], "cleared_date": dates(None)})], ignore_index=True)
    return ledger.replace(dunning_notices=dunning, contacts=contacts, promises=promises,
                          invoices=invoices).validate()


# --- The as-of filter ---------------------------------------------------------------------------

def test_known_at_keeps_only_what_was_known_and_blanks_later_outcomes():
    known = known_at(tiny_ledger(), T("2024-03-10"))
    assert set(known.invoices["invoice_id"]) == {"I1", "I2", "I3", "CM1", "I4"}
    cleared = known.invoices.set_index("invoice_id")["cleared_date"]
    assert cleared["I1"] == T("2024-02-20") and pd.isna(cleared["I4"])  # written off on 2024-06-30
    assert known.promises["kept"].isna().all()  # derived after the fact, never read as of a date
    assert known.writeoffs.empty
    assert set(known.payment_applications["payment_id"]) == {"P1", "P2"}
    earlier = known_at(tiny_ledger(), T("2024-02-12"))
    assert earlier.payments.empty and earlier.disputes.empty and earlier.promises.empty
    assert set(earlier.invoices["invoice_id"]) == {"I1", "I2", "I3", "I4"}


def test_a_dispute_resolved_later_is_open_at_the_cutoff():
    ledger = tiny_ledger()
    resolved = ledger.disputes.assign(resolved_date=dates("2024-04-01"))
    ledger = ledger.replace(disputes=resolved)
    assert pd.isna(known_at(ledger, T("2024-03-15")).disputes["resolved_date"]).all()
    assert invoice_row(features_at(ledger, T("2024-03-15")), "I3")["in_open_dispute"] == 1.0
    assert invoice_row(features_at(ledger, T("2024-04-01")), "I3")["in_open_dispute"] == 0.0


def test_customers_created_later_are_unknown_unless_already_invoiced():
    ledger = tiny_ledger()
    customers = ledger.customers.assign(created_date=dates("2023-01-01", "2024-05-01"))
    ledger = ledger.replace(customers=customers)
    before_any_invoice = known_at(ledger, T("2024-01-07"))
    assert list(before_any_invoice.customers["customer_id"]) == ["C1"]
    known = known_at(ledger, T("2024-02-01"))  # C2 was invoiced on 2024-01-10, before its created date
    created = known.customers.set_index("customer_id")["created_date"]
    assert created["C2"] == T("2024-01-10")
    assert customer_row(customer_features_at(ledger, T("2024-02-01")), "C2")["tenure_days"] == 22


def test_a_level_imported_without_its_notice_date_counts_from_its_known_date():
    ledger = collections_ledger()
    undated = pd.DataFrame({"invoice_id": ["I3"], "level": [2], "issued_date": dates(None),
                            "known_date": dates("2024-03-18")})
    ledger = ledger.replace(dunning_notices=pd.concat([ledger.dunning_notices, undated],
                                                      ignore_index=True)).validate()
    assert invoice_row(features_at(ledger, T("2024-03-17")), "I3")["dunning_level"] == 0.0
    assert invoice_row(features_at(ledger, T("2024-03-18")), "I3")["dunning_level"] == 2.0
    with pytest.raises(LedgerError, match="known_date for a level whose notice date is unknown"):
        ledger.replace(dunning_notices=undated.assign(known_date=dates(None))).validate()


# --- Invoice-level values -----------------------------------------------------------------------

def test_invoice_features_by_hand():
    frame = features_at(collections_ledger(), T("2024-03-20"))
    assert list(frame["invoice_id"]) == ["I2", "I3", "I4"]  # I1 and CM1 settled, CM2 not yet issued
    i2 = invoice_row(frame, "I2")
    assert i2["open_amount_base"] == 200.0 and i2["share_paid"] == pytest.approx(0.6)
    assert i2["open_amount_base_log1p"] == pytest.approx(math.log1p(200.0))
    assert (i2["days_past_due"], i2["days_to_due"], i2["terms_days"], i2["invoice_age_days"]) == (18, 0, 30, 48)
    assert (i2["has_pending_promise"], i2["has_broken_promise"]) == (0.0, 1.0)  # 200 promised by 03-15, unpaid
    assert i2["dunning_level"] == 1.0
    i3 = invoice_row(frame, "I3")
    assert (i3["days_past_due"], i3["days_to_due"], i3["in_open_dispute"]) == (0, 6, 1.0)
    assert invoice_row(frame, "I4")["dunning_level"] == 2.0


def test_promise_is_pending_until_its_date_then_broken_or_kept():
    ledger = collections_ledger()
    at_10 = invoice_row(features_at(ledger, T("2024-03-10")), "I2")
    assert (at_10["has_pending_promise"], at_10["has_broken_promise"]) == (1.0, 0.0)
    at_15 = invoice_row(features_at(ledger, T("2024-03-15")), "I2")  # due today: still pending
    assert (at_15["has_pending_promise"], at_15["has_broken_promise"]) == (1.0, 0.0)
    # Paid on the promised date: kept, neither pending nor broken afterwards.
    payment = pd.DataFrame({"payment_id": ["P4"], "customer_id": ["C1"], "received_date": dates("2024-03-15"),
                            "amount": [200.0], "currency": ["EUR"], "amount_base": [200.0]})
    application = pd.DataFrame({"payment_id": ["P4"], "invoice_id": ["I2"], "applied_date": dates("2024-03-15"),
                                "amount": [200.0]})
    paid = ledger.replace(payments=pd.concat([ledger.payments, payment], ignore_index=True),
                          payment_applications=pd.concat([ledger.payment_applications, application],
                                                         ignore_index=True))
    c1 = customer_row(customer_features_at(paid, T("2024-03-20")), "C1")
    assert (c1["pending_promises"], c1["broken_promises_180d"]) == (0.0, 0.0)
    assert customer_row(customer_features_at(ledger, T("2024-03-20")), "C1")["broken_promises_180d"] == 1.0


def test_month_and_quarter_end_flags_and_credit_memos():
    frame = features_at(collections_ledger(), T("2024-03-29"))
    cm2 = invoice_row(frame, "CM2")
    assert (cm2["invoice_month_end"], cm2["invoice_quarter_end"], cm2["is_credit_memo"]) == (1.0, 1.0, 1.0)
    assert cm2["open_amount_base"] == -100.0 and cm2["open_amount_base_log1p"] == pytest.approx(-math.log1p(100))
    assert invoice_row(frame, "I3")["invoice_month_end"] == 0.0  # 10 February
    month_end = tiny_ledger().invoices.assign(invoice_date=dates("2024-01-05", "2024-02-27", "2024-03-28",
                                                                 "2024-02-15", "2024-01-10"))
    flags = features_at(tiny_ledger().replace(invoices=month_end), T("2024-03-28")).set_index("invoice_id")
    assert flags.loc["I2", ["invoice_month_end", "invoice_quarter_end"]].tolist() == [1.0, 0.0]  # 2024 leap year
    assert flags.loc["I3", ["invoice_month_end", "invoice_quarter_end"]].tolist() == [0.0, 0.0]  # 3 days left


# --- Customer-level values ----------------------------------------------------------------------

def test_customer_features_by_hand():
    frame = customer_features_at(collections_ledger(), T("2024-03-20"))
    c1, c2 = customer_row(frame, "C1"), customer_row(frame, "C2")
    assert (c1["open_ar_base"], c1["open_documents"], c1["overdue_amount_base"]) == (200.0, 1.0, 200.0)
    assert c1["credit_utilisation"] == pytest.approx(0.02)
    assert c1["avg_days_late_last_10"] == 16.0 and c1["ewm_days_late_last_10"] == 16.0  # I1 due 02-04 paid 02-20
    assert c1["share_paid_late_90d"] == 1.0
    assert c1["partial_payment_share_365d"] == 0.5  # I1 paid at once, I2 in part
    assert c1["days_since_last_payment"] == 19.0 and c1["tenure_days"] == 444.0
    assert c1["invoices_365d"] == 2.0 and c1["invoice_volume_365d_base"] == 1500.0
    assert c1["payment_frequency_180d"] == pytest.approx(2 * 30 / 180)
    # C2: I3 800 current (due 03-26), I4 300 25 days past due; P3 (50) never applied.
    assert c2["share_ar_current"] == pytest.approx(800 / 1100) and c2["share_ar_dpd_1_30"] == pytest.approx(300 / 1100)
    assert c2["share_ar_dpd_over_120"] == 0.0 and c2["max_days_past_due"] == 25.0
    assert c2["unapplied_cash_base"] == 50.0 and c2["credit_utilisation"] == pytest.approx(0.55)
    assert (c2["disputes_180d"], c2["open_disputes"]) == (1.0, 1.0)
    assert (c2["days_since_last_contact"], c2["contacts_90d"]) == (2.0, 2.0)
    assert math.isnan(c2["avg_days_late_last_10"]) and math.isnan(c2["share_paid_late_365d"])
    assert c2["pending_promises"] == 0.0 and c2["broken_promises_180d"] == 0.0  # PR2 kept by P3 on 03-05


def test_last_paid_window_trend_and_ewm():
    """Twelve invoices paid 1..12 days late, one a month: the last 10 and their weighting."""
    months = pd.date_range("2023-01-01", periods=12, freq="MS")
    due = months + pd.Timedelta(days=30)
    paid = due + pd.to_timedelta(np.arange(1, 13), "D")
    ids = [f"I{k:02d}" for k in range(12)]
    customers = tiny_ledger().customers.iloc[:1]
    invoices = pd.DataFrame({"invoice_id": ids, "customer_id": "C1", "doc_type": "invoice",
                             "invoice_date": months, "due_date": due, "amount": 100.0, "currency": "EUR",
                             "amount_base": 100.0, "cleared_date": paid})
    payments = pd.DataFrame({"payment_id": [f"P{k:02d}" for k in range(12)], "customer_id": "C1",
                             "received_date": paid, "amount": 100.0, "currency": "EUR", "amount_base": 100.0})
    applications = pd.DataFrame({"payment_id": payments["payment_id"], "invoice_id": ids, "applied_date": paid,
                                 "amount": 100.0})
    ledger = tiny_ledger().replace(customers=customers, invoices=invoices, payments=payments,
                                   payment_applications=applications, disputes=tiny_ledger().disputes.iloc[:0],
                                   promises=tiny_ledger().promises.iloc[:0], writeoffs=tiny_ledger().writeoffs.iloc[:0])
    ledger.validate()
    row = customer_row(customer_features_at(ledger, T("2024-02-01")), "C1")
    assert row["avg_days_late_last_10"] == pytest.approx(np.mean(np.arange(3, 13)))
    weights = 0.5 ** (np.arange(10) / 3.0)
    assert row["ewm_days_late_last_10"] == pytest.approx(np.dot(weights, np.arange(12, 2, -1)) / weights.sum())
    # Paid in the last 90 days (after 2023-11-03): 10, 11 and 12 days late; 90-365 days ago: 2..9
    # (the one paid 1 day late, on 2023-02-01, is exactly 365 days back and outside the window).
    assert row["days_late_trend"] == pytest.approx(11.0 - np.mean(np.arange(2, 10)))
    assert row["late_share_trend"] == pytest.approx(1.0 - 4 / 8)  # grace 5: 6..9 of 2..9 were late
    assert row["share_paid_late_365d"] == pytest.approx(7 / 11)


# --- The current state (issue 19) ----------------------------------------------------------------

STATE_DAY = T("2024-03-31")
HALFLIFE_30 = FeatureConfig(recency_halflife_days=30)


def current_state_ledger(a_paid: str = "2024-01-01", b_paid: str = "2024-03-31") -> Ledger:
    """C1 (mid, DE, retail): A due 2023-12-22 paid `a_paid`, B due on `b_paid` paid then, C due 2024-03-11
    still open. C2 (mid, FR, no industry): payments on 2024-01-01 and 01-31 (unapplied), D due 2024-01-31
    paid on 2024-03-01. C3 (small, FR, retail): never invoiced before 2024-04."""
    customers = pd.DataFrame({
        "customer_id": ["C1", "C2", "C3"], "name": ["Acme", "Bolt", "Cask"], "segment": ["mid", "mid", "small"],
        "country": ["DE", "FR", "FR"], "currency": ["EUR"] * 3, "payment_terms_days": [30, 30, 30],
        "credit_limit": [float("nan")] * 3, "created_date": dates("2023-01-01", "2023-01-01", "2023-01-01"),
        "industry": ["retail", None, "retail"]})
    invoices = pd.DataFrame({
        "invoice_id": ["A", "B", "C", "D", "E"], "customer_id": ["C1", "C1", "C1", "C2", "C3"],
        "doc_type": ["invoice"] * 5,
        "invoice_date": dates("2023-12-01", "2023-12-15", "2024-02-10", "2024-01-01", "2024-04-02"),
        "due_date": dates("2023-12-22", b_paid, "2024-03-11", "2024-01-31", "2024-05-02"),
        "amount": [100.0, 200.0, 100.0, 300.0, 50.0], "currency": ["EUR"] * 5,
        "amount_base": [100.0, 200.0, 100.0, 300.0, 50.0],
        "cleared_date": dates(a_paid, b_paid, None, "2024-03-01", None)})
    payments = pd.DataFrame({
        "payment_id": ["P1", "P2", "Q1", "Q2", "Q3"], "customer_id": ["C1", "C1", "C2", "C2", "C2"],
        "received_date": dates(a_paid, b_paid, "2024-01-01", "2024-01-31", "2024-03-01"),
        "amount": [100.0, 200.0, 10.0, 10.0, 300.0], "currency": ["EUR"] * 5,
        "amount_base": [100.0, 200.0, 10.0, 10.0, 300.0]})
    applications = pd.DataFrame({"payment_id": ["P1", "P2", "Q3"], "invoice_id": ["A", "B", "D"],
                                 "applied_date": dates(a_paid, b_paid, "2024-03-01"),
                                 "amount": [100.0, 200.0, 300.0]})
    return Ledger(customers, invoices, payments, applications, base_currency="EUR", source="tests").validate()


def test_recency_weighted_lateness_by_hand():
    row = customer_row(customer_features_at(current_state_ledger(), STATE_DAY, HALFLIFE_30), "C1")
    # Half-life 30 days: A paid 90 days ago weighs 1/8, B paid today 1. A 10 days late, B on time.
    assert row["recency_days_late"] == pytest.approx((0.125 * 10 + 1 * 0) / 1.125)
    assert row["recency_late_rate"] == pytest.approx(0.125 / 1.125)
    # C open and 20 days past due counts 20 days late so far (a lower bound), weight 1 (as of today).
    assert row["recency_days_late_incl_open"] == pytest.approx((1.25 + 0 + 20) / 2.125)  # = 10
    assert row["recency_late_rate_incl_open"] == pytest.approx((0.125 + 0 + 1) / 2.125)


def test_more_recent_lateness_raises_the_recency_weighted_figures():
    # The same two paid invoices, 10 days late and on time; only which one is recent changes.
    late_long_ago = customer_row(customer_features_at(current_state_ledger(), STATE_DAY, HALFLIFE_30), "C1")
    recent_late = customer_row(customer_features_at(current_state_ledger(a_paid="2024-03-31", b_paid="2024-01-01"),
                                                    STATE_DAY, HALFLIFE_30), "C1")
    # Now A (due 2023-12-22) is paid today, 100 days late, weight 1; B paid on its due date 90 days ago.
    assert recent_late["recency_days_late"] == pytest.approx((1 * 100 + 0.125 * 0) / 1.125)
    assert recent_late["recency_days_late"] > late_long_ago["recency_days_late"]
    assert recent_late["recency_late_rate"] == pytest.approx(1 / 1.125)
    assert recent_late["recency_late_rate"] > late_long_ago["recency_late_rate"]
    # The plain average of the last paid invoices cannot tell the two apart when lateness is equal.
    assert late_long_ago["avg_days_late_last_10"] == pytest.approx(5.0)


def test_overdue_share_change_and_payment_rhythm_by_hand():
    customers = customer_features_at(current_state_ledger(), STATE_DAY, HALFLIFE_30)
    c1, c2 = customer_row(customers, "C1"), customer_row(customers, "C2")
    # C1 now: only C open, overdue: share 1. On 2024-01-01 (90 days before): A was paid that day, B open
    # and not yet due: share 0.
    assert c1["overdue_share_change_90d"] == 1.0
    assert math.isnan(c2["overdue_share_change_90d"])  # nothing open now
    # C1 paid on 2024-01-01 and 2024-03-31: one gap of 90 days, last payment today.
    assert c1["median_payment_gap_days"] == 90 and c1["payment_gap_ratio"] == 0
    # C2 paid on 2024-01-01, 01-31, 03-01: gaps 30 and 30; 30 days since the last one, on rhythm.
    assert c2["median_payment_gap_days"] == 30 and c2["payment_gap_ratio"] == 1.0


def test_peer_features_by_hand():
    customers = customer_features_at(current_state_ledger(), STATE_DAY, HALFLIFE_30).set_index("customer_id")
    # Sums (weight, weight x days late, weight x late) with open items: C1 (2.125, 21.25, 1.125); C2 has D
    # paid 30 days ago, 30 days late: (0.5, 15, 0.5). Segment mid = C1 + C2.
    assert customers.loc["C1", "peer_segment_days_late"] == pytest.approx((21.25 + 15) / 2.625)
    assert customers.loc["C2", "peer_segment_late_rate"] == pytest.approx((1.125 + 0.5) / 2.625)
    assert customers.loc["C1", "segment_days_late_vs_peers"] == pytest.approx(10 - 36.25 / 2.625)
    assert customers.loc["C2", "segment_days_late_vs_peers"] == pytest.approx(30 - 36.25 / 2.625)
    # DE holds C1 alone: its peers are itself. FR: C2 and C3 (nothing paid or overdue yet).
    assert customers.loc["C1", "country_days_late_vs_peers"] == 0
    assert customers.loc["C3", "peer_country_days_late"] == 30 and math.isnan(customers.loc["C3", "recency_days_late"])
    # Industry: C1 and C3 are retail; C2 has none, so no industry peers.
    assert customers.loc["C3", "peer_industry_days_late"] == pytest.approx(10)
    assert customers.loc[["C2"], ["peer_industry_days_late", "industry_late_rate_vs_peers"]].isna().all(axis=None)
    assert customers.loc["C3", "peer_segment_late_rate"] != customers.loc["C3", "peer_segment_late_rate"]  # NaN


def test_without_an_industry_column_the_industry_peers_are_missing():
    ledger = current_state_ledger()
    ledger = ledger.replace(customers=ledger.customers.drop(columns="industry"))
    customers = customer_features_at(ledger, STATE_DAY, HALFLIFE_30)
    assert customers.filter(like="industry").isna().all(axis=None)
    assert customers["peer_segment_days_late"].notna().sum() == 2


def test_the_peer_sums_of_parts_add_up_exactly_to_the_whole_ledgers():
    from ledger.synthetic import generate_ledger

    ledger = generate_ledger(customers=60, months=14, seed=5)[0]
    as_of = T("2023-01-31")
    ids = ledger.customers["customer_id"]
    parts = [subset_of_customers(ledger, ids[ids.index % 3 == k]) for k in range(3)]
    added = features.added_peer_sums([features.peer_sums_at(part, as_of) for part in reversed(parts)])
    whole = features.peer_sums_at(ledger, as_of)
    pd.testing.assert_frame_equal(added, whole, check_exact=True)
    assert set(whole["kind"]) == {"segment", "country"} and (whole["weight"] > 0).all()
    # A part's features with the added sums are exactly the whole ledger's rows of that part.
    expected = features_at(ledger, as_of)
    for part in parts:
        mine = features_at(part, as_of, peers=added)
        pd.testing.assert_frame_equal(
            mine.reset_index(drop=True),
            expected[expected["customer_id"].isin(part.customers["customer_id"])].reset_index(drop=True),
            check_exact=True)
    # Without them a part sees only its own customers as peers.
    alone = features_at(parts[0], as_of)
    assert not alone["peer_segment_days_late"].equals(features_at(parts[0], as_of, peers=added)["peer_segment_days_late"])


def subset_of_customers(ledger: Ledger, customer_ids: pd.Series) -> Ledger:
    """The whole history of some customers (as one bucket of a partitioned ledger holds it)."""
    invoices = ledger.invoices[ledger.invoices["customer_id"].isin(customer_ids)]
    payments = ledger.payments[ledger.payments["customer_id"].isin(customer_ids)]
    return ledger.replace(
        customers=ledger.customers[ledger.customers["customer_id"].isin(customer_ids)],
        invoices=invoices, payments=payments,
        payment_applications=ledger.payment_applications[
            ledger.payment_applications["payment_id"].isin(payments["payment_id"])],
        **{name: table[table["invoice_id"].isin(invoices["invoice_id"])]
           for name, table in (("disputes", ledger.disputes), ("writeoffs", ledger.writeoffs),
                               ("dunning_notices", ledger.dunning_notices))},
        promises=ledger.promises[ledger.promises["customer_id"].isin(customer_ids)],
        contacts=ledger.contacts[ledger.contacts["customer_id"].isin(customer_ids)])


def test_volume_trend_counts_only_the_days_a_new_customer_exists():
    ledger = tiny_ledger()
    ledger = ledger.replace(customers=ledger.customers.assign(created_date=dates("2023-01-01", "2024-01-01")))
    row = customer_row(customer_features_at(ledger, T("2024-02-20")), "C2")  # 51 days known
    assert row["invoice_volume_trend"] == pytest.approx(1.0)  # both windows reach back before its creation
    config = FeatureConfig(volume_recent_days=30, volume_history_days=60)
    short = customer_row(customer_features_at(ledger, T("2024-02-20"), config), "C2")
    assert short["invoice_volume_trend"] == pytest.approx((800 / 30) / (1100 / 51))
    old = customer_row(customer_features_at(tiny_ledger(), T("2024-02-20")), "C2")  # created 2023-06-01
    assert old["invoice_volume_trend"] == pytest.approx((1100 / 90) / (1100 / 265))


def test_nothing_open_gives_an_empty_frame_with_every_column():
    ledger = tiny_ledger()
    only_paid = ledger.replace(invoices=ledger.invoices.iloc[:1],
                               payment_applications=ledger.payment_applications.iloc[:1],
                               payments=ledger.payments.iloc[:1], disputes=ledger.disputes.iloc[:0],
                               promises=ledger.promises.iloc[:0], writeoffs=ledger.writeoffs.iloc[:0])
    frame = features_at(only_paid, T("2024-03-01"))
    assert frame.empty and list(frame.columns) == ["invoice_id", "customer_id", *feature_names()]
    assert len(customer_features_at(only_paid, T("2024-03-01"))) == 2


def test_integer_key_codes_change_no_value():
    ledger = collections_ledger()  # PR2 has no invoice: a nullable key column
    encoded, keys = encode_keys(ledger)
    assert encoded.promises["invoice_id"].isna().tolist() == ledger.promises["invoice_id"].isna().tolist()
    assert keys.decode(encoded.invoices[["invoice_id", "customer_id"]]).equals(
        ledger.invoices[["invoice_id", "customer_id"]])
    for as_of in (T("2024-03-10"), T("2024-03-20")):
        on_ids = _feature_frames(ledger, as_of, FeatureConfig())  # the functions also run on the plain ids
        for with_codes, with_ids in zip(feature_frames(ledger, as_of), on_ids, strict=True):
            pd.testing.assert_frame_equal(with_codes, with_ids)


def test_a_cutoff_before_any_data_is_a_clear_error():
    with pytest.raises(LedgerError, match="before any data"):
        features_at(tiny_ledger(), T("2023-12-31"))


# --- Registry and configuration -----------------------------------------------------------------

@pytest.mark.parametrize("config", [FeatureConfig(), FeatureConfig(
    aging_limits=(0, 15, 45), late_share_windows_days=(30, 60), last_paid_invoices=5, dispute_days=90,
    invoice_count_days=180, volume_history_days=120, partial_payment_days=90, contact_days=30)])
def test_every_produced_column_is_registered_and_every_registered_one_produced(config):
    frame = features_at(collections_ledger(), T("2024-03-20"), config)
    assert list(frame.columns[:2]) == ["invoice_id", "customer_id"]
    assert list(frame.columns[2:]) == feature_names(config=config)
    customers = customer_features_at(collections_ledger(), T("2024-03-20"), config)
    assert list(customers.columns[1:]) == feature_names("customer", config)
    assert all(dtype == np.float64 for dtype in frame.dtypes.iloc[2:])
    assert all(f.description.endswith(".") and "\n" not in f.description for f in feature_registry(config).values())


EXTRA_CONFIG = FeatureConfig(aging_limits=(15, 45), late_share_windows_days=(30, 60), last_paid_invoices=5,
                             contact_days=30, trend_recent_days=60, trend_history_days=200, month_end_days=5)


@pytest.mark.parametrize("config", [FeatureConfig(), EXTRA_CONFIG])
def test_every_column_has_exactly_one_description_taken_from_its_functions_docstring(config):
    columns = invoice_columns(config) + customer_columns(config)
    names = [name for name, _, _ in columns]
    assert len(names) == len(set(names)) == len(feature_registry(config))  # no column described twice
    descriptions = [f.description for f in feature_registry(config).values()]
    assert len(set(descriptions)) == len(descriptions)  # no two columns share a meaning
    assert not [text for text in descriptions if "{" in text or "}" in text or "`" in text]
    for name, function, values in columns:
        first_paragraph = " ".join(inspect.getdoc(function).split("\n\n")[0].split())
        assert feature_registry(config)[name].description == first_paragraph.format(config=config, **values)


def test_every_feature_function_describes_a_column():
    # Every public function of the feature modules computes a column, except the builders and helpers.
    helpers = {"invoice_features", "customer_features", "aging_bucket", "last_paid_ranks",
               # features.peers: the integer sums the peer and recency columns are computed from
               "recency_weights", "lateness_items", "customer_sums", "weighted_days_late", "weighted_late_rate",
               "peer_groups", "peer_sums", "added_peer_sums", "empty_peer_sums", "peer_values"}
    defined = {function for module in (invoice, customer, peers) for name, function in vars(module).items()
               if inspect.isfunction(function) and function.__module__ == module.__name__
               and not name.startswith("_") and name not in helpers}
    described = {function for _, function, _ in invoice_columns(FeatureConfig()) + customer_columns(FeatureConfig())}
    assert defined == described


def test_descriptions_name_the_windows_of_the_config():
    registry = feature_registry(EXTRA_CONFIG)
    assert registry["contacts_30d"].description == "Contacts with the customer in the last 30 days."
    assert registry["share_paid_late_60d"].description == (
        "Share of invoices paid in the last 60 days that were paid more than 5 days late.")
    assert registry["share_ar_dpd_16_45"].description == "Share of the customer's open invoice amount 16-45 days past due."
    assert registry["ewm_days_late_last_5"].description == (
        "Days late over the last 5 paid invoices, weighted with a half-life of 3 invoices, latest first.")
    assert registry["late_share_trend"].description == (
        "Share paid late in the last 60 days minus the share paid late 60-200 days ago.")


def test_label_columns_are_never_features():
    registry = feature_registry()
    for names in label_names().values():
        assert not set(names) & set(registry)
    forbidden = ("cleared", "kept", "settle", "paid_date", "days_to_pay", "deteriorat", "label")
    assert not [name for name in registry if any(word in name for word in forbidden)]


def test_feature_modules_never_import_labels():
    for module in FEATURES_DIR.glob("*.py"):
        if module.name in ("snapshots.py", "labels.py", "__init__.py"):
            continue  # the builder joins labels after computing features; nothing else may see them
        tree = ast.parse(module.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert "features.labels" not in imported, module.name
        # Only the as-of filter touches the derived clearing date (to blank it after the cutoff).
        assert '"cleared_date"' not in module.read_text() or module.name == "asof.py", module.name


def test_config_rejects_unknown_keys_and_bad_windows():
    with pytest.raises(pydantic.ValidationError):
        FeatureConfig(late_grace_dayz=3)
    with pytest.raises(pydantic.ValidationError):
        FeatureConfig(aging_limits=(0, 60, 30))
    with pytest.raises(pydantic.ValidationError):
        FeatureConfig(trend_recent_days=400)


# --- Labels -------------------------------------------------------------------------------------

def test_invoice_labels_by_hand():
    ledger = tiny_ledger()
    assert last_event_date(ledger) == T("2024-06-30")
    labels = invoice_labels(ledger, T("2024-02-10")).set_index("invoice_id")
    i1 = labels.loc["I1"]
    assert (i1["paid"], i1["paid_date"], i1["days_to_pay"], i1["days_late"], i1["late"]) == (
        True, T("2024-02-20"), 10.0, 16.0, 1.0)
    assert (i1["paid_within_7d"], i1["paid_within_14d"]) == (0.0, 1.0)
    i2 = labels.loc["I2"]  # never settled: censored at 2024-06-30, already known late
    assert (i2["paid"], i2["days_to_pay"], i2["days_late"], i2["late"]) == (False, 141.0, 121.0, 1.0)
    i4 = labels.loc["I4"]  # written off: never paid
    assert (i4["paid"], i4["written_off"], i4["late"], i4["paid_within_90d"]) == (False, True, 1.0, 0.0)


def test_invoice_labels_are_missing_while_censoring_hides_them():
    labels = invoice_labels(tiny_ledger(), T("2024-03-20"), observation_end=T("2024-03-25")).set_index("invoice_id")
    i3 = labels.loc["I3"]  # due 03-26, still open at the end of observation: late or not is unknown
    assert (i3["paid"], i3["days_to_pay"]) == (False, 5.0) and math.isnan(i3["late"])
    assert i3["days_late"] == 0.0  # lower bound: the earliest payment is 03-26, the due date
    assert math.isnan(i3["paid_within_7d"])
    i2 = labels.loc["I2"]  # due 03-02: open at the end, more than 5 days past due, so late
    assert i2["late"] == 1.0


def test_customer_deterioration_labels_by_hand():
    ledger = tiny_ledger()
    at_march = customer_labels(ledger, T("2024-03-10")).set_index("customer_id")
    # C1: I2 (due 03-02) is still open on 06-01, its 91st day past due, inside (03-10, 06-08].
    # C2: I4 (due 02-24) is still open on 05-25, its 91st day past due.
    assert at_march["deteriorates_90d"].tolist() == [1.0, 1.0]
    at_june = customer_labels(ledger, T("2024-06-10")).set_index("customer_id")
    assert at_june["already_deteriorated"].tolist() == [True, True] and at_june["deteriorates_90d"].isna().all()
    early = customer_labels(ledger, T("2024-02-10"), observation_end=T("2024-03-31")).set_index("customer_id")
    assert early["deteriorates_90d"].isna().all()  # window not observed in full and nothing happened yet


def test_a_cutoff_after_the_end_of_observation_cannot_be_labelled():
    with pytest.raises(LedgerError, match="after the end of observation"):
        build_snapshots(tiny_ledger(), [T("2024-05-31"), T("2024-07-31")])


def test_snapshots_stack_features_and_labels_per_cutoff():
    ledger = collections_ledger()
    cutoffs = [T("2024-02-29"), T("2024-03-31")]
    frame = build_snapshots(ledger, cutoffs)
    assert frame.columns[0] == "cutoff" and set(frame["cutoff"]) == set(cutoffs)
    assert set(label_names()["invoice"]) <= set(frame.columns)
    at_end = frame[frame["cutoff"] == cutoffs[1]].drop(columns=["cutoff", *label_names()["invoice"]])
    pd.testing.assert_frame_equal(at_end.reset_index(drop=True), features_at(ledger, cutoffs[1]))
    customers = build_customer_snapshots(ledger, cutoffs)
    assert len(customers) == 4 and "deteriorates_90d" in customers


# --- Command line -------------------------------------------------------------------------------

runner = CliRunner()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_cli_writes_the_features(tmp_path, suffix):
    write_ledger(collections_ledger(), tmp_path / "ledger")
    out = tmp_path / f"features{suffix}"
    result = runner.invoke(app, ["features", "--ledger", str(tmp_path / "ledger"), "--as-of", "2024-03-20",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert list(written["invoice_id"]) == ["I2", "I3", "I4"]
    assert list(written.columns[2:]) == feature_names()


@pytest.mark.parametrize(("as_of", "out", "message"), [
    ("20/03/2024", "f.csv", "YYYY-MM-DD"),
    ("2023-12-31", "f.csv", "before any data"),
    ("2024-03-20", "f.txt", "expected a .csv, .xlsx, .parquet, .json file"),
])
def test_cli_bad_input_is_one_clear_error(tmp_path, as_of, out, message):
    write_ledger(tiny_ledger(), tmp_path / "ledger")
    result = runner.invoke(app, ["features", "--ledger", str(tmp_path / "ledger"), "--as-of", as_of,
                                 "--out", str(tmp_path / out)])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / out).exists()


def test_cli_unreadable_ledger_is_one_clear_error(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "ledger.json").write_text("{not json")
    for ledger_dir in (tmp_path / "nowhere", tmp_path / "broken"):
        result = runner.invoke(app, ["features", "--ledger", str(ledger_dir), "--as-of", "2024-03-20",
                                     "--out", str(tmp_path / "f.csv")])
        assert result.exit_code == 1 and "unreadable ledger" in result.output and "Traceback" not in result.output
