"""Leakage is impossible by construction, and proven here on the synthetic ledger and the IBM sample:

(a) perturbing any event after the cutoff leaves every feature at the cutoff unchanged;
(b) the fast builder agrees with the brute-force twin in `tests/reference_features.py` on every value;
(c) no feature can be computed from a label: scrambling every label-bearing field changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import customer_features_at, feature_frames, feature_registry, features_at
from features.collections import promise_status
from features.labels import customer_labels, invoice_labels, last_event_date
from ledger import Ledger
from tests.reference_features import (
    index_events,
    reference_customer_features,
    reference_customer_labels,
    reference_invoice_features,
    reference_invoice_labels,
)

T = pd.Timestamp
DAY = pd.Timedelta(days=1)
IBM_SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "ibm" / "ibm_wa_accounts_receivable.csv"
SYNTHETIC_CUTOFFS = [T("2022-03-15"), T("2022-11-30"), T("2023-05-31")]
IBM_CUTOFFS = [T("2012-04-30"), T("2013-01-15"), T("2013-09-30")]
# Floating sums may differ in the last bits when rows come in another order.
CLOSE = {"check_exact": False, "rtol": 1e-9, "atol": 1e-6}


@pytest.fixture(scope="module")
def synthetic() -> Ledger:
    from ledger.synthetic import generate_ledger

    ledger = generate_ledger(customers=150, months=18, seed=11)[0]
    # Every fifth notice as an import without dunning dates gives it: the level known from a later day.
    notices = ledger.dunning_notices.copy()
    undated = notices.index % 5 == 0
    notices["known_date"] = (notices["issued_date"] + pd.Timedelta(days=9)).where(undated)
    notices.loc[undated, "issued_date"] = pd.NaT
    assert undated.sum() > 20
    # An optional industry on most customers (missing on every seventh): the industry peer group.
    industries = np.array(["retail", "energy", "health"], dtype=object)[ledger.customers.index % 3]
    industry = pd.Series(industries, index=ledger.customers.index).where(ledger.customers.index % 7 != 0)
    return ledger.replace(dunning_notices=notices, customers=ledger.customers.assign(industry=industry))


@pytest.fixture(scope="module")
def ibm() -> Ledger:
    from ledger.importing import import_ledger

    return import_ledger([IBM_SAMPLE], "ibm_sample")


@pytest.fixture(params=["synthetic", "ibm"])
def ledger_and_cutoffs(request) -> tuple[Ledger, list[pd.Timestamp]]:
    cutoffs = SYNTHETIC_CUTOFFS if request.param == "synthetic" else IBM_CUTOFFS
    return request.getfixturevalue(request.param), cutoffs


# --- Perturbations after the cutoff ---------------------------------------------------------------

def later_dates(rng: np.random.Generator, as_of: pd.Timestamp, n: int, max_days: int = 400) -> pd.Series:
    return pd.Series(as_of + pd.to_timedelta(rng.integers(1, max_days, n), "D"), dtype="datetime64[ns]")


def maybe_later_dates(rng: np.random.Generator, as_of: pd.Timestamp, n: int) -> pd.Series:
    """Dates after the cutoff, a third of them missing (never happened)."""
    dates = later_dates(rng, as_of, n)
    return dates.where(rng.random(n) > 1 / 3)


def perturb_events(table: pd.DataFrame, date_column: str, as_of: pd.Timestamp, rng: np.random.Generator,
                   amount_column: str | None = None, new_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Delete, move (staying after the cutoff), rescale and add rows dated after `as_of`."""
    later = table[date_column] > as_of
    kept = table[~later | (rng.random(len(table)) > 0.3)].copy()
    moved = (kept[date_column] > as_of) & (rng.random(len(kept)) < 0.5)
    kept.loc[moved, date_column] = later_dates(rng, as_of, int(moved.sum())).to_numpy()
    if amount_column:
        kept.loc[moved, amount_column] = kept.loc[moved, amount_column] * rng.uniform(0.1, 3, int(moved.sum()))
    return pd.concat([kept, new_rows], ignore_index=True) if new_rows is not None else kept


def copies(table: pd.DataFrame, n: int, rng: np.random.Generator, **columns) -> pd.DataFrame:
    """`n` random rows of `table` with some columns replaced (callables get the row count)."""
    rows = table.iloc[rng.integers(0, len(table), n)].reset_index(drop=True) if len(table) else None
    if rows is None:
        return table.iloc[:0]
    return rows.assign(**{name: value(n) if callable(value) else value for name, value in columns.items()})


