"""A synthetic B2B receivables ledger with its ground truth (issue 3, point 5; DESIGN.md §3, §5).

The generator draws a customer population, a latent monthly risk path per customer, and from those
every invoice, payment, credit memo, dispute, promise, dunning notice, contact and write-off, all with
vectorised numpy (loops run over months, currencies, segments or dunning levels, never over rows).
Each part draws from its own named random stream, so one seed fixes the whole ledger and changing one
parameter does not reshuffle unrelated parts.

What the generator knows and a model must not see is returned as separate truth tables, written to
`truth/` next to the ledger and never into the ledger tables:
- `customers`: profile (steady, late_payer, deteriorating, recovering), base risk, deterioration,
  stop and recovery dates (NaT when none; a date after the history is the generator's plan);
- `risk_path`: each customer's latent P(late) of a typical invoice, month by month;
- `invoices`: each invoice's true `p_late` (late = paid more than `late_grace_days` after due) as the
  draw used it, the draw `late`, the drawn `days_late` and `pay_date` (also past the end of the
  history, where the ledger shows the invoice open), `never_paid`, `disputed`. A stopped customer's
  invoices due after the stop have `p_late` 1: the stop decided them;
- `fx_rates`: the monthly rate path used for `amount_base`.
P(late) is the customer's latent risk (readable from its payment history) plus the invoice's
relative size, dispute, month-end issue and season, plus noise nobody can observe.

The history starts empty (no opening balances) and ends with what is known on its last day: later
payments, resolutions and write-offs are left out, so recent invoices are open (censored).

Dates are handled as int64 day numbers (days since 1970-01-01) and become `datetime64[ns]` only when
the tables are built; `NEVER` marks an event that does not happen at all.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ledger.currencies import ISO_4217
from ledger.remittance import with_remittance
from ledger.store import Ledger, write_ledger

DEFAULT_START = pd.Timestamp("2022-01-01")
NEVER = 1 << 40  # a day number after any real date: the event does not happen
NS_PER_DAY = 86_400_000_000_000
DAYS_PER_MONTH = 30.44

PROFILES = ("steady", "late_payer", "deteriorating", "recovering")
STEADY, LATE_PAYER, DETERIORATING, RECOVERING = range(4)
PAYMENT_RUNS = ("weekly", "month_end", "ad_hoc")
WEEKLY, MONTH_END, AD_HOC = range(3)

DISPUTE_REASONS = ("pricing", "quantity", "quality", "delivery", "duplicate billing", "missing PO")
LEGAL_FORMS = {"DE": "GmbH", "AT": "GmbH", "CH": "AG", "FR": "SAS", "BE": "SA", "NL": "B.V.", "IT": "S.p.A.",
               "ES": "S.L.", "US": "Inc.", "GB": "Ltd", "SE": "AB", "PL": "Sp. z o.o."}
NAME_HEADS = ("Nord", "Alpen", "Blue", "Delta", "Eagle", "Fern", "Granite", "Helio", "Iron", "Juniper", "Kraft",
              "Lumen", "Meridian", "Nova", "Orion", "Pioneer", "Quartz", "River", "Summit", "Terra", "Unity",
              "Vertex", "West", "Zenith")
NAME_TAILS = ("wind", "tech", "works", "line", "point", "field", "stone", "logic", "bridge", "port", "mark",
              "gate", "forge", "trade", "med", "food", "build", "chem", "soft", "motion")
ROUTINE_CONTACTS = (("email", "statement sent"), ("portal", "remittance advice requested"),
                    ("meeting", "account review"), ("letter", "balance confirmation sent"),
                    ("other", "master data updated"))
CALL_OUTCOMES = ("no answer", "left voicemail", "spoke to accounts payable")
# E-mail contacts (issue 22): how many a customer has (none for about one in ten), the role of its first and
# second, and the language of the countries that read German (everyone else gets English).
EMAIL_CONTACT_COUNTS = (0.1, 0.5, 0.4)
EMAIL_FIRST_ROLES = ("billing", "accounts_payable")
EMAIL_SECOND_ROLES = ("owner", "accounts_payable", "other")
GERMAN_COUNTRIES = ("DE", "AT", "CH")
PERSON_NAMES = ("Anna Berg", "Ben Carter", "Clara Dietz", "David Evans", "Eva Fischer", "Felix Gruber", "Grace Hill",
                "Hanna Iversen", "Ivan Jansen", "Julia Keller", "Lukas Lang", "Maria Novak", "Noah Olsen", "Sofia Perez")


# --------------------------------------------------------------------------------------------------
# Configuration


class SegmentSpec(BaseModel):
    """How the customers of one size band buy and pay."""

    model_config = ConfigDict(extra="forbid")

    share: float = Field(gt=0, description="Relative share of customers in this segment.")
    invoices_per_month: float = Field(gt=0, description="Mean invoices per customer and month.")
    median_amount: float = Field(gt=0, description="Median of the customers' typical invoice amount, in base "
                                                   "currency (converted to each customer's currency).")
    risk_offset: float = Field(0.0, description="Added to the late log-odds of every customer in the segment.")
    terms_days: dict[int, float] = Field(description="Net payment terms in days -> relative share.")


class CurrencySpec(BaseModel):
    """A document currency: who invoices in it and its rate path against the base currency."""

    model_config = ConfigDict(extra="forbid")

    share: float = Field(ge=0, description="Relative share of customers invoiced in this currency.")
    rate: float = Field(gt=0, description="Value in a common unit (EUR by default) in the first month; rebased "
                                         "to the base currency when that is listed too.")
    monthly_volatility: float = Field(0.0, ge=0, description="Std. dev. of the monthly log change of the rate.")
    countries: list[str] = Field(min_length=1, description="Countries of the customers using it.")


DEFAULT_SEGMENTS = {
    "enterprise": SegmentSpec(share=0.08, invoices_per_month=12.0, median_amount=18_000.0, risk_offset=0.2,
                              terms_days={30: 0.2, 45: 0.3, 60: 0.5}),
    "mid": SegmentSpec(share=0.30, invoices_per_month=4.0, median_amount=3_500.0, risk_offset=0.0,
                       terms_days={30: 0.5, 45: 0.3, 60: 0.2}),
    "small": SegmentSpec(share=0.62, invoices_per_month=1.3, median_amount=800.0, risk_offset=0.15,
                         terms_days={30: 0.8, 45: 0.15, 60: 0.05}),
}
DEFAULT_CURRENCIES = {
    "EUR": CurrencySpec(share=0.60, rate=1.0, countries=["DE", "FR", "NL", "IT", "ES", "AT", "BE"]),
    "USD": CurrencySpec(share=0.18, rate=0.92, monthly_volatility=0.020, countries=["US"]),
    "GBP": CurrencySpec(share=0.10, rate=1.16, monthly_volatility=0.015, countries=["GB"]),
    "CHF": CurrencySpec(share=0.07, rate=1.02, monthly_volatility=0.012, countries=["CH"]),
    "SEK": CurrencySpec(share=0.05, rate=0.088, monthly_volatility=0.018, countries=["SE"]),
}


def _share(default: float, description: str) -> Any:
    return Field(default, ge=0.0, le=1.0, description=description)


class SyntheticConfig(BaseModel):
    """Every tunable parameter of the generator; `generate_ledger(..., **overrides)` sets them."""

    model_config = ConfigDict(extra="forbid")

    base_currency: str = Field("EUR", description="Company currency (amount_base).")
    segments: dict[str, SegmentSpec] = Field(default_factory=lambda: dict(DEFAULT_SEGMENTS))
    currencies: dict[str, CurrencySpec] = Field(default_factory=lambda: dict(DEFAULT_CURRENCIES))
    collectors: list[str] = Field(default_factory=lambda: ["Anna Berg", "Luca Rossi", "Marie Dubois",
                                                           "Tom Baker", "Jonas Weber", "Sofia Lind"],
                                  min_length=1, description="Collectors customers are assigned to.")

    # Customers
    new_customer_share: float = _share(0.15, "Customers created during the history (the rest exist before).")
    end_of_month_terms_share: float = _share(0.2, "Customers on 'N days end of month' terms.")
    customer_amount_sigma: float = Field(0.7, ge=0, description="Log spread of typical amounts within a segment.")
    invoice_amount_sigma: float = Field(0.8, ge=0, description="Log spread of amounts around a customer's typical one.")
    invoice_rate_sigma: float = Field(0.5, ge=0, description="Log spread of invoicing frequency within a segment.")
    credit_limit_months: float = Field(2.5, gt=0, description="Credit limit in months of expected sales.")
    dunning_block_share: float = _share(0.02, "Customers with a dunning block.")
    payment_runs: dict[str, float] = Field(default_factory=lambda: {"weekly": 0.45, "month_end": 0.15,
                                                                     "ad_hoc": 0.40},
                                           description="How customers schedule payments -> share.")

    # Latent risk (log-odds of paying a typical invoice late)
    late_payer_share: float = _share(0.25, "Customers who habitually pay late.")
    deteriorating_share: float = _share(0.06, "Customers whose risk climbs from a date on.")
    recovering_share: float = _share(0.05, "Customers who start risky and recover.")
    steady_risk_mean: float = Field(-1.9, description="Mean late log-odds of ordinary customers.")
    late_payer_risk_mean: float = Field(0.4, description="Mean late log-odds of habitual late payers.")
    risk_sd: float = Field(0.6, ge=0, description="Spread of customers' base log-odds.")
    risk_walk_sd: float = Field(0.2, ge=0, description="Monthly innovation of the AR(1) risk wander.")
    risk_walk_persistence: float = Field(0.85, ge=0, lt=1, description="AR(1) coefficient of the wander.")
    deterioration_slope: tuple[float, float] = Field((0.3, 0.8), description="Log-odds added per month after deterioration.")
    deterioration_cap: float = Field(6.0, ge=0, description="Most log-odds deterioration adds.")
    stop_share: float = _share(0.7, "Deteriorating customers who stop paying altogether.")
    stop_after_days: tuple[int, int] = Field((90, 300), description="Days from deterioration to stopping.")
    invoicing_after_stop_days: tuple[int, int] = Field((14, 60), description="Days the seller keeps invoicing a stopped customer.")
    recovery_boost: float = Field(2.5, ge=0, description="Extra log-odds of recovering customers before recovery.")
    recovery_fade_months: float = Field(6.0, gt=0, description="Months over which the extra risk fades.")

    # Invoices
    seasonality: list[float] = Field(default_factory=lambda: [0.95, 0.95, 1.05, 1.0, 1.0, 1.05, 0.95, 0.8, 1.05,
                                                              1.05, 1.1, 1.05],
                                     min_length=12, max_length=12, description="Invoice volume by calendar month.")
    month_end_share: float = _share(0.25, "Invoices issued in the last three days of a month.")

    # What drives lateness (log-odds), and how late
    late_grace_days: int = Field(5, ge=0, description="Late means paid more than this many days after due.")
    amount_effect: float = Field(0.25, description="Log-odds per std. dev. of an invoice's size vs the customer's usual.")
    dispute_effect: float = Field(1.8, description="Log-odds added by a dispute.")
    month_end_effect: float = Field(0.3, description="Log-odds added to invoices issued at month end.")
    late_season_effect: list[float] = Field(default_factory=lambda: [0.0] * 6 + [0.2, 0.3] + [0.0] * 3 + [0.3],
                                            min_length=12, max_length=12,
                                            description="Log-odds by calendar month of the invoice (holidays).")
    invoice_noise_sd: float = Field(0.5, ge=0, description="Invoice-level log-odds noise nobody can observe.")
    late_days_median: float = Field(12.0, gt=0, description="Median days beyond the grace of a late payment.")
    late_days_sigma: float = Field(0.9, ge=0, description="Log spread of days late (the long right tail).")
    late_days_risk_effect: float = Field(1.5, description="Log days late added per unit of latent risk probability.")
    dispute_days_effect: float = Field(0.6, description="Log days late added by a dispute.")
    on_time_mean_days: float = Field(-2.0, description="Mean days late (negative: early) of on-time payments.")
    on_time_sd_days: float = Field(4.0, ge=0, description="Spread of on-time payment days.")

    # Events
    dispute_rate: float = _share(0.03, "Invoices disputed.")
    dispute_amount_effect: float = Field(0.3, description="Log-odds of a dispute per std. dev. of relative size.")
    dispute_credit_share: float = _share(0.4, "Disputes resolved by a credit memo.")
    credit_memo_rate: float = _share(0.02, "Invoices credited in part (returns, rebates) without a dispute.")
    partial_payment_rate: float = _share(0.04, "Invoices paid in two instalments (scaled up with P(late)).")
    short_pay_rate: float = _share(0.02, "Invoices paid short by a small residual that is written off.")
    writeoff_rate: float = _share(0.01, "Late invoices of paying customers that are never paid.")
    writeoff_after_days: int = Field(150, ge=1, description="Days past due at which unpaid invoices are written off.")
    unapplied_cash_rate: float = _share(0.03, "Payments with more cash than they settle (unapplied).")
    cash_application_lag_share: float = _share(0.1, "Payments applied 1-3 days after receipt.")
    promise_rate: float = _share(0.25, "Late invoices that get a promise to pay.")
    customer_promise_share: float = _share(0.1, "Promises made for an amount rather than an invoice.")
    dunning_offsets_days: list[int] = Field(default_factory=lambda: [7, 21, 35], min_length=1, max_length=9,
                                            description="Days past due of each dunning level.")
    contact_rate: float = Field(0.05, ge=0, description="Routine contacts per customer and month.")

    @model_validator(mode="after")
    def _consistent(self) -> SyntheticConfig:
        """Shares that add up, ranges in order, real currency codes."""
        if self.late_payer_share + self.deteriorating_share + self.recovering_share > 1:
            raise ValueError("late_payer_share + deteriorating_share + recovering_share must not exceed 1")
        for name in ("deterioration_slope", "stop_after_days", "invoicing_after_stop_days"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high")
        unknown = sorted(set(self.currencies) - ISO_4217) + ([self.base_currency] * (self.base_currency not in ISO_4217))
        if unknown:
            raise ValueError(f"not ISO 4217 currency codes: {unknown}")
        if not sum(spec.share for spec in self.currencies.values()) > 0:
            raise ValueError("at least one currency needs a positive share")
        if set(self.payment_runs) - set(PAYMENT_RUNS) or not sum(self.payment_runs.values()) > 0:
            raise ValueError(f"payment_runs takes shares of {PAYMENT_RUNS}")
        if any(later <= earlier for earlier, later in zip(self.dunning_offsets_days, self.dunning_offsets_days[1:],
                                                           strict=False)):
            raise ValueError("dunning_offsets_days must increase")
        return self


# --------------------------------------------------------------------------------------------------
# Entry points


def generate_ledger(customers: int, months: int, seed: int, start: pd.Timestamp = DEFAULT_START,
                    remittance: bool = False, **overrides: Any) -> tuple[Ledger, dict[str, pd.DataFrame]]:
    """A synthetic ledger and its ground truth tables, keyed by file name under the ledger directory.

    With `remittance`, payments carry bank-statement remittance data (`ledger.remittance.with_remittance`
    for the same seed), with its truth as `truth/remittance.parquet`."""
    if customers < 1 or months < 1:
        raise ValueError("customers and months must be at least 1")
    config = SyntheticConfig(**overrides)
    calendar = calendar_of(pd.Timestamp(start), months)
    rates = fx_rates(config, calendar, stream(seed, "fx"))
    draws = customer_draws(config, customers, rates, calendar, seed)
    counts = draws.counts()
    ids = Identifiers.of(counts, width=id_width(max(counts[prefix] for prefix in ("C", "INV", "CM", "PAY"))))
    ledger, truth = draws.tables(config, rates, calendar, ids, source=f"synthetic seed={seed}")
    truth = {f"truth/{name}.parquet": table for name, table in truth.items()}
    truth["truth/fx_rates.parquet"] = truth_fx_table(config, rates, calendar)
    if remittance:
        ledger, truth["truth/remittance.parquet"] = with_remittance(ledger, seed)
    return ledger, truth


def generate_chunks(customers: int, months: int, seed: int, chunk_customers: int,
                    start: pd.Timestamp = DEFAULT_START,
                    **overrides: Any) -> Iterator[tuple[Ledger, dict[str, pd.DataFrame]]]:
    """The ledger of `customers` customers drawn `chunk_customers` at a time, each chunk a ledger of its own
    with its truth (keyed by file under the ledger directory: `truth/<table>/chunk-<i>.parquet`, the FX
    path once as `truth/fx_rates.parquet`), so a ledger of any size is drawn in bounded memory.

    Customers are independent given the FX path, which all chunks share; chunk i draws from streams named
    by (seed, i), and its ids continue the numbering of the chunks before, in one width for the whole
    ledger. So the result is a valid ledger for the seed, but not the one `generate_ledger` draws."""
    if customers < 1 or months < 1 or chunk_customers < 1:
        raise ValueError("customers, months and chunk_customers must be at least 1")
    config = SyntheticConfig(**overrides)
    calendar = calendar_of(pd.Timestamp(start), months)
    rates = fx_rates(config, calendar, stream(seed, "fx"))
    width = id_width(largest_id_number(config, customers, calendar))
    used: dict[str, int] = {}
    for chunk, first in enumerate(range(0, customers, chunk_customers)):
        n = min(chunk_customers, customers - first)
        draws = customer_draws(config, n, rates, calendar, seed, chunk=chunk)
        counts = draws.counts()
        ids = Identifiers.of(counts, width=width, first=used)
        ledger, truth = draws.tables(config, rates, calendar, ids, source=f"synthetic seed={seed} chunked")
        truth = {f"truth/{name}/chunk-{chunk:05d}.parquet": table for name, table in truth.items()}
        if chunk == 0:
            truth["truth/fx_rates.parquet"] = truth_fx_table(config, rates, calendar)
        used = {prefix: used.get(prefix, 0) + count for prefix, count in counts.items()}
        yield ledger, truth


def largest_id_number(config: SyntheticConfig, customers: int, calendar: Calendar) -> int:
    """A bound on any table's row count, known before drawing: ten times the busiest segment's invoices
    in the busiest season for every customer (payments, memos, contacts and the rest stay below it)."""
    busiest = max(spec.invoices_per_month for spec in config.segments.values()) * max(config.seasonality)
    return int(customers * calendar.n_months * busiest * 10) + customers


def id_width(largest: int) -> int:
    """Digits of every id: wide enough for the largest number, so ids sort like their numbers."""
    return max(6, len(str(largest)) + 1)


@dataclass(frozen=True)
class Draws:
    """Everything drawn for a set of customers, by row number within the set."""

    accounts: pd.DataFrame
    risk: np.ndarray
    invoices: Invoices
    outcomes: Outcomes
    disputes: Disputes
    settlement: Settlement
    cash: Cash
    promises: Promises
    dunning: Dunning
    contacts: Contacts
    email_contacts: EmailContacts

    def counts(self) -> dict[str, int]:
        """Rows per id prefix: what the ids of these customers number."""
        return {"C": len(self.accounts), "INV": len(self.invoices.customer), "CM": len(self.settlement.memo_of),
                "PAY": len(self.cash.payment_day), "D": len(self.disputes.invoice),
                "PR": len(self.promises.customer), "CT": len(self.contacts.day)}

    def tables(self, config: SyntheticConfig, rates: np.ndarray, calendar: Calendar, ids: Identifiers,
               source: str) -> tuple[Ledger, dict[str, pd.DataFrame]]:
        """The ledger tables and the truth tables (by name; FX excluded) of these draws."""
        accounts, invoices, outcomes, settlement = self.accounts, self.invoices, self.outcomes, self.settlement
        ledger = Ledger(
            customers=customers_table(accounts, ids),
            invoices=invoices_table(accounts, invoices, outcomes, settlement, rates, calendar, ids),
            payments=payments_table(accounts, self.cash, rates, calendar, ids),
            payment_applications=applications_table(self.cash, ids),
            disputes=disputes_table(self.disputes, calendar, ids),
            promises=promises_table(self.promises, ids),
            writeoffs=writeoffs_table(invoices, outcomes, settlement, calendar, ids),
            dunning_notices=dunning_table(self.dunning, ids),
            contacts=contacts_table(self.contacts, ids),
            email_contacts=email_contacts_table(self.email_contacts, accounts, ids),
            base_currency=config.base_currency,
            source=source,
        )
        truth = {
            "customers": truth_customers_table(accounts, ids),
            "risk_path": truth_risk_path_table(self.risk, calendar, ids),
            "invoices": truth_invoices_table(invoices, outcomes, ids),
        }
        return ledger, truth


def customer_draws(config: SyntheticConfig, customers: int, rates: np.ndarray, calendar: Calendar, seed: int,
                   chunk: int | None = None) -> Draws:
    """Every draw for `customers` customers, from the seed's streams (the chunk's, when given)."""
    def rng(name: str) -> np.random.Generator:
        return stream(seed, name if chunk is None else f"{name}/chunk {chunk}")

    accounts = account_draws(config, customers, rates, calendar, rng("accounts"))
    risk = latent_risk(config, accounts, calendar, rng("risk"))
    invoices = invoice_draws(config, accounts, rates, calendar, rng("invoices"))
    outcomes = payment_outcomes(config, accounts, risk, invoices, calendar, rng("outcomes"))
    disputes = dispute_draws(config, invoices, outcomes, calendar, rng("disputes"))
    settlement = settlement_draws(config, invoices, outcomes, disputes, calendar, rng("settlement"))
    cash = cash_draws(config, accounts, invoices, outcomes, settlement, calendar, rng("cash"))
    promises = promise_draws(config, invoices, outcomes, settlement, cash, calendar, rng("promises"))
    dunning = dunning_draws(config, accounts, invoices, outcomes, disputes, promises, calendar)
    contacts = contact_draws(config, accounts, invoices, disputes, promises, dunning, calendar, rng("contacts"))
    # A stream of its own: the contacts never change what the other streams draw for a seed.
    email_contacts = email_contact_draws(accounts, rng("email contacts"))
    return Draws(accounts, risk, invoices, outcomes, disputes, settlement, cash, promises, dunning, contacts,
                 email_contacts)


def write_synthetic(ledger: Ledger, truth: dict[str, pd.DataFrame], out: Path) -> Path:
    """Write the ledger and its truth (under `out/truth/`) in one atomic step."""
    return write_ledger(ledger, Path(out), extras=truth)


def write_synthetic_chunks(out: Path, customers: int, months: int, seed: int, partitions: int,
                           chunk_customers: int, start: pd.Timestamp = DEFAULT_START,
                           progress: Callable[[], None] | None = None, **overrides: Any) -> dict[str, int]:
    """Draw `generate_chunks` and write each chunk, truth included, into a partitioned ledger at `out` as it
    comes (one chunk in memory at a time), then swap it into place; returns rows written per table."""
    from ledger.partitions import PartitionedWriter

    source = f"synthetic seed={seed} chunk_customers={chunk_customers}"
    with PartitionedWriter(out, partitions, SyntheticConfig(**overrides).base_currency, source) as writer:
        for ledger, truth in generate_chunks(customers, months, seed, chunk_customers, start, **overrides):
            writer.add(ledger)
            writer.add_extras(truth)
            if progress is not None:
                progress()
        writer.finish()
        return dict(writer.rows)


# --------------------------------------------------------------------------------------------------
# Time, randomness, identifiers


@dataclass(frozen=True)
class Calendar:
    """The history's first and last day and the calendar months it touches (as day numbers)."""

    start: int
    end: int
    month_starts: np.ndarray  # first day of every month touched, plus the first day of the month after

    @property
    def n_months(self) -> int:
        return len(self.month_starts) - 1

    def month_of(self, days: np.ndarray) -> np.ndarray:
        """Index of the calendar month of each day (days outside the history clipped to its ends)."""
        return np.clip(np.searchsorted(self.month_starts, days, side="right") - 1, 0, self.n_months - 1)

    def month_of_year(self) -> np.ndarray:
        """0 (January) .. 11 (December) for each month of the history."""
        return self.month_starts[:-1].astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12


