"""The synthetic ledger: valid, deterministic, plausible, responsive to its parameters, and honest
about its ground truth (which stays out of the ledger tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from ledger import read_ledger
from ledger.schema import SCHEMAS
from ledger.synthetic import generate_ledger, write_synthetic
from serving.cli import app

GRACE = pd.Timedelta(days=5)
TRUTH_FILES = {"truth/customers.parquet", "truth/invoices.parquet", "truth/risk_path.parquet",
               "truth/fx_rates.parquet"}


@pytest.fixture(scope="module")
def generated():
    return generate_ledger(customers=300, months=18, seed=11)


def invoices_only(ledger) -> pd.DataFrame:
    return ledger.invoices[ledger.invoices["doc_type"] == "invoice"]


def history_end(ledger) -> pd.Timestamp:
    return pd.Timestamp("2022-01-01") + pd.DateOffset(months=18) - pd.Timedelta(days=1)


def observed_late(ledger, end: pd.Timestamp) -> pd.DataFrame:
    """Invoices whose lateness the ledger already shows at `end`, with `realised_late`: not cleared
    by due + grace (open items past the grace count as late, paid or not)."""
    invoices = invoices_only(ledger)
    invoices = invoices[invoices["due_date"] + GRACE < end]
    late = invoices["cleared_date"].isna() | (invoices["cleared_date"] > invoices["due_date"] + GRACE)
    return invoices.assign(realised_late=late.to_numpy())


def share_late(ledger) -> float:
    return float(observed_late(ledger, history_end(ledger))["realised_late"].mean())


def bad_debt_share(ledger) -> float:
    """Share of invoices written off without any payment (short-payment residuals left out)."""
    unpaid = ~ledger.writeoffs["invoice_id"].isin(ledger.payment_applications["invoice_id"])
    return float(unpaid.sum() / len(invoices_only(ledger)))


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC by ranks (ties averaged)."""
    ranks = pd.Series(score).rank().to_numpy()
    positives = label.sum()
    return float((ranks[label].sum() - positives * (positives + 1) / 2) / (positives * (len(label) - positives)))


def test_generated_ledger_is_valid_and_has_every_table(generated):
    ledger, _ = generated
    assert ledger.validate() is ledger
    assert ledger.base_currency == "EUR" and ledger.source == "synthetic seed=11"
    for name, table in ledger.tables().items():
        assert len(table) > 0, name
    assert ledger.customers["collector"].nunique() > 1
    assert set(ledger.invoices["currency"]) >= {"EUR", "USD", "GBP", "CHF"}


def test_same_seed_gives_identical_frames_and_another_seed_does_not():
    first_ledger, first_truth = generate_ledger(customers=80, months=12, seed=5)
    again_ledger, again_truth = generate_ledger(customers=80, months=12, seed=5)
    for name, table in first_ledger.tables().items():
        pd.testing.assert_frame_equal(table, again_ledger.tables()[name])
    for name, table in first_truth.items():
        pd.testing.assert_frame_equal(table, again_truth[name])
    other_ledger, other_truth = generate_ledger(customers=80, months=12, seed=6)
    assert not first_ledger.invoices["amount"].equals(other_ledger.invoices["amount"])
    assert not first_truth["truth/invoices.parquet"]["p_late"].equals(other_truth["truth/invoices.parquet"]["p_late"])