def perturb_after(ledger: Ledger, as_of: pd.Timestamp, seed: int) -> Ledger:
    """A ledger identical up to `as_of` and changed at random after it, every table, every way.

    Rows known at `as_of` keep their known fields; their after-the-fact fields (a later clearing or
    resolution, `kept`) are scrambled. Row order is shuffled too. Not necessarily valid, but sensible."""
    rng = np.random.default_rng(seed)
    n = 25
    invoice_ids = ledger.invoices["invoice_id"]
    customer_ids = ledger.customers["customer_id"]

    def pick(values: pd.Series):
        return lambda k: values.sample(k, replace=True, random_state=rng).to_numpy()

    def new_ids(prefix: str):
        return lambda k: [f"{prefix}-{seed}-{i}" for i in range(k)]

    new_customers = copies(ledger.customers, 3, rng, customer_id=new_ids("NEWC"),
                           created_date=lambda k: later_dates(rng, as_of, k).to_numpy())
    customers = pd.concat([ledger.customers, new_customers], ignore_index=True)

    invoices = ledger.invoices.copy()
    after_the_fact = invoices["cleared_date"].isna() | (invoices["cleared_date"] > as_of)
    invoices.loc[after_the_fact, "cleared_date"] = maybe_later_dates(rng, as_of, int(after_the_fact.sum())).to_numpy()
    new_invoice_dates = later_dates(rng, as_of, n)
    new_invoices = copies(ledger.invoices, n, rng, invoice_id=new_ids("NEWI"),
                          customer_id=pick(pd.concat([customer_ids, new_customers["customer_id"]])),
                          invoice_date=new_invoice_dates.to_numpy(),
                          due_date=(new_invoice_dates + 30 * DAY).to_numpy(), cleared_date=pd.NaT)
    invoices = perturb_events(invoices, "invoice_date", as_of, rng, "amount", new_invoices)
    moved_invoice = invoices["invoice_date"] > invoices["due_date"]
    invoices.loc[moved_invoice, "due_date"] = invoices.loc[moved_invoice, "invoice_date"] + 30 * DAY

    new_payments = copies(ledger.payments, n, rng, payment_id=new_ids("NEWP"), customer_id=pick(customer_ids),
                          received_date=lambda k: later_dates(rng, as_of, k).to_numpy())
    payments = perturb_events(ledger.payments, "received_date", as_of, rng, "amount", new_payments)

    # New applications of old and new payments to any document, old open ones included.
    new_applications = copies(ledger.payment_applications, 3 * n, rng,
                              payment_id=pick(payments["payment_id"]), invoice_id=pick(invoices["invoice_id"]),
                              applied_date=lambda k: later_dates(rng, as_of, k).to_numpy())
    applications = perturb_events(ledger.payment_applications, "applied_date", as_of, rng, "amount",
                                  new_applications)

    disputes = ledger.disputes.copy()
    unresolved = disputes["resolved_date"].isna() | (disputes["resolved_date"] > as_of)
    disputes.loc[unresolved, "resolved_date"] = maybe_later_dates(rng, as_of, int(unresolved.sum())).to_numpy()
    new_dispute_dates = later_dates(rng, as_of, n)
    new_disputes = copies(ledger.disputes, n, rng, dispute_id=new_ids("NEWD"), invoice_id=pick(invoice_ids),
                          opened_date=new_dispute_dates.to_numpy(), resolved_date=pd.NaT)
    disputes = perturb_events(disputes, "opened_date", as_of, rng, "amount", new_disputes)

    promises = ledger.promises.copy()
    promises["kept"] = pd.array(rng.choice([True, False, None], len(promises)), dtype="boolean")
    made = later_dates(rng, as_of, n)
    new_promise_template = ledger.promises if len(ledger.promises) else pd.DataFrame({
        "promise_id": ["x"], "customer_id": ["x"], "invoice_id": ["x"], "made_date": [as_of],
        "promised_date": [as_of], "amount": [100.0], "kept": pd.array([None], dtype="boolean")})
    new_promise_invoices = pick(invoice_ids)(n)
    new_promises = copies(new_promise_template, n, rng, promise_id=new_ids("NEWPR"),
                          invoice_id=np.where(rng.random(n) < 0.2, None, new_promise_invoices),
                          customer_id=ledger.invoices.set_index("invoice_id").loc[new_promise_invoices,
                                                                                  "customer_id"].to_numpy(),
                          made_date=made.to_numpy(), promised_date=(made + 14 * DAY).to_numpy())
    promises = perturb_events(promises, "made_date", as_of, rng, "amount", new_promises)
    moved_promise = promises["promised_date"] < promises["made_date"]
    promises.loc[moved_promise, "promised_date"] = promises.loc[moved_promise, "made_date"] + 7 * DAY

    writeoff_template = pd.DataFrame({"invoice_id": ["x"], "date": [as_of], "amount": [10.0]})
    new_writeoffs = copies(writeoff_template, n, rng, invoice_id=pick(invoice_ids),
                           date=lambda k: later_dates(rng, as_of, k).to_numpy())
    writeoffs = perturb_events(ledger.writeoffs, "date", as_of, rng, "amount", new_writeoffs)

    notice_template = pd.DataFrame({"invoice_id": ["x"], "level": [1], "issued_date": [as_of]})
    new_notices = copies(notice_template, n, rng, invoice_id=pick(invoice_ids),
                         level=lambda k: rng.integers(1, 4, k), issued_date=lambda k: later_dates(rng, as_of, k).to_numpy())
    notices = perturb_events(ledger.dunning_notices, "issued_date", as_of, rng, None, new_notices)
    # Levels imported without their notice date, learnt from an export taken after the cutoff.
    undated = copies(notice_template, n, rng, invoice_id=pick(invoice_ids), level=lambda k: rng.integers(1, 4, k),
                     issued_date=pd.NaT, known_date=lambda k: later_dates(rng, as_of, k).to_numpy())
    notices = pd.concat([notices, undated], ignore_index=True)

    contact_template = pd.DataFrame({"contact_id": ["x"], "customer_id": ["x"], "contact_date": [as_of],
                                     "channel": ["call"], "outcome": ["reached"]})
    new_contacts = copies(contact_template, n, rng, contact_id=new_ids("NEWK"), customer_id=pick(customer_ids),
                          contact_date=lambda k: later_dates(rng, as_of, k).to_numpy())
    contacts = perturb_events(ledger.contacts, "contact_date", as_of, rng, None, new_contacts)

    tables = {"customers": customers, "invoices": invoices, "payments": payments,
              "payment_applications": applications, "disputes": disputes, "promises": promises,
              "writeoffs": writeoffs, "dunning_notices": notices, "contacts": contacts}
    shuffled = {name: table.sample(frac=1.0, random_state=rng).reset_index(drop=True)
                for name, table in tables.items()}
    return ledger.replace(**shuffled)


