"""What the API and the web pages show: a day's tables with the day's recorded actions on top.

`ServingState` answers every read from a `runs.answers.DayView`, by lookups. Where the days come from is
its source:

- `RunDays` (`arrisk serve --runs DIR`): the complete runs of a folder. The newest is loaded at start, a
  date without a run is a 404 listing the dates there are, and a new run is picked up by `refresh()`
  (polled by the service, or `POST /v1/runs/reload`) without a restart. No model is called on the request
  path. The ledger behind the runs is loaded in the background, for the writes and the KPIs.
- `LedgerDays` (`arrisk serve --ledger DIR`): any date of the ledger computed on demand with the steps a
  run uses (`runs.day`), so both answer alike.

The day's actions: every view remembers the activity store's audit mark it reflects. A read that shows
what records change (worklist, dunning, customer view, scored open items, aging) first asks the store for
its mark; when records were written since, the customers they belong to get their worklist, dunning and
aging rows re-derived, and their scored documents that recorded cash paid taken off (`runs.actions`), and
the new view replaces the old. The forecast and the deterioration flags stay the run's until the next one.
This works the same across several service workers sharing one store. A view is never changed in place:
a request holding one sees one consistent day.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections import OrderedDict
from pathlib import Path

import pandas as pd

from features import FeatureConfig
from features.labels import last_event_date
from ledger import Ledger, LedgerError, Problem, read_ledger
from ledger.errors import NotFound, NotReady
from ledger.schema import UNIDENTIFIED_PAYER
from runs.actions import (
    CustomerIndex,
    customer_index,
    customer_rows,
    unidentified_rows,
    with_actions,
    with_records,
)
from runs.answers import DayView, UnknownDocument, day_view
from runs.day import ON_DEMAND_STEPS, Day, DaySettings, build_day
from runs.folder import RunError, available_text, complete_runs, read_manifest, read_run
from runs.scoring import Champions

log = logging.getLogger("arrisk.views")
CACHED_DATES = 4
LEDGER_WAIT_SECONDS = 300

__all__ = ["LedgerDays", "RunDays", "ServingState", "UnknownDocument"]


class LedgerDays:
    """Days computed on demand from a ledger and the champions, for any date in the ledger's range."""

    kind = "ledger"

    def __init__(self, ledger: Ledger, champions: Champions, as_of_future_days: int = 92) -> None:
        champions.require("timing")
        self.ledger, self.champions, self.as_of_future_days = ledger, champions, as_of_future_days
        self.default_as_of = last_event_date(ledger)
        self.first_invoice_date = ledger.invoices["invoice_date"].min()
        self.base_currency = ledger.base_currency

    def base_ledger(self) -> Ledger:
        return self.ledger

    def model_versions(self) -> dict:
        return self.champions.versions

    def checked_as_of(self, day: datetime.date, field: str) -> pd.Timestamp:
        return checked_in_range(day, field, self.first_invoice_date, self.default_as_of, self.as_of_future_days)

    def day(self, as_of: pd.Timestamp, ledger: Ledger, settings: DaySettings):
        return build_day(ledger, as_of, self.champions, settings, ON_DEMAND_STEPS)


