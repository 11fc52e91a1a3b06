"""Cash forecast: expected cash receipts per period (week or day) over a horizon from `as_of`, with
10/50/90% intervals for the sum over all open invoices, per document currency and in base currency.

The input is the receipt-timing distribution of each open invoice, as a CDF at the period edges:
`cdf[i, j]` = P(invoice i paid within `edges[j]` days after `as_of`), `edges[0] = 0` and `cdf[:, 0] = 0`.
Period k covers days `edges[k-1] + 1 .. edges[k]` after `as_of`. A row may stay below 1 at the last
edge: that mass is paid after the horizon (or never) and is not forecast.

The intervals come from Monte Carlo: in each draw every invoice is paid in exactly one period (or after
the horizon), drawn from its own CDF by inverse-CDF sampling, and the amounts are summed per period.
The invoices of one customer are not independent: a customer who pays late tends to pay all its invoices
late. A Gaussian copula with one random effect per customer models that: in a draw, invoice i of customer
c uses u_i = Phi(sqrt(rho) z_c + sqrt(1 - rho) e_i), z_c and e_i standard normal, so rho = 0 gives
independent draws and rho = 1 one shared draw per customer. `fitted_customer_rho` chooses rho on past
data: the rho whose simulated spread of the book's receipts per period matches the spread of the actual
receipts around the expected ones. (Matching each customer's own receipts instead gave rho 0 out of
sample on the demo ledger, whose independent band still covered only 69% at its first origin: what the
independent band misses is mostly error shared across customers, which the copula stands in for.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import ndtr

from features.config import FeatureConfig
from ledger.errors import BadInput

HORIZON_WEEKS = 13
# The customer copula's rho when the receipt-timing model carries none fitted (`CASH_RHO_ATTRIBUTE`):
# independent draws. On the demo ledger's 6-origin backtest independent draws put 74% of weekly actuals
# in the 10-90% band (nominal 80%), one shared draw per customer 97% (far too wide); the fitted rho
# (benchmarks/bench_forecast_band.py) brings it near 80%.
DEFAULT_CUSTOMER_RHO = 0.0
# The fitted rho is stored on the fitted receipt-timing model under this name (set by the training
# pipeline after the fit, read by the run's forecast).
CASH_RHO_ATTRIBUTE = "cash_rho_"
# rho is chosen on this grid (interpolated between its points), with common random numbers across it.
RHO_GRID = np.linspace(0.0, 1.0, 11)
QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
# Rounding noise a model may leave in a CDF (a step down of 1e-15, a value of 1 + 1e-15) is accepted
# and removed; anything larger is a broken input.
CDF_TOLERANCE = 1e-9
# Draws are simulated in chunks of this many, the uniforms of a chunk drawn unit by unit
# (`rng.random((units, DRAWS_PER_CHUNK))`). Fixed, not sized from memory, so that a seed gives the same
# forecast on every machine; memory is then O(invoices x (periods + DRAWS_PER_CHUNK)).
DRAWS_PER_CHUNK = 16
ITEM_COLUMNS = ["currency", "open_amount", "open_amount_base", "customer_id"]

Freq = Literal["week", "day"]


class ForecastInputError(BadInput, ValueError):
    """A forecast the inputs cannot support (a horizon beyond the receipt-timing model's)."""


def customer_rho_of(timing_model) -> float:
    """The customer copula's rho fitted with a receipt-timing model (`DEFAULT_CUSTOMER_RHO` for a model
    trained before the rho was stored with it)."""
    return _checked_rho(getattr(timing_model, CASH_RHO_ATTRIBUTE, DEFAULT_CUSTOMER_RHO))


def forecast_items(items: pd.DataFrame) -> pd.DataFrame:
    """The open documents whose receipts are forecast: invoices with money still owed (a credit memo or an
    overpaid invoice brings no cash in)."""
    return items[(items["is_credit_memo"] == 0) & (items["open_amount_base"] > 0)]


def check_horizon(horizon_weeks: int, model_days: int) -> None:
    """Refuse a horizon beyond the days the receipt-timing model covers (it would forecast nothing there)."""
    if horizon_weeks * 7 > model_days:
        raise ForecastInputError(f"horizon of {horizon_weeks} weeks is beyond the receipt-timing model's "
                                 f"{model_days // 7} weeks")


def baseline_delays(config: FeatureConfig | None = None) -> dict[str, str | None]:
    """The forecast's baselines by name: the feature column of days late each adds to the due date (None:
    pays on the due date; the customer's average over its last paid invoices, as the features name it)."""
    config = config or FeatureConfig()
    return {"pays_on_due_date": None,
            "due_date_plus_customer_average": f"avg_days_late_last_{config.last_paid_invoices}"}


def period_edges(horizon_weeks: int = HORIZON_WEEKS, freq: Freq = "week") -> np.ndarray:
    """Day offsets from `as_of` of the period ends, starting at 0: [0, 7, ..., 91] or [0, 1, ..., 91]."""
    if freq not in ("week", "day"):
        raise ValueError(f"freq must be 'week' or 'day', got {freq!r}")
    if not isinstance(horizon_weeks, int | np.integer) or horizon_weeks < 1:
        raise ValueError(f"horizon_weeks must be a whole number >= 1, got {horizon_weeks!r}")
    step = 7 if freq == "week" else 1
    return np.arange(0, 7 * horizon_weeks + 1, step)


def period_table(as_of: pd.Timestamp, edges: np.ndarray) -> pd.DataFrame:
    """One row per period: its number (1..P) and first and last calendar day (both included)."""
    edges = _checked_edges(edges)
    as_of = pd.Timestamp(as_of).normalize()
    return pd.DataFrame({
        "period": np.arange(1, len(edges)),
        "period_start": as_of + pd.to_timedelta(edges[:-1] + 1, unit="D"),
        "period_end": as_of + pd.to_timedelta(edges[1:], unit="D"),
    })


def expected_receipts(cdf: np.ndarray, amounts: np.ndarray) -> np.ndarray:
    """Expected receipts per period, sum_i amount_i x P(i paid in the period): shape (P,) for amounts
    of shape (items,), (P, A) for (items, A)."""
    cdf = _checked_cdf(cdf)
    amounts = _checked_amounts(amounts, len(cdf))
    return np.diff(cdf, axis=1).T @ amounts


def simulate_receipts(cdf: np.ndarray, amounts: np.ndarray, groups: np.ndarray | None = None,
                      draws: int = 1000, seed: int = 0, shared: np.ndarray | None = None,
                      rho: float = 1.0) -> np.ndarray:
    """Simulated receipts per draw, group, period and amount column, shape (draws, G, P, A).

    `amounts` (items, A) are summed over the invoices paid in each period; `groups` are integer codes
    0..G-1 that split the sums (e.g. by currency; one group when None); invoices with the same `shared`
    label (e.g. customer) are tied by the copula with correlation `rho` (1: the same uniform in a draw,
    0: independent), independent draws when None. The same inputs and seed give the same result.
    """
    cdf = _checked_cdf(cdf)
    items, periods = cdf.shape[0], cdf.shape[1] - 1
    amounts = _checked_amounts(amounts, items)
    amounts = amounts[:, None] if amounts.ndim == 1 else amounts
    group_of_item, group_count = _checked_groups(groups, items)
    unit_of_item, units = _checked_shared(shared, items)
    if not isinstance(draws, int | np.integer) or draws < 1:
        raise ValueError(f"draws must be a whole number >= 1, got {draws!r}")
    rho = _checked_rho(rho)

    rng = np.random.default_rng(seed)
    table = _guide_table(cdf)
    # One slot after the last period collects the invoices paid after the horizon.
    totals = np.zeros((draws, group_count, periods + 1, amounts.shape[1]))
    for start in range(0, draws, DRAWS_PER_CHUNK):
        size = min(DRAWS_PER_CHUNK, draws - start)
        uniforms = _uniforms(rng, units, size, unit_of_item, rho)
        paid_in = _sampled_periods(cdf, table, uniforms)
        totals[start:start + size] = _summed_by_period(paid_in, amounts, group_of_item, group_count, periods)
    return totals[:, :, :periods]


def cash_forecast(as_of: pd.Timestamp, cdf: np.ndarray, edges: np.ndarray, items: pd.DataFrame,
                  base_currency: str, draws: int = 1000, seed: int = 0, shared_by_customer: bool = True,
                  baselines: Mapping[str, np.ndarray] | None = None, rho: float = 1.0) -> pd.DataFrame:
    """Receipts per period over the horizon: one row per (view, period), the converted all-currency total
    in base currency first, then each document currency; expected value, 10/50/90% quantiles of the
    simulated sum, the same for the cumulative sum, and one expected column per baseline CDF. A customer's
    invoices are tied by the copula with correlation `rho` when `shared_by_customer`."""
    sums = forecast_sums(cdf, edges, items, draws, seed, shared_by_customer, baselines, rho)
    return forecast_table(as_of, edges, sums, base_currency)


@dataclass(frozen=True)
class ForecastSums:
    """What a forecast adds up over documents, per view (the base-currency total first, then each document
    currency in `currencies` order) and period: the expected receipts (P, V), every draw's receipts
    (draws, V, P) and each baseline's expected receipts (P, V). The sums of two disjoint sets of documents
    add up (`added_sums`), so a forecast of many partitions is their sums added, then `forecast_table`."""

    currencies: tuple[str, ...]
    expected: np.ndarray
    draws: np.ndarray
    baselines: dict[str, np.ndarray]


def forecast_sums(cdf: np.ndarray, edges: np.ndarray, items: pd.DataFrame, draws: int = 1000, seed=0,
                  shared_by_customer: bool = True, baselines: Mapping[str, np.ndarray] | None = None,
                  rho: float = 1.0) -> ForecastSums:
    """The expected and simulated receipts of `items` per view and period (see `ForecastSums`); `seed` is
    anything `numpy.random.default_rng` takes (a partition passes `[seed, bucket]`); a customer's invoices
    are tied by the copula with correlation `rho` when `shared_by_customer` (a partition holds whole
    customers, so its draws are those of the whole book's)."""
    edges = _checked_edges(edges)
    _check_items(items, cdf, edges)
    baselines = dict(baselines or {})
    for name, baseline in baselines.items():
        if np.shape(baseline) != np.shape(cdf):
            raise ValueError(f"baseline {name!r} has shape {np.shape(baseline)}, expected the cdf's "
                             f"{np.shape(cdf)}")

    currencies, currency_of_item = np.unique(items["currency"].to_numpy(dtype=str), return_inverse=True)
    document = items["open_amount"].to_numpy(dtype=float)
    base = items["open_amount_base"].to_numpy(dtype=float)
    shared = items["customer_id"].to_numpy() if shared_by_customer else None
    simulated = simulate_receipts(cdf, np.column_stack([document, base]), currency_of_item, draws, seed,
                                  shared, rho)
    # Views: the base total (all currencies, base amounts), then each currency in its own amounts. All
    # come from the same draws, so the base total is the sum of what the currency views pay.
    base_total = simulated[:, :, :, 1].sum(axis=1)[:, None]
    view_draws = np.concatenate([base_total, simulated[:, :len(currencies), :, 0]], axis=1)
    view_amounts = np.column_stack([base, _amounts_by_group(document, currency_of_item, len(currencies))])
    return ForecastSums(tuple(str(currency) for currency in currencies), expected_receipts(cdf, view_amounts),
                        view_draws, {name: expected_receipts(baseline, view_amounts)
                                     for name, baseline in baselines.items()})


def added_sums(first: ForecastSums, second: ForecastSums) -> ForecastSums:
    """The sums of two disjoint sets of documents together (their currencies merged in sorted order)."""
    currencies = tuple(sorted(set(first.currencies) | set(second.currencies)))

    def widened(sums: ForecastSums, values: np.ndarray, axis: int) -> np.ndarray:
        shape = list(values.shape)
        shape[axis] = 1 + len(currencies)
        out = np.zeros(shape)
        columns = [0, *(1 + currencies.index(currency) for currency in sums.currencies)]
        index = [slice(None)] * len(shape)
        index[axis] = columns
        out[tuple(index)] = values
        return out

    def both(values_of, axis: int) -> np.ndarray:
        return widened(first, values_of(first), axis) + widened(second, values_of(second), axis)

    return ForecastSums(currencies, both(lambda sums: sums.expected, 1), both(lambda sums: sums.draws, 1),
                        {name: both(lambda sums, name=name: sums.baselines[name], 1) for name in first.baselines})


def forecast_table(as_of: pd.Timestamp, edges: np.ndarray, sums: ForecastSums, base_currency: str) -> pd.DataFrame:
    """The forecast's rows from its sums: per view and period, the expected receipts, the quantiles of the
    draws and of their running total, and the baselines."""
    periods = period_table(as_of, _checked_edges(edges))
    views = [(base_currency, True), *((currency, False) for currency in sums.currencies)]
    frames = [_view_frame(periods, currency, converted, sums.expected[:, v], sums.draws[:, v],
                          {f"baseline_{name}": values[:, v] for name, values in sums.baselines.items()})
              for v, (currency, converted) in enumerate(views)]
    return pd.concat(frames, ignore_index=True)


def _view_frame(periods: pd.DataFrame, currency: str, converted: bool, expected: np.ndarray,
                draws: np.ndarray, baselines: dict[str, np.ndarray]) -> pd.DataFrame:
    """The rows of one view: expected receipts, quantiles of its draws (draws, P) per period and of their
    running total, and the baselines' expected receipts."""
    # Quantiles of the simulated running total, not running totals of the per-period quantiles.
    running = np.cumsum(draws, axis=1)
    return pd.DataFrame({
        "currency": currency,
        "converted": converted,
        "period": periods["period"],
        "period_start": periods["period_start"],
        "period_end": periods["period_end"],
        "expected": expected,
        **{name: np.quantile(draws, level, axis=0) for name, level in QUANTILES.items()},
        **baselines,
        "expected_cumulative": np.cumsum(expected),
        **{f"{name}_cumulative": np.quantile(running, level, axis=0) for name, level in QUANTILES.items()},
    })


def _amounts_by_group(amounts: np.ndarray, group_of_item: np.ndarray, group_count: int) -> np.ndarray:
    """(items, G): each item's amount in the column of its group, zero elsewhere."""
    by_group = np.zeros((len(amounts), group_count))
    by_group[np.arange(len(amounts)), group_of_item] = amounts
    return by_group


def _uniforms(rng: np.random.Generator, units: int, size: int, unit_of_item: np.ndarray | None,
              rho: float = 1.0) -> np.ndarray:
    """Uniforms in (0, 1] per invoice and draw, shape (items, size); the invoices of a unit share theirs
    (rho = 1) or are tied by the Gaussian copula with correlation rho."""
    if unit_of_item is not None and rho < 1:
        return _copula_uniforms(rng, units, size, unit_of_item, rho)
    # 1 - [0, 1) excludes 0, which would fall at or below cdf[:, 0] = 0 and pick a period of probability 0.
    drawn = 1.0 - rng.random((units, size))
    return drawn if unit_of_item is None else drawn[unit_of_item]


def _copula_uniforms(rng: np.random.Generator, units: int, size: int, unit_of_item: np.ndarray,
                     rho: float) -> np.ndarray:
    """Phi(sqrt(rho) z_unit + sqrt(1 - rho) e_item) per invoice and draw, shape (items, size), in (0, 1]:
    the unit's normals are drawn first, then the invoices', so every rho uses the same normals."""
    common = rng.standard_normal((units, size))[unit_of_item]
    own = rng.standard_normal((len(unit_of_item), size))
    # Phi underflows to 0 only below -38 standard deviations; 0 would pick a period of probability 0.
    return np.maximum(ndtr(np.sqrt(rho) * common + np.sqrt(1.0 - rho) * own), np.finfo(float).tiny)


def fitted_customer_rho(cdf: np.ndarray, paid_period: np.ndarray, amounts: np.ndarray, groups: np.ndarray,
                        shared: np.ndarray, draws: int = 200, seed: int = 0) -> float:
    """The customer copula's rho that makes the simulated receipts as spread as the actual ones on past data.

    Each row is an invoice open at a past cutoff with its cdf from that cutoff, its actual 1-based period
    of payment (P + 1 or more, or inf: after the horizon) and amount; `groups` are integer codes 0..G-1 of
    the forecasts judged (the book at each past cutoff), `shared` the copula's units (customer at cutoff).
    The sum over groups and periods of (actual - expected receipts)^2 is what the forecast's band must
    cover, the model's errors included; its simulated counterpart, the sum of the variances of each
    group's receipts per period, grows with rho. rho is where the two meet on `RHO_GRID` (interpolated; 0
    or 1 when the actual spread is outside the grid's), with the same normals for every rho.
    """
    cdf = _checked_cdf(cdf)
    amounts = _checked_amounts(amounts, len(cdf))
    group_of_item, group_count = _checked_groups(groups, len(cdf))
    _checked_shared(shared, len(cdf))
    if amounts.ndim != 1:
        raise ValueError("amounts must be one amount per invoice")
    periods = cdf.shape[1] - 1
    paid_period = np.asarray(paid_period, dtype=float)
    if paid_period.shape != (len(cdf),) or np.isnan(paid_period).any() or (paid_period < 1).any():
        raise ValueError("paid_period must hold one period >= 1 (or inf) per invoice")
    if not len(cdf):
        return DEFAULT_CUSTOMER_RHO
    inside = paid_period <= periods
    slot = group_of_item[inside] * periods + paid_period[inside].astype(np.intp) - 1
    actual = np.bincount(slot, weights=amounts[inside], minlength=group_count * periods)
    expected = np.diff(cdf, axis=1) * amounts[:, None]
    expected = np.stack([np.bincount(group_of_item, weights=expected[:, k], minlength=group_count)
                         for k in range(periods)], axis=1).ravel()
    spread = np.sum((actual - expected) ** 2)
    simulated = np.array([simulate_receipts(cdf, amounts, group_of_item, draws, seed, shared, rho)
                          .var(axis=0, ddof=1).sum() for rho in RHO_GRID])
    # The simulated spread grows with rho up to Monte Carlo noise; np.interp needs it non-decreasing.
    return float(np.interp(spread, np.maximum.accumulate(simulated), RHO_GRID))


def _guide_table(cdf: np.ndarray) -> np.ndarray:
    """Per invoice, how many of cdf[i, 1:] lie below each level m / bins (m = 0..bins+1), with `bins` a
    power of two >= 4 x periods; shape (items, bins + 2)."""
    items, periods = cdf.shape[0], cdf.shape[1] - 1
    bins = 1 << int(np.ceil(np.log2(4 * max(periods, 1))))
    # bins is a power of two, so x * bins is exact and floor(x * bins) < m  <=>  x < m / bins.
    first_level_above = np.floor(cdf[:, 1:] * bins).astype(np.intp) + 1
    bounds = np.concatenate([np.zeros((items, 1), np.intp), first_level_above,
                             np.full((items, 1), bins + 2, np.intp)], axis=1)
    # Rows are non-decreasing, so the count is j on the levels from the j-th point's to the next one's.
    counts = np.broadcast_to(np.arange(periods + 1, dtype=np.min_scalar_type(periods)), (items, periods + 1))
    return np.repeat(counts.ravel(), np.diff(bounds, axis=1).ravel()).reshape(items, bins + 2)


def _sampled_periods(cdf: np.ndarray, table: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Per invoice and draw, the 0-based period of payment, #{j >= 1: cdf[i, j] < u} (P = after the
    horizon), shape (items, size)."""
    # Inverse-CDF sampling by indexed search (a guide table): the table gives the count at the levels
    # just below and above u; only where they differ (u fell in a cell holding a cdf point, < 1 in 4
    # draws as bins >= 4 x periods) is the count walked up along the cdf itself. A binary search per
    # query (np.searchsorted over all rows offset by 2 x row) gives the same result, but the whole
    # forecast gets 3-8x slower: its branches mispredict and its array is out of cache
    # (benchmarks/bench_forecast.py).
    items, size = uniforms.shape
    periods = cdf.shape[1] - 1
    bins = table.shape[1] - 2
    flat_table = table.ravel()
    cell = (uniforms * bins).astype(np.intp)
    cell += (np.arange(items) * (bins + 2))[:, None]
    count = flat_table[cell]
    cell += 1
    upper = flat_table[cell].ravel()
    flat_count, flat_uniforms, flat_cdf = count.ravel(), uniforms.ravel(), cdf.ravel()
    todo = np.flatnonzero(flat_count != upper)
    row_start = (todo // size) * (periods + 1)
    while todo.size:
        below = flat_cdf[row_start + flat_count[todo] + 1] < flat_uniforms[todo]
        todo, row_start = todo[below], row_start[below]
        flat_count[todo] += 1
        unsettled = flat_count[todo] < upper[todo]
        todo, row_start = todo[unsettled], row_start[unsettled]
    return count


def _summed_by_period(paid_in: np.ndarray, amounts: np.ndarray, group_of_item: np.ndarray, group_count: int,
                      periods: int) -> np.ndarray:
    """Amounts summed per draw, group and period (the last slot: after the horizon), shape
    (size, G, P + 1, A), from each invoice's period per draw (items, size)."""
    size = paid_in.shape[1]
    slot = paid_in + (np.arange(size)[None, :] * group_count + group_of_item[:, None]) * (periods + 1)
    slots = size * group_count * (periods + 1)
    sums = [np.bincount(slot.ravel(), weights=np.repeat(amounts[:, a], size), minlength=slots)
            for a in range(amounts.shape[1])]
    return np.stack(sums, axis=-1).reshape(size, group_count, periods + 1, amounts.shape[1])


def _checked_rho(rho: float) -> float:
    """rho as a float, after checking it is a correlation in [0, 1]."""
    if not isinstance(rho, int | float | np.integer | np.floating) or not 0 <= rho <= 1:
        raise ValueError(f"rho must be a number in [0, 1], got {rho!r}")
    return float(rho)


def _checked_edges(edges: np.ndarray) -> np.ndarray:
    """The edges as whole days, after checking they start at 0 and strictly increase."""
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 1 or len(edges) < 2:
        raise ValueError(f"edges must be a 1-D array of at least 2 day offsets, got shape {edges.shape}")
    if edges[0] != 0 or not np.all(np.diff(edges) > 0) or not np.all(edges == np.round(edges)):
        raise ValueError("edges must be whole days starting at 0 and strictly increasing, e.g. [0, 7, 14]")
    return edges.astype(np.int64)


def _checked_cdf(cdf: np.ndarray) -> np.ndarray:
    """A clean copy of the cdf after checking its shape and values (see CDF_TOLERANCE)."""
    cdf = np.asarray(cdf, dtype=float)
    if cdf.ndim != 2 or cdf.shape[1] < 2:
        raise ValueError(f"cdf must be 2-D (invoices, edges) with at least 2 edges, got shape {cdf.shape}")
    if cdf.size == 0:
        return cdf.copy()
    if not np.isfinite(cdf).all():
        raise ValueError("cdf holds NaN or infinite values")
    if cdf.min() < -CDF_TOLERANCE or cdf.max() > 1 + CDF_TOLERANCE:
        raise ValueError(f"cdf values must lie in [0, 1], found {cdf.min():g} .. {cdf.max():g}")
    if np.abs(cdf[:, 0]).max() > CDF_TOLERANCE:
        raise ValueError("cdf[:, 0] must be 0: nothing is paid within 0 days of as_of")
    decreasing = np.flatnonzero((np.diff(cdf, axis=1) < -CDF_TOLERANCE).any(axis=1))
    if decreasing.size:
        raise ValueError(f"cdf rows must be non-decreasing; row {decreasing[0]} is not "
                         f"({decreasing.size} rows in all)")
    cleaned = np.clip(np.maximum.accumulate(cdf, axis=1), 0.0, 1.0)
    cleaned[:, 0] = 0.0
    return cleaned


def _checked_amounts(amounts: np.ndarray, items: int) -> np.ndarray:
    """The amounts as floats, after checking there is one finite row per invoice."""
    amounts = np.asarray(amounts, dtype=float)
    if amounts.ndim not in (1, 2) or amounts.shape[0] != items:
        raise ValueError(f"amounts must have one row per invoice ({items}), got shape {amounts.shape}")
    if not np.isfinite(amounts).all():
        raise ValueError("amounts hold NaN or infinite values")
    return amounts


def _checked_groups(groups: np.ndarray | None, items: int) -> tuple[np.ndarray, int]:
    """Group code per invoice and the number of groups (all in group 0 when None)."""
    if groups is None:
        return np.zeros(items, np.intp), 1
    groups = np.asarray(groups)
    if groups.shape != (items,) or (items and (groups.dtype.kind not in "iu" or groups.min() < 0)):
        raise ValueError(f"groups must be {items} integer codes >= 0, got shape {groups.shape} "
                         f"of {groups.dtype}")
    return groups.astype(np.intp), (int(groups.max()) + 1 if items else 1)


def _checked_shared(shared: np.ndarray | None, items: int) -> tuple[np.ndarray | None, int]:
    """Unit code per invoice for the shared uniforms and the number of units (one per invoice when None)."""
    if shared is None:
        return None, items
    shared = np.asarray(shared)
    if shared.shape != (items,):
        raise ValueError(f"shared must hold one label per invoice ({items}), got shape {shared.shape}")
    if pd.isna(shared).any():
        raise ValueError("shared labels (e.g. customer_id) must not be missing")
    labels, unit_of_item = np.unique(shared, return_inverse=True)
    return unit_of_item, len(labels)


def _check_items(items: pd.DataFrame, cdf: np.ndarray, edges: np.ndarray) -> None:
    """Raise ValueError unless the items have the needed columns and match the cdf and edges."""
    missing = [column for column in ITEM_COLUMNS if column not in items.columns]
    if missing:
        raise ValueError(f"items lack the columns {missing}")
    if np.shape(cdf) != (len(items), len(edges)):
        raise ValueError(f"cdf has shape {np.shape(cdf)}, expected (items, edges) = "
                         f"{(len(items), len(edges))}")
    if items["currency"].isna().any() or items["customer_id"].isna().any():
        raise ValueError("items must have a currency and a customer_id on every row")
