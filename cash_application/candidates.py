"""Candidate sets of open items for one payment, by rules and a bounded subset search, and their features.

A payment's candidates are sets of positions into its customer group's open items in the payment's
currency, oldest due first (`OpenItems`). Rules first: the items the memo line quotes (`reference`), one
item of exactly the amount (`amount`), one item of the amount after a cash discount the policy allows
(`discount`), the oldest items up to the amount (`oldest_first`); then `subset_sums` looks for sets of up
to `max_items` items whose total equals the payment (`amount_set`).

How the subset search is bounded: only the `max_open_items` oldest items take part; amounts are integer
cents, and an index from amount to positions closes a set in one lookup instead of one more level of
search; sets are searched by size (all pairs, then all triples, ...); a branch is cut as soon as the items
left (their positive and negative totals) can no longer reach the payment; the search stops after
`max_nodes` partial sets or `MAX_SUBSET_SOLUTIONS` sets found. Its cost is therefore at most `max_nodes`
steps per payment, whatever the size of the customer's book.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cash_application.policy import MatchPolicy
from cash_application.references import document_number, reference_hits

RULES = ("reference", "amount", "discount", "amount_set", "oldest_first")
MAX_SUBSET_SOLUTIONS = 6
FEATURES = (
    "items", "exact_refs", "fuzzy_refs", "quoted_elsewhere", "numbers_in_text", "numbers_unmatched",
    "difference_share", "exact_amount", "discount_amount", "short", "over", "first_position", "last_position",
    "is_oldest_prefix", "due_spread_days", "days_past_due_oldest", "days_since_issue_newest", "open_items",
    "other_member", "credit_memos", "rule", "candidates", "exact_sets", "log_amount",
    "habit_items", "habit_exact_share", "habit_reference_share",
)


@dataclass(frozen=True)
class OpenItems:
    """One customer group's open items in one currency, oldest due first."""

    ids: np.ndarray
    customers: np.ndarray
    numbers: list[str]
    cents: np.ndarray  # int64 open amount in cents (credit memos negative)
    due: np.ndarray  # datetime64[D]
    issued: np.ndarray  # datetime64[D]

    def __len__(self) -> int:
        return len(self.ids)


def open_items_by(items: pd.DataFrame, keys: list[str]) -> dict[tuple, OpenItems]:
    """`OpenItems` per value of `keys`, from rows with invoice_id, customer_id, open_amount, due_date and
    invoice_date: sorted once, then cut into slices."""
    items = items.sort_values([*keys, "due_date", "invoice_date", "invoice_id"], kind="stable")
    ids = items["invoice_id"].to_numpy(dtype=object)
    customers = items["customer_id"].to_numpy(dtype=object)
    numbers = [document_number(document) for document in ids]
    cents = cents_of(items["open_amount"].to_numpy(dtype=float))
    due = items["due_date"].to_numpy(dtype="datetime64[D]")
    issued = items["invoice_date"].to_numpy(dtype="datetime64[D]")
    key_rows = list(zip(*(items[key].to_numpy(dtype=object) for key in keys), strict=True))
    starts = [0] + [row for row in range(1, len(key_rows)) if key_rows[row] != key_rows[row - 1]]
    ends = [*starts[1:], len(key_rows)]
    return {key_rows[start]: OpenItems(ids[start:end], customers[start:end], numbers[start:end], cents[start:end],
                                       due[start:end], issued[start:end])
            for start, end in zip(starts, ends, strict=True)}


def cents_of(amounts: np.ndarray | float) -> np.ndarray:
    """Money as integer cents (rounded half away from zero, as a bank does)."""
    return (np.sign(amounts) * np.floor(np.abs(amounts) * 100 + 0.5)).astype(np.int64)


def subset_sums(target: int, cents: np.ndarray, tolerance: int, max_items: int, max_nodes: int,
                limit: int = MAX_SUBSET_SOLUTIONS) -> list[tuple[int, ...]]:
    """Sets of two to `max_items` positions whose cents add up to `target` within `tolerance`: all pairs
    first, then all triples, and so on (iterative deepening, so small sets are never crowded out by deep
    ones), older positions first within a size; bounded as the module says."""
    values = [int(value) for value in cents]
    index: dict[int, list[int]] = {}
    for position, value in enumerate(values):
        index.setdefault(value, []).append(position)
    positive_left = np.concatenate([np.cumsum(np.clip(values, 0, None)[::-1])[::-1], [0]]).tolist()
    negative_left = np.concatenate([np.cumsum(np.clip(values, None, 0)[::-1])[::-1], [0]]).tolist()
    found: list[tuple[int, ...]] = []
    nodes = 0

    def search(start: int, chosen: tuple[int, ...], total: int, to_choose: int) -> None:
        nonlocal nodes
        if to_choose == 1:
            need = target - total
            for value in range(need - tolerance, need + tolerance + 1):
                hits = index.get(value)
                if hits:
                    found.extend((*chosen, position) for position in hits if position >= start)
            return
        for position in range(start, len(values) - to_choose + 1):
            if nodes >= max_nodes or len(found) >= limit:
                return
            # The totals still reachable from here (every item left could be taken) must hold the target.
            if not total + negative_left[position] - tolerance <= target <= total + positive_left[position] + tolerance:
                return
            nodes += 1
            search(position + 1, (*chosen, position), total + values[position], to_choose - 1)

    for size in range(2, max_items + 1):
        if nodes >= max_nodes or len(found) >= limit:
            break
        search(0, (), 0, size)
    return found[:limit]


