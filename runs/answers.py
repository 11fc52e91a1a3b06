"""What the day's work reads, answered from a `Day`'s tables by lookups: no model call, no feature.

`DayView` indexes a day once (rows by invoice and customer) and answers the API's and the web pages'
reads: the worklist, scores, one customer's risk and view, deterioration flags, the forecast, aging and
dunning. The day's recorded actions are layered on by `runs.actions`, which returns a new view with the
changed customers' worklist and dunning rows; a view is never changed once built, so a request that holds
one sees one consistent day.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ledger.errors import BadInput, NotFound
from rules.worklist import filtered_worklist
from runs.day import (
    BUCKET_COLUMNS,
    CHART_COLUMNS,
    CONTRIBUTION_COLUMNS,
    FORECAST_FREQS,
    REASON_COLUMNS,
    Day,
    kpi_start,
)
from runs.reasons import reason_lists
from runs.scoring import SCORE_COLUMNS

SCORE_ROW_COLUMNS = SCORE_COLUMNS + BUCKET_COLUMNS + ["reasons"]


class UnknownDocument(NotFound, LookupError):
    """A customer or document the day does not know."""


@dataclass(frozen=True)
class DayView:
    """One day's tables with their lookups, and the worklist and dunning rows after the day's actions."""

    day: Day
    scores: pd.DataFrame
    customers: pd.DataFrame
    worklist: pd.DataFrame
    dunning: pd.DataFrame
    by_invoice: pd.Series
    by_customer: dict
    customer_position: pd.Series
    aging_table: pd.DataFrame  # the aging report in its four views (`runs.day.aging_table`)
    actions_applied: frozenset = frozenset()  # customers whose rows were re-derived after recorded actions
    risk: dict = field(default_factory=dict, compare=False)  # customer -> its risk answer, filled as asked
    # What a caller made of an answer that does not change with the day's actions (the API's encoded JSON
    # of a customer's risk), kept with the day it was made from.
    encoded: dict = field(default_factory=dict, compare=False)

    @property
    def as_of(self) -> pd.Timestamp:
        return self.day.as_of

    def with_rows(self, worklist: pd.DataFrame, dunning: pd.DataFrame, customers: set[str], aging: pd.DataFrame,
                  items: dict[str, pd.DataFrame]) -> DayView:
        """The same day with a new worklist, dunning proposal and aging (after actions on `customers`), and the
        scored open documents in `items` (customer -> its documents still open) in place of theirs."""
        changed = replace(self, worklist=worklist, dunning=dunning, aging_table=aging,
                          actions_applied=self.actions_applied | customers, risk=self.risk, encoded=self.encoded)
        if not items:
            return changed
        kept = ~self.scores["customer_id"].isin(set(items)).to_numpy()
        scores = pd.concat([self.scores[kept], *items.values()], ignore_index=True)
        # What was made from the changed customers' rows goes (their risk answers); the JSON of the other rows
        # is kept (they come first, in their order), so a cash write does not re-encode the whole book.
        view = replace(changed, **score_lookups(scores), risk={customer: risk for customer, risk in self.risk.items()
                                                               if customer not in items},
                       encoded={key: body for key, body in self.encoded.items()
                                if key != "score_rows" and not (isinstance(key, tuple) and key[-1] in items)})
        old_rows = self.encoded.get("score_rows")
        if old_rows is not None:
            new_rows = json_records(view.score_rows(np.arange(int(kept.sum()), len(scores))))
            view.encoded["score_rows"] = [old_rows[position] for position in np.flatnonzero(kept)] + new_rows
        return view

    # ---- scores ---------------------------------------------------------------------------------------

    def score_rows(self, positions: np.ndarray) -> pd.DataFrame:
        """The score columns of the rows at `positions`, with their reasons as a list."""
        rows = self.scores.iloc[positions]
        return rows[SCORE_COLUMNS + BUCKET_COLUMNS].assign(reasons=reason_lists(rows)).reset_index(drop=True)

    def invoices(self, invoice_ids: list[str] | None, customers: frozenset[str] | None = None) -> pd.DataFrame:
        """Scores of the given open documents in the order given (all of `customers`, None: of all, when no
        ids); `UnknownDocument` naming those not open at the day's date."""
        if invoice_ids is None:
            if customers is None:
                return self.score_rows(np.arange(len(self.scores)))
            return self.score_rows(np.flatnonzero(self.scores["customer_id"].isin(customers).to_numpy()))
        positions = self.by_invoice.reindex(invoice_ids)
        if positions.isna().any():
            unknown = sorted(set(np.asarray(invoice_ids)[positions.isna().to_numpy()]))
            raise UnknownDocument(f"not open at {self.as_of:%Y-%m-%d}: {', '.join(unknown[:10])}")
        return self.score_rows(positions.to_numpy(dtype=int))

    # ---- customers ------------------------------------------------------------------------------------

    def facts(self, customer_id: str) -> pd.Series:
        """The customer's row of the day (features, deterioration, reasons); `UnknownDocument` if not known."""
        position = self.customer_position.get(customer_id)
        if position is None:
            raise UnknownDocument(f"customer {customer_id!r} is not known at {self.as_of:%Y-%m-%d}")
        return self.customers.iloc[position]

    def risk_document(self, customer_id: str) -> dict:
        """One customer's risk as JSON-ready Python (dates as ISO strings, NaN as None): the rows of every
        customer are converted once, in one pass, the first time any is asked for."""
        facts = self.facts(customer_id)
        rows = self.json_rows()
        positions = self.by_customer.get(customer_id, ())
        return {"as_of": f"{self.as_of:%Y-%m-%d}", "customer_id": customer_id,
                "deterioration_probability": json_value(facts["deterioration_probability"]),
                "deteriorating": bool(facts["deteriorating"]), "deterioration_reasons": deterioration_reasons(facts),
                "open_items": [rows[position] for position in positions]}

    def json_rows(self) -> list[dict]:
        """Every score row as a JSON-ready dict with its reasons, built once per day."""
        rows = self.encoded.get("score_rows")
        if rows is None:
            rows = json_records(self.score_rows(np.arange(len(self.scores))))
            self.encoded["score_rows"] = rows
        return rows

    def customer_risk(self, customer_id: str) -> dict:
        """One customer's open items scored with reasons, and its deterioration probability, flag and reasons."""
        if customer_id in self.risk:
            return self.risk[customer_id]
        facts = self.facts(customer_id)
        positions = self.by_customer.get(customer_id, np.array([], dtype=int))
        risk = {"as_of": self.as_of, "customer_id": customer_id, "open_items": self.score_rows(positions),
                "deterioration_probability": facts["deterioration_probability"],
                "deteriorating": bool(facts["deteriorating"]),
                "deterioration_reasons": deterioration_reasons(facts)}
        self.risk[customer_id] = risk
        return risk

    def customer(self, customer_id: str, kpis: pd.DataFrame) -> dict:
        """Everything about one customer: open items with risk and reasons, aging, deterioration with its
        explanation, worklist row, and `kpis` (its KPIs of the last months, computed by the caller)."""
        facts = self.facts(customer_id)
        risk = self.customer_risk(customer_id)
        aging = self.aging("due_date", "base")
        return {
            "as_of": self.as_of, "customer_id": customer_id, "name": facts.get("name"),
            "segment": facts.get("segment"), "collector": facts.get("collector"),
            "credit_limit": facts.get("credit_limit"), "open_items": risk["open_items"],
            "aging": aging[aging["customer_id"] == customer_id], "kpis": kpis[kpis["customer_id"] == customer_id],
            "deterioration_probability": facts["deterioration_probability"],
            "deteriorating": bool(facts["deteriorating"]), "deterioration_reasons": deterioration_reasons(facts),
            "deterioration_contributions": self.contributions(customer_id),
            "worklist": self.worklist[self.worklist["customer_id"] == customer_id],
        }

    def contributions(self, customer_id: str) -> list[dict]:
        """The customer's largest deterioration contributions (either sign), for the explanation chart."""
        chart = self.day.tables.get("contributions", pd.DataFrame(columns=CHART_COLUMNS))
        rows = chart[chart["customer_id"] == customer_id]
        return [{"feature": row.feature, "contribution": float(row.contribution),
                 "value": None if pd.isna(row.value) else float(row.value)} for row in rows.itertuples()]

    def deterioration_flags(self, evidence: list[str], flagged_only: bool = True, top: int | None = None) -> pd.DataFrame:
        """Customers by deterioration probability, with the flag, the `evidence` columns and the reasons."""
        customers = self.customers
        if flagged_only:
            customers = customers[customers["deteriorating"].astype(bool)]
        customers = customers.sort_values(["deterioration_probability", "customer_id"], ascending=[False, True])
        if top is not None:
            customers = customers.head(top)
        table = customers[["customer_id", "deterioration_probability", "deteriorating",
                           *[column for column in evidence if column in customers]]].reset_index(drop=True)
        return table.assign(deteriorating=table["deteriorating"].astype(bool),
                            name=customers["name"].to_numpy() if "name" in customers else None,
                            reasons=reason_lists(customers))

    # ---- the book -------------------------------------------------------------------------------------

    def worklist_rows(self, customers: frozenset[str] | None = None, collector: str | None = None,
                      segment: str | None = None, top: int | None = None,
                      portfolio: list[str] | None = None) -> pd.DataFrame:
        """The worklist filtered by collector (or its recorded portfolio), segment and `customers`, ranks
        renumbered, the first `top` rows."""
        return filtered_worklist(self.worklist, customers=customers, collector=collector, segment=segment, top=top,
                                 portfolio=portfolio)

    def forecast(self, horizon_weeks: int, freq: str) -> pd.DataFrame:
        """The forecast by `freq` over the first `horizon_weeks` weeks of the day's horizon (the periods of a
        shorter horizon are the first periods of the longer one: same draws, same distributions)."""
        stored = int(self.day.facts.get("horizon_weeks", 0))
        if freq not in FORECAST_FREQS:
            raise BadInput(f"freq must be one of {', '.join(FORECAST_FREQS)}, got {freq!r}")
        if horizon_weeks > stored:
            raise BadInput(f"the run of {self.as_of:%Y-%m-%d} forecasts {stored} weeks; ask for at most "
                           f"{stored} or run `arrisk run --horizon-weeks {horizon_weeks}`")
        table = self.day.tables["forecast"]
        periods = horizon_weeks if freq == "week" else 7 * horizon_weeks
        rows = table[(table["freq"] == freq) & (table["period"] <= periods)]
        return rows.drop(columns="freq").reset_index(drop=True)

    def aging(self, basis: str = "due_date", amounts: str = "base") -> pd.DataFrame:
        """The aging report by customer in one of its four views."""
        table = self.aging_table
        rows = table[(table["basis"] == basis) & (table["amounts"] == amounts)]
        return rows.drop(columns=["basis", "amounts"]).reset_index(drop=True)

    def kpi_window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """The months of KPIs the customer view shows: from the start of the month `KPI_MONTHS` - 1 before."""
        return kpi_start(self.as_of), self.as_of


