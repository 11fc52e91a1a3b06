"""What the API and the web pages show, as plain functions over one loaded ledger and its champions.

`ServingState` holds the ledger and the models loaded once at start-up, and caches the scores and the
full worklist per `as_of` (building them is the expensive part; a request then filters a frame). Every
method takes `as_of` explicitly; `default_as_of` is the last day the ledger has events for, never today.
"""

from __future__ import annotations

import datetime
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features import FeatureConfig
from features.labels import last_event_date
from ledger import Ledger, LedgerError, Problem
from ledger.errors import NotFound as LedgerNotFound
from models.late_payment import BUCKET_NAMES
from rules.worklist import WorklistPolicy, filtered_worklist
from serving.reasons import feature_descriptions, top_reasons
from serving.scoring import (
    SCORE_COLUMNS,
    Champions,
    Scores,
    build_forecast,
    build_worklist,
    fill_reasons,
    score,
    with_pay_dates,
    worklist_reasons,
)

CACHED_DATES = 4
BUCKET_COLUMNS = [f"p_{name}" for name in BUCKET_NAMES]


class NotFound(LedgerNotFound, LookupError):
    """A customer or invoice the ledger does not know at the date asked."""


@dataclass
class ServingState:
    """The ledger and champions a service answers from, with per-date caches."""

    ledger: Ledger
    champions: Champions
    policy: WorklistPolicy = field(default_factory=WorklistPolicy)
    store: object | None = None
    base_ledger: Ledger | None = None
    as_of_future_days: int = 92  # Settings.as_of_future_days
    feature_config: FeatureConfig = field(default_factory=FeatureConfig)
    default_as_of: pd.Timestamp = field(init=False)  # the base ledger's last day with an event, never today
    first_invoice_date: pd.Timestamp = field(init=False)
    _scores: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _worklists: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _explained: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.base_ledger = self.base_ledger or self.ledger
        # Both scan the whole ledger: computed once, not on every request.
        self.default_as_of = last_event_date(self.base_ledger)
        self.first_invoice_date = self.base_ledger.invoices["invoice_date"].min()
        self.reload_activity()

    def reload_activity(self) -> None:
        """Rebuild the ledger from the base ledger and the activity store, and forget every cached
        result: a recorded promise must change the next worklist."""
        from serving.activity import with_activity

        if self.store is not None:
            self.ledger = with_activity(self.base_ledger, self.store.ledger_tables())
        with self._lock:
            self._scores.clear()
            self._worklists.clear()
            self._explained.clear()

    def checked_as_of(self, as_of: datetime.date | None, field: str = "as_of") -> pd.Timestamp:
        """`as_of` (or the default) as a timestamp, if between the ledger's first invoice and its last event
        plus `as_of_future_days`; else a 400 naming `field` and the range."""
        if as_of is None:
            return self.default_as_of
        # Compared as dates first: 9999-12-31 is a valid date but not a pandas timestamp.
        day = as_of.date() if isinstance(as_of, datetime.datetime) else as_of
        first, last = self.as_of_range()
        if first is None or not first <= day <= last:
            window = "the ledger has no invoices" if first is None else (
                f"expected {first:%Y-%m-%d} (the first invoice) to {last:%Y-%m-%d} (the last event, "
                f"{self.default_as_of:%Y-%m-%d}, + {self.as_of_future_days} days)")
            raise LedgerError(Problem(field, None, None, f"{day:%Y-%m-%d} is outside the ledger's dates: {window}"),
                              title="bad input")
        return pd.Timestamp(day)

    def as_of_range(self) -> tuple[datetime.date | None, datetime.date]:
        """The first and last dates `checked_as_of` accepts (None first when there are no invoices)."""
        last = (self.default_as_of + pd.Timedelta(days=self.as_of_future_days)).date()
        return (None if pd.isna(self.first_invoice_date) else self.first_invoice_date.date()), last

    def scores(self, as_of: pd.Timestamp | None = None) -> Scores:
        """Scores of every open document (with bucket probabilities) and customer at `as_of` (cached)."""
        return self._served(as_of).scores

    def _served(self, as_of: pd.Timestamp | None) -> ServedScores:
        as_of = self.checked_as_of(as_of)
        return self._cached(self._scores, as_of, lambda: served_scores(score(
            self.ledger, as_of, self.champions, horizon_days=self.policy.horizon_days), self.champions))

    def full_worklist(self, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
        """The whole worklist at `as_of` (cached); filter it with `worklist`."""
        as_of = self.checked_as_of(as_of)
        return self._cached(self._worklists, as_of, lambda: build_worklist(
            self.ledger, as_of, self.champions, policy=self.policy, scores=self.scores(as_of), reasons=False))

    def worklist(self, as_of: pd.Timestamp | None = None, collector: str | None = None,
                 segment: str | None = None, top: int | None = None,
                 customers: frozenset[str] | None = None) -> pd.DataFrame:
        """The worklist filtered by collector, segment and `customers` (None: all), ranks renumbered,
        first `top` rows."""
        portfolio = self.store.portfolio(collector) if self.store is not None and collector is not None else []
        table = filtered_worklist(self.full_worklist(as_of), customers=customers, collector=collector,
                                  segment=segment, top=top, portfolio=portfolio or None)
        scores = self.scores(as_of)
        return fill_reasons(table, self._reasons(scores, table["customer_id"].tolist()))

    def _reasons(self, scores: Scores, customer_ids: list[str]) -> dict[str, list[str]]:
        """Model reasons of these customers at the scores' date, computed once per customer and date."""
        if scores.as_of not in self._explained and len(self._explained) >= CACHED_DATES:
            self._explained.pop(next(iter(self._explained)))
        known = self._explained.setdefault(scores.as_of, {})
        missing = [c for c in customer_ids if c not in known]
        if missing:
            known.update(worklist_reasons(scores, self.champions, missing))
        return {c: known.get(c, []) for c in customer_ids}

    def score_invoices(self, as_of: pd.Timestamp | None, invoice_ids: list[str] | None,
                       customers: frozenset[str] | None = None) -> pd.DataFrame:
        """Scores of the given open documents (all of `customers`, None: of all, when no ids) in the order
        given, with bucket probabilities, pay dates and reasons."""
        served = self._served(as_of)
        items = served.scores.items
        if invoice_ids is None and customers is not None:
            items = items[items["customer_id"].isin(customers)]
        elif invoice_ids is not None:
            positions = served.by_invoice.reindex(invoice_ids)
            if positions.isna().any():
                unknown = sorted(set(np.asarray(invoice_ids)[positions.isna().to_numpy()]))
                raise NotFound(f"not open at {served.scores.as_of:%Y-%m-%d}: {', '.join(unknown[:10])}")
            items = items.iloc[positions.to_numpy(dtype=int)]
        return self._scored_rows(served, items)

    def _scored_rows(self, served: ServedScores, items: pd.DataFrame) -> pd.DataFrame:
        """The score columns of `items` with pay dates and reasons (the per-row model calls happen here)."""
        items = with_pay_dates(items, self.champions, served.scores.as_of).reset_index(drop=True)
        late = self.champions.late
        reasons = (invoice_reasons(items, late.contributions(items)) if late is not None and len(items)
                   else [[] for _ in range(len(items))])
        return items[SCORE_COLUMNS + BUCKET_COLUMNS].assign(reasons=reasons)

    def customer_risk(self, customer_id: str, as_of: pd.Timestamp | None = None) -> dict:
        """One customer's risk at `as_of`: its open items scored with reasons, and its deterioration
        probability, flag and reasons (the light part of the customer view)."""
        served = self._served(as_of)
        if customer_id in served.risk:  # the same answer until the ledger or the activity changes
            return served.risk[customer_id]
        scores = served.scores
        if customer_id not in served.customer_position.index:
            raise NotFound(f"customer {customer_id!r} is not known at {scores.as_of:%Y-%m-%d}")
        facts = scores.customers.iloc[[served.customer_position[customer_id]]]
        positions = served.by_customer.get(customer_id, np.array([], dtype=int))
        items = self._scored_rows(served, scores.items.iloc[positions])
        risk = {"as_of": scores.as_of, "customer_id": customer_id, "open_items": items,
                "deterioration_probability": facts["deterioration_probability"].iloc[0],
                "deteriorating": bool(facts["deteriorating"].iloc[0]),
                "deterioration_reasons": self.deterioration_reasons(facts).get(customer_id, [])}
        served.risk[customer_id] = risk
        return risk

    def customer(self, customer_id: str, as_of: pd.Timestamp | None = None) -> dict:
        """Everything about one customer at `as_of`: open items with risk and reasons, aging, deterioration
        with its explanation, worklist position and KPIs of the last three months."""
        from rules.aging import aging_report
        from rules.kpis import kpi_report

        scores = self.scores(as_of)
        as_of = scores.as_of
        known = scores.customers["customer_id"] == customer_id
        if not known.any():
            raise NotFound(f"customer {customer_id!r} is not known at {as_of:%Y-%m-%d}")
        facts = scores.customers[known].iloc[0]
        items = self.score_invoices(as_of, scores.items.loc[scores.items["customer_id"] == customer_id,
                                                            "invoice_id"].tolist())
        aging = aging_report(self.ledger, as_of)
        aging = aging[aging["customer_id"] == customer_id]
        kpis = kpi_report(self.ledger, (as_of - pd.offsets.MonthBegin(3)).normalize(), as_of)
        kpis = kpis[kpis["customer_id"] == customer_id]
        worklist = self.full_worklist(as_of)
        row = worklist[worklist["customer_id"] == customer_id]
        info = self.ledger.customers.set_index("customer_id").loc[customer_id]
        return {
            "as_of": as_of, "customer_id": customer_id, "name": info["name"], "segment": info["segment"],
            "collector": info.get("collector"), "credit_limit": info["credit_limit"],
            "open_items": items, "aging": aging, "kpis": kpis,
            "deterioration_probability": facts["deterioration_probability"],
            "deteriorating": bool(facts["deteriorating"]),
            "deterioration_reasons": self.deterioration_reasons(scores.customers[known]).get(customer_id, []),
            "deterioration_contributions": self.deterioration_contributions(scores.customers[known]),
            "worklist": row,
        }

    def deterioration_reasons(self, customers: pd.DataFrame) -> dict[str, list[str]]:
        """Per customer: the deterioration model's top reasons in words."""
        model = self.champions.deterioration
        if model is None or customers.empty:
            return {}
        contributions = model.contributions(customers)
        return {row.customer_id: top_reasons(contributions.loc[index], customers.loc[index])
                for index, row in zip(customers.index, customers.itertuples(), strict=True)}

    def deterioration_contributions(self, customers: pd.DataFrame, count: int = 8) -> list[dict]:
        """The largest SHAP contributions (either sign) of one customer, for an explanation chart."""
        model = self.champions.deterioration
        if model is None or customers.empty:
            return []
        values = model.contributions(customers).iloc[0]
        top = values.reindex(values.abs().sort_values(ascending=False).index).head(count)
        return [{"feature": name, "contribution": float(value),
                 "value": None if pd.isna(customers.iloc[0].get(name)) else float(customers.iloc[0][name])}
                for name, value in top.items()]

    def deterioration_flags(self, as_of: pd.Timestamp | None = None, flagged_only: bool = True,
                            top: int | None = None) -> pd.DataFrame:
        """Customers by deterioration probability, with the flag, the evidence and the reasons."""
        scores = self.scores(as_of)
        customers = scores.customers
        if flagged_only:
            customers = customers[customers["deteriorating"]]
        customers = customers.sort_values(["deterioration_probability", "customer_id"], ascending=[False, True])
        if top is not None:
            customers = customers.head(top)
        reasons = self.deterioration_reasons(customers)
        evidence = deterioration_evidence(self.feature_config)
        table = customers[["customer_id", "deterioration_probability", "deteriorating",
                           *[c for c in evidence if c in customers]]].reset_index(drop=True)
        names = self.ledger.customers.set_index("customer_id")["name"]
        return table.assign(name=table["customer_id"].map(names),
                            reasons=[reasons.get(c, []) for c in table["customer_id"]])

    def forecast(self, as_of: pd.Timestamp | None = None, horizon_weeks: int = 13, freq: str = "week") -> pd.DataFrame:
        """The cash forecast at `as_of` (see `serving.scoring.build_forecast`)."""
        scores = self.scores(as_of)
        return build_forecast(self.ledger, scores.as_of, self.champions, horizon_weeks=horizon_weeks, freq=freq,
                              scores=scores)

    def _cached(self, cache: OrderedDict, key: pd.Timestamp, build):
        with self._lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        value = build()
        with self._lock:
            cache[key] = value
            while len(cache) > CACHED_DATES:
                cache.popitem(last=False)
        return value


@dataclass
class ServedScores:
    """Scores at one date with the lookups a request needs (row positions by invoice and customer)."""

    scores: Scores
    by_invoice: pd.Series
    by_customer: dict
    customer_position: pd.Series
    risk: dict = field(default_factory=dict)  # customer -> its risk answer, filled as customers are asked for


def served_scores(scores: Scores, champions: Champions) -> ServedScores:
    """Add bucket probabilities to every item (one vectorised call) and index the rows for lookups."""
    items = scores.items.reset_index(drop=True)
    items = pd.concat([items, bucket_probabilities(champions, items).reset_index(drop=True)], axis=1)
    scores = Scores(scores.as_of, items, scores.customers.reset_index(drop=True))
    by_invoice = pd.Series(np.arange(len(items)), index=items["invoice_id"].to_numpy())
    by_customer = {customer: np.asarray(rows) for customer, rows in items.groupby("customer_id").indices.items()}
    customer_position = pd.Series(np.arange(len(scores.customers)), index=scores.customers["customer_id"].to_numpy())
    return ServedScores(scores, by_invoice, by_customer, customer_position)


def deterioration_evidence(config: FeatureConfig) -> list[str]:
    """The feature columns shown as evidence beside a deterioration flag, named by the feature settings."""
    return ["open_ar_base", "overdue_amount_base", "max_days_past_due",
            f"avg_days_late_last_{config.last_paid_invoices}", "days_late_trend", "credit_utilisation",
            f"broken_promises_{config.broken_promise_days}d", "open_disputes"]


def invoice_reasons(items: pd.DataFrame, contributions: pd.DataFrame, count: int = 3) -> list[list[str]]:
    """Per open document: the late-payment model's top reasons in words."""
    words = feature_descriptions()
    return [top_reasons(contributions.iloc[position], items.iloc[position], count, words)
            for position in range(len(items))]


def bucket_probabilities(champions: Champions, items: pd.DataFrame) -> pd.DataFrame:
    """P(on time) and P(1-30 / 31-60 / 61-90 / 90+ days late) per item (NaN without a late model)."""
    if champions.late is None or items.empty:
        return pd.DataFrame(np.nan, index=items.index, columns=BUCKET_COLUMNS)
    buckets = champions.late.predict_buckets(items)
    return buckets.rename(columns={name: f"p_{name}" for name in buckets.columns})