def candidate_sets(target: int, items: OpenItems, quoted: np.ndarray, policy: MatchPolicy) -> dict[tuple[int, ...], str]:
    """Candidate sets (sorted position tuples) -> the first rule that proposed it, in the order of RULES.
    The subset search runs only when no rule found a set of exactly the amount and the items the memo line
    quotes (if any) come to less than the payment (a line cut short: the payment pays more than it names)."""
    sets: dict[tuple[int, ...], str] = {}
    tolerance = round(policy.amount_tolerance * 100)
    positions = np.flatnonzero(quoted)
    if len(positions):
        sets.setdefault(tuple(positions.tolist()), "reference")
        if len(positions) > 1:
            for position in positions.tolist():
                sets.setdefault((position,), "reference")
    for position in np.flatnonzero(np.abs(items.cents - target) <= tolerance).tolist():
        sets.setdefault((position,), "amount")
    discount_tolerance = round(policy.discount_tolerance * 100)
    for rate in policy.discount_rates:
        after = np.floor(items.cents * (1 - rate) + 0.5).astype(np.int64)
        for position in np.flatnonzero((np.abs(after - target) <= discount_tolerance) & (items.cents > 0)).tolist():
            sets.setdefault((position,), "discount")
    quoted_total = int(items.cents[positions].sum())
    if (any(abs(int(items.cents[list(found)].sum()) - target) <= tolerance for found in sets)
            or (len(positions) and quoted_total >= target - tolerance)):
        return _with_oldest_prefix(sets, target, items, tolerance, policy)
    searched = min(len(items), policy.max_open_items)
    for found in subset_sums(target, items.cents[:searched], tolerance, policy.max_items, policy.max_nodes):
        sets.setdefault(found, "amount_set")
    return _with_oldest_prefix(sets, target, items, tolerance, policy)


def _with_oldest_prefix(sets: dict[tuple[int, ...], str], target: int, items: OpenItems, tolerance: int,
                        policy: MatchPolicy) -> dict[tuple[int, ...], str]:
    running = np.cumsum(items.cents[:policy.max_items])
    reached = np.flatnonzero(running >= target - tolerance)
    if len(reached):
        sets.setdefault(tuple(range(int(reached[0]) + 1)), "oldest_first")
    return sets


def is_discount(difference: int, total: int, policy: MatchPolicy) -> bool:
    """Whether a payment `difference` cents short of `total` took one of the policy's cash discounts."""
    tolerance = policy.discount_tolerance * 100
    return total > 0 and any(abs(difference - total * rate) <= tolerance for rate in policy.discount_rates)


def set_features(target: int, items: OpenItems, sets: dict[tuple[int, ...], str], exact: np.ndarray,
                 fuzzy: np.ndarray, numbers_in_text: int, received: np.datetime64, customer: object,
                 habits: tuple[float, float, float], policy: MatchPolicy) -> list[tuple]:
    """One tuple of FEATURES per candidate set."""
    tolerance = round(policy.amount_tolerance * 100)
    quoted = exact | fuzzy
    quoted_count = int(quoted.sum())
    matched_numbers = len({items.numbers[position] for position in np.flatnonzero(exact)})
    totals = {found: int(items.cents[list(found)].sum()) for found in sets}
    exact_sets = sum(abs(total - target) <= tolerance for total in totals.values())
    rows = []
    for found, rule in sets.items():
        chosen = list(found)
        total = totals[found]
        difference = target - total
        due, issued = items.due[chosen], items.issued[chosen]
        rows.append((
            len(chosen), int(exact[chosen].sum()), int(fuzzy[chosen].sum()), quoted_count - int(quoted[chosen].sum()),
            numbers_in_text, numbers_in_text - matched_numbers,
            difference / max(target, 1), abs(difference) <= tolerance, is_discount(-difference, total, policy),
            difference < -tolerance, difference > tolerance, chosen[0], chosen[-1],
            found == tuple(range(len(chosen))), _days(due.max() - due.min()), _days(received - due.min()),
            _days(received - issued.max()), len(items), bool((items.customers[chosen] != customer).any()),
            int((items.cents[chosen] < 0).sum()), RULES.index(rule), len(sets), exact_sets,
            float(np.log10(max(target, 1))), *habits,
        ))
    return rows


def feature_frame(rows: list[tuple]) -> pd.DataFrame:
    """Feature tuples as the frame the ranker reads."""
    return pd.DataFrame(np.asarray(rows, dtype=float).reshape(len(rows), len(FEATURES)), columns=list(FEATURES))


def _days(delta: np.timedelta64) -> float:
    return float(delta / np.timedelta64(1, "D"))


def quoted_items(numbers: frozenset[str], items: OpenItems) -> tuple[np.ndarray, np.ndarray]:
    """Per open item: quoted exactly in the memo line, and quoted with one digit wrong."""
    exact, fuzzy = reference_hits(numbers, items.numbers)
    return np.asarray(exact, dtype=bool), np.asarray(fuzzy, dtype=bool)