def day_view(day: Day) -> DayView:
    """Index a day's tables for lookups."""
    customers = day.tables["customers"].reset_index(drop=True)
    customer_position = pd.Series(np.arange(len(customers)), index=customers["customer_id"].to_numpy())
    return DayView(day, customers=customers, worklist=day.tables["worklist"].reset_index(drop=True),
                   dunning=day.tables["dunning"].reset_index(drop=True), customer_position=customer_position,
                   aging_table=day.tables["aging"], **score_lookups(day.tables["scores"]))


def score_lookups(scores: pd.DataFrame) -> dict:
    """The scored open documents with their positions by document and by customer."""
    scores = scores.reset_index(drop=True)
    return {"scores": scores, "by_invoice": pd.Series(np.arange(len(scores)), index=scores["invoice_id"].to_numpy()),
            "by_customer": {customer: np.asarray(rows)
                            for customer, rows in scores.groupby("customer_id").indices.items()}}


def json_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts in one vectorised pass: dates as ISO strings, NaN as None, numbers as Python's."""
    columns = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            values = column.dt.strftime("%Y-%m-%d").astype(object)
        elif pd.api.types.is_bool_dtype(column):
            values = column.astype(bool).astype(object)
        elif pd.api.types.is_integer_dtype(column):
            values = pd.Series(column.tolist(), index=column.index, dtype=object)
        elif pd.api.types.is_numeric_dtype(column):
            values = pd.Series(column.to_numpy(dtype=float).tolist(), index=column.index, dtype=object)
        else:
            values = column.astype(object)
        columns[name] = values.where(column.notna(), None) if not pd.api.types.is_bool_dtype(column) else values
    return pd.DataFrame(columns).to_dict("records")


def json_value(value):
    return None if value is None or pd.isna(value) else float(value)


def deterioration_reasons(facts: pd.Series) -> list[str]:
    """The deterioration model's reasons in the customer's row (the `reason_*` columns of `customers`)."""
    return [text for text in (facts.get(column) for column in REASON_COLUMNS) if isinstance(text, str) and text]


__all__ = ["CONTRIBUTION_COLUMNS", "DayView", "UnknownDocument", "day_view"]
