"""The brute-force twin of `features`: slow, plain Python, one loop per invoice or customer.

Written from the definitions (features/*.py docstrings, DESIGN.md §4-§5), not from the fast code, and
calls none of it: it reads the FULL ledger row by row and asks, for every single event, "was this
known at the end of `as_of`?". Only the settings (`FeatureConfig`) and the bucket names are shared.
"""

from __future__ import annotations

import calendar
import datetime
import itertools
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd

from features.config import FeatureConfig, aging_bucket_names
from ledger import Ledger

Date = datetime.date


def _date(value) -> Date | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).date()


def _records(table: pd.DataFrame) -> list[dict]:
    """Rows as dicts, dates as `datetime.date` (None when missing), numbers as Python numbers."""
    rows = []
    for row in table.to_dict("records"):
        rows.append({key: _date(value) if isinstance(value, pd.Timestamp) or value is pd.NaT
                     else (None if _missing(value) else value) for key, value in row.items()})
    return rows


def _missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _in_window(day: Date | None, as_of: Date, days: int) -> bool:
    return day is not None and as_of - datetime.timedelta(days=days) < day <= as_of


@dataclass
class Events:
    """Every row of the ledger, grouped by the key the loops look them up with."""

    customers: dict[str, dict] = field(default_factory=dict)
    invoices: dict[str, dict] = field(default_factory=dict)
    invoices_of: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    payments: dict[str, dict] = field(default_factory=dict)
    payments_of: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    applications_to: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    applications_of_payment: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    writeoffs_of: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    disputes_of: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    promises_of: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    notices_of: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    contacts_of: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))


def index_events(ledger: Ledger) -> Events:
    """Group the ledger's rows by customer, invoice and payment, once."""
    events = Events()
    for row in _records(ledger.customers):
        events.customers[row["customer_id"]] = row
    for row in _records(ledger.invoices):
        events.invoices[row["invoice_id"]] = row
        events.invoices_of[row["customer_id"]].append(row)
    for row in _records(ledger.payments):
        events.payments[row["payment_id"]] = row
        events.payments_of[row["customer_id"]].append(row)
    for row in _records(ledger.payment_applications):
        events.applications_to[row["invoice_id"]].append(row)
        events.applications_of_payment[row["payment_id"]].append(row)
    for row in _records(ledger.writeoffs):
        events.writeoffs_of[row["invoice_id"]].append(row)
    for row in _records(ledger.disputes):
        events.disputes_of[row["invoice_id"]].append(row)
    for row in _records(ledger.promises):
        events.promises_of[row["customer_id"]].append(row)
    for row in _records(ledger.dunning_notices):
        events.notices_of[row["invoice_id"]].append(row)
    for row in _records(ledger.contacts):
        events.contacts_of[row["customer_id"]].append(row)
    return events


