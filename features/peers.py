"""Recency-weighted lateness of a customer and of its peers (issue 19): the customer's current state.

Lateness items are the customer's invoices that say how late it pays, as known at `as_of`:
- paid invoices (`features.settlement`): their days late, weighted by the age of the paid date;
- open invoices past due (with the `incl_open` variant): their days past due so far, a lower bound of how
  late they will be paid, weighted as of today (age 0); late once more than the grace days past due.
Open invoices not yet due say nothing yet and are left out.

A weight is 0.5 ** (age in days / `recency_halflife_days`), rounded to a multiple of 2**-20 and kept as
an integer count of 2**-20 (`recency_weights`). Every sum below is then a sum of integers (weight x whole
days late, weight x late flag), which adds up exactly in any order: the peer sums of a ledger's buckets
(`ledger.partitions`, each a set of whole customers) add up to the whole ledger's, bit for bit, so the
Dask engines compute the peer features of each bucket from the buckets' added sums (`added_peer_sums`)
and get the pandas engine's values exactly.

Peer groups are the customer's `segment`, `country` and, when the customers table has one, `industry`
(master data as it stands, see `features.asof`). A peer figure is over all customers of the group known
at `as_of`, the customer itself included.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from features.settlement import days_between

WEIGHT_UNIT = 2 ** 20  # a weight of 1 in integer units
PEER_KINDS = ("segment", "country", "industry")
SUM_COLUMNS = ["weight", "weighted_days_late", "weighted_late"]
PEER_SUM_COLUMNS = ["kind", "group", *SUM_COLUMNS]


def recency_weights(age_days: pd.Series, halflife_days: float) -> np.ndarray:
    """0.5 ** (age / half-life) per item, as an integer number of 2**-20 (exact integer sums)."""
    return np.rint(np.exp2(-age_days.to_numpy(dtype=float) / halflife_days) * WEIGHT_UNIT).astype(np.int64)


def lateness_items(state: pd.DataFrame, as_of: pd.Timestamp, halflife_days: float, grace: int) -> pd.DataFrame:
    """Per lateness item (see the module docstring): customer_id, whether it is an open invoice, its
    weight, and, multiplied by the weight, its whole days late and late flag."""
    invoice = state["is_invoice"].to_numpy()
    paid = invoice & state["paid_date"].notna().to_numpy()
    overdue = invoice & state["is_open"].to_numpy() & (state["due_date"] < as_of).to_numpy()
    taken = paid | overdue
    age = np.where(overdue, 0.0, days_between(as_of, state["paid_date"]).to_numpy(dtype=float))[taken]
    late_by = np.where(overdue, days_between(as_of, state["due_date"]).to_numpy(dtype=float),
                       state["days_late"].to_numpy(dtype=float))[taken]
    days_late = np.rint(late_by).astype(np.int64)
    weight = recency_weights(pd.Series(age), halflife_days)
    return pd.DataFrame({"customer_id": state["customer_id"].to_numpy()[taken], "is_open": overdue[taken],
                         "weight": weight, "weighted_days_late": weight * days_late,
                         "weighted_late": weight * (days_late > grace)})


def customer_sums(items: pd.DataFrame) -> pd.DataFrame:
    """Per customer: the integer sums of weights, weight x days late and weight x late flag."""
    return items.groupby("customer_id")[SUM_COLUMNS].sum()


def weighted_days_late(sums: pd.DataFrame) -> pd.Series:
    """Weighted mean days late from integer sums (NaN without weight)."""
    return sums["weighted_days_late"] / sums["weight"].where(sums["weight"] > 0)


def weighted_late_rate(sums: pd.DataFrame) -> pd.Series:
    """Weighted share late from integer sums (NaN without weight)."""
    return sums["weighted_late"] / sums["weight"].where(sums["weight"] > 0)


def peer_groups(customers: pd.DataFrame) -> pd.DataFrame:
    """Per customer (indexed by customer_id): its group of each peer kind, missing where unknown."""
    indexed = customers.set_index("customer_id")
    return pd.DataFrame({kind: indexed[kind].astype(object) if kind in indexed else None
                         for kind in PEER_KINDS}, index=indexed.index)


def peer_sums(groups: pd.DataFrame, sums: pd.DataFrame) -> pd.DataFrame:
    """Per (peer kind, group): the integer sums of its customers' lateness items (`PEER_SUM_COLUMNS`).

    `groups` is `peer_groups` of the customers known at `as_of`; `sums` the `customer_sums` of all their
    lateness items, open ones included."""
    groups = groups.reindex(sums.index)
    frames = []
    for kind in PEER_KINDS:
        by_group = sums.groupby(groups[kind].to_numpy(), dropna=True)[SUM_COLUMNS].sum()
        frames.append(by_group.rename_axis("group").reset_index().assign(kind=kind))
    return _in_order(pd.concat(frames, ignore_index=True))


def added_peer_sums(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The peer sums of several sets of customers (e.g. a ledger's buckets) added up: those of them all."""
    stacked = pd.concat(list(parts), ignore_index=True)
    if stacked.empty:
        return empty_peer_sums()
    return _in_order(stacked.groupby(["kind", "group"], as_index=False)[SUM_COLUMNS].sum())


def empty_peer_sums() -> pd.DataFrame:
    return pd.DataFrame({"kind": pd.Series(dtype=object), "group": pd.Series(dtype=object),
                         **{column: pd.Series(dtype=np.int64) for column in SUM_COLUMNS}})


def _in_order(sums: pd.DataFrame) -> pd.DataFrame:
    sums = sums[PEER_SUM_COLUMNS].astype({column: np.int64 for column in SUM_COLUMNS})
    return sums.sort_values(["kind", "group"], ignore_index=True)


def peer_values(groups: pd.DataFrame, sums: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Per customer of `groups` (`peer_groups`): the `sums` row of its group of `kind` (NaN where none)."""
    group = groups[kind]
    of_kind = sums[sums["kind"] == kind].set_index("group")[SUM_COLUMNS]
    return of_kind.reindex(group.to_numpy()).set_axis(group.index)


def peer_days_late(peer: pd.DataFrame) -> pd.Series:
    """Recency-weighted days late (paid and open past-due invoices) of all customers of the same {kind}.

    Columns: `peer_<kind>_days_late`, kind in segment, country, industry; NaN without the kind's column.
    """
    return weighted_days_late(peer)


def peer_late_rate(peer: pd.DataFrame) -> pd.Series:
    """Recency-weighted late rate (paid and open past-due invoices) of all customers of the same {kind}.

    Columns: `peer_<kind>_late_rate`.
    """
    return weighted_late_rate(peer)


def days_late_vs_peers(own: pd.Series, peer: pd.Series) -> pd.Series:
    """The customer's recency-weighted days late (paid and open past-due invoices) minus that of its {kind}.

    Columns: `<kind>_days_late_vs_peers`.
    """
    return own - peer


def late_rate_vs_peers(own: pd.Series, peer: pd.Series) -> pd.Series:
    """The customer's recency-weighted late rate (paid and open past-due invoices) minus that of its {kind}.

    Columns: `<kind>_late_rate_vs_peers`.
    """
    return own - peer
