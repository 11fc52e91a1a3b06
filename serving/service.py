"""The ar-risk API: a BentoML service, thin over `serving.views` (DESIGN.md §8, STYLE.md BentoML).

The HTTP layer is a FastAPI app mounted on the BentoML service at `/v1`: it gives pydantic request and
response models, OpenAPI docs at `/v1/docs`, and exact control of error bodies (401/403/404/422 as
JSON, never a traceback). The service loads the champion models and the ledger once at start-up:

- `ARRISK_LEDGER`: ledger directory (default `out/demo/synthetic`, the README demo's);
- `ARRISK_TRACKING_URI`: MLflow store with the champions (default the local `mlflow/`);
- `ARRISK_TOKENS_FILE` and/or `ARRISK_API_TOKENS`: API tokens (see `serving.auth`); without any, every
  endpoint but health answers 401;
- `ARRISK_DATABASE_URL`: the activity store; limits and windows: `configs.settings.Settings`.

Who sees which customer is `serving.access`; request ids, JSON 500s, body limits, the token before the
body, security headers and the metrics labels are `serving.middleware`.

Run it with `arrisk serve` or `bentoml serve serving.service:ARRiskService`.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
import numpy as np
import pandas as pd
from fastapi import Body, FastAPI, Header, Query, Request
from fastapi import Path as PathParameter
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import AfterValidator, BaseModel, Field
from starlette.exceptions import HTTPException

from activity.models import ID_LENGTH
from activity.store import IdempotencyMismatch, InvalidInput, StoreError, VersionConflict
from activity.store import NotFound as StoreNotFound
from configs.settings import Settings
from ledger import LedgerError
from ledger.schema import CONTACT_CHANNELS
from serving import access
from serving.activity import check_known
from serving.auth import ADMIN, AuthError, Forbidden, Principal, TokenStore, error_body, token_store_from_env
from serving.middleware import (
    BodyLimit,
    InternalErrors,
    RequestIds,
    SecurityHeaders,
    TokenFirst,
    current_service,
    label_metrics_by_route,
    route_label,
    route_templates,
)
from serving.views import NotFound, ServingState
from serving.web import router as web_pages

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LEDGER = PROJECT_ROOT / "out" / "demo" / "synthetic"
LEDGER_ENV, TRACKING_ENV, REPORTS_ENV = "ARRISK_LEDGER", "ARRISK_TRACKING_URI", "ARRISK_REPORTS"
DEFAULT_REPORTS = PROJECT_ROOT / "out" / "reports"
# What `arrisk report drift | performance | kpis` write; only these names are ever served.
REPORT_FILES = {"drift.html": "text/html", "drift.json": "application/json", "performance.html": "text/html",
                "performance.json": "application/json", "kpis.html": "text/html", "kpis.json": "application/json",
                "kpis.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
log = logging.getLogger("arrisk.service")

api = FastAPI(title="ar-risk", version="1", description=(
    "Accounts-receivable risk: invoice scores, the collection worklist, customer views with explanations, "
    "deterioration flags, the cash forecast, aging, dunning and KPIs. Every endpoint but /v1/health needs "
    "`Authorization: Bearer <token>` with the scope named in its description."))

# The web pages for collectors, credit and treasury (server-rendered HTML under /v1/ui, see serving/web.py).
api.include_router(web_pages)
# Inside FastAPI's own ServerErrorMiddleware, which would answer a plain-text 500 and re-raise.
api.add_middleware(InternalErrors)

RECORD_TABLES = ("promises", "disputes", "contacts", "dunning_letters")
Id = Annotated[str, Field(min_length=1, max_length=ID_LENGTH)]
IdInPath = Annotated[str, PathParameter(max_length=ID_LENGTH)]
IdInQuery = Annotated[str | None, Query(max_length=ID_LENGTH)]


def within_text_limit(value: str) -> str:
    """`value` if no longer than `Settings.max_text_chars` of the running service (default settings before)."""
    service = current_service()
    limit = (service.settings if service is not None else Settings()).max_text_chars
    if len(value) > limit:
        raise ValueError(f"is {len(value)} characters long; at most {limit} are accepted")
    return value


# Free text (notes, outcomes, resolutions): bounded by a setting read when the request is validated.
Text = Annotated[str, AfterValidator(within_text_limit)]


# ---- responses -------------------------------------------------------------------------------------

class Health(BaseModel):
    status: Literal["ok"]
    ready: bool


class Info(BaseModel):
    ledger: str = Field(description="The ledger folder's name (its full path for admins).")
    ledger_fingerprint: str
    default_as_of: datetime.date
    model_versions: dict[str, str | None]
    user: str
    scopes: list[str]


class Table(BaseModel):
    """A report: the date it is as of, its rows (column -> value) and how many there are."""

    as_of: datetime.date | None = None
    rows: list[dict[str, Any]]
    count: int


class ScoreRequest(BaseModel):
    as_of: datetime.date | None = Field(None, description="Scoring date; default: the ledger's last day.")
    invoice_ids: list[Id] | None = Field(None, min_length=1, max_length=10_000, description=(
        "Open documents to score; default: all open documents (of your portfolio, for a collector)."))


class PromiseIn(BaseModel):
    customer_id: Id | None = Field(None, description="The customer; taken from the invoice when omitted.")
    invoice_id: Id | None = Field(None, description="The invoice promised; none for a promise on the account.")
    amount: Decimal = Field(gt=0, max_digits=18, decimal_places=2)
    made_date: datetime.date
    promised_date: datetime.date
    currency: str | None = Field(None, max_length=3)
    note: Text = ""


class PromiseUpdate(BaseModel):
    expected_version: int = Field(ge=1, description="The version you read; a newer one answers 409.")
    amount: Decimal | None = Field(None, gt=0, max_digits=18, decimal_places=2)
    promised_date: datetime.date | None = None
    note: Text | None = None
    status: Literal["cancelled"] | None = None


class DisputeIn(BaseModel):
    invoice_id: Id
    opened_date: datetime.date
    reason_code: Id
    amount: Decimal = Field(gt=0, max_digits=18, decimal_places=2)
    owner: Id | None = None


class DisputeUpdate(BaseModel):
    expected_version: int = Field(ge=1)
    status: Literal["open", "resolved"] | None = None
    resolution: Text | None = None
    resolved_date: datetime.date | None = None
    owner: Id | None = None


class ContactIn(BaseModel):
    customer_id: Id
    contact_date: datetime.date
    channel: Literal[CONTACT_CHANNELS]  # type: ignore[valid-type]
    outcome: Text = ""
    note: Text = ""
    next_action_date: datetime.date | None = None


class ContactUpdate(BaseModel):
    expected_version: int = Field(ge=1)
    outcome: Text | None = None
    note: Text | None = None
    next_action_date: datetime.date | None = None


class LetterIn(BaseModel):
    invoice_id: Id
    level: int = Field(ge=1, le=9)
    issued_date: datetime.date
    channel: Literal["email", "letter", "call", "legal"] = "letter"


class RecordCorrection(BaseModel):
    expected_version: int = Field(ge=1, description="The version you read; a newer one answers 409.")
    changes: dict[str, Any] = Field(min_length=1, description="Field -> corrected value (the store checks them).")


class RecordVoid(BaseModel):
    expected_version: int = Field(ge=1, description="The version you read; a newer one answers 409.")
    reason: Text = Field(min_length=1, description="Why the record is voided (kept in the audit log).")


class CustomerRisk(BaseModel):
    as_of: datetime.date
    customer_id: str
    deterioration_probability: float | None
    deteriorating: bool
    deterioration_reasons: list[str]
    open_items: list[dict[str, Any]]


class CustomerView(BaseModel):
    as_of: datetime.date
    customer_id: str
    name: str
    segment: str
    collector: str | None
    credit_limit: float | None
    deterioration_probability: float | None
    deteriorating: bool
    deterioration_reasons: list[str]
    deterioration_contributions: list[dict[str, Any]]
    worklist: dict[str, Any] | None
    open_items: list[dict[str, Any]]
    aging: list[dict[str, Any]]
    kpis: list[dict[str, Any]]


# ---- errors ----------------------------------------------------------------------------------------

@api.exception_handler(AuthError)
async def _auth_error(request: Request, error: AuthError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


@api.exception_handler(NotFound)
async def _not_found(request: Request, error: NotFound) -> JSONResponse:
    return JSONResponse({"error": "not_found", "detail": str(error)}, status_code=404)


@api.exception_handler(StoreError)
async def _store_error(request: Request, error: StoreError) -> JSONResponse:
    status, kind = {VersionConflict: (409, "version_conflict"), IdempotencyMismatch: (409, "idempotency_mismatch"),
                    StoreNotFound: (404, "not_found"), InvalidInput: (422, "bad_input")}.get(
        type(error), (400, "bad_input"))
    body = {"error": kind, "detail": str(error)}
    if isinstance(error, InvalidInput):
        body["field"] = error.field
    return JSONResponse(body, status_code=status)


@api.exception_handler(LedgerError)
async def _bad_input(request: Request, error: LedgerError) -> JSONResponse:
    body = {"error": "bad_input", "detail": error.summary()}
    if len(error.problems) == 1:
        body["field"] = error.problems[0].column or error.problems[0].where
    return JSONResponse(body, status_code=400)


@api.exception_handler(ValueError)
async def _bad_value(request: Request, error: ValueError) -> JSONResponse:
    return JSONResponse({"error": "bad_input", "detail": str(error)}, status_code=400)


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse(validation_body(error.errors()), status_code=422)


@api.exception_handler(HTTPException)
async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    # FastAPI's own 404 (no such route) and 405, in the same shape as every other error.
    return JSONResponse(error_body(error.status_code, str(error.detail)), status_code=error.status_code,
                        headers=getattr(error, "headers", None))


def validation_body(errors: list[dict]) -> dict[str, str]:
    """The documented error shape of pydantic errors: every problem in `detail`, the first one's `field`."""
    fields = [".".join(str(part) for part in e["loc"] if part not in ("body", "query", "path", "header"))
              for e in errors]
    detail = "; ".join(f"{field or 'body'}: {e['msg']}" for field, e in zip(fields, errors, strict=True))
    return {"error": "bad_input", "detail": detail, "field": fields[0] if fields else ""}