class AsOf:
    """The questions "was it known?" and "where did it stand?" for one date, answered row by row."""

    def __init__(self, events: Events, as_of: pd.Timestamp, config: FeatureConfig):
        self.events = events
        self.day = pd.Timestamp(as_of).date()
        self.config = config

    # -- what was known -------------------------------------------------------------------------
    def invoice_known(self, invoice: dict) -> bool:
        return invoice["invoice_date"] <= self.day

    def payment_known(self, payment_id: str) -> bool:
        payment = self.events.payments.get(payment_id)
        return payment is not None and payment["received_date"] <= self.day

    def application_known(self, application: dict) -> bool:
        invoice = self.events.invoices.get(application["invoice_id"])
        return (application["applied_date"] <= self.day and self.payment_known(application["payment_id"])
                and invoice is not None and self.invoice_known(invoice))

    def known_applications(self, invoice_id: str) -> list[dict]:
        return [a for a in self.events.applications_to[invoice_id] if self.application_known(a)]

    def known_writeoffs(self, invoice_id: str) -> list[dict]:
        return [w for w in self.events.writeoffs_of[invoice_id] if w["date"] <= self.day]

    def customer_known(self, customer_id: str) -> bool:
        customer = self.events.customers[customer_id]
        return customer["created_date"] <= self.day or self.first_document_day(customer_id) is not None

    def first_document_day(self, customer_id: str) -> Date | None:
        days = [i["invoice_date"] for i in self.events.invoices_of[customer_id] if self.invoice_known(i)]
        days += [p["received_date"] for p in self.events.payments_of[customer_id]
                 if p["received_date"] <= self.day]
        return min(days) if days else None

    # -- where a document stood -----------------------------------------------------------------
    def applied(self, invoice: dict) -> float:
        return sum(a["amount"] for a in self.known_applications(invoice["invoice_id"]))

    def written_off(self, invoice: dict) -> float:
        sign = 1.0 if invoice["amount"] > 0 else -1.0
        return sum(w["amount"] for w in self.known_writeoffs(invoice["invoice_id"])) * sign

    def open_amount(self, invoice: dict) -> float:
        return invoice["amount"] - self.applied(invoice) - self.written_off(invoice)

    def is_open(self, invoice: dict) -> bool:
        return self.invoice_known(invoice) and abs(self.open_amount(invoice)) > self.config.money_tolerance

    def open_amount_base(self, invoice: dict) -> float:
        return self.open_amount(invoice) * invoice["amount_base"] / invoice["amount"]

    def paid_date(self, invoice: dict) -> Date | None:
        """Date of the last application, for a document settled in full by applications only."""
        applications = self.known_applications(invoice["invoice_id"])
        if (not self.invoice_known(invoice) or self.is_open(invoice) or not applications
                or self.known_writeoffs(invoice["invoice_id"])):
            return None
        return max(a["applied_date"] for a in applications)

    def promise_status(self, promise: dict) -> str:
        if promise["invoice_id"] is not None:
            paid = sum(a["amount"] for a in self.known_applications(promise["invoice_id"])
                       if promise["made_date"] <= a["applied_date"] <= promise["promised_date"])
            if paid:  # a short payment with its residual written off in the window keeps the promise
                paid += sum(w["amount"] for w in self.known_writeoffs(promise["invoice_id"])
                            if promise["made_date"] <= w["date"] <= promise["promised_date"])
        else:
            paid = sum(p["amount"] for p in self.events.payments_of[promise["customer_id"]]
                       if p["received_date"] <= self.day
                       and promise["made_date"] <= p["received_date"] <= promise["promised_date"])
        if paid >= promise["amount"] - self.config.money_tolerance:
            return "kept"
        return "broken" if promise["promised_date"] < self.day else "pending"

    def known_promises(self, customer_id: str) -> list[dict]:
        return [p for p in self.events.promises_of[customer_id] if p["made_date"] <= self.day]

    def known_disputes(self, invoice_id: str) -> list[dict]:
        return [d for d in self.events.disputes_of[invoice_id] if d["opened_date"] <= self.day]

    def dispute_open(self, dispute: dict) -> bool:
        return dispute["resolved_date"] is None or dispute["resolved_date"] > self.day


