"""Cash forecast against tiny hand-worked examples and a brute-force twin of the sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr

from features.config import FeatureConfig
from ledger.errors import BadInput
from rules.forecast import (
    DEFAULT_CUSTOMER_RHO,
    DRAWS_PER_CHUNK,
    ForecastInputError,
    baseline_delays,
    cash_forecast,
    check_horizon,
    customer_rho_of,
    expected_receipts,
    fitted_customer_rho,
    forecast_items,
    forecast_sums,
    period_edges,
    period_table,
    simulate_receipts,
)

AS_OF = pd.Timestamp("2024-03-01")
WEEKS_3 = np.array([0, 7, 14, 21])
WEEKS_2 = np.array([0, 7, 14])
# Three invoices over three weeks: A pays in week 1 or 3, B in week 2 or 3 or after the horizon (25%),
# C in week 1 or 2 or after the horizon (40%).
CDF_3 = np.array([[0, 0.5, 0.5, 1.0], [0, 0.0, 0.25, 0.75], [0, 0.2, 0.6, 0.6]])
AMOUNTS_3 = np.array([100.0, 200.0, 50.0])


def items_frame(currency: list[str], amount: list[float], base: list[float] | None = None,
                customer: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame({
        "currency": currency,
        "open_amount": amount,
        "open_amount_base": amount if base is None else base,
        "customer_id": customer or [f"C{i}" for i in range(len(currency))],
    })


def rows(forecast: pd.DataFrame, currency: str, converted: bool) -> pd.DataFrame:
    view = forecast[(forecast["currency"] == currency) & (forecast["converted"] == converted)]
    return view.set_index("period")


def twin_receipts(cdf, amounts, groups, draws, seed, shared) -> np.ndarray:
    """The simulation the slow, obvious way with the same uniforms: per chunk of DRAWS_PER_CHUNK draws,
    `1 - rng.random((units, chunk))`, units = sorted shared labels (or invoices); then one searchsorted
    per invoice and draw."""
    items, periods = cdf.shape[0], cdf.shape[1] - 1
    units, unit_of_item = np.unique(shared if shared is not None else np.arange(items), return_inverse=True)
    rng = np.random.default_rng(seed)
    totals = np.zeros((draws, groups.max() + 1, periods, amounts.shape[1]))
    for start in range(0, draws, DRAWS_PER_CHUNK):
        size = min(DRAWS_PER_CHUNK, draws - start)
        uniforms = 1 - rng.random((len(units), size))
        for draw in range(size):
            for item in range(items):
                period = np.searchsorted(cdf[item, 1:], uniforms[unit_of_item[item], draw])
                if period < periods:
                    totals[start + draw, groups[item], period] += amounts[item]
    return totals


def test_period_edges_by_freq():
    assert period_edges(13, "week").tolist() == [0, 7, 14, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 91]
    assert period_edges(13, "day").tolist() == list(range(92))
    assert period_edges(1, "week").tolist() == [0, 7]


def test_period_table_weeks_by_hand():
    table = period_table(pd.Timestamp("2024-03-01 15:30"), period_edges(13, "week"))
    assert table["period"].tolist() == list(range(1, 14))
    # Week 1 is the 7 days after as_of; week 13 ends 91 days after it.
    assert table.loc[0, ["period_start", "period_end"]].tolist() == [pd.Timestamp("2024-03-02"),
                                                                      pd.Timestamp("2024-03-08")]
    assert table.loc[1, "period_start"] == pd.Timestamp("2024-03-09")
    assert table.loc[12, "period_end"] == pd.Timestamp("2024-05-31")


def test_period_table_days_across_leap_day():
    table = period_table(pd.Timestamp("2024-02-27"), period_edges(13, "day"))
    assert len(table) == 91
    assert (table["period_start"] == table["period_end"]).all()
    assert table["period_end"].head(3).tolist() == [pd.Timestamp("2024-02-28"), pd.Timestamp("2024-02-29"),
                                                    pd.Timestamp("2024-03-01")]
    # 2 days to Feb 29, 31 in March, 30 in April: day 63 is Apr 30, day 91 is May 28.
    assert table.loc[62, "period_end"] == pd.Timestamp("2024-04-30")
    assert table.loc[90, "period_end"] == pd.Timestamp("2024-05-28")


def test_expected_receipts_by_hand():
    # Week 1: 100 x .5 + 50 x .2 = 60; week 2: 200 x .25 + 50 x .4 = 70; week 3: 100 x .5 + 200 x .5 = 150.
    np.testing.assert_allclose(expected_receipts(CDF_3, AMOUNTS_3), [60, 70, 150])
    # Several amount columns at once (here document and twice as much in base).
    both = expected_receipts(CDF_3, np.column_stack([AMOUNTS_3, 2 * AMOUNTS_3]))
    np.testing.assert_allclose(both, [[60, 120], [70, 140], [150, 300]])


def test_mass_beyond_the_horizon_is_not_forecast():
    # 280 of 350 is paid inside the horizon: B's last 25% (50) and C's last 40% (20) are not forecast.
    assert expected_receipts(CDF_3, AMOUNTS_3).sum() == pytest.approx(280)
    simulated = simulate_receipts(CDF_3, AMOUNTS_3, draws=500)[:, 0, :, 0]
    assert simulated.sum(axis=1).max() <= 350
    assert (simulated.sum(axis=1) < 350).any()
    never = np.zeros((1, 4))
    forecast = cash_forecast(AS_OF, never, WEEKS_3, items_frame(["EUR"], [500.0]), "EUR")
    assert (forecast[["expected", "p10", "p50", "p90", "p90_cumulative"]] == 0).all(axis=None)


def test_certain_invoice_is_forecast_exactly():
    cdf = np.array([[0, 0, 1, 1]])  # paid in week 2 for sure
    forecast = cash_forecast(AS_OF, cdf, WEEKS_3, items_frame(["EUR"], [500.0]), "EUR", draws=200)
    for converted in (True, False):
        view = rows(forecast, "EUR", converted)
        for column in ("expected", "p10", "p50", "p90"):
            assert view[column].tolist() == [0, 500, 0], column
        assert view["p10_cumulative"].tolist() == [0, 500, 500]


def test_simulated_mean_converges_to_the_expected_value():
    draws = 4000
    simulated = simulate_receipts(CDF_3, AMOUNTS_3, draws=draws)[:, 0, :, 0]
    paid_in = np.diff(CDF_3, axis=1)
    # Independent invoices: a week's receipts have variance sum_i a_i^2 p_ik (1 - p_ik) (2900, 8100 and
    # 12500 here). Allow 5 standard errors of the mean of `draws` draws: a correct sampler stays inside
    # with probability > 0.999999 for any seed, and a sampler off by one period is 10x further out.
    standard_error = np.sqrt((AMOUNTS_3[:, None] ** 2 * paid_in * (1 - paid_in)).sum(axis=0) / draws)
    np.testing.assert_allclose(standard_error ** 2 * draws, [2900, 8100, 12500])
    assert (np.abs(simulated.mean(axis=0) - [60, 70, 150]) <= 5 * standard_error).all()


def random_cdf(items: int, edges: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cdf = np.sort(rng.random((items, len(edges))), axis=1) * rng.uniform(0.5, 1, (items, 1))
    cdf[:, 0] = 0
    return cdf


def test_sampler_matches_a_brute_force_twin():
    rng = np.random.default_rng(7)
    edges = period_edges(2, "week")
    cdf = random_cdf(24, edges, rng)
    cdf[0] = [0, 0, 0]  # never paid inside the horizon
    cdf[1] = [0, 1, 1]  # certain in week 1
    cdf[2] = [0, 0.3, 0.3]  # a period of probability 0
    # Rows whose two points share one cell of the sampler's lookup table (cells of width 1/8 for 2
    # periods), so a draw landing there is settled by comparing with the cdf itself.
    cdf[3:13] = (np.arange(3, 13)[:, None] + [[0, 0.3, 0.6]]) / 16
    cdf[3:13, 0] = 0
    amounts = np.column_stack([rng.uniform(1, 100, 24), rng.uniform(1, 100, 24)])
    groups = np.arange(24)  # one group per invoice, to see each invoice's payments
    shared = rng.choice(["A", "B", "C", "D", "E"], 24)
    for shared_labels in (None, shared):
        fast = simulate_receipts(cdf, amounts, groups, draws=150, seed=3, shared=shared_labels)
        np.testing.assert_allclose(fast, twin_receipts(cdf, amounts, groups, 150, 3, shared_labels))
        # The data did reach that comparison: some draw fell between the two points of such a row.
        assert (fast[:, 3:13, 1] > 0).any()
    assert (fast[:, 0] == 0).all() and (fast[:, 1, 0] == amounts[1]).all() and (fast[:, 2, 1] == 0).all()


def test_sampler_matches_the_twin_on_daily_periods():
    rng = np.random.default_rng(8)
    edges = period_edges(13, "day")
    cdf = random_cdf(6, edges, rng)
    cdf[0, 40:] = cdf[0, 40]  # flat tail: mass after the horizon
    amounts = rng.uniform(1, 100, (6, 1))
    fast = simulate_receipts(cdf, amounts, draws=40, seed=1)
    np.testing.assert_allclose(fast, twin_receipts(cdf, amounts, np.zeros(6, int), 40, 1, None))


def test_groups_split_the_same_draws():
    rng = np.random.default_rng(9)
    cdf = random_cdf(40, WEEKS_3, rng)
    amounts = rng.uniform(1, 100, (40, 1))
    groups = rng.integers(0, 4, 40)
    split = simulate_receipts(cdf, amounts, groups, draws=100, seed=2)
    whole = simulate_receipts(cdf, amounts, draws=100, seed=2)
    assert split.shape == (100, 4, 3, 1)
    np.testing.assert_allclose(split.sum(axis=1), whole[:, 0])


def test_base_total_is_the_sum_of_the_base_amounts_paid():
    # EUR 100 pays in week 1 or 2 (50/50); USD 110 (100 in base) pays in week 1 for sure.
    cdf = np.array([[0, 0.5, 1.0], [0, 1.0, 1.0]])
    items = items_frame(["EUR", "USD"], [100.0, 110.0], [100.0, 100.0])
    forecast = cash_forecast(AS_OF, cdf, WEEKS_2, items, "EUR")
    total, eur, usd = rows(forecast, "EUR", True), rows(forecast, "EUR", False), rows(forecast, "USD", False)
    assert total["expected"].tolist() == [150, 50]
    # Week 1 in base: 100 (USD) plus 0 or 100 (EUR); week 2: the EUR invoice when it did not pay in week 1.
    assert total[["p10", "p90"]].to_numpy().tolist() == [[100, 200], [0, 100]]
    assert eur[["p10", "p90"]].to_numpy().tolist() == [[0, 100], [0, 100]]
    assert usd[["p10", "p50", "p90"]].to_numpy().tolist() == [[110, 110, 110], [0, 0, 0]]
    # Everything is paid by week 2 in every draw: the quantiles of the running total are all 200, not the
    # running total of the weekly quantiles (100 + 0 for p10).
    assert total.loc[2, ["p10_cumulative", "p50_cumulative", "p90_cumulative"]].tolist() == [200, 200, 200]
    assert total["expected_cumulative"].tolist() == [150, 200]


def test_quantiles_are_ordered():
    rng = np.random.default_rng(10)
    edges = period_edges(4, "week")
    items = items_frame(list(rng.choice(["EUR", "USD"], 60)), list(rng.uniform(1, 1000, 60)),
                        customer=list(rng.choice(["A", "B", "C"], 60)))
    forecast = cash_forecast(AS_OF, random_cdf(60, edges, rng), edges, items, "EUR", draws=300)
    for suffix in ("", "_cumulative"):
        assert (forecast[f"p10{suffix}"] <= forecast[f"p50{suffix}"]).all()
        assert (forecast[f"p50{suffix}"] <= forecast[f"p90{suffix}"]).all()
    total = rows(forecast, "EUR", True)
    assert total["p90_cumulative"].is_monotonic_increasing
    assert total["p90_cumulative"].iloc[-1] <= items["open_amount_base"].sum()


def test_shared_draws_widen_the_interval():
    # One customer, 20 invoices of 100, each paid in week 1 or week 2 (50/50).
    cdf = np.tile([0, 0.5, 1.0], (20, 1))
    items = items_frame(["EUR"] * 20, [100.0] * 20, customer=["A"] * 20)
    shared = rows(cash_forecast(AS_OF, cdf, WEEKS_2, items, "EUR", shared_by_customer=True), "EUR", True)
    alone = rows(cash_forecast(AS_OF, cdf, WEEKS_2, items, "EUR", shared_by_customer=False), "EUR", True)
    # Shared: the customer pays all 20 in week 1 or all in week 2. Independent: 100 x Binomial(20, 0.5),
    # whose 10% and 90% quantiles are 700 and 1300.
    assert shared.loc[1, ["p10", "p90"]].tolist() == [0, 2000]
    assert 600 <= alone.loc[1, "p10"] <= 800
    assert 1200 <= alone.loc[1, "p90"] <= 1400
    assert shared["expected"].tolist() == alone["expected"].tolist() == [1000, 1000]


def test_same_seed_same_forecast():
    rng = np.random.default_rng(11)
    items = items_frame(["EUR"] * 30, list(rng.uniform(1, 1000, 30)))
    cdf = random_cdf(30, WEEKS_3, rng)
    first = cash_forecast(AS_OF, cdf, WEEKS_3, items, "EUR", seed=5)
    pd.testing.assert_frame_equal(first, cash_forecast(AS_OF, cdf, WEEKS_3, items, "EUR", seed=5))
    other = cash_forecast(AS_OF, cdf, WEEKS_3, items, "EUR", seed=6)
    assert not np.allclose(first[["p10", "p90"]], other[["p10", "p90"]])
    np.testing.assert_allclose(first["expected"], other["expected"])


def test_empty_input_gives_the_period_table_with_zeros():
    edges = period_edges(13, "week")
    empty = items_frame([], [])
    forecast = cash_forecast(AS_OF, np.zeros((0, 14)), edges, empty, "EUR",
                             baselines={"due_date": np.zeros((0, 14))})
    assert len(forecast) == 13
    assert (forecast["currency"] == "EUR").all() and forecast["converted"].all()
    dates = forecast[["period", "period_start", "period_end"]]
    pd.testing.assert_frame_equal(dates, period_table(AS_OF, edges))
    numbers = forecast.drop(columns=["currency", "converted", "period", "period_start", "period_end"])
    assert (numbers == 0).all(axis=None)
    assert "baseline_due_date" in numbers


def test_sort_order_and_baselines():
    items = items_frame(["USD", "EUR", "CHF"], [10.0, 20.0, 30.0], [9.0, 20.0, 31.0])
    cdf = np.tile([0, 0.5, 1.0], (3, 1))
    on_due_date = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]])  # week 1, week 2, after the horizon
    forecast = cash_forecast(AS_OF, cdf, WEEKS_2, items, "EUR", baselines={"due": on_due_date})
    views = forecast[["currency", "converted"]].drop_duplicates().to_records(index=False).tolist()
    assert views == [("EUR", True), ("CHF", False), ("EUR", False), ("USD", False)]
    assert forecast["period"].tolist() == [1, 2] * 4
    assert rows(forecast, "EUR", True)["baseline_due"].tolist() == [9, 20]
    assert rows(forecast, "USD", False)["baseline_due"].tolist() == [10, 0]
    assert rows(forecast, "CHF", False)["baseline_due"].tolist() == [0, 0]
    assert forecast["converted"].dtype == bool


def test_rounding_noise_in_the_cdf_is_accepted():
    noisy = np.array([[0, 0.5 + 1e-15, 0.5, 1 + 1e-15]])
    np.testing.assert_allclose(expected_receipts(noisy, [100.0]), [50, 0, 50])
    simulated = simulate_receipts(noisy, [100.0], draws=50)
    assert ((simulated >= 0) & (simulated <= 100)).all()


CDF_1 = np.array([[0, 0.5, 1.0]])
ONE_ITEM = items_frame(["EUR"], [100.0])


@pytest.mark.parametrize(("call", "message"), [
    (lambda: period_edges(13, "month"), "freq must be 'week' or 'day'"),
    (lambda: period_edges(0, "week"), "horizon_weeks must be"),
    (lambda: period_table(AS_OF, [1, 7]), "edges must be whole days starting at 0"),
    (lambda: period_table(AS_OF, [0, 7.5]), "edges must be whole days"),
    (lambda: period_table(AS_OF, [0, 7, 7]), "strictly increasing"),
    (lambda: cash_forecast(AS_OF, CDF_1, WEEKS_2, ONE_ITEM, "EUR", draws=0), "draws must be"),
    (lambda: cash_forecast(AS_OF, np.tile(CDF_1, (2, 1)), WEEKS_2, ONE_ITEM, "EUR"), "cdf has shape"),
    (lambda: cash_forecast(AS_OF, CDF_1, WEEKS_3, ONE_ITEM, "EUR"), "cdf has shape"),
    (lambda: cash_forecast(AS_OF, CDF_1, WEEKS_2, ONE_ITEM.drop(columns="customer_id"), "EUR"),
     "lack the columns"),
    (lambda: cash_forecast(AS_OF, CDF_1, WEEKS_2, ONE_ITEM, "EUR", baselines={"due": np.zeros((1, 2))}),
     "baseline 'due' has shape"),
    (lambda: expected_receipts([[0, 0.6, 0.5], [0, 0.5, 0.4]], [1, 1]), "non-decreasing; row 0"),
    (lambda: expected_receipts([[0, 0.5, 1.2]], [1]), r"must lie in \[0, 1\]"),
    (lambda: expected_receipts([[0, np.nan, 1]], [1]), "NaN"),
    (lambda: expected_receipts([[0.1, 0.5, 1]], [1]), r"cdf\[:, 0\] must be 0"),
    (lambda: expected_receipts([0, 0.5, 1], [1]), "cdf must be 2-D"),
    (lambda: expected_receipts(CDF_1, [1, 2]), "amounts must have one row per invoice"),
    (lambda: expected_receipts(CDF_1, [np.inf]), "amounts hold NaN"),
    (lambda: simulate_receipts(CDF_1, [1], groups=[-1]), "groups must be"),
    (lambda: simulate_receipts(CDF_1, [1], shared=["A", "B"]), "shared must hold one label"),
    (lambda: simulate_receipts(CDF_1, [1], shared=["A"], rho=1.5), r"rho must be a number in \[0, 1\]"),
    (lambda: fitted_customer_rho(CDF_1, [0], [1.0], [0], ["A"]), "paid_period must hold"),
])
def test_bad_input_raises_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_only_invoices_with_money_owed_are_forecast():
    items = pd.DataFrame({"invoice_id": ["I1", "CM1", "I2", "I3"], "is_credit_memo": [0, 1, 0, 0],
                          "open_amount_base": [100.0, -40.0, 0.0, 0.01]})
    # A credit memo and a settled (or overpaid) invoice bring no cash in.
    assert forecast_items(items)["invoice_id"].tolist() == ["I1", "I3"]


def test_a_horizon_beyond_the_timing_model_is_bad_input():
    check_horizon(13, 13 * 7)  # 91 days: exactly what the model covers
    with pytest.raises(ForecastInputError, match="beyond the receipt-timing model's 13 weeks"):
        check_horizon(14, 13 * 7)
    assert issubclass(ForecastInputError, BadInput) and issubclass(ForecastInputError, ValueError)


def test_the_customer_average_baseline_uses_the_feature_window_of_paid_invoices():
    assert baseline_delays() == {"pays_on_due_date": None, "due_date_plus_customer_average": "avg_days_late_last_10"}
    assert baseline_delays(FeatureConfig(last_paid_invoices=5))["due_date_plus_customer_average"] == "avg_days_late_last_5"


def twin_copula_receipts(cdf, amounts, draws, seed, shared, rho) -> np.ndarray:
    """The copula's simulation the obvious way: per chunk of DRAWS_PER_CHUNK draws, one normal per customer
    then one per invoice, u = Phi(sqrt(rho) z_customer + sqrt(1 - rho) e_invoice), one searchsorted each."""
    items, periods = cdf.shape[0], cdf.shape[1] - 1
    units, unit_of_item = np.unique(shared, return_inverse=True)
    rng = np.random.default_rng(seed)
    totals = np.zeros((draws, periods))
    for start in range(0, draws, DRAWS_PER_CHUNK):
        size = min(DRAWS_PER_CHUNK, draws - start)
        common, own = rng.standard_normal((len(units), size)), rng.standard_normal((items, size))
        for draw in range(size):
            for item in range(items):
                u = ndtr(np.sqrt(rho) * common[unit_of_item[item], draw] + np.sqrt(1 - rho) * own[item, draw])
                period = np.searchsorted(cdf[item, 1:], u)
                if period < periods:
                    totals[start + draw, period] += amounts[item]
    return totals


def test_copula_sampler_matches_a_brute_force_twin():
    rng = np.random.default_rng(12)
    cdf = random_cdf(15, WEEKS_3, rng)
    amounts = rng.uniform(1, 100, 15)
    shared = rng.choice(["A", "B", "C"], 15)
    fast = simulate_receipts(cdf, amounts, draws=40, seed=4, shared=shared, rho=0.4)[:, 0, :, 0]
    np.testing.assert_allclose(fast, twin_copula_receipts(cdf, amounts, 40, 4, shared, 0.4))


def test_customer_correlation_widens_the_band_between_independent_and_shared():
    # One customer, 20 invoices of 100, each paid in week 1 or week 2 (50/50): 20 x 100 x Binomial-like.
    cdf = np.tile([0, 0.5, 1.0], (20, 1))
    customer = np.array(["A"] * 20)

    def week_1(rho):
        return simulate_receipts(cdf, np.full(20, 100.0), draws=4000, seed=1, shared=customer, rho=rho)[:, 0, 0, 0]

    spreads = [week_1(rho).std() for rho in (0.0, 0.3, 0.7, 1.0)]
    # Independent: sd 100 x sqrt(20 x 0.25) = 224; shared: all or nothing, sd 1000; in between, wider with rho.
    assert spreads[0] == pytest.approx(224, rel=0.05) and spreads[-1] == pytest.approx(1000, rel=0.05)
    assert spreads == sorted(spreads) and spreads[1] > 1.2 * spreads[0] and spreads[2] < 0.95 * spreads[3]
    # Every rho keeps each invoice's own distribution: the mean stays 20 x 100 x 0.5.
    assert all(week_1(rho).mean() == pytest.approx(1000, rel=0.03) for rho in (0.0, 0.3, 0.7))


def test_the_forecast_ties_a_customers_invoices_with_its_rho():
    cdf = np.tile([0, 0.5, 1.0], (20, 1))
    items = items_frame(["EUR"] * 20, [100.0] * 20, customer=["A"] * 20)

    def width(rho):
        sums = forecast_sums(cdf, WEEKS_2, items, draws=2000, seed=3, rho=rho)
        return np.subtract(*np.quantile(sums.draws[:, 0, 0], [0.9, 0.1]))

    assert width(0.0) < width(0.5) < width(1.0) == 2000


def copula_history(rho: float, books: int = 40, seed: int = 0):
    """Past forecasts drawn by the copula itself: 40 books (cutoffs) of 25 customers with 1-8 invoices over
    4 weeks, each with its own cdf; returns cdf, actual 1-based paid period (inf after the horizon),
    amounts, book and customer codes."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, books * 25)
    customer = np.repeat(np.arange(books * 25), sizes)
    book = customer // 25
    cdf = random_cdf(len(customer), period_edges(4, "week"), rng)
    amounts = rng.uniform(10, 1000, len(customer))
    # One draw; each invoice in its own column of the sums, so its paid period can be read off.
    paid = simulate_receipts(cdf, np.ones(len(customer)), np.arange(len(customer)), draws=1, seed=seed + 1,
                             shared=customer, rho=rho)[0, :, :, 0]
    period = np.where(paid.any(axis=1), paid.argmax(axis=1) + 1.0, np.inf)
    return cdf, period, amounts, book, customer


@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0])
def test_fitted_rho_recovers_the_rho_that_drew_the_history(rho):
    estimates = [fitted_customer_rho(*copula_history(rho, seed=seed)) for seed in range(3)]
    assert np.mean(estimates) == pytest.approx(rho, abs=0.2)


def test_customer_rho_of_a_model_is_its_fitted_rho_or_the_default():
    class Model:
        pass

    model = Model()
    assert customer_rho_of(model) == DEFAULT_CUSTOMER_RHO == 0.0
    model.cash_rho_ = 0.35
    assert customer_rho_of(model) == 0.35