# ---- helpers ---------------------------------------------------------------------------------------

def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: dates as ISO strings, NaN as null, numpy scalars as Python numbers."""
    return [{column: _plain(value) for column, value in row.items()} for row in frame.to_dict("records")]


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.date().isoformat()
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(item) for item in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if not np.isfinite(value) else float(value)
    if value is pd.NaT or value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def load_state(environ: dict[str, str], settings: Settings) -> tuple[ServingState, TokenStore, str]:
    """The ledger, the champions and the tokens named by the environment, loaded once."""
    from ledger import read_ledger
    from serving.activity import database_url, ledger_date_window, open_store
    from serving.scoring import load_champions
    from training.tracking import default_tracking_uri

    ledger_dir = Path(environ.get(LEDGER_ENV, str(DEFAULT_LEDGER))).resolve()
    tracking_uri = environ.get(TRACKING_ENV) or default_tracking_uri()
    ledger = read_ledger(ledger_dir)
    # The store refuses records dated outside the ledger's window before anything is committed.
    store = open_store(database_url(environ), settings, ledger_date_window(ledger, settings))
    state = ServingState(ledger, load_champions(tracking_uri), store=store,
                         as_of_future_days=settings.as_of_future_days)
    state.champions.require("timing")
    return state, token_store_from_env(environ), str(ledger_dir)


def checked_idempotency_key(key: str | None) -> str | None:
    """The Idempotency-Key header, refused when present but blank (it would be one key for everyone)."""
    if key is not None and not key.strip():
        raise InvalidInput("idempotency_key", "must not be empty; leave the header out for no key")
    return key


def shown_ledger(principal: Principal, ledger_path: str) -> str:
    """The ledger's location as shown to `principal`: the full path for admins, the folder's name otherwise."""
    return ledger_path if principal.has(ADMIN) else Path(ledger_path).name


# ---- the service -----------------------------------------------------------------------------------

@bentoml.service(name="ar_risk", traffic={"timeout": 120}, workers=1)
@bentoml.asgi_app(api, path="/v1")
class ARRiskService:
    """Scores, worklists, explanations, flags and forecasts for one ledger and its champion models."""

    def __init__(self) -> None:
        self.settings = Settings.from_environ(os.environ)
        self.state, self.tokens, self.ledger_path = load_state(dict(os.environ), self.settings)
        self.reports = Path(os.environ.get(REPORTS_ENV, str(DEFAULT_REPORTS)))
        self.fingerprint = self.state.ledger.fingerprint()
        # Score and rank the ledger's latest day now, so the first request of the morning is fast.
        self.state.full_worklist()
        if not len(self.tokens):
            log.warning("no API tokens configured (%s / %s): every endpoint but health answers 401",
                        "ARRISK_TOKENS_FILE", "ARRISK_API_TOKENS")

    def allow(self, authorization: str | None, *scopes: str) -> Principal:
        """The caller, if its token is valid and holds one of `scopes` (admin holds all)."""
        principal = self.tokens.authenticate(authorization)
        if not any(principal.has(scope) for scope in scopes):
            raise Forbidden(" or ".join(scopes))
        return principal

    @api.get("/health", response_model=Health, summary="Liveness and readiness (no token needed)")
    def health(self) -> Health:
        return Health(status="ok", ready=self.state.champions.timing is not None)

    @api.get("/info", response_model=Info, summary="Model versions and the ledger in use (any scope)")
    def info(self, authorization: str | None = Header(None)) -> Info:
        principal = self.allow(authorization, "collector", "credit", "treasury")
        return Info(ledger=shown_ledger(principal, self.ledger_path), ledger_fingerprint=self.fingerprint,
                    default_as_of=self.state.default_as_of.date(), model_versions=self.state.champions.versions,
                    user=principal.user, scopes=sorted(principal.scopes))

    @api.post("/score", response_model=Table, summary="Score open invoices (collector, credit)")
    def score(self, request: ScoreRequest, authorization: str | None = Header(None)) -> Table:
        """P(late), bucket probabilities, expected days late, pay date p10/p50/p90, P(unpaid in 30 days)
        and three reasons per open invoice."""
        principal = self.allow(authorization, "collector", "credit")
        as_of = self.state.checked_as_of(request.as_of)
        if request.invoice_ids is not None:
            access.check_invoices(principal, self.state, request.invoice_ids)
        table = self.state.score_invoices(as_of, request.invoice_ids, access.visible_customers(principal, self.state))
        return Table(as_of=as_of.date(), rows=records(table), count=len(table))

    @api.get("/worklist", response_model=Table, summary="The prioritised collection worklist (collector)")
    def worklist(self, as_of: datetime.date | None = None, collector: IdInQuery = None,
                 segment: IdInQuery = None, top: int | None = Query(None, ge=1, le=100_000),
                 authorization: str | None = Header(None)) -> Table:
        """Customers to chase with money at risk, next dunning action and reasons. A collector's token
        sees its own portfolio; a team lead's (or `all_portfolios`) any `collector`'s, its own by default."""
        principal = self.allow(authorization, "collector")
        access.check_collector(principal, collector)
        when = self.state.checked_as_of(as_of)
        visible = access.visible_customers(principal, self.state)
        collector = (collector or principal.collector) if visible is None else None
        table = self.state.worklist(when, collector=collector, segment=segment, top=top, customers=visible)
        return Table(as_of=when.date(), rows=records(table), count=len(table))

    @api.get("/customers/{customer_id}/risk", response_model=CustomerRisk,
             summary="One customer's open items scored with reasons, and its deterioration risk (collector, credit)")
    def customer_risk(self, customer_id: IdInPath, as_of: datetime.date | None = None,
                      authorization: str | None = Header(None)) -> CustomerRisk:
        principal = self.allow(authorization, "collector", "credit")
        access.check_customer(principal, self.state, customer_id)
        risk = self.state.customer_risk(customer_id, self.state.checked_as_of(as_of))
        return CustomerRisk(as_of=risk["as_of"].date(), customer_id=customer_id,
                            deterioration_probability=_plain(risk["deterioration_probability"]),
                            deteriorating=risk["deteriorating"], deterioration_reasons=risk["deterioration_reasons"],
                            open_items=records(risk["open_items"]))

    @api.get("/customers/{customer_id}", response_model=CustomerView,
             summary="One customer: open items, aging, risk, explanation, KPIs (collector, credit)")
    def customer(self, customer_id: IdInPath, as_of: datetime.date | None = None,
                 authorization: str | None = Header(None)) -> CustomerView:
        principal = self.allow(authorization, "collector", "credit")
        access.check_customer(principal, self.state, customer_id)
        view = self.state.customer(customer_id, self.state.checked_as_of(as_of))
        row = view["worklist"]
        return CustomerView(
            **{key: _plain(view[key]) for key in ("customer_id", "name", "segment", "collector", "credit_limit",
                                                  "deterioration_probability", "deteriorating")},
            as_of=view["as_of"].date(), deterioration_reasons=view["deterioration_reasons"],
            deterioration_contributions=view["deterioration_contributions"],
            worklist=records(row)[0] if len(row) else None, open_items=records(view["open_items"]),
            aging=records(view["aging"]), kpis=records(view["kpis"]))

    @api.get("/deterioration", response_model=Table, summary="Deterioration flags with evidence (credit)")
    def deterioration(self, as_of: datetime.date | None = None, flagged_only: bool = True,
                      top: int | None = Query(None, ge=1, le=100_000),
                      authorization: str | None = Header(None)) -> Table:
        self.allow(authorization, "credit")
        when = self.state.checked_as_of(as_of)
        table = self.state.deterioration_flags(when, flagged_only=flagged_only, top=top)
        return Table(as_of=when.date(), rows=records(table), count=len(table))

    @api.get("/forecast", response_model=Table, summary="Cash-receipt forecast with intervals (treasury)")
    def forecast(self, as_of: datetime.date | None = None, horizon_weeks: int = Query(13, ge=1, le=26),
                 freq: Literal["week", "day"] = "week", currency: str | None = None,
                 authorization: str | None = Header(None)) -> Table:
        """Expected receipts per period with 10/50/90% intervals, per currency and converted to the base
        currency, and the baselines' forecasts beside them."""
        self.allow(authorization, "treasury")
        when = self.state.checked_as_of(as_of)
        table = self.state.forecast(when, horizon_weeks=horizon_weeks, freq=freq)
        if currency is not None:
            table = table[table["currency"] == currency.upper()]
        return Table(as_of=when.date(), rows=records(table), count=len(table))

    @api.get("/aging", response_model=Table, summary="Aging by customer and bucket (collector, credit, treasury)")
    def aging(self, as_of: datetime.date | None = None, basis: Literal["due_date", "invoice_date"] = "due_date",
              currency: Literal["base", "document"] = "base",
              authorization: str | None = Header(None)) -> Table:
        from rules.aging import aging_report, with_company_total

        principal = self.allow(authorization, "collector", "credit", "treasury")
        when = self.state.checked_as_of(as_of)
        table = aging_report(self.state.ledger, when, basis=basis, currency=currency)
        # A collector's total is its portfolio's, not the company's.
        table = with_company_total(access.visible_rows(table, access.visible_customers(principal, self.state)))
        return Table(as_of=when.date(), rows=records(table), count=len(table))

    @api.get("/dunning", response_model=Table, summary="Dunning proposal (collector)")
    def dunning(self, as_of: datetime.date | None = None, authorization: str | None = Header(None)) -> Table:
        from rules.dunning import dunning_proposal, load_policy
        from serving.scoring import DEFAULT_DUNNING_POLICY

        principal = self.allow(authorization, "collector")
        when = self.state.checked_as_of(as_of)
        table = dunning_proposal(self.state.ledger, when, load_policy(DEFAULT_DUNNING_POLICY))
        table = access.visible_rows(table, access.visible_customers(principal, self.state))
        return Table(as_of=when.date(), rows=records(table), count=len(table))

    @api.get("/reports", response_model=Table, summary="The latest monitoring reports (credit, treasury)")
    def reports(self, authorization: str | None = Header(None)) -> Table:
        """The report files present (`arrisk report drift | performance | kpis` write them), with the JSON
        summaries inline."""
        self.allow(authorization, "credit", "treasury")
        rows = []
        for name in sorted(REPORT_FILES):
            path = self.reports / name
            if path.is_file():
                stat = path.stat()
                rows.append({"name": name, "url": f"/v1/reports/{name}", "bytes": stat.st_size,
                             "modified": datetime.datetime.fromtimestamp(stat.st_mtime, datetime.UTC).isoformat(),
                             "summary": json.loads(path.read_text()) if name.endswith(".json") else None})
        return Table(rows=rows, count=len(rows))

    @api.get("/reports/{name}", summary="One report file: HTML, JSON or the KPI workbook (credit, treasury)")
    def report_file(self, name: IdInPath, authorization: str | None = Header(None)) -> FileResponse:
        self.allow(authorization, "credit", "treasury")
        path = self.reports / name
        if name not in REPORT_FILES or not path.is_file():
            raise NotFound(f"no report {name!r}: run `arrisk report drift | performance | kpis` first "
                           f"(known names: {', '.join(sorted(REPORT_FILES))})")
        return FileResponse(path, media_type=REPORT_FILES[name], filename=name)

    # ---- collections activity (issue 8): every write is audited with the token's user --------------

    def recorded(self, record: dict) -> JSONResponse:
        """A write's answer; the next worklist sees it (the activity is merged and caches dropped)."""
        self.state.reload_activity()
        return JSONResponse(record, status_code=201)

    def changed(self, principal: Principal, record: dict) -> None:
        """403 unless `principal` may see the record's customer and change the record."""
        access.check_customer(principal, self.state, record["customer_id"])
        access.check_record_change(principal, record)

    def listed(self, principal: Principal, customer_id: str | None, rows_of) -> Table:
        """The records `rows_of(customer_id)` the principal may see (403 for a customer it may not)."""
        if customer_id is not None:
            access.check_customer(principal, self.state, customer_id)
        rows = access.visible_records(rows_of(customer_id), access.visible_customers(principal, self.state))
        return Table(rows=rows, count=len(rows))

    @api.post("/promises", status_code=201, summary="Record a promise to pay (collector)")
    def create_promise(self, promise: PromiseIn, authorization: str | None = Header(None),
                       idempotency_key: str | None = Header(None, max_length=200)) -> JSONResponse:
        principal = self.allow(authorization, "collector")
        key = checked_idempotency_key(idempotency_key)
        customer = check_known(self.state.base_ledger, promise.customer_id, promise.invoice_id)
        access.check_customer(principal, self.state, customer)
        record = self.state.store.create_promise(
            principal.user, customer_id=customer, invoice_id=promise.invoice_id, amount=promise.amount,
            made_date=promise.made_date, promised_date=promise.promised_date, currency=promise.currency,
            note=promise.note, idempotency_key=key, now=recording_time())
        return self.recorded(record)

    @api.patch("/promises/{promise_id}", summary="Change or cancel a promise, given the version read (collector)")
    def update_promise(self, promise_id: IdInPath, change: PromiseUpdate,
                       authorization: str | None = Header(None)) -> JSONResponse:
        principal = self.allow(authorization, "collector")
        self.changed(principal, self.state.store.get_promise(promise_id))
        changes = change.model_dump(exclude_none=True, exclude={"expected_version"})
        record = self.state.store.update_promise(principal.user, promise_id, change.expected_version,
                                                 now=recording_time(), **changes)
        self.state.reload_activity()
        return JSONResponse(record)

    @api.get("/promises", response_model=Table, summary="Promises to pay (collector, credit)")
    def promises(self, customer_id: IdInQuery = None, authorization: str | None = Header(None)) -> Table:
        principal = self.allow(authorization, "collector", "credit")
        return self.listed(principal, customer_id, self.state.store.list_promises)

    @api.post("/disputes", status_code=201, summary="Open a dispute on an invoice (collector, credit)")
    def create_dispute(self, dispute: DisputeIn, authorization: str | None = Header(None),
                       idempotency_key: str | None = Header(None, max_length=200)) -> JSONResponse:
        principal = self.allow(authorization, "collector", "credit")
        key = checked_idempotency_key(idempotency_key)
        customer = check_known(self.state.base_ledger, None, dispute.invoice_id)
        access.check_customer(principal, self.state, customer)
        record = self.state.store.create_dispute(
            principal.user, invoice_id=dispute.invoice_id, customer_id=customer, opened_date=dispute.opened_date,
            reason_code=dispute.reason_code, amount=dispute.amount, owner=dispute.owner,
            idempotency_key=key, now=recording_time())
        return self.recorded(record)

    @api.patch("/disputes/{dispute_id}", summary="Resolve or reassign a dispute (collector, credit)")
    def update_dispute(self, dispute_id: IdInPath, change: DisputeUpdate,
                       authorization: str | None = Header(None)) -> JSONResponse:
        principal = self.allow(authorization, "collector", "credit")
        self.changed(principal, self.state.store.get_dispute(dispute_id))
        changes = change.model_dump(exclude_none=True, exclude={"expected_version"})
        record = self.state.store.update_dispute(principal.user, dispute_id, change.expected_version,
                                                 now=recording_time(), **changes)
        self.state.reload_activity()
        return JSONResponse(record)

    @api.get("/disputes", response_model=Table, summary="Disputes (collector, credit)")
    def disputes(self, customer_id: IdInQuery = None, authorization: str | None = Header(None)) -> Table:
        principal = self.allow(authorization, "collector", "credit")
        return self.listed(principal, customer_id, self.state.store.list_disputes)

    @api.post("/contacts", status_code=201, summary="Log a call, e-mail or letter (collector)")
    def create_contact(self, contact: ContactIn, authorization: str | None = Header(None),
                       idempotency_key: str | None = Header(None, max_length=200)) -> JSONResponse:
        principal = self.allow(authorization, "collector")
        key = checked_idempotency_key(idempotency_key)
        customer = check_known(self.state.base_ledger, contact.customer_id)
        access.check_customer(principal, self.state, customer)
        record = self.state.store.create_contact(
            principal.user, customer_id=customer, contact_date=contact.contact_date, channel=contact.channel,
            outcome=contact.outcome, note=contact.note, next_action_date=contact.next_action_date,
            idempotency_key=key, now=recording_time())
        return self.recorded(record)

    @api.patch("/contacts/{contact_id}", summary="Correct a contact log entry (collector)")
    def update_contact(self, contact_id: IdInPath, change: ContactUpdate,
                       authorization: str | None = Header(None)) -> JSONResponse:
        principal = self.allow(authorization, "collector")
        self.changed(principal, self.state.store.get_contact(contact_id))
        changes = change.model_dump(exclude_none=True, exclude={"expected_version"})
        record = self.state.store.update_contact(principal.user, contact_id, change.expected_version,
                                                 now=recording_time(), **changes)
        self.state.reload_activity()
        return JSONResponse(record)

    @api.get("/contacts", response_model=Table, summary="Contact log (collector, credit)")
    def contacts(self, customer_id: IdInQuery = None, authorization: str | None = Header(None)) -> Table:
        principal = self.allow(authorization, "collector", "credit")
        return self.listed(principal, customer_id, self.state.store.list_contacts)

    @api.post("/dunning-letters", status_code=201, summary="Record a dunning letter sent, so levels advance (collector)")
    def create_letter(self, letter: LetterIn, authorization: str | None = Header(None),
                      idempotency_key: str | None = Header(None, max_length=200)) -> JSONResponse:
        principal = self.allow(authorization, "collector")
        key = checked_idempotency_key(idempotency_key)
        customer = check_known(self.state.base_ledger, None, letter.invoice_id)
        access.check_customer(principal, self.state, customer)
        record = self.state.store.record_dunning_letter(
            principal.user, invoice_id=letter.invoice_id, customer_id=customer, level=letter.level,
            issued_date=letter.issued_date, channel=letter.channel, idempotency_key=key,
            now=recording_time())
        return self.recorded(record)

    @api.get("/dunning-letters", response_model=Table, summary="Dunning letters recorded (collector, credit)")
    def letters(self, customer_id: IdInQuery = None, authorization: str | None = Header(None)) -> Table:
        principal = self.allow(authorization, "collector", "credit")
        return self.listed(principal, customer_id, self.state.store.list_letters)

    # ---- administration: corrections and voids go through the audit chain --------------------------

    @api.patch("/admin/records/{table}/{record_id}", summary="Correct a record, audited (admin)")
    def correct_record(self, table: Literal[RECORD_TABLES], record_id: IdInPath,  # type: ignore[valid-type]
                       correction: RecordCorrection, authorization: str | None = Header(None)) -> JSONResponse:
        principal = self.allow(authorization, "admin")
        record = self.state.store.correct(principal.user, table, record_id, correction.expected_version,
                                          now=recording_time(), **correction.changes)
        self.state.reload_activity()
        return JSONResponse(record)

    @api.post("/admin/records/{table}/{record_id}/void", summary="Void a record with a reason, audited (admin)")
    def void_record(self, table: Literal[RECORD_TABLES], record_id: IdInPath,  # type: ignore[valid-type]
                    void: Annotated[RecordVoid, Body()], authorization: str | None = Header(None)) -> JSONResponse:
        principal = self.allow(authorization, "admin")
        record = self.state.store.void(principal.user, table, record_id, void.expected_version,
                                       reason=void.reason, now=recording_time())
        self.state.reload_activity()
        return JSONResponse(record)

    @api.get("/audit/verify", summary="Check the audit log's hash chain, the records against it, and list "
                                      "unreadable records (admin)")
    def audit_verify(self, authorization: str | None = Header(None)) -> dict:
        from activity.audit import verify_audit

        self.allow(authorization, "admin")
        problems = verify_audit(self.state.store)
        unreadable = self.state.store.unreadable_records()
        return {"ok": not problems and not unreadable, "problems": problems, "unreadable": unreadable}

    @api.get("/kpis", response_model=Table, summary="DSO, BPDSO, ADD, CEI and collection KPIs (credit, treasury)")
    def kpis(self, start: Annotated[datetime.date, Query(alias="from")], end: Annotated[datetime.date, Query(alias="to")],
             freq: Literal["month", "quarter"] = "month", customer_id: IdInQuery = None,
             authorization: str | None = Header(None)) -> Table:
        from rules.kpis import COMPANY, kpi_report

        self.allow(authorization, "credit", "treasury")
        start, end = self.state.checked_as_of(start, "from"), self.state.checked_as_of(end, "to")
        if end < start:
            raise ValueError("'to' must not be before 'from'")
        table = kpi_report(self.state.ledger, start, end, freq)
        table = table[table["customer_id"] == (customer_id or COMPANY)]
        return Table(as_of=end.date(), rows=records(table), count=len(table))


def recording_time() -> datetime.datetime:
    """When a change is recorded, for the audit trail: the one clock read in ar-risk, and it never feeds a
    score, a rule or a feature (those use the business dates in the record)."""
    return datetime.datetime.now(datetime.UTC)



# Outermost first: every answer gets its request id and security headers, even a 500 or a 413.
for _middleware in (RequestIds, SecurityHeaders, InternalErrors, TokenFirst, BodyLimit):
    ARRiskService.add_asgi_middleware(_middleware)


@cache
def api_route_templates() -> list:
    """The API's routes as (regex, template), once every route is declared."""
    return route_templates(api)


def metrics_label(path: str) -> str:
    """The route template of `path` for BentoML's HTTP metrics ("other" for unknown paths)."""
    return route_label(path, api_route_templates())


label_metrics_by_route(metrics_label)