def reference_invoice_features(ledger: Ledger, as_of: pd.Timestamp, invoice_ids: list[str],
                               config: FeatureConfig | None = None, events: Events | None = None) -> pd.DataFrame:
    """Invoice-level features of the given documents (those open at `as_of`), one loop each."""
    config = config or FeatureConfig()
    known = AsOf(events or index_events(ledger), as_of, config)
    day = known.day
    rows = []
    for invoice_id in invoice_ids:
        invoice = known.events.invoices[invoice_id]
        assert known.is_open(invoice), f"{invoice_id} is not open at {day}"
        open_base = known.open_amount_base(invoice)
        invoice_day, due = invoice["invoice_date"], invoice["due_date"]
        days_in_month = calendar.monthrange(invoice_day.year, invoice_day.month)[1]
        month_end = invoice_day.day > days_in_month - config.month_end_days
        promises = [p for p in known.known_promises(invoice["customer_id"]) if p["invoice_id"] == invoice_id]
        statuses = {known.promise_status(p) for p in promises}
        notices = [n["level"] for n in known.events.notices_of[invoice_id] if notice_known_by(n) <= day]
        rows.append({
            "invoice_id": invoice_id,
            "customer_id": invoice["customer_id"],
            "open_amount_base": open_base,
            "open_amount_base_log1p": math.copysign(math.log1p(abs(open_base)), open_base),
            "share_paid": known.applied(invoice) / invoice["amount"],
            "days_past_due": max((day - due).days, 0),
            "days_to_due": max((due - day).days, 0),
            "terms_days": (due - invoice_day).days,
            "invoice_age_days": (day - invoice_day).days,
            "invoice_month_end": float(month_end),
            "invoice_quarter_end": float(month_end and invoice_day.month in (3, 6, 9, 12)),
            "is_credit_memo": float(invoice["doc_type"] == "credit_memo"),
            "paperless": {"electronic": 1.0, "paper": 0.0}.get(invoice.get("delivery_channel"), math.nan),
            "in_open_dispute": float(any(known.dispute_open(d) for d in known.known_disputes(invoice_id))),
            "has_pending_promise": float("pending" in statuses),
            "has_broken_promise": float("broken" in statuses),
            "dunning_level": float(max(notices, default=0)),
        })
    return pd.DataFrame(rows)


def reference_customer_features(ledger: Ledger, as_of: pd.Timestamp, customer_ids: list[str],
                                config: FeatureConfig | None = None, events: Events | None = None) -> pd.DataFrame:
    """Customer-level features of the given customers (known at `as_of`), one loop each."""
    config = config or FeatureConfig()
    known = AsOf(events or index_events(ledger), as_of, config)
    peers = _peer_sums(known)
    return pd.DataFrame([_customer_row(known, customer_id, peers) for customer_id in customer_ids])


PEER_KINDS = ("segment", "country", "industry")


def _weight(age_days: int, halflife: float) -> int:
    """The recency weight 0.5 ** (age / half-life), in whole units of 2**-20 (the definition rounds it)."""
    return round(0.5 ** (age_days / halflife) * 2 ** 20)


def _lateness(known: AsOf, customer_id: str, incl_open: bool) -> tuple[int, int, int]:
    """(sum of weights, of weight x days late, of weight x late flag) over the customer's paid invoices
    (weighted by the paid date's age) and, with `incl_open`, its open invoices past due (days past due so
    far, weight of age 0)."""
    day, halflife, grace = known.day, known.config.recency_halflife_days, known.config.late_grace_days
    items = []  # (age in days, days late)
    for invoice in known.events.invoices_of[customer_id]:
        if not known.invoice_known(invoice) or invoice["doc_type"] != "invoice":
            continue
        paid_on = known.paid_date(invoice)
        if paid_on is not None:
            items.append(((day - paid_on).days, (paid_on - invoice["due_date"]).days))
        elif incl_open and known.is_open(invoice) and invoice["due_date"] < day:
            items.append((0, (day - invoice["due_date"]).days))
    weights = [_weight(age, halflife) for age, _ in items]
    return (sum(weights), sum(w * late for w, (_, late) in zip(weights, items, strict=True)),
            sum(w * (late > grace) for w, (_, late) in zip(weights, items, strict=True)))


def _ratio(sums: tuple[int, int, int], which: int) -> float:
    return sums[which] / sums[0] if sums[0] > 0 else math.nan


def _peer_sums(known: AsOf) -> dict[tuple[str, str], list[int]]:
    """Per (peer kind, group): the added `_lateness` sums (open items included) of every customer known."""
    sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for customer_id, customer in known.events.customers.items():
        if not known.customer_known(customer_id):
            continue
        own = _lateness(known, customer_id, incl_open=True)
        for kind in PEER_KINDS:
            if customer.get(kind) is not None:
                sums[kind, customer[kind]] = [a + b for a, b in zip(sums[kind, customer[kind]], own, strict=True)]
    return sums