def test_statistics_are_plausible(generated):
    ledger, _ = generated
    invoices = invoices_only(ledger)
    assert 0.20 <= share_late(ledger) <= 0.50

    paid = invoices[invoices["cleared_date"].notna() & ~invoices["invoice_id"].isin(ledger.writeoffs["invoice_id"])]
    days_late = (paid["cleared_date"] - paid["due_date"]).dt.days
    late_days = days_late[days_late > 5]
    # A long right tail: the far quantiles sit well beyond the typical late payment.
    assert late_days.quantile(0.99) > 3 * late_days.median()
    assert late_days.mean() > late_days.median()
    assert days_late.min() < 0  # some pay early

    assert 0.01 <= ledger.disputes["invoice_id"].nunique() / len(invoices) <= 0.06
    applications_per_invoice = ledger.payment_applications.groupby("invoice_id").size()
    assert 0.005 < (applications_per_invoice > 1).sum() / len(invoices) < 0.10  # partial payments
    assert 0.005 < (ledger.invoices["doc_type"] == "credit_memo").mean() < 0.10
    applied = ledger.payment_applications.groupby("payment_id")["amount"].sum()
    unapplied = ledger.payments.set_index("payment_id")["amount"] - applied.reindex(ledger.payments["payment_id"])
    assert 0.005 < (unapplied > 0.005).mean() < 0.10
    assert len(ledger.writeoffs) > 0 and (ledger.writeoffs["amount"] > 500).any()  # bad debt, not only residuals
    assert ledger.promises["kept"].eq(True).sum() > 0 and ledger.promises["kept"].eq(False).sum() > 0

    # Censoring: the last month's invoices are mostly still open; those of a year before are not.
    end = history_end(ledger)
    last_month = invoices[invoices["invoice_date"] > end - pd.Timedelta(days=30)]
    year_before = invoices[invoices["invoice_date"].between(end - pd.Timedelta(days=400), end - pd.Timedelta(days=300))]
    assert last_month["cleared_date"].isna().mean() > 0.8
    assert year_before["cleared_date"].isna().mean() < 0.1


def test_month_ends_and_payment_runs_show_in_the_dates(generated):
    ledger, _ = generated
    issued = invoices_only(ledger)["invoice_date"]
    in_last_three_days = (issued + pd.offsets.MonthEnd(0) - issued).dt.days < 3
    assert in_last_three_days.mean() > 2 * 3 / 30.4  # well above an even spread over the month
    assert (issued.dt.dayofweek < 5).all()
    received = ledger.payments["received_date"]
    assert (received.dt.dayofweek < 5).mean() > 0.85


# (parameter, low value, high value, statistic, least rise): each rise is about half the one seen over seeds.
RESPONSES = [
    ("late_payer_share", 0.05, 0.6, share_late, 0.12),
    ("dispute_rate", 0.01, 0.10, lambda ledger: ledger.disputes["invoice_id"].nunique() / len(invoices_only(ledger)),
     0.05),
    ("credit_memo_rate", 0.0, 0.10, lambda ledger: (ledger.invoices["doc_type"] == "credit_memo").mean(), 0.05),
    ("partial_payment_rate", 0.0, 0.15,
     lambda ledger: (ledger.payment_applications.groupby("invoice_id").size() > 1).mean(), 0.06),
    ("writeoff_rate", 0.0, 0.10, bad_debt_share, 0.006),
    ("promise_rate", 0.05, 0.6, lambda ledger: len(ledger.promises) / len(ledger.invoices), 0.04),
]


@pytest.mark.parametrize(("parameter", "low", "high", "statistic", "rise"), RESPONSES,
                         ids=[response[0] for response in RESPONSES])
def test_statistics_respond_to_parameters(parameter, low, high, statistic, rise):
    low_ledger, _ = generate_ledger(customers=200, months=12, seed=3, **{parameter: low})
    high_ledger, _ = generate_ledger(customers=200, months=12, seed=3, **{parameter: high})
    high_ledger.validate()
    assert statistic(high_ledger) > statistic(low_ledger) + rise, parameter


def test_unknown_or_impossible_parameters_are_rejected():
    with pytest.raises(ValidationError, match="extra"):
        generate_ledger(customers=5, months=2, seed=0, late_payers=0.5)
    with pytest.raises(ValidationError):
        generate_ledger(customers=5, months=2, seed=0, dispute_rate=1.5)
    with pytest.raises(ValidationError, match="must not exceed 1"):
        generate_ledger(customers=5, months=2, seed=0, late_payer_share=0.9, deteriorating_share=0.2)