def assert_same_features(changed: Ledger, expected: tuple[pd.DataFrame, pd.DataFrame], as_of: pd.Timestamp) -> None:
    for produced, wanted in zip(feature_frames(changed, as_of), expected, strict=True):
        pd.testing.assert_frame_equal(produced, wanted, **CLOSE)


@pytest.mark.parametrize("cutoff", range(3))
@pytest.mark.parametrize("source", ["synthetic", "ibm"])
def test_perturbing_anything_after_the_cutoff_changes_no_feature(request, source, cutoff):
    ledger = request.getfixturevalue(source)
    as_of = (SYNTHETIC_CUTOFFS if source == "synthetic" else IBM_CUTOFFS)[cutoff]
    expected = feature_frames(ledger, as_of)
    assert len(expected[0]) > 10 and len(expected[1]) > 10
    for seed in range(5):
        assert_same_features(perturb_after(ledger, as_of, seed=100 * cutoff + seed), expected, as_of)


def test_the_perturbations_do_change_features_one_day_later(synthetic):
    """The perturbation test has teeth: the same changes are visible once they are in the past."""
    as_of = SYNTHETIC_CUTOFFS[1]
    changed = perturb_after(synthetic, as_of, seed=7)
    later = as_of + 120 * DAY
    assert not features_at(changed, later).equals(features_at(synthetic, later))
    assert not customer_features_at(changed, later).equals(customer_features_at(synthetic, later))


def test_scrambling_every_label_bearing_field_changes_no_feature(ledger_and_cutoffs):
    ledger, cutoffs = ledger_and_cutoffs
    rng = np.random.default_rng(0)
    for as_of in cutoffs:
        invoices = ledger.invoices.copy()
        later = ~(invoices["cleared_date"] <= as_of)
        invoices.loc[later, "cleared_date"] = maybe_later_dates(rng, as_of, int(later.sum())).to_numpy()
        disputes = ledger.disputes.copy()
        unresolved = ~(disputes["resolved_date"] <= as_of)
        disputes.loc[unresolved, "resolved_date"] = maybe_later_dates(rng, as_of, int(unresolved.sum())).to_numpy()
        promises = ledger.promises.assign(kept=pd.array(rng.choice([True, False, None], len(ledger.promises)),
                                                        dtype="boolean"))
        changed = ledger.replace(invoices=invoices, disputes=disputes, promises=promises)
        assert_same_features(changed, feature_frames(ledger, as_of), as_of)