def _overdue_share(known: AsOf, customer_id: str) -> float:
    """Share of the customer's open invoice amount past due at `known.day` (NaN without an open amount)."""
    total = overdue = 0.0
    for invoice in known.events.invoices_of[customer_id]:
        if invoice["doc_type"] == "invoice" and known.is_open(invoice):
            total += known.open_amount_base(invoice)
            overdue += known.open_amount_base(invoice) if invoice["due_date"] < known.day else 0.0
    return overdue / total if total > 0 else math.nan


def _customer_row(known: AsOf, customer_id: str, peers: dict[tuple[str, str], list[int]]) -> dict:
    config, day, events = known.config, known.day, known.events
    assert known.customer_known(customer_id), f"{customer_id} is not known at {day}"
    customer = events.customers[customer_id]
    grace, tolerance = config.late_grace_days, config.money_tolerance
    documents = [i for i in events.invoices_of[customer_id] if known.invoice_known(i)]
    invoices = [i for i in documents if i["doc_type"] == "invoice"]
    open_documents = [i for i in documents if known.is_open(i)]
    open_invoices = [i for i in invoices if known.is_open(i)]

    row: dict = {"customer_id": customer_id}
    open_ar = sum(known.open_amount_base(i) for i in open_documents)
    row["open_ar_base"] = open_ar
    row["open_documents"] = len(open_documents)
    row["overdue_amount_base"] = sum(known.open_amount_base(i) for i in open_invoices if i["due_date"] < day)
    row["max_days_past_due"] = max([max((day - i["due_date"]).days, 0) for i in open_invoices], default=0)
    limits = config.aging_limits
    by_bucket = [0.0] * (len(limits) + 1)
    for invoice in open_invoices:
        past_due = (day - invoice["due_date"]).days
        bucket = next((index for index, limit in enumerate(limits) if past_due <= limit), len(limits))
        by_bucket[bucket] += known.open_amount_base(invoice)
    total = sum(by_bucket)
    for name, amount in zip(aging_bucket_names(limits), by_bucket, strict=True):
        row[f"share_ar_{name}"] = amount / total if total > 0 else math.nan
    limit = customer["credit_limit"]
    row["credit_utilisation"] = open_ar / limit if limit is not None and limit > 0 else math.nan

    first_document = known.first_document_day(customer_id)
    created = min(customer["created_date"], first_document) if first_document else customer["created_date"]
    tenure = (day - created).days
    row["tenure_days"] = tenure
    row["payment_terms_days"] = customer["payment_terms_days"]
    row[f"invoices_{config.invoice_count_days}d"] = sum(
        _in_window(i["invoice_date"], day, config.invoice_count_days) for i in invoices)
    volume_history = sum(i["amount_base"] for i in invoices
                         if _in_window(i["invoice_date"], day, config.volume_history_days))
    volume_recent = sum(i["amount_base"] for i in invoices
                        if _in_window(i["invoice_date"], day, config.volume_recent_days))
    row[f"invoice_volume_{config.volume_history_days}d_base"] = volume_history
    history_rate = volume_history / min(config.volume_history_days, tenure + 1)
    recent_rate = volume_recent / min(config.volume_recent_days, tenure + 1)
    row["invoice_volume_trend"] = recent_rate / history_rate if history_rate > 0 else math.nan

    payments = [p for p in events.payments_of[customer_id] if p["received_date"] <= day]
    row[f"payment_frequency_{config.payment_frequency_days}d"] = sum(
        _in_window(p["received_date"], day, config.payment_frequency_days)
        for p in payments) * 30 / config.payment_frequency_days
    row["days_since_last_payment"] = (day - max(p["received_date"] for p in payments)).days if payments else math.nan

    paid = []  # (paid date, invoice id, days late)
    for invoice in invoices:
        paid_on = known.paid_date(invoice)
        if paid_on is not None:
            paid.append((paid_on, invoice["invoice_id"], (paid_on - invoice["due_date"]).days))
    paid.sort(reverse=True)  # latest first; same day: larger invoice id first
    n = config.last_paid_invoices
    last = [days_late for _, _, days_late in paid[:n]]
    row[f"avg_days_late_last_{n}"] = _mean(last)
    weights = [0.5 ** (rank / config.ewm_halflife_invoices) for rank in range(len(last))]
    row[f"ewm_days_late_last_{n}"] = (sum(w * x for w, x in zip(weights, last, strict=True)) / sum(weights)
                                      if last else math.nan)
    for days in config.late_share_windows_days:
        row[f"share_paid_late_{days}d"] = _mean([float(late > grace) for on, _, late in paid
                                                 if _in_window(on, day, days)])
    recent = [late for on, _, late in paid if _in_window(on, day, config.trend_recent_days)]
    older = [late for on, _, late in paid if _in_window(on, day, config.trend_history_days)
             and not _in_window(on, day, config.trend_recent_days)]
    row["days_late_trend"] = _mean(recent) - _mean(older)
    row["late_share_trend"] = _mean([float(x > grace) for x in recent]) - _mean([float(x > grace) for x in older])
    settled, with_open = _lateness(known, customer_id, False), _lateness(known, customer_id, True)
    row["recency_days_late"], row["recency_late_rate"] = _ratio(settled, 1), _ratio(settled, 2)
    row["recency_days_late_incl_open"], row["recency_late_rate_incl_open"] = _ratio(with_open, 1), _ratio(with_open, 2)
    earlier = AsOf(events, pd.Timestamp(day) - pd.Timedelta(days=config.overdue_trend_days), config)
    row[f"overdue_share_change_{config.overdue_trend_days}d"] = (_overdue_share(known, customer_id)
                                                                 - _overdue_share(earlier, customer_id))
    payment_days = sorted({p["received_date"] for p in payments})
    gaps = [(later - earlier_day).days for earlier_day, later in itertools.pairwise(payment_days)]
    row["median_payment_gap_days"] = statistics.median(gaps) if gaps else math.nan
    row["payment_gap_ratio"] = (row["days_since_last_payment"] / row["median_payment_gap_days"]
                                if gaps and row["median_payment_gap_days"] > 0 else math.nan)

    partial = []
    for invoice in invoices:
        applications = known.known_applications(invoice["invoice_id"])
        if _in_window(invoice["invoice_date"], day, config.partial_payment_days) and applications:
            applied = sum(a["amount"] for a in applications)
            partial.append(float(len(applications) > 1 or abs(invoice["amount"] - applied) > tolerance))
    row[f"partial_payment_share_{config.partial_payment_days}d"] = _mean(partial)

    unapplied = 0.0
    for payment in payments:
        applied = sum(a["amount"] for a in events.applications_of_payment[payment["payment_id"]]
                      if known.application_known(a))
        rate = payment["amount_base"] / payment["amount"] if payment["amount"] else 0.0
        unapplied += (payment["amount"] - applied) * rate
    row["unapplied_cash_base"] = unapplied

    disputes = [d for i in documents for d in known.known_disputes(i["invoice_id"])]
    row[f"disputes_{config.dispute_days}d"] = sum(_in_window(d["opened_date"], day, config.dispute_days)
                                                  for d in disputes)
    row["open_disputes"] = sum(known.dispute_open(d) for d in disputes)
    promises = known.known_promises(customer_id)
    row[f"broken_promises_{config.broken_promise_days}d"] = sum(
        known.promise_status(p) == "broken" and _in_window(p["promised_date"], day, config.broken_promise_days)
        for p in promises)
    row["pending_promises"] = sum(known.promise_status(p) == "pending" for p in promises)
    row[f"writeoffs_{config.writeoff_days}d"] = sum(
        _in_window(w["date"], day, config.writeoff_days) for i in documents for w in known.known_writeoffs(i["invoice_id"]))
    contacts = [c["contact_date"] for c in events.contacts_of[customer_id] if c["contact_date"] <= day]
    row["days_since_last_contact"] = (day - max(contacts)).days if contacts else math.nan
    row[f"contacts_{config.contact_days}d"] = sum(_in_window(c, day, config.contact_days) for c in contacts)
    for kind in PEER_KINDS:
        group = customer.get(kind)
        peer = tuple(peers[kind, group]) if group is not None and (kind, group) in peers else (0, 0, 0)
        row[f"peer_{kind}_days_late"], row[f"peer_{kind}_late_rate"] = _ratio(peer, 1), _ratio(peer, 2)
        row[f"{kind}_days_late_vs_peers"] = row["recency_days_late_incl_open"] - row[f"peer_{kind}_days_late"]
        row[f"{kind}_late_rate_vs_peers"] = row["recency_late_rate_incl_open"] - row[f"peer_{kind}_late_rate"]
    return row