def test_deteriorating_customers_pay_later_after_their_deterioration_date():
    ledger, truth = generate_ledger(customers=200, months=24, seed=8, deteriorating_share=0.3, recovering_share=0.2)
    customers = truth["truth/customers.parquet"]
    deteriorating = customers[customers["deterioration_date"].notna()]
    assert set(deteriorating["profile"]) == {"deteriorating"}
    invoices = invoices_only(ledger).merge(deteriorating[["customer_id", "deterioration_date"]], on="customer_id")
    end = pd.Timestamp("2023-12-31")
    # Days late as the ledger shows them, open items counted up to the end of the history.
    settled = invoices["cleared_date"].fillna(end)
    invoices = invoices.assign(days_late=(settled - invoices["due_date"]).dt.days)
    invoices = invoices[invoices["due_date"] < end - pd.Timedelta(days=60)]
    after = invoices["invoice_date"] >= invoices["deterioration_date"]
    assert invoices.loc[after, "days_late"].mean() > invoices.loc[~after, "days_late"].mean() + 20
    by_customer = invoices.groupby(["customer_id", after])["days_late"].agg(["mean", "size"]).unstack()
    by_customer = by_customer[(by_customer["size"][True] >= 3) & (by_customer["size"][False] >= 3)]
    assert len(by_customer) >= 20
    assert (by_customer["mean"][True] > by_customer["mean"][False]).mean() > 0.7

    # Their latent risk climbs; recovering customers' falls.
    path = truth["truth/risk_path.parquet"]
    first, last = path["month"].min(), path["month"].max()
    change = (path[path["month"] == last].set_index("customer_id")["risk"]
              - path[path["month"] == first].set_index("customer_id")["risk"])
    profile = customers.set_index("customer_id")["profile"]
    assert change[profile == "deteriorating"].mean() > 0.3
    assert change[profile == "recovering"].mean() < -0.3
    assert abs(change[profile == "steady"].mean()) < 0.05


def test_stopped_customers_pay_nothing_more_and_their_debts_are_written_off():
    ledger, truth = generate_ledger(customers=150, months=24, seed=4, deteriorating_share=0.3)
    end = pd.Timestamp("2023-12-31")
    stop_date = truth["truth/customers.parquet"].set_index("customer_id")["stop_date"]
    invoices = invoices_only(ledger).assign(stop_date=lambda frame: frame["customer_id"].map(stop_date))
    applications = ledger.payment_applications.merge(invoices[["invoice_id", "stop_date"]], on="invoice_id")
    assert not (applications["applied_date"] >= applications["stop_date"]).any()

    # Whatever was open at the stop is written off in full about 150 days past due.
    open_at_stop = invoices["stop_date"].notna() & ~(invoices["cleared_date"] < invoices["stop_date"])
    long_overdue = invoices[open_at_stop & (invoices["due_date"] < end - pd.Timedelta(days=181))]
    assert long_overdue["customer_id"].nunique() >= 3
    written_off = long_overdue.merge(ledger.writeoffs, on="invoice_id", suffixes=("", "_written_off"))
    assert len(written_off) == len(long_overdue)
    assert np.allclose(written_off["amount_written_off"], written_off["amount"])
    assert ((written_off["date"] - written_off["due_date"]).dt.days >= 120).all()


def test_true_p_late_is_calibrated_against_what_happened(generated):
    ledger, truth = generated
    observed = observed_late(ledger, history_end(ledger)).merge(truth["truth/invoices.parquet"], on="invoice_id")
    assert len(observed) > 5000
    bins = pd.qcut(observed["p_late"], 10)
    table = observed.groupby(bins, observed=True).agg(p=("p_late", "mean"), realised=("realised_late", "mean"))
    assert (table["p"] - table["realised"]).abs().max() < 0.05, table
    assert table["p"].iloc[-1] - table["p"].iloc[0] > 0.5  # the probabilities spread, they are not the prior
    assert (observed["realised_late"] == observed["late"]).all()  # the truth's draw is what the ledger shows