class RunDays:
    """The complete runs of a folder; the ledger they were computed from is read in the background."""

    kind = "runs"

    def __init__(self, runs_dir: str | Path, ledger_dir: str | Path | None = None) -> None:
        self.runs_dir = Path(runs_dir)
        self.runs = complete_runs(self.runs_dir)
        if not self.runs:
            raise NotFound(f"{self.runs_dir}: no complete run to serve (run `arrisk run --ledger DIR --as-of DATE "
                           f"--out {self.runs_dir}` first)")
        self.newest = max(self.runs)
        # Read whole now, so a missing or corrupt table stops the start; kept for the first view of it.
        self._first = read_run(self.runs[self.newest])
        self.newest_manifest = self._first[1]
        self.ids = {as_of: run_id(folder) for as_of, folder in self.runs.items()}
        self.ledger_dir = Path(ledger_dir or self.newest_manifest.get("ledger", ""))
        self._ledger: Ledger | None = None
        self._ledger_error: Exception | None = None
        self._ledger_ready = threading.Event()
        self._loading = threading.Lock()


    @property
    def default_as_of(self) -> pd.Timestamp:
        return self.newest

    @property
    def base_currency(self) -> str:
        return self.newest_manifest.get("base_currency", "EUR")

    def model_versions(self) -> dict:
        return {task: model.get("version") for task, model in self.newest_manifest.get("models", {}).items()}

    def load_ledger(self) -> None:
        """Read the ledger behind the runs, once."""
        with self._loading:
            if self._ledger_ready.is_set():
                return
            self._read_ledger()

    def _read_ledger(self) -> None:
        try:
            self._ledger = read_ledger(self.ledger_dir, validate=False)  # the run validated it
        except Exception as error:  # reported on every request that needs it, and in the log
            log.error("cannot read the ledger %s behind the runs: %s", self.ledger_dir, error)
            self._ledger_error = error
        finally:
            self._ledger_ready.set()

    def base_ledger(self) -> Ledger:
        if not self._loading.locked() and not self._ledger_ready.is_set():
            self.load_ledger()  # nobody is reading it: read it now
        if not self._ledger_ready.wait(LEDGER_WAIT_SECONDS):
            raise NotReady(f"still reading the ledger {self.ledger_dir}; retry shortly")
        if self._ledger_error is not None:
            raise NotReady(f"the ledger behind the runs ({self.ledger_dir}) cannot be read: {self._ledger_error}")
        return self._ledger

    def checked_as_of(self, day: datetime.date, field: str) -> pd.Timestamp:
        as_of = pd.Timestamp(day)
        if as_of not in self.runs:
            raise NotFound(f"no run for {field} {as_of:%Y-%m-%d}; runs: {available_text(self.runs)}")
        return as_of

    def day(self, as_of: pd.Timestamp) -> tuple[Day, dict]:
        """The run of `as_of` read from its folder, and its manifest."""
        first, self._first = self._first, None
        if first is not None and as_of == self.newest and first[1].get("run_id") == self.ids.get(as_of):
            return first
        return read_run(self.runs[as_of])

    def refresh(self) -> list[pd.Timestamp]:
        """Look for new or replaced runs (a new `run_id` in a date's manifest); returns the dates whose run
        changed, the newest first."""
        found = complete_runs(self.runs_dir)
        ids = {as_of: run_id(folder) for as_of, folder in found.items()}
        changed = [as_of for as_of, known in ids.items() if known is not None and known != self.ids.get(as_of)]
        if found:
            self.runs, self.ids = found, ids
            if max(found) != self.newest or self.newest in changed:
                self.newest = max(found)
                _, self.newest_manifest = read_run(found[self.newest])
        return sorted(changed, reverse=True)


def run_id(folder: Path) -> str | None:
    """The id in a run's manifest; None while the folder is being replaced (the next look sees the new one)."""
    try:
        return read_manifest(folder).get("run_id")
    except RunError:
        return None