def test_ibm_settlement_columns_never_reach_the_features(ibm):
    for table in ibm.tables().values():
        assert not {"DaysToSettle", "DaysLate", "SettledDate"} & set(table.columns)
    produced = set(features_at(ibm, IBM_CUTOFFS[1]).columns) | set(feature_registry())
    assert not [name for name in produced if "settle" in name.lower() or name.lower() == "days_late"]


def test_derived_promise_status_agrees_with_the_generators_kept_at_the_end(synthetic):
    end = last_event_date(synthetic)
    status = promise_status(synthetic.promises, synthetic.payment_applications, synthetic.payments,
                            synthetic.writeoffs, end, 0.005)
    decided = synthetic.promises["kept"].notna() & (synthetic.promises["promised_date"] < end)
    assert decided.sum() > 50
    assert ((status == "kept") == synthetic.promises["kept"].fillna(False).astype(bool))[decided].all()


# --- The brute-force twin -------------------------------------------------------------------------

def test_fast_features_agree_with_the_brute_force_reference(ledger_and_cutoffs):
    ledger, cutoffs = ledger_and_cutoffs
    events = index_events(ledger)
    rng = np.random.default_rng(1)
    for as_of in cutoffs:
        fast_invoices, fast_customers = feature_frames(ledger, as_of)
        sample = fast_invoices.iloc[np.sort(rng.choice(len(fast_invoices), min(60, len(fast_invoices)),
                                                       replace=False))].reset_index(drop=True)
        slow_invoices = reference_invoice_features(ledger, as_of, list(sample["invoice_id"]), events=events)
        pd.testing.assert_frame_equal(sample[slow_invoices.columns], slow_invoices, check_dtype=False, **CLOSE)

        slow_customers = reference_customer_features(ledger, as_of, list(fast_customers["customer_id"]),
                                                     events=events)
        pd.testing.assert_frame_equal(fast_customers, slow_customers, check_dtype=False, **CLOSE)
        # The invoice frame carries its customer's features: every one of its columns is checked.
        assert set(sample.columns) == set(slow_invoices.columns) | set(slow_customers.columns)
        joined = sample[["customer_id"]].merge(slow_customers, on="customer_id", how="left")
        pd.testing.assert_frame_equal(sample[joined.columns], joined, check_dtype=False, **CLOSE)


def test_fast_labels_agree_with_the_brute_force_reference(ledger_and_cutoffs):
    ledger, cutoffs = ledger_and_cutoffs
    events = index_events(ledger)
    end = last_event_date(ledger)
    for as_of in [*cutoffs, end - 30 * DAY]:  # the last cutoff is censored before most horizons
        fast = invoice_labels(ledger, as_of, end)
        slow = reference_invoice_labels(ledger, as_of, list(fast["invoice_id"]), end, events=events)
        pd.testing.assert_frame_equal(fast, slow, check_dtype=False, **CLOSE)
        fast = customer_labels(ledger, as_of, end)
        slow = reference_customer_labels(ledger, as_of, list(fast["customer_id"]), end, events=events)
        pd.testing.assert_frame_equal(fast, slow, check_dtype=False, **CLOSE)


def test_the_reference_sees_the_events_the_fast_code_must_handle(synthetic):
    """Guard against a vacuous comparison: the cutoffs cover promises, disputes, dunning, partial payments."""
    customers = pd.concat([customer_features_at(synthetic, as_of) for as_of in SYNTHETIC_CUTOFFS])
    for column in ("broken_promises_180d", "pending_promises", "open_disputes", "writeoffs_365d",
                   "unapplied_cash_base", "contacts_90d"):
        assert (customers[column] != 0).any(), column
    assert (customers["partial_payment_share_365d"] > 0).any()
    invoices = pd.concat([features_at(synthetic, as_of) for as_of in SYNTHETIC_CUTOFFS])
    for column in ("has_pending_promise", "has_broken_promise", "in_open_dispute", "dunning_level",
                   "is_credit_memo", "invoice_quarter_end"):
        assert (invoices[column] > 0).any(), column
    assert ((invoices["share_paid"] > 0) & (invoices["share_paid"] < 1)).any()


@pytest.mark.parametrize("source", ["synthetic", "ibm"])
def test_cli_features_on_a_written_ledger(request, tmp_path, source):
    from typer.testing import CliRunner

    from ledger import write_ledger
    from serving.cli import app

    ledger = request.getfixturevalue(source)
    write_ledger(ledger, tmp_path / "ledger")
    as_of = (SYNTHETIC_CUTOFFS if source == "synthetic" else IBM_CUTOFFS)[1]
    result = CliRunner().invoke(app, ["features", "--ledger", str(tmp_path / "ledger"), "--as-of",
                                      f"{as_of:%Y-%m-%d}", "--out", str(tmp_path / "features.parquet")])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "features.parquet"), features_at(ledger, as_of))