def test_late_risk_is_learnable_from_history_but_noisy(generated):
    ledger, truth = generated
    end = history_end(ledger)
    observed = observed_late(ledger, end).merge(truth["truth/invoices.parquet"][["invoice_id", "p_late"]],
                                                on="invoice_id")
    label = observed["realised_late"].to_numpy()
    assert 0.75 < auc(observed["p_late"].to_numpy(), label) < 0.95  # the oracle is good, not perfect

    # A customer's late share in the first half ranks the second half's invoices.
    middle = pd.Timestamp("2022-09-01")
    history = observed[observed["due_date"] + GRACE < middle].groupby("customer_id")["realised_late"].mean()
    later = observed[observed["invoice_date"] >= middle]
    past_share = later["customer_id"].map(history)
    known = past_share.notna().to_numpy()
    assert auc(past_share.to_numpy()[known], label[observed["invoice_date"] >= middle][known]) > 0.65

    disputed = observed["invoice_id"].isin(ledger.disputes["invoice_id"])
    assert observed.loc[disputed, "p_late"].mean() > observed.loc[~disputed, "p_late"].mean() + 0.1


def test_events_follow_the_ledger_rules(generated):
    ledger, _ = generated
    invoices = ledger.invoices.set_index("invoice_id")
    end = history_end(ledger)

    promises = ledger.promises[ledger.promises["invoice_id"].notna()]
    cleared = promises["invoice_id"].map(invoices["cleared_date"])
    expected = (cleared <= promises["promised_date"]) & (cleared <= end)
    known = promises["kept"].notna()
    assert (promises.loc[known, "kept"].astype(bool) == expected[known]).all()
    assert (promises.loc[~known, "promised_date"] > end).all()

    notices = ledger.dunning_notices
    cleared_at = notices["invoice_id"].map(invoices["cleared_date"]).fillna(pd.Timestamp.max)
    assert (notices["issued_date"] < cleared_at).all()
    assert (notices["issued_date"] > notices["invoice_id"].map(invoices["due_date"])).all()
    levels = notices.groupby("invoice_id")["level"].agg(["max", "size"])
    assert (levels["max"] == levels["size"]).all()  # no level skipped
    disputes = ledger.disputes.merge(notices, on="invoice_id")
    during = (disputes["issued_date"] >= disputes["opened_date"]) & (
        disputes["resolved_date"].isna() | (disputes["issued_date"] < disputes["resolved_date"]))
    assert not during.any()
    blocked = ledger.customers.loc[ledger.customers["dunning_block"], "customer_id"]
    assert not notices["invoice_id"].map(invoices["customer_id"]).isin(blocked).any()

    # Base amounts follow the currency's monthly rate.
    foreign = ledger.invoices[ledger.invoices["currency"] != "EUR"]
    assert (foreign["amount_base"] != foreign["amount"]).mean() > 0.9
    eur = ledger.invoices[ledger.invoices["currency"] == "EUR"]
    assert np.allclose(eur["amount_base"], eur["amount"])


def test_truth_stays_out_of_the_ledger_and_round_trips(generated, tmp_path):
    ledger, truth = generated
    assert set(truth) == TRUTH_FILES
    truth_columns = set().union(*(frame.columns for frame in truth.values())) - {"customer_id", "invoice_id",
                                                                                 "currency", "month"}
    for name, table in ledger.tables().items():
        assert set(table.columns) <= set(SCHEMAS[name].columns), name
        assert not set(table.columns) & truth_columns, name

    out = write_synthetic(ledger, truth, tmp_path / "synthetic")
    assert sorted(path.name for path in (out / "truth").iterdir()) == sorted(f.split("/")[1] for f in TRUTH_FILES)
    assert not list(out.glob("*truth*.parquet"))
    read_back = read_ledger(out)
    pd.testing.assert_frame_equal(read_back.invoices, ledger.invoices)
    for relative, frame in truth.items():
        pd.testing.assert_frame_equal(pd.read_parquet(out / relative), frame)


def test_generate_command_writes_a_valid_ledger_with_truth(tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["generate", "--customers", "40", "--months", "6", "--seed", "2",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_ledger(out).source == "synthetic seed=2"
    assert (out / "truth" / "invoices.parquet").exists()