def reference_invoice_labels(ledger: Ledger, as_of: pd.Timestamp, invoice_ids: list[str], observation_end: pd.Timestamp,
                             config: FeatureConfig | None = None, events: Events | None = None) -> pd.DataFrame:
    """Invoice labels of the given documents, from the full ledger up to `observation_end`."""
    config = config or FeatureConfig()
    events = events or index_events(ledger)
    day, end = pd.Timestamp(as_of).date(), pd.Timestamp(observation_end).date()
    rows = []
    for invoice_id in invoice_ids:
        invoice = events.invoices[invoice_id]
        writeoff_days = [w["date"] for w in events.writeoffs_of[invoice_id]]
        written_off = any(d <= end for d in writeoff_days)
        cleared = invoice["cleared_date"]
        paid_on = cleared if cleared is not None and cleared <= end and not writeoff_days else None
        if paid_on is not None:
            days_late = (paid_on - invoice["due_date"]).days
            late = float(days_late > config.late_grace_days)
        else:
            days_late = (end + datetime.timedelta(days=1) - invoice["due_date"]).days
            late = 1.0 if days_late > config.late_grace_days or written_off else math.nan
        row = {"invoice_id": invoice_id, "paid_date": pd.Timestamp(paid_on) if paid_on else pd.NaT,
               "paid": paid_on is not None, "days_to_pay": ((paid_on or end) - day).days,
               "days_late": days_late, "late": late, "written_off": written_off}
        for days in config.paid_within_days:
            horizon = day + datetime.timedelta(days=days)
            if paid_on is not None:
                row[f"paid_within_{days}d"] = float(paid_on <= horizon)
            else:
                row[f"paid_within_{days}d"] = 0.0 if end >= horizon or written_off else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def reference_customer_labels(ledger: Ledger, as_of: pd.Timestamp, customer_ids: list[str],
                              observation_end: pd.Timestamp, config: FeatureConfig | None = None,
                              events: Events | None = None) -> pd.DataFrame:
    """Deterioration labels, by walking every day of the window for every invoice of the customer."""
    config = config or FeatureConfig()
    events = events or index_events(ledger)
    day, end = pd.Timestamp(as_of).date(), pd.Timestamp(observation_end).date()
    horizon = config.deterioration_horizon_days
    limit = config.deterioration_days_past_due

    def bad_on(invoice: dict, on: Date) -> bool:
        still_open = invoice["cleared_date"] is None or invoice["cleared_date"] > on
        return (invoice["doc_type"] == "invoice" and invoice["invoice_date"] <= on and still_open
                and (on - invoice["due_date"]).days > limit)

    rows = []
    for customer_id in customer_ids:
        documents = events.invoices_of[customer_id]
        already = any(bad_on(i, day) for i in documents)
        window = [day + datetime.timedelta(days=k) for k in range(1, horizon + 1)]
        observed = [on for on in window if on <= end]
        event = any(bad_on(i, on) for i in documents for on in observed) or any(
            day < w["date"] <= min(window[-1], end) for i in documents for w in events.writeoffs_of[i["invoice_id"]])
        if already:
            label = math.nan
        elif event:
            label = 1.0
        else:
            label = 0.0 if len(observed) == len(window) else math.nan
        rows.append({"customer_id": customer_id, "already_deteriorated": already, f"deteriorates_{horizon}d": label})
    return pd.DataFrame(rows)


def notice_known_by(notice: dict) -> pd.Timestamp:
    """The day a dunning notice is known: its issued date, or for a level imported without one, its known date."""
    issued = notice["issued_date"]
    return issued if pd.notna(issued) else notice.get("known_date", pd.NaT)