def calendar_of(start: pd.Timestamp, months: int) -> Calendar:
    """The history from `start` for `months` calendar months (the last day is the day before)."""
    start = start.normalize()
    end = start + pd.DateOffset(months=months) - pd.Timedelta(days=1)
    first, last = np.datetime64(start.to_period("M").start_time, "M"), np.datetime64(end.to_period("M").start_time, "M")
    month_starts = np.arange(first, last + 2).astype("datetime64[D]").astype(np.int64)
    return Calendar(day_number(start), day_number(end), month_starts)


def day_number(timestamp: pd.Timestamp) -> int:
    """Days since 1970-01-01."""
    return int(np.datetime64(timestamp.normalize(), "D").astype(np.int64))


def dates_of(days: np.ndarray) -> np.ndarray:
    """datetime64[ns] calendar dates from day numbers; NEVER (and anything past it) becomes NaT."""
    days = np.asarray(days, dtype=np.int64)
    never = days >= NEVER
    return np.where(never, np.iinfo(np.int64).min, np.where(never, 0, days) * NS_PER_DAY).view("datetime64[ns]")


def month_end_of(days: np.ndarray) -> np.ndarray:
    """The last day of each day's calendar month."""
    months = days.astype("datetime64[D]").astype("datetime64[M]")
    return (months + 1).astype("datetime64[D]").astype(np.int64) - 1