class ServingState:
    """The days a service answers from, with the day's recorded actions layered on per customer."""

    def __init__(self, days: LedgerDays | RunDays, store=None, settings: DaySettings | None = None,
                 feature_config: FeatureConfig | None = None) -> None:
        self.days = days
        self.store = store
        self.settings = settings or DaySettings()
        self.policy = self.settings.policy
        self.feature_config = feature_config or self.settings.feature_config or FeatureConfig()
        self._views: OrderedDict[pd.Timestamp, tuple[DayView, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._date_locks: dict[pd.Timestamp, threading.Lock] = {}
        self._index: CustomerIndex | None = None
        self._ledger: tuple[Ledger, int] | None = None
        self._cash: dict[tuple[pd.Timestamp, int], pd.DataFrame] = {}
        self._provisions: OrderedDict[tuple, object] = OrderedDict()
        self.warm = threading.Event()  # set when `warm_up` ended

    # ---- dates --------------------------------------------------------------------------------------

    @property
    def default_as_of(self) -> pd.Timestamp:
        return self.days.default_as_of

    def checked_as_of(self, as_of: datetime.date | None, field: str = "as_of") -> pd.Timestamp:
        """`as_of` (None: the default day) as a day this service can answer: a run's date (else 404 listing
        the runs), or a date in the ledger's range (else a 400 naming `field` and the range)."""
        if as_of is None:
            return self.default_as_of
        day = as_of.date() if isinstance(as_of, datetime.datetime) else as_of
        return self.days.checked_as_of(day, field)

    def checked_date(self, value: datetime.date, field: str) -> pd.Timestamp:
        """A date of the ledger's range, for rules computed from the ledger (the KPIs of any period)."""
        day = value.date() if isinstance(value, datetime.datetime) else value
        base = self.base_ledger
        return checked_in_range(day, field, base.invoices["invoice_date"].min(), last_event_date(base), 0)

    # ---- the ledger -----------------------------------------------------------------------------------

    @property
    def base_ledger(self) -> Ledger:
        """The ledger as imported, without the recorded activity."""
        return self.days.base_ledger()

    @property
    def ledger(self) -> Ledger:
        """The ledger with everything recorded in the activity store (rebuilt when something new was)."""
        mark = self.audit_mark()
        cached = self._ledger
        if cached is not None and cached[1] == mark:
            return cached[0]
        from serving.activity import with_activity

        ledger = self.base_ledger
        if self.store is not None:
            ledger = with_activity(ledger, self.store.ledger_tables())
        self._ledger = (ledger, mark)
        return ledger

    def audit_mark(self) -> int:
        return self.store.audit_mark() if self.store is not None else 0

    def model_versions(self) -> dict:
        return self.days.model_versions()

    @property
    def base_currency(self) -> str:
        return self.days.base_currency

    # ---- days -----------------------------------------------------------------------------------------

    def view(self, as_of: pd.Timestamp | None = None, actions: bool = True) -> DayView:
        """The day at `as_of` (checked); with `actions`, caught up with what was recorded since it was made."""
        as_of = self.checked_as_of(as_of)
        with self._lock:
            cached = self._views.get(as_of)
            date_lock = self._date_locks.setdefault(as_of, threading.Lock())
        if cached is not None and (not actions or self.store is None or cached[1] >= self.audit_mark()):
            return cached[0]
        with date_lock:
            with self._lock:
                cached = self._views.get(as_of)
            if cached is None:
                cached = self._new_view(as_of)
            if actions and self.store is not None:
                cached = self._caught_up(*cached)
            with self._lock:
                self._views[as_of] = cached
                self._views.move_to_end(as_of)
                while len(self._views) > CACHED_DATES:
                    self._views.popitem(last=False)
            return cached[0]

    def _new_view(self, as_of: pd.Timestamp) -> tuple[DayView, int]:
        """A day's view and the audit mark its records reflect (a run's manifest says; a day computed now
        reflects the store as read before the ledger, so records written meanwhile are caught up later)."""
        if isinstance(self.days, RunDays):
            day, manifest = self.days.day(as_of)
            return day_view(day), int(manifest.get("activity_mark") or 0)
        mark = self.audit_mark()
        return day_view(self.days.day(as_of, self.ledger, self.settings)), mark

    def _caught_up(self, view: DayView, mark: int) -> tuple[DayView, int]:
        """`view` with the rows of the customers whose records changed after `mark` re-derived."""
        current = self.audit_mark()
        if current <= mark:
            return view, mark
        changes = self.store.changes_since(mark)
        # Cash applied and deductions decided change what is open; promises, disputes, contacts and letters
        # change only the rules' holds and escalations.
        money = changes.get("cash_applications", set()) | changes.get("queue_items", set())
        rows = {customer: customer_rows(view, self.customer_ledger(customer), customer, self.settings,
                                        money=customer in money)
                for customer in sorted(set().union(*changes.values())) if customer in view.customer_position.index}
        if changes.get("cash_applications") and self.base_ledger.payments["customer_id"].isna().any():
            # cash recorded for a payer nobody had identified
            rows[UNIDENTIFIED_PAYER] = unidentified_rows(view, self.base_ledger, self.store.ledger_tables(cash_only=True))
        return (with_actions(view, rows) if rows else view), current

    def warm_up(self) -> None:
        """What the first write and the first customer answers would otherwise wait for: the ledger behind
        the runs, its index by customer, the day's JSON rows (run in a background thread after start)."""
        try:
            self.customer_index()
            self.view(actions=False).json_rows()
        finally:
            self.warm.set()

    def customer_index(self) -> CustomerIndex:
        if self._index is None or self._index.ledger is not self.base_ledger:
            self._index = customer_index(self.base_ledger)
        return self._index

    def refresh(self) -> list[pd.Timestamp]:
        """Pick up new or replaced runs (no-op for a ledger): the newest is loaded before it is served, and
        a request sees the old day or the new one, never a mix."""
        if not isinstance(self.days, RunDays):
            return []
        with self._lock:
            changed = self.days.refresh()
        for as_of in changed[:1]:
            fresh = self._new_view(as_of)
            with self._lock:
                self._views[as_of] = fresh
        with self._lock:
            for as_of in changed[1:]:
                self._views.pop(as_of, None)
        return changed

    def recorded(self, record: dict) -> dict:
        """A write's answer, once the day's views show it (the next read would catch up anyway)."""
        with self._lock:
            dates = list(self._views)
        for as_of in dates:
            self.view(as_of)
        return record

    # ---- cash application -----------------------------------------------------------------------------

    def cash_proposals(self, as_of: datetime.date | None = None) -> tuple[pd.Timestamp, pd.DataFrame]:
        """The matcher's proposals for the payments still unapplied on `as_of` in the ledger with everything
        recorded (`cash_application.apply_cash`); kept until something new is recorded."""
        from cash_application import apply_cash

        day = self.checked_as_of(as_of)
        key = (day, self.audit_mark())
        with self._lock:
            cached = self._cash.get(key)
        if cached is None:
            cached = apply_cash(self.ledger, day)
            with self._lock:
                self._cash = {key: cached}
        return day, cached

    # ---- the bad-debt provision ---------------------------------------------------------------------

    def provision(self, as_of: datetime.date | None = None, start: datetime.date | None = None):
        """Both methods at `as_of` (a day this service answers) on the ledger with everything recorded, and
        with `start` (a date of the ledger) the movement since; the model's PD is the deterioration score of
        the day's view (of `start`'s view when it has one). Kept until something new is recorded."""
        from provision.report import provision_report

        day = self.checked_as_of(as_of)
        opening = self.checked_date(start, "from") if start is not None else None
        key = (day, opening, self.audit_mark())
        with self._lock:
            cached = self._provisions.get(key)
        if cached is None:
            cached = provision_report(self.ledger, day, self.settings.provision_policy, self.deterioration_at, opening)
            with self._lock:
                self._provisions[key] = cached
                while len(self._provisions) > CACHED_DATES:
                    self._provisions.popitem(last=False)
        return cached

    def deterioration_at(self, day: pd.Timestamp) -> pd.Series | None:
        """The deterioration probability by customer of the day's view, when the service has that day and a
        deterioration model scored it (None otherwise: the model-based method is left out)."""
        try:
            customers = self.view(self.checked_as_of(day.date()), actions=False).customers
        except (NotFound, LedgerError):
            return None
        probability = customers.set_index("customer_id")["deterioration_probability"]
        return None if probability.isna().all() else probability

    # ---- reads ----------------------------------------------------------------------------------------

    def full_worklist(self, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
        return self.with_escalations(self.view(as_of).worklist)

    def worklist(self, as_of: pd.Timestamp | None = None, collector: str | None = None, segment: str | None = None,
                 top: int | None = None, customers: frozenset[str] | None = None) -> pd.DataFrame:
        """The worklist filtered by collector, segment and `customers` (None: all), ranks renumbered, first `top`."""
        portfolio = self.store.portfolio(collector) if self.store is not None and collector is not None else []
        return self.with_escalations(self.view(as_of).worklist_rows(
            customers=customers, collector=collector, segment=segment, top=top, portfolio=portfolio or None))

    def with_escalations(self, worklist: pd.DataFrame) -> pd.DataFrame:
        """The worklist with each customer's live escalation (`queues.escalations.with_escalation_column`, one
        store query); as it is without a store (the column comes with the escalations, as on the CLI)."""
        from queues.escalations import with_escalation_column

        if self.store is None:
            return worklist
        return with_escalation_column(worklist, self.store.list_queue_items(queue="escalation"))

    def score_invoices(self, as_of: pd.Timestamp | None, invoice_ids: list[str] | None,
                       customers: frozenset[str] | None = None) -> pd.DataFrame:
        return self.view(as_of).invoices(invoice_ids, customers)

    def customer_risk(self, customer_id: str, as_of: pd.Timestamp | None = None) -> dict:
        return self.view(as_of).customer_risk(customer_id)

    def customer(self, customer_id: str, as_of: pd.Timestamp | None = None) -> dict:
        """The customer view; its KPIs come from the customer's slice of the ledger and its records."""
        from rules.kpis import kpi_report

        view = self.view(as_of)
        view.facts(customer_id)  # NotFound before any work for a customer the day does not know
        start, end = view.kpi_window()
        ledger = self.customer_ledger(customer_id)
        kpis = kpi_report(ledger, start, end)
        answer = view.customer(customer_id, kpis[kpis["customer_id"] == customer_id])
        # The limit a credit review decided since the run (the run's features had the one before).
        limits = ledger.customers.loc[ledger.customers["customer_id"] == customer_id, "credit_limit"]
        return answer | ({"credit_limit": limits.iloc[0]} if len(limits) else {})

    def customer_ledger(self, customer_id: str) -> Ledger:
        """One customer's slice of the ledger with its recorded activity."""
        slice_ = self.customer_index().slice(customer_id)
        return with_records(slice_, self.store.ledger_tables(customer_id)) if self.store is not None else slice_

    def deterioration_flags(self, as_of: pd.Timestamp | None = None, flagged_only: bool = True,
                            top: int | None = None) -> pd.DataFrame:
        return self.view(as_of, actions=False).deterioration_flags(deterioration_evidence(self.feature_config),
                                                                   flagged_only, top)

    def forecast(self, as_of: pd.Timestamp | None = None, horizon_weeks: int = 13, freq: str = "week") -> pd.DataFrame:
        return self.view(as_of, actions=False).forecast(horizon_weeks, freq)

    def aging(self, as_of: pd.Timestamp | None = None, basis: str = "due_date", currency: str = "base") -> pd.DataFrame:
        return self.view(as_of).aging(basis, currency)

    def dunning(self, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
        return self.view(as_of).dunning


def checked_in_range(day: datetime.date, field: str, first_invoice, last_event: pd.Timestamp,
                     future_days: int) -> pd.Timestamp:
    """`day` as a timestamp if between the ledger's first invoice and its last event plus `future_days`;
    else a 400 naming `field` and the range. Compared as dates first: 9999-12-31 is a valid date but not a
    pandas timestamp."""
    last = (last_event + pd.Timedelta(days=future_days)).date()
    first = None if pd.isna(first_invoice) else first_invoice.date()
    if first is None or not first <= day <= last:
        window = "the ledger has no invoices" if first is None else (
            f"expected {first:%Y-%m-%d} (the first invoice) to {last:%Y-%m-%d} (the last event, "
            f"{last_event:%Y-%m-%d}, + {future_days} days)")
        raise LedgerError(Problem(field, None, None, f"{day:%Y-%m-%d} is outside the ledger's dates: {window}"),
                          title="bad input")
    return pd.Timestamp(day)


def deterioration_evidence(config: FeatureConfig) -> list[str]:
    """The feature columns shown as evidence beside a deterioration flag, named by the feature settings."""
    return ["open_ar_base", "overdue_amount_base", "max_days_past_due",
            f"avg_days_late_last_{config.last_paid_invoices}", "days_late_trend", "credit_utilisation",
            f"broken_promises_{config.broken_promise_days}d", "open_disputes"]