def month_start_of(days: np.ndarray) -> np.ndarray:
    """The first day of each day's calendar month."""
    return days.astype("datetime64[D]").astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def weekday_of(days: np.ndarray) -> np.ndarray:
    """0 = Monday .. 6 = Sunday (1970-01-01 was a Thursday)."""
    return (days + 3) % 7


def next_working_day(days: np.ndarray) -> np.ndarray:
    """The day itself, or the Monday after for a Saturday or Sunday."""
    weekday = weekday_of(days)
    return days + np.where(weekday >= 5, 7 - weekday, 0)


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent random stream per part of the generator, fixed by the seed and the part's name."""
    return np.random.default_rng([seed % 2**63, zlib.crc32(name.encode())])


def sigmoid(log_odds: np.ndarray) -> np.ndarray:
    """Probability from log-odds."""
    return 1.0 / (1.0 + np.exp(-log_odds))


def normalised(weights: list[float] | np.ndarray) -> np.ndarray:
    """Weights scaled to sum to one."""
    weights = np.asarray(weights, dtype=float)
    return weights / weights.sum()


def between(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A uniform day in [low, high] for each pair (low where high < low)."""
    width = np.maximum(high - low + 1, 1)
    return low + (rng.random(len(low)) * width).astype(np.int64)


def id_strings(prefix: str, n: int, width: int, first: int = 0) -> np.ndarray:
    """prefix + zero-padded first+1..first+n as Python strings, built without a Python loop over rows."""
    if first + n >= 10**width:
        raise ValueError(f"{prefix} ids numbered up to {first + n} do not fit in {width} digits")
    codes = np.empty((n, len(prefix) + width), dtype=np.uint32)
    codes[:, : len(prefix)] = [ord(char) for char in prefix]
    rest = np.arange(first + 1, first + n + 1, dtype=np.uint64)
    for position in range(len(prefix) + width - 1, len(prefix) - 1, -1):
        rest, digit = np.divmod(rest, np.uint64(10))
        codes[:, position] = digit + ord("0")
    return codes.view(f"<U{len(prefix) + width}").ravel().astype(object)


@dataclass(frozen=True)
class Identifiers:
    """String ids, by row number, of every keyed table; `first` holds, per id prefix, the numbers
    already used (by earlier chunks of the same ledger)."""

    width: int
    customer: np.ndarray
    invoice: np.ndarray
    memo: np.ndarray
    payment: np.ndarray
    first: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def of(counts: dict[str, int], width: int, first: dict[str, int] | None = None) -> Identifiers:
        """Ids for `counts` rows per prefix (C, INV, CM, PAY, ...), numbered on from `first`, in `width` digits."""
        first = dict(first or {})

        def ids(prefix: str) -> np.ndarray:
            return id_strings(prefix, counts[prefix], width, first.get(prefix, 0))

        return Identifiers(width, ids("C"), ids("INV"), ids("CM"), ids("PAY"), first)

    def numbered(self, prefix: str, n: int) -> np.ndarray:
        """Ids for another table's rows."""
        return id_strings(prefix, n, self.width, self.first.get(prefix, 0))

    def document(self, index: np.ndarray) -> np.ndarray:
        """Ids of documents numbered invoices first, then credit memos."""
        return np.concatenate([self.invoice, self.memo])[index]


# --------------------------------------------------------------------------------------------------
# Customers and their latent risk


def account_draws(config: SyntheticConfig, n: int, rates: np.ndarray, calendar: Calendar,
                  rng: np.random.Generator) -> pd.DataFrame:
    """One row per customer: observable attributes plus the generator's hidden ones (amounts in base
    currency except the credit limit, which is set in the customer's currency)."""
    segments = list(config.segments.values())
    segment = rng.choice(len(segments), size=n, p=normalised([spec.share for spec in segments]))
    codes = list(config.currencies)
    currency = rng.choice(len(codes), size=n, p=normalised([spec.share for spec in config.currencies.values()]))
    country = np.empty(n, dtype=object)
    for index, spec in enumerate(config.currencies.values()):
        chosen = currency == index
        country[chosen] = rng.choice(np.array(spec.countries, dtype=object), size=int(chosen.sum()))
    terms = np.empty(n, dtype=np.int64)
    for index, spec in enumerate(segments):
        chosen = segment == index
        terms[chosen] = rng.choice(np.array(list(spec.terms_days), dtype=np.int64), size=int(chosen.sum()),
                                   p=normalised(list(spec.terms_days.values())))
    span = calendar.end - calendar.start + 1
    is_new = rng.random(n) < config.new_customer_share
    created = np.where(is_new, calendar.start + rng.integers(0, span, n), calendar.start - rng.integers(30, 3650, n))

    ordinary = 1 - config.late_payer_share - config.deteriorating_share - config.recovering_share
    profile = rng.choice(len(PROFILES), size=n, p=normalised([max(ordinary, 0.0), config.late_payer_share,
                                                              config.deteriorating_share, config.recovering_share]))
    offsets = np.array([spec.risk_offset for spec in segments])
    base_risk = (np.where(profile == LATE_PAYER, config.late_payer_risk_mean, config.steady_risk_mean)
                 + config.risk_sd * rng.standard_normal(n) + offsets[segment])

    # Deterioration starts late enough to leave some healthy history to learn from.
    earliest = np.maximum(calendar.start + int(0.15 * span), created + 60)
    latest = calendar.start + int(0.9 * span)
    deteriorates = (profile == DETERIORATING) & (earliest <= latest)
    profile = np.where((profile == DETERIORATING) & ~deteriorates, STEADY, profile)
    deterioration_day = np.where(deteriorates, between(rng, earliest, latest), NEVER)
    stops = deteriorates & (rng.random(n) < config.stop_share)
    stop_day = np.where(stops, deterioration_day + rng.integers(*config.stop_after_days, n, endpoint=True), NEVER)
    invoicing_until = np.where(stops, stop_day + rng.integers(*config.invoicing_after_stop_days, n, endpoint=True),
                               NEVER)
    recovers = profile == RECOVERING
    recovery_day = np.where(recovers, between(rng, np.maximum(calendar.start + int(0.1 * span), created),
                                              np.full(n, calendar.start + int(0.7 * span))), NEVER)

    typical_amount = (np.array([spec.median_amount for spec in segments])[segment]
                      * np.exp(config.customer_amount_sigma * rng.standard_normal(n)))
    # Lognormal multipliers with mean one, so the segment's rate stays its mean.
    rate_sigma = config.invoice_rate_sigma
    invoice_rate = (np.array([spec.invoices_per_month for spec in segments])[segment]
                    * np.exp(rate_sigma * rng.standard_normal(n) - rate_sigma**2 / 2))
    mean_amount = typical_amount * np.exp(config.invoice_amount_sigma**2 / 2)
    monthly_sales = mean_amount * invoice_rate / rates[currency, 0]
    credit_limit = np.maximum(1000.0, np.round(monthly_sales * config.credit_limit_months, -3))
    runs = [config.payment_runs.get(name, 0.0) for name in PAYMENT_RUNS]

    return pd.DataFrame({
        "segment": np.array(list(config.segments), dtype=object)[segment],
        "segment_index": segment,
        "country": country,
        "currency": np.array(codes, dtype=object)[currency],
        "currency_index": currency,
        "terms_days": terms,
        "end_of_month": rng.random(n) < config.end_of_month_terms_share,
        "created_day": created,
        "profile": profile,
        "base_risk": base_risk,
        "deterioration_slope": rng.uniform(*config.deterioration_slope, n),
        "deterioration_day": deterioration_day,
        "stop_day": stop_day,
        "invoicing_until": invoicing_until,
        "recovery_day": recovery_day,
        "payment_run": rng.choice(len(PAYMENT_RUNS), size=n, p=normalised(runs)),
        "run_weekday": rng.integers(0, 5, n),
        "typical_amount": typical_amount,
        "invoice_rate": invoice_rate,
        "credit_limit": credit_limit,
        "collector": rng.choice(np.array(config.collectors, dtype=object), size=n),
        "dunning_block": rng.random(n) < config.dunning_block_share,
        "name": company_names(country, rng),
    })


def company_names(country: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Plausible company names with the legal form of their country."""
    n = len(country)
    heads = np.array(NAME_HEADS)[rng.integers(0, len(NAME_HEADS), n)]
    tails = np.array(NAME_TAILS)[rng.integers(0, len(NAME_TAILS), n)]
    forms = pd.Series(country).map(LEGAL_FORMS).fillna("Ltd").to_numpy(dtype=str)
    return np.char.add(np.char.add(np.char.add(heads, tails), " "), forms).astype(object)


def latent_risk(config: SyntheticConfig, accounts: pd.DataFrame, calendar: Calendar,
                rng: np.random.Generator) -> np.ndarray:
    """Customers x months matrix of log-odds of paying a typical invoice late."""
    n, months = len(accounts), calendar.n_months
    persistence = config.risk_walk_persistence
    # An AR(1) wander: risk that moves for no visible reason, only partly readable from history.
    level = config.risk_walk_sd / np.sqrt(1 - persistence**2) * rng.standard_normal(n)
    wander = np.empty((n, months))
    for month in range(months):
        level = persistence * level + config.risk_walk_sd * rng.standard_normal(n)
        wander[:, month] = level
    middle = (calendar.month_starts[:-1] + 14)[None, :]

    deterioration_day = accounts["deterioration_day"].to_numpy()[:, None]
    months_deteriorating = np.clip((middle - deterioration_day) / DAYS_PER_MONTH, 0, None)
    drift = np.minimum(accounts["deterioration_slope"].to_numpy()[:, None] * months_deteriorating,
                       config.deterioration_cap)

    recovery_day = accounts["recovery_day"].to_numpy()[:, None]
    fade = np.clip(1 - (middle - recovery_day) / (config.recovery_fade_months * DAYS_PER_MONTH), 0, 1)
    boost = np.where(recovery_day < NEVER, config.recovery_boost * fade, 0.0)
    return accounts["base_risk"].to_numpy()[:, None] + wander + drift + boost


def fx_rates(config: SyntheticConfig, calendar: Calendar, rng: np.random.Generator) -> np.ndarray:
    """Currencies x months: base currency per unit, a deterministic random walk per currency."""
    specs = list(config.currencies.values())
    steps = rng.standard_normal((len(specs), calendar.n_months))
    steps[:, 0] = 0.0
    volatility = np.array([spec.monthly_volatility for spec in specs])[:, None]
    values = np.array([spec.rate for spec in specs])[:, None] * np.exp(np.cumsum(volatility * steps, axis=1))
    if config.base_currency in config.currencies:
        values = values / values[list(config.currencies).index(config.base_currency)]
    return np.round(values, 6)


# --------------------------------------------------------------------------------------------------
# Invoices and how they get paid


@dataclass(frozen=True)
class Invoices:
    """Drawn invoices in issue order (by day, then customer)."""

    customer: np.ndarray
    day: np.ndarray
    due: np.ndarray
    month: np.ndarray
    amount: np.ndarray
    relative_size: np.ndarray  # log amount vs the customer's typical amount, in std. devs
    month_end: np.ndarray


def invoice_draws(config: SyntheticConfig, accounts: pd.DataFrame, rates: np.ndarray, calendar: Calendar,
                  rng: np.random.Generator) -> Invoices:
    """Invoices per customer and month from the customer's rate and the season, dated with a month-end
    peak, on weekdays, inside the customer's life."""
    season = np.array(config.seasonality)[calendar.month_of_year()]
    counts = rng.poisson(accounts["invoice_rate"].to_numpy()[:, None] * season[None, :])
    customer = np.repeat(np.arange(len(accounts)), counts.sum(axis=1))
    month = np.repeat(np.tile(np.arange(calendar.n_months), len(accounts)), counts.ravel())
    n = len(customer)

    length = np.diff(calendar.month_starts)[month]
    at_month_end = rng.random(n) < config.month_end_share
    offset = np.where(at_month_end, length - 1 - rng.integers(0, 3, n), (rng.random(n) * length).astype(np.int64))
    day = calendar.month_starts[month] + offset
    day -= np.maximum(weekday_of(day) - 4, 0)  # Saturday and Sunday invoices go out on Friday
    size_draw = rng.standard_normal(n)

    alive = ((day >= np.maximum(calendar.start, accounts["created_day"].to_numpy()[customer]))
             & (day <= calendar.end) & (day < accounts["invoicing_until"].to_numpy()[customer]))
    order = np.flatnonzero(alive)[np.lexsort((customer[alive], day[alive]))]
    customer, day, size_draw = customer[order], day[order], size_draw[order]

    month = calendar.month_of(day)
    sigma = config.invoice_amount_sigma
    typical = accounts["typical_amount"].to_numpy()[customer]
    rate = rates[accounts["currency_index"].to_numpy()[customer], month]
    amount = np.maximum(10.0, np.round(typical * np.exp(sigma * size_draw) / rate, 2))
    terms = accounts["terms_days"].to_numpy()[customer]
    due = np.where(accounts["end_of_month"].to_numpy()[customer], month_end_of(day) + terms, day + terms)
    return Invoices(customer=customer, day=day, due=due, month=month, amount=amount,
                    relative_size=np.log(amount * rate / typical) / sigma if sigma > 0 else np.zeros(len(amount)),
                    month_end=day >= calendar.month_starts[month + 1] - 3)


@dataclass(frozen=True)
class Outcomes:
    """What the generator decided for each invoice."""

    p_late: np.ndarray  # true probability of being paid more than the grace after due
    late: np.ndarray  # the draw
    pay_day: np.ndarray  # day the invoice is fully paid (may lie after the history); NEVER if never
    never_paid: np.ndarray
    written_off_day: np.ndarray  # NEVER unless never paid
    disputed: np.ndarray
    risk: np.ndarray  # the customer's latent late probability in the invoice's month


def payment_outcomes(config: SyntheticConfig, accounts: pd.DataFrame, risk: np.ndarray, invoices: Invoices,
                     calendar: Calendar, rng: np.random.Generator) -> Outcomes:
    """Dispute, P(late), the late draw, the pay day and never-paid invoices, per invoice."""
    n = len(invoices.customer)
    customer_risk = risk[invoices.customer, invoices.month]
    dispute_weight = np.exp(config.dispute_amount_effect * invoices.relative_size - config.dispute_amount_effect**2 / 2)
    disputed = rng.random(n) < np.clip(config.dispute_rate * dispute_weight, 0, 1)
    p_late = late_probability(config, customer_risk, invoices, disputed, calendar, rng.standard_normal(n))
    late = rng.random(n) < p_late

    grace = config.late_grace_days
    beyond_grace = np.exp(np.log(config.late_days_median) + config.late_days_sigma * rng.standard_normal(n)
                          + config.late_days_risk_effect * (sigmoid(customer_risk) - 0.5)
                          + config.dispute_days_effect * disputed)
    late_days = grace + 1 + np.minimum(beyond_grace, 3650).astype(np.int64)
    earliest = invoices.day - invoices.due  # nobody pays before the invoice exists
    on_time_days = np.clip(np.round(config.on_time_mean_days + config.on_time_sd_days * rng.standard_normal(n)),
                           earliest, grace).astype(np.int64)
    drawn_day = invoices.due + np.where(late, late_days, on_time_days)
    accounts_run = accounts["payment_run"].to_numpy()[invoices.customer]
    weekday = accounts["run_weekday"].to_numpy()[invoices.customer]
    pay_day = payment_run_days(drawn_day, late, invoices.day, accounts_run, weekday)

    # A stopped customer pays nothing from the stop on; invoices due after it are late for certain.
    stop_day = accounts["stop_day"].to_numpy()[invoices.customer]
    stopped = pay_day >= stop_day
    p_late = np.where(stopped & (invoices.due + grace >= stop_day), 1.0, p_late)
    bad_debt = late & ~stopped & (rng.random(n) < config.writeoff_rate)
    never_paid = stopped | bad_debt
    written_off_day = np.where(never_paid, invoices.due + config.writeoff_after_days + rng.integers(-30, 31, n), NEVER)
    return Outcomes(p_late=p_late, late=late | never_paid, pay_day=np.where(never_paid, NEVER, pay_day),
                    never_paid=never_paid, written_off_day=written_off_day, disputed=disputed,
                    risk=sigmoid(customer_risk))


def late_probability(config: SyntheticConfig, customer_risk: np.ndarray, invoices: Invoices, disputed: np.ndarray,
                     calendar: Calendar, noise: np.ndarray) -> np.ndarray:
    """True P(late): the customer's latent risk plus what is visible on the invoice, plus noise."""
    season = np.array(config.late_season_effect)[calendar.month_of_year()[invoices.month]]
    log_odds = (customer_risk + config.amount_effect * invoices.relative_size + config.dispute_effect * disputed
                + config.month_end_effect * invoices.month_end + season + config.invoice_noise_sd * noise)
    return sigmoid(log_odds)


def payment_run_days(day: np.ndarray, late: np.ndarray, invoice_day: np.ndarray, run: np.ndarray,
                     run_weekday: np.ndarray) -> np.ndarray:
    """Pay days moved onto each customer's payment run without crossing the late threshold: a late
    payment waits for the next run, an on-time one goes out with the run before (never before the
    invoice), so payments cluster on run days and month ends."""
    weekday = weekday_of(day)
    next_run = day + (run_weekday - weekday) % 7
    previous_run = day - (weekday - run_weekday) % 7
    previous_month_end = month_start_of(day) - 1
    weekly = np.where(late, next_run, np.where(previous_run >= invoice_day, previous_run, day))
    monthly = np.where(late, month_end_of(day),
                       np.where(previous_month_end >= invoice_day, previous_month_end, day))
    monday, friday = day + np.maximum(7 - weekday, 0) * (weekday >= 5), day - np.maximum(weekday - 4, 0)
    ad_hoc = np.where(late, monday, np.where(friday >= invoice_day, friday, day))
    return np.select([run == WEEKLY, run == MONTH_END], [weekly, monthly], ad_hoc)


# --------------------------------------------------------------------------------------------------
# Disputes, credit memos, instalments and write-offs


@dataclass(frozen=True)
class Disputes:
    """Disputes opened within the history, one per disputed invoice at most."""

    invoice: np.ndarray
    opened_day: np.ndarray
    resolved_day: np.ndarray  # as drawn: may lie after the history; NEVER while never resolved
    amount: np.ndarray
    reason: np.ndarray


def dispute_draws(config: SyntheticConfig, invoices: Invoices, outcomes: Outcomes, calendar: Calendar,
                  rng: np.random.Generator) -> Disputes:
    """Disputes of the disputed invoices: opened around the due date, resolved shortly before payment
    (the payment waits for the resolution)."""
    index = np.flatnonzero(outcomes.disputed)
    k = len(index)
    day, due, pay = invoices.day[index], invoices.due[index], outcomes.pay_day[index]
    latest_open = np.maximum(np.minimum(due + 20, pay - 1), day)
    opened = between(rng, np.minimum(day + 1, latest_open), latest_open)
    before_payment = (rng.random(k) * (np.minimum(10, pay - opened) + 1)).astype(np.int64)
    resolved = np.where(pay < NEVER, pay - before_payment, NEVER)
    whole = rng.random(k) < 0.5
    amount = np.round(invoices.amount[index] * np.where(whole, 1.0, rng.uniform(0.1, 1.0, k)), 2)
    reason = np.array(DISPUTE_REASONS, dtype=object)[rng.integers(0, len(DISPUTE_REASONS), k)]
    known = opened <= calendar.end
    return Disputes(invoice=index[known], opened_day=opened[known], resolved_day=resolved[known],
                    amount=amount[known], reason=reason[known])


@dataclass(frozen=True)
class Settlement:
    """How paid invoices are settled: instalments, short payments, credit memos."""

    partial_day: np.ndarray  # per invoice: day of the first instalment, NEVER when paid in one go
    partial_amount: np.ndarray
    residual: np.ndarray  # per invoice: short-paid amount written off on the pay day (0 when none)
    memo_of: np.ndarray  # per credit memo (issued within the history): the invoice it credits
    memo_day: np.ndarray
    memo_amount: np.ndarray  # negative


def settlement_draws(config: SyntheticConfig, invoices: Invoices, outcomes: Outcomes, disputes: Disputes,
                     calendar: Calendar, rng: np.random.Generator) -> Settlement:
    """Instalments (more often on risky invoices), short payments, and credit memos from disputes
    and from returns; each memo is netted against its invoice's final payment."""
    n = len(invoices.customer)
    amount, day, pay = invoices.amount, invoices.day, outcomes.pay_day
    paid = pay < NEVER
    span = np.where(paid, pay - day, 0)
    partial = paid & (span >= 2) & (rng.random(n) < np.clip(config.partial_payment_rate * (0.5 + outcomes.p_late), 0, 1))
    partial_day = np.where(partial, day + (rng.random(n) * span).astype(np.int64), NEVER)
    # Instalments stay below half and memos below 40% so the final net payment is always positive.
    partial_amount = np.where(partial, np.round(rng.uniform(0.2, 0.5, n) * amount, 2), 0.0)
    short = paid & (rng.random(n) < config.short_pay_rate)
    # Bank charges, rounding, small deductions: a small share of the amount, under a tolerance that
    # differs from case to case (log-uniform between 1 and 100).
    tolerance = np.exp(rng.uniform(0.0, np.log(100.0), n))
    residual = np.where(short, np.maximum(np.round(np.minimum(rng.uniform(0.002, 0.02, n) * amount, tolerance), 2),
                                          0.01), 0.0)

    resolved_by_credit = (disputes.resolved_day < NEVER) & (rng.random(len(disputes.invoice)) < config.dispute_credit_share)
    dispute_invoice = disputes.invoice[resolved_by_credit]
    dispute_credit = np.minimum(disputes.amount[resolved_by_credit], 0.4 * amount[dispute_invoice])
    dispute_credit *= rng.uniform(0.5, 1.0, len(dispute_invoice))
    credited = np.zeros(n, dtype=bool)
    credited[dispute_invoice] = True
    returned = paid & ~credited & (rng.random(n) < config.credit_memo_rate)
    return_invoice = np.flatnonzero(returned)
    return_day = between(rng, day[return_invoice], pay[return_invoice])
    return_credit = rng.uniform(0.05, 0.4, len(return_invoice)) * amount[return_invoice]

    memo_of = np.concatenate([dispute_invoice, return_invoice])
    memo_day = np.concatenate([disputes.resolved_day[resolved_by_credit], return_day])
    memo_amount = -np.maximum(np.round(np.concatenate([dispute_credit, return_credit]), 2), 1.0)
    issued = memo_day <= calendar.end
    order = np.flatnonzero(issued)[np.lexsort((memo_of[issued], memo_day[issued]))]
    return Settlement(partial_day=partial_day, partial_amount=partial_amount, residual=residual,
                      memo_of=memo_of[order], memo_day=memo_day[order], memo_amount=memo_amount[order])


# --------------------------------------------------------------------------------------------------
# Cash: payments and their applications


@dataclass(frozen=True)
class Cash:
    """Payments received within the history and how they are applied."""

    application_payment: np.ndarray
    application_document: np.ndarray  # invoice index, or number of invoices + memo index
    application_day: np.ndarray
    application_amount: np.ndarray
    payment_customer: np.ndarray
    payment_day: np.ndarray  # received
    payment_amount: np.ndarray


def cash_draws(config: SyntheticConfig, accounts: pd.DataFrame, invoices: Invoices, outcomes: Outcomes,
               settlement: Settlement, calendar: Calendar, rng: np.random.Generator) -> Cash:
    """One payment per customer and pay day, netting instalments, final payments and credit memos;
    some carry unapplied cash, some are applied a few days after they arrive."""
    n_invoices = len(invoices.customer)
    pay = outcomes.pay_day
    first = np.flatnonzero(settlement.partial_day <= calendar.end)
    final = np.flatnonzero(pay <= calendar.end)
    memos = np.flatnonzero(pay[settlement.memo_of] <= calendar.end)
    document = np.concatenate([first, final, n_invoices + memos])
    day = np.concatenate([settlement.partial_day[first], pay[final], pay[settlement.memo_of[memos]]])
    amount = np.concatenate([
        settlement.partial_amount[first],
        np.round(invoices.amount[final] - settlement.partial_amount[final] - settlement.residual[final], 2),
        settlement.memo_amount[memos],
    ])
    owner = np.concatenate([invoices.customer[first], invoices.customer[final],
                            invoices.customer[settlement.memo_of[memos]]])
    document_day = np.concatenate([invoices.day[first], invoices.day[final], settlement.memo_day[memos]])

    # Payment numbers follow the calendar, like an ERP's.
    key = (day - calendar.start) * len(accounts) + owner
    keys, payment = np.unique(key, return_inverse=True)
    payment_customer = keys % len(accounts)
    applied_day = keys // len(accounts) + calendar.start
    net = np.round(np.bincount(payment, weights=amount, minlength=len(keys)), 2)
    m = len(keys)
    unapplied = np.where(rng.random(m) < config.unapplied_cash_rate, np.round(net * rng.uniform(0.01, 0.25, m), 2) + 0.01,
                         0.0)
    lag = np.where(rng.random(m) < config.cash_application_lag_share, rng.integers(1, 4, m), 0)
    newest_document = np.full(m, calendar.start, dtype=np.int64)
    np.maximum.at(newest_document, payment, document_day)
    received = np.maximum(applied_day - lag, newest_document)  # a payment never predates what it pays
    order = np.argsort(payment, kind="stable")
    return Cash(application_payment=payment[order], application_document=document[order],
                application_day=day[order], application_amount=amount[order], payment_customer=payment_customer,
                payment_day=received, payment_amount=np.round(net + unapplied, 2))


# --------------------------------------------------------------------------------------------------
# Promises, dunning, contacts


@dataclass(frozen=True)
class Promises:
    """Promises to pay made within the history, with `kept` derived from what happened."""

    customer: np.ndarray
    invoice: np.ndarray  # -1 for a promise of an amount
    made_day: np.ndarray
    promised_day: np.ndarray
    amount: np.ndarray
    kept: np.ndarray  # meaningful where `known`
    known: np.ndarray


def promise_draws(config: SyntheticConfig, invoices: Invoices, outcomes: Outcomes,
                  settlement: Settlement, cash: Cash, calendar: Calendar, rng: np.random.Generator) -> Promises:
    """Promises on late invoices after the first reminder; riskier customers break more of them."""
    n = len(invoices.customer)
    made = next_working_day(invoices.due + 7 + rng.integers(0, 22, n))
    pay = outcomes.pay_day
    index = np.flatnonzero((rng.random(n) < config.promise_rate) & outcomes.late & (made < pay)
                           & (made <= calendar.end))
    k = len(index)
    made, pay = made[index], pay[index]
    intends = (rng.random(k) < np.clip(1.05 - outcomes.risk[index], 0.05, 0.95)) & (pay < NEVER)
    honest_date = pay + rng.integers(0, 5, k)
    promised = np.where(intends & (honest_date - made <= 45), honest_date, made + rng.integers(3, 22, k))
    instalment_before = np.where(settlement.partial_day[index] <= made, settlement.partial_amount[index], 0.0)
    amount = np.round(invoices.amount[index] - instalment_before, 2)
    customer = invoices.customer[index]
    for_amount = rng.random(k) < config.customer_promise_share

    invoice_paid = (pay <= promised) & (pay <= calendar.end)
    received = received_between(cash, customer, made, np.minimum(promised, calendar.end), calendar)
    kept = np.where(for_amount, received >= amount - 0.005, invoice_paid)
    order = np.argsort(made, kind="stable")
    return Promises(customer=customer[order], invoice=np.where(for_amount, -1, index)[order], made_day=made[order],
                    promised_day=promised[order], amount=amount[order], kept=kept[order],
                    known=(kept | (promised <= calendar.end))[order])


def received_between(cash: Cash, customer: np.ndarray, first: np.ndarray, last: np.ndarray,
                     calendar: Calendar) -> np.ndarray:
    """Cash each customer paid in from `first` to `last` (days included), by running sums."""
    width = calendar.end - calendar.start + 2
    key = cash.payment_customer * width + (cash.payment_day - calendar.start)
    order = np.argsort(key, kind="stable")
    key, running = key[order], np.concatenate([[0.0], np.cumsum(cash.payment_amount[order])])
    upto_last = running[np.searchsorted(key, customer * width + (last - calendar.start), side="right")]
    before_first = running[np.searchsorted(key, customer * width + (first - calendar.start), side="left")]
    return upto_last - before_first


@dataclass(frozen=True)
class Dunning:
    """Dunning notices issued within the history."""

    invoice: np.ndarray
    level: np.ndarray
    day: np.ndarray


def dunning_draws(config: SyntheticConfig, accounts: pd.DataFrame, invoices: Invoices, outcomes: Outcomes,
                  disputes: Disputes, promises: Promises, calendar: Calendar) -> Dunning:
    """Levels in order as an unpaid invoice ages past due, held while disputed or under a pending
    promise (a held level goes out when the hold ends), stopped by payment or write-off."""
    n = len(invoices.customer)
    settled = np.where(outcomes.never_paid, outcomes.written_off_day, outcomes.pay_day)
    dispute_open, dispute_close = np.full(n, NEVER), np.full(n, NEVER)
    dispute_open[disputes.invoice], dispute_close[disputes.invoice] = disputes.opened_day, disputes.resolved_day
    promise_made, promise_due = np.full(n, NEVER), np.full(n, NEVER)
    on_invoice = promises.invoice >= 0
    promise_made[promises.invoice[on_invoice]] = promises.made_day[on_invoice]
    promise_due[promises.invoice[on_invoice]] = promises.promised_day[on_invoice]

    def disputed_on(day: np.ndarray) -> np.ndarray:
        return (dispute_open <= day) & (day < dispute_close)

    def promised_on(day: np.ndarray) -> np.ndarray:
        return (promise_made <= day) & (day <= promise_due)

    still_running = ~accounts["dunning_block"].to_numpy()[invoices.customer]
    previous_day = np.full(n, -NEVER)
    found: list[tuple[np.ndarray, int, np.ndarray]] = []
    for level, offset in enumerate(config.dunning_offsets_days, start=1):
        day = np.maximum(invoices.due + offset, previous_day + 7)
        day = np.where(disputed_on(day), dispute_close + 1, day)
        day = next_working_day(np.where(promised_on(day), promise_due + 1, day))
        issued = still_running & (day <= calendar.end) & (settled > day) & ~disputed_on(day) & ~promised_on(day)
        index = np.flatnonzero(issued)
        found.append((index, level, day[index]))
        still_running, previous_day = issued, day
    index = np.concatenate([part[0] for part in found])
    levels = np.concatenate([np.full(len(part[0]), part[1], dtype=np.int64) for part in found])
    days = np.concatenate([part[2] for part in found])
    order = np.lexsort((levels, index, days))
    return Dunning(invoice=index[order], level=levels[order], day=days[order])


@dataclass(frozen=True)
class Contacts:
    """Contacts with customers: calls behind promises and final reminders, dispute e-mails, routine."""

    customer: np.ndarray
    day: np.ndarray
    channel: np.ndarray
    outcome: np.ndarray


def contact_draws(config: SyntheticConfig, accounts: pd.DataFrame, invoices: Invoices, disputes: Disputes,
                  promises: Promises, dunning: Dunning, calendar: Calendar, rng: np.random.Generator) -> Contacts:
    """The contact log: a call behind every promise and every last-level reminder, an e-mail behind
    every dispute, and routine contacts at `contact_rate` per customer and month."""
    last_level = dunning.level == len(config.dunning_offsets_days)
    counts = rng.poisson(config.contact_rate, (len(accounts), calendar.n_months))
    routine_customer = np.repeat(np.arange(len(accounts)), counts.sum(axis=1))
    routine_month = np.repeat(np.tile(np.arange(calendar.n_months), len(accounts)), counts.ravel())
    routine_day = next_working_day(calendar.month_starts[routine_month] + (
        rng.random(len(routine_month)) * np.diff(calendar.month_starts)[routine_month]).astype(np.int64))
    routine_kind = rng.integers(0, len(ROUTINE_CONTACTS), len(routine_day))
    channels, outcomes = (np.array(column, dtype=object) for column in zip(*ROUTINE_CONTACTS, strict=True))

    customer = np.concatenate([promises.customer, invoices.customer[disputes.invoice],
                               invoices.customer[dunning.invoice[last_level]], routine_customer])
    day = np.concatenate([promises.made_day, disputes.opened_day, dunning.day[last_level], routine_day])
    channel = np.concatenate([np.full(len(promises.customer), "call", dtype=object),
                              np.full(len(disputes.invoice), "email", dtype=object),
                              np.full(int(last_level.sum()), "call", dtype=object), channels[routine_kind]])
    call_outcomes = np.array(CALL_OUTCOMES, dtype=object)[rng.integers(0, len(CALL_OUTCOMES), int(last_level.sum()))]
    outcome = np.concatenate([np.full(len(promises.customer), "promise to pay", dtype=object),
                              np.full(len(disputes.invoice), "dispute raised", dtype=object),
                              call_outcomes, outcomes[routine_kind]])
    alive = (day >= np.maximum(calendar.start, accounts["created_day"].to_numpy()[customer])) & (day <= calendar.end)
    order = np.flatnonzero(alive)[np.lexsort((customer[alive], day[alive]))]
    return Contacts(customer=customer[order], day=day[order], channel=channel[order], outcome=outcome[order])


# --------------------------------------------------------------------------------------------------
# Ledger tables (only what a company would know) and truth tables (what only the generator knows)


def money_in_base(amount: np.ndarray, currency: np.ndarray, day: np.ndarray, rates: np.ndarray,
                  calendar: Calendar) -> np.ndarray:
    """Amounts converted at the month's rate of their document currency, in cents (never rounded to
    zero, which would lose the sign the contract checks)."""
    converted = np.round(amount * rates[currency, calendar.month_of(day)], 2)
    return np.where((converted == 0) & (amount != 0), np.sign(amount) * 0.01, converted)


def customers_table(accounts: pd.DataFrame, ids: Identifiers) -> pd.DataFrame:
    """The customers table of the contract, with collector and dunning block filled."""
    return pd.DataFrame({
        "customer_id": ids.customer,
        "name": accounts["name"].to_numpy(),
        "segment": accounts["segment"].to_numpy(),
        "country": accounts["country"].to_numpy(),
        "currency": accounts["currency"].to_numpy(),
        "payment_terms_days": accounts["terms_days"].to_numpy(dtype=np.int64),
        "credit_limit": accounts["credit_limit"].to_numpy(dtype=float),
        "created_date": dates_of(accounts["created_day"].to_numpy()),
        "collector": accounts["collector"].to_numpy(),
        "dunning_block": accounts["dunning_block"].to_numpy(dtype=bool),
    })


def invoices_table(accounts: pd.DataFrame, invoices: Invoices, outcomes: Outcomes, settlement: Settlement,
                   rates: np.ndarray, calendar: Calendar, ids: Identifiers) -> pd.DataFrame:
    """Invoices and credit memos, each memo referencing the invoice it credits; cleared on the last
    application or write-off within the history, open otherwise."""
    end = calendar.end
    pay = outcomes.pay_day
    cleared = np.where(pay <= end, pay, np.where(outcomes.written_off_day <= end, outcomes.written_off_day, NEVER))
    memo_pay = pay[settlement.memo_of]
    customer = np.concatenate([invoices.customer, invoices.customer[settlement.memo_of]])
    day = np.concatenate([invoices.day, settlement.memo_day])
    amount = np.concatenate([invoices.amount, settlement.memo_amount])
    currency = accounts["currency_index"].to_numpy()[customer]
    n_invoices, n_memos = len(invoices.day), len(settlement.memo_day)
    order = np.argsort(day, kind="stable")
    frame = pd.DataFrame({
        "invoice_id": np.concatenate([ids.invoice, ids.memo]),
        "customer_id": ids.customer[customer],
        "doc_type": np.repeat(np.array(["invoice", "credit_memo"], dtype=object), [n_invoices, n_memos]),
        "invoice_date": dates_of(day),
        "due_date": dates_of(np.concatenate([invoices.due, settlement.memo_day])),
        "amount": amount,
        "currency": accounts["currency"].to_numpy()[customer],
        "amount_base": money_in_base(amount, currency, day, rates, calendar),
        "cleared_date": dates_of(np.concatenate([cleared, np.where(memo_pay <= end, memo_pay, NEVER)])),
        "reference": np.concatenate([np.full(n_invoices, None, dtype=object), ids.invoice[settlement.memo_of]]),
    })
    return frame.iloc[order].reset_index(drop=True)


def payments_table(accounts: pd.DataFrame, cash: Cash, rates: np.ndarray, calendar: Calendar,
                   ids: Identifiers) -> pd.DataFrame:
    """Cash received, in the customer's currency and in base currency at the month's rate."""
    currency = accounts["currency_index"].to_numpy()[cash.payment_customer]
    return pd.DataFrame({
        "payment_id": ids.payment,
        "customer_id": ids.customer[cash.payment_customer],
        "received_date": dates_of(cash.payment_day),
        "amount": cash.payment_amount,
        "currency": accounts["currency"].to_numpy()[cash.payment_customer],
        "amount_base": money_in_base(cash.payment_amount, currency, cash.payment_day, rates, calendar),
    })


def applications_table(cash: Cash, ids: Identifiers) -> pd.DataFrame:
    """Which payment settles how much of which document, signed like the document."""
    return pd.DataFrame({
        "payment_id": ids.payment[cash.application_payment],
        "invoice_id": ids.document(cash.application_document),
        "applied_date": dates_of(cash.application_day),
        "amount": cash.application_amount,
    })


def disputes_table(disputes: Disputes, calendar: Calendar, ids: Identifiers) -> pd.DataFrame:
    """Disputes as known at the end of the history (a later resolution is not yet known)."""
    resolved = np.where(disputes.resolved_day <= calendar.end, disputes.resolved_day, NEVER)
    order = np.argsort(disputes.opened_day, kind="stable")
    return pd.DataFrame({
        "dispute_id": ids.numbered("D", len(order)),
        "invoice_id": ids.invoice[disputes.invoice[order]],
        "opened_date": dates_of(disputes.opened_day[order]),
        "resolved_date": dates_of(resolved[order]),
        "reason": disputes.reason[order],
        "amount": disputes.amount[order],
    })


def promises_table(promises: Promises, ids: Identifiers) -> pd.DataFrame:
    """Promises to pay; `kept` is unknown (NA) while the promised date has not come."""
    invoice_id = np.where(promises.invoice >= 0, ids.invoice[np.maximum(promises.invoice, 0)], None)
    return pd.DataFrame({
        "promise_id": ids.numbered("PR", len(promises.customer)),
        "customer_id": ids.customer[promises.customer],
        "invoice_id": invoice_id.astype(object),
        "made_date": dates_of(promises.made_day),
        "promised_date": dates_of(promises.promised_day),
        "amount": promises.amount,
        "kept": pd.arrays.BooleanArray(promises.kept & promises.known, ~promises.known),
    })


def writeoffs_table(invoices: Invoices, outcomes: Outcomes, settlement: Settlement, calendar: Calendar,
                    ids: Identifiers) -> pd.DataFrame:
    """Bad debt written off when long past due, and small short-payment residuals on the pay day."""
    bad = np.flatnonzero(outcomes.written_off_day <= calendar.end)
    short = np.flatnonzero((settlement.residual > 0) & (outcomes.pay_day <= calendar.end))
    index = np.concatenate([bad, short])
    day = np.concatenate([outcomes.written_off_day[bad], outcomes.pay_day[short]])
    order = np.lexsort((index, day))
    return pd.DataFrame({
        "invoice_id": ids.invoice[index[order]],
        "date": dates_of(day[order]),
        "amount": np.concatenate([invoices.amount[bad], settlement.residual[short]])[order],
    })


def dunning_table(dunning: Dunning, ids: Identifiers) -> pd.DataFrame:
    """Dunning notices by invoice and level."""
    return pd.DataFrame({
        "invoice_id": ids.invoice[dunning.invoice],
        "level": dunning.level.astype(np.int64),
        "issued_date": dates_of(dunning.day),
    })


def contacts_table(contacts: Contacts, ids: Identifiers) -> pd.DataFrame:
    """The contact log."""
    return pd.DataFrame({
        "contact_id": ids.numbered("CT", len(contacts.day)),
        "customer_id": ids.customer[contacts.customer],
        "contact_date": dates_of(contacts.day),
        "channel": contacts.channel,
        "outcome": contacts.outcome,
    })


@dataclass(frozen=True)
class EmailContacts:
    """Who receives a customer's reminders: 0-2 people per customer, the first in billing or payables."""

    customer: np.ndarray
    number: np.ndarray  # 0 for a customer's first contact, 1 for its second
    role: np.ndarray
    name: np.ndarray


def email_contact_draws(accounts: pd.DataFrame, rng: np.random.Generator) -> EmailContacts:
    """0, 1 or 2 e-mail contacts per customer (`EMAIL_CONTACT_COUNTS`), with a role and a person's name."""
    counts = rng.choice(len(EMAIL_CONTACT_COUNTS), size=len(accounts), p=EMAIL_CONTACT_COUNTS)
    customer = np.repeat(np.arange(len(accounts)), counts)
    number = np.arange(len(customer)) - np.repeat(np.cumsum(counts) - counts, counts)
    first = np.array(EMAIL_FIRST_ROLES, dtype=object)[rng.integers(0, len(EMAIL_FIRST_ROLES), len(customer))]
    second = np.array(EMAIL_SECOND_ROLES, dtype=object)[rng.integers(0, len(EMAIL_SECOND_ROLES), len(customer))]
    # Two different people for the two contacts of a customer: the second name is a later one in the list.
    first_name = rng.integers(0, len(PERSON_NAMES), len(accounts))[customer]
    names = np.array(PERSON_NAMES, dtype=object)[(first_name + number * 5) % len(PERSON_NAMES)]
    return EmailContacts(customer, number, np.where(number == 0, first, second), names)


def email_contacts_table(contacts: EmailContacts, accounts: pd.DataFrame, ids: Identifiers) -> pd.DataFrame:
    """The e-mail contacts: an address at a domain made from the company's name (reserved `.example`), the
    language of the customer's country."""
    company = accounts["name"].to_numpy(dtype=str)[contacts.customer]
    customer_id = ids.customer[contacts.customer].astype(str)
    # The customer id in the domain keeps two customers with the same name apart.
    domain = np.char.add(np.char.add(np.char.lower(np.char.partition(company, " ")[:, 0]), "-"),
                         np.char.lower(customer_id))
    local = np.char.lower(np.char.replace(contacts.name.astype(str), " ", "."))
    country = accounts["country"].to_numpy()[contacts.customer]
    return pd.DataFrame({
        "customer_id": customer_id.astype(object),
        "email": np.char.add(np.char.add(local, "@"), np.char.add(domain, ".example")).astype(object),
        "name": contacts.name,
        "role": contacts.role,
        "language": np.where(np.isin(country, GERMAN_COUNTRIES), "de", "en").astype(object),
    })


def truth_customers_table(accounts: pd.DataFrame, ids: Identifiers) -> pd.DataFrame:
    """Each customer's hidden profile, base risk and the dates its risk turned."""
    terms = accounts["terms_days"].astype(str) + np.where(accounts["end_of_month"], " days end of month", " days net")
    return pd.DataFrame({
        "customer_id": ids.customer,
        "profile": np.array(PROFILES, dtype=object)[accounts["profile"].to_numpy()],
        "base_risk": sigmoid(accounts["base_risk"].to_numpy()),
        "deterioration_date": dates_of(accounts["deterioration_day"].to_numpy()),
        "stop_date": dates_of(accounts["stop_day"].to_numpy()),
        "recovery_date": dates_of(accounts["recovery_day"].to_numpy()),
        "payment_run": np.array(PAYMENT_RUNS, dtype=object)[accounts["payment_run"].to_numpy()],
        "terms": terms.to_numpy(dtype=object),
        "typical_amount_base": np.round(accounts["typical_amount"].to_numpy(), 2),
    })


def truth_risk_path_table(risk: np.ndarray, calendar: Calendar, ids: Identifiers) -> pd.DataFrame:
    """Each customer's latent P(late) of a typical invoice, month by month."""
    customers, months = risk.shape
    return pd.DataFrame({
        "customer_id": np.repeat(ids.customer, months),
        "month": np.tile(dates_of(calendar.month_starts[:-1]), customers),
        "risk": sigmoid(risk).ravel(),
    })


def truth_invoices_table(invoices: Invoices, outcomes: Outcomes, ids: Identifiers) -> pd.DataFrame:
    """Each invoice's true P(late) as drawn, the draw, and the drawn pay day even past the history."""
    paid = ~outcomes.never_paid
    return pd.DataFrame({
        "invoice_id": ids.invoice,
        "customer_id": ids.customer[invoices.customer],
        "p_late": outcomes.p_late,
        "late": outcomes.late,
        "days_late": np.where(paid, outcomes.pay_day - invoices.due, np.nan),
        "pay_date": dates_of(outcomes.pay_day),
        "never_paid": outcomes.never_paid,
        "disputed": outcomes.disputed,
        "customer_risk": outcomes.risk,
    })


def truth_fx_table(config: SyntheticConfig, rates: np.ndarray, calendar: Calendar) -> pd.DataFrame:
    """The monthly rate path the generator converted with (base currency per unit)."""
    currencies, months = rates.shape
    return pd.DataFrame({
        "currency": np.repeat(np.array(list(config.currencies), dtype=object), months),
        "month": np.tile(dates_of(calendar.month_starts[:-1]), currencies),
        "rate": rates.ravel(),
    })
