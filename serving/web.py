"""Web pages for collectors, credit analysts and treasury under `/v1/ui` (issues 10 and 14), server-rendered.

Login is by API token, checked once against the service's `TokenStore`: the login opens a server-side
session (`serving.sessions`) and the cookie holds only its random id, HttpOnly, SameSite=Strict, scoped to
`/v1/ui`, Secure as `Settings.cookie_secure` says. Logout deletes the session; failed logins are
throttled per client. Every POST form carries the session's random CSRF token (the login form: the HMAC
of a random pre-login cookie under a secret drawn when the process starts). Pages use the API's scopes and
`serving.access`'s portfolio rules. Like the API, the pages only translate HTTP to `ServingState` and
activity-store calls and back; every error a user can cause is an HTML page with a 4xx status.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import math
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import pandas as pd
from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader

from activity.store import InvalidInput
from cash_application.confirm import payment_facts, proposal_lines
from cash_application.matching import DECISIONS
from configs.settings import Settings
from ledger import LedgerError
from ledger.errors import ArRiskError, NotFound
from ledger.schema import CONTACT_CHANNELS
from rules.aging import overdue_bucket_ranges
from rules.worklist import filtered_worklist
from runs.reasons import feature_descriptions
from serving.access import check_collector, check_customer, visible_customers
from serving.auth import Forbidden, NotPermitted, Unauthorized
from serving.cash import proposal_rows, with_rejections
from serving.cash import record as record_cash
from serving.deps import Service, recording_time
from serving.sessions import LoginThrottle, Session, SessionStore, same_secret

HERE = Path(__file__).resolve().parent
BASE = "/v1/ui"
AUTH_COOKIE, LOGIN_COOKIE = "arrisk_session", "arrisk_login"
# Drawn once per process: a restart invalidates open login forms (sessions end with it anyway).
LOGIN_SECRET = secrets.token_bytes(32)
STATIC_FILES = {"style.css": "text/css"}
# The worklist's filter by the oldest item's days past due: the aging report's overdue buckets.
BUCKETS = overdue_bucket_ranges()
SORTABLE = ("rank", "customer_id", "status", "money_at_risk_base", "overdue_amount_base", "max_days_past_due",
            "next_dunning_action")
WORKLIST_ROWS = 500  # a page shows at most this many rows; filters narrow it down

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)


class CsrfError(Exception):
    """A POST without the CSRF token of its session."""


class BadRequest(ValueError):
    """A query parameter of a page that cannot be read (400 page with the message)."""


# ---- formatting --------------------------------------------------------------------------------------

def money(value: Any) -> str:
    """An amount with thousands separators and cents; blank when missing."""
    return "" if value is None or pd.isna(value) else f"{float(value):,.2f}"


def percent(value: Any) -> str:
    """A probability as a whole percentage; blank when missing."""
    return "" if value is None or pd.isna(value) else f"{100 * float(value):.0f}%"


def day(value: Any) -> str:
    """A date as YYYY-MM-DD; blank when missing."""
    return "" if value is None or pd.isna(value) else f"{pd.Timestamp(value):%Y-%m-%d}"


def whole(value: Any) -> str:
    """A count of days as a whole number; blank when missing."""
    return "" if value is None or pd.isna(value) else f"{int(value)}"


def text(value: Any) -> str:
    """A value as text; blank when missing (NaN from a frame included)."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


templates.filters.update(money=money, percent=percent, day=day, whole=whole, text=text)


def render(template: str, status: int = 200, /, **context: Any) -> HTMLResponse:
    """A template rendered (autoescaped) into an HTML response."""
    return HTMLResponse(templates.get_template(template).render(base=BASE, **context), status_code=status)


def redirect(path: str) -> RedirectResponse:
    """A 303 to a page of the UI (a POST's answer becomes a GET)."""
    return RedirectResponse(BASE + path, status_code=303)


def page(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Turn auth, CSRF, lookup and input errors of a page handler into a redirect to login or an HTML
    error page."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return handler(*args, **kwargs)
        except Unauthorized:
            return redirect("/login")
        except NotPermitted as error:
            return render("error.html", 403, title="Not allowed", message=f"{error.detail}.")
        except Forbidden as error:
            return render("error.html", 403, title="Not allowed", message=f"Your token lacks the scope: {error.scope}.")
        except CsrfError:
            return render("error.html", 403, title="Form expired", message="The form's security token is "
                          "missing or wrong: reload the page and submit it again.")
        except NotFound as error:
            return render("error.html", 404, title="Not found", message=str(error))
        except LedgerError as error:
            return render("error.html", 400, title="Bad request", message=error.summary())
        except BadRequest as error:
            return render("error.html", 400, title="Bad request", message=str(error))

    return wrapper


# ---- login, sessions and CSRF --------------------------------------------------------------------------

@dataclass(frozen=True)
class WebState:
    """What the pages keep per service: its settings, the open sessions and the failed-login counts."""

    settings: Settings
    sessions: SessionStore
    throttle: LoginThrottle


def new_web_state(settings: Settings, clock: Callable[[], float] = time.monotonic) -> WebState:
    """Empty session store and login throttle, sized by `settings`; the one place the web reads a clock."""
    return WebState(settings, SessionStore(settings.session_minutes * 60, clock),
                    LoginThrottle(settings.login_attempts, settings.login_window_seconds, clock))


_web_states: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_web_states_lock = threading.Lock()


def web_state(service: Any) -> WebState:
    """The web state of this service instance, made on first use (a restarted service starts empty)."""
    with _web_states_lock:
        if service not in _web_states:
            _web_states[service] = new_web_state(service.settings)
        return _web_states[service]


def cookie_is_secure(setting: str, scheme: str) -> bool:
    """The Secure flag of a cookie: always, never, or (auto) when the request came over https."""
    return setting == "always" or (setting == "auto" and scheme == "https")


def set_cookie(response: Response, request: Request, settings: Settings, name: str, value: str) -> None:
    """Set one of the UI's cookies: HttpOnly, SameSite=Strict, path /v1/ui, Secure per the settings."""
    response.set_cookie(name, value, httponly=True, samesite="strict", path=BASE,
                        secure=cookie_is_secure(settings.cookie_secure, request.url.scheme))


def forget_cookie(response: Response, request: Request, settings: Settings, name: str) -> None:
    """Delete one of the UI's cookies, with the attributes it was set with."""
    response.delete_cookie(name, httponly=True, samesite="strict", path=BASE,
                           secure=cookie_is_secure(settings.cookie_secure, request.url.scheme))


def login_csrf(nonce: str) -> str:
    """The login form's CSRF token: an HMAC of its random pre-login cookie, so another site cannot know it."""
    return hmac.new(LOGIN_SECRET, nonce.encode("utf-8"), hashlib.sha256).hexdigest()


def check_csrf(expected: str | None, presented: str) -> None:
    """Raise `CsrfError` unless `presented` is the expected token (compared in constant time)."""
    if not expected or not same_secret(expected, presented):
        raise CsrfError()


def signed_in(service: Any, request: Request, *scopes: str) -> Session:
    """The live session of the request's cookie, its user holding one of `scopes`; `Unauthorized` or
    `Forbidden` otherwise."""
    session = web_state(service).sessions.get(request.cookies.get(AUTH_COOKIE))
    if session is None:
        raise Unauthorized("no session: log in")
    scopes = scopes or ("collector", "credit", "treasury")
    if not any(session.principal.has(scope) for scope in scopes):
        raise Forbidden(" or ".join(scopes))
    return session


def session_context(session: Session) -> dict[str, Any]:
    """What every signed-in page needs: the user and the CSRF token of its forms."""
    return {"user": session.principal, "csrf": session.csrf}


def client_address(request: Request) -> str:
    """Who is logging in, for the throttle: the peer's address (a proxy's, behind one)."""
    return request.client.host if request.client else "unknown"


@router.get("/login")
def login_form(request: Request, service: Service) -> HTMLResponse:
    """The login form, with a pre-login cookie its CSRF token is bound to."""
    return login_page(request, web_state(service).settings, status=200, error=None)


def login_page(request: Request, settings: Settings, status: int, error: str | None) -> HTMLResponse:
    """The login form; the pre-login cookie is kept while the browser has one, so two tabs both work."""
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_hex(32)
    response = render("login.html", status, csrf=login_csrf(nonce), error=error)
    set_cookie(response, request, settings, LOGIN_COOKIE, nonce)
    return response


def locked_out_page(seconds: float) -> HTMLResponse:
    """The 429 answer to a client with too many failed logins, saying when to try again."""
    minutes = max(1, math.ceil(seconds / 60))
    response = render("error.html", 429, title="Too many failed logins", message=(
        f"Too many failed logins from your address: try again in {minutes} minute{'s' if minutes > 1 else ''}."))
    response.headers["Retry-After"] = str(math.ceil(seconds))
    return response


@router.post("/login")
@page
def login(request: Request, service: Service, token: Annotated[str, Form()] = "",
          csrf: Annotated[str, Form()] = "") -> Response:
    """Check the token (unless the client is locked out); on success open a new session and go to the
    user's first page."""
    web = web_state(service)
    client = client_address(request)
    wait = web.throttle.retry_after(client)
    if wait > 0:  # checked first: while locked out, even the right token is refused
        return locked_out_page(wait)
    nonce = request.cookies.get(LOGIN_COOKIE)
    check_csrf(login_csrf(nonce) if nonce else None, csrf)
    try:
        principal = service.tokens.authenticate(f"Bearer {token.strip()}")
    except Unauthorized:
        web.throttle.failed(client)
        return login_page(request, web.settings, status=401, error="That token is not valid: check it and try again.")
    web.throttle.succeeded(client)
    web.sessions.close(request.cookies.get(AUTH_COOKIE))  # a session the browser had before ends here
    session = web.sessions.open(principal)  # always a new id: a planted cookie never becomes a session
    response = redirect("/")
    set_cookie(response, request, web.settings, AUTH_COOKIE, session.id)
    forget_cookie(response, request, web.settings, LOGIN_COOKIE)
    return response


@router.post("/logout")
@page
def logout(request: Request, service: Service, csrf: Annotated[str, Form()] = "") -> RedirectResponse:
    """End the session on the server (its cookie stops working) and forget the cookie."""
    session = signed_in(service, request)
    check_csrf(session.csrf, csrf)
    web = web_state(service)
    web.sessions.close(session.id)
    response = redirect("/login")
    forget_cookie(response, request, web.settings, AUTH_COOKIE)
    return response


@router.get("/")
@page
def home(request: Request, service: Service) -> Response:
    """The user's first page: the worklist for collectors, the forecast for treasury, the unapplied payments for
    cash application, else a customer search."""
    session = signed_in(service, request, "collector", "credit", "treasury", "cash", "manager", "finance")
    principal = session.principal
    if principal.has("collector"):
        return redirect("/worklist")
    if principal.has("manager") and not principal.has("credit"):
        return redirect("/escalations")
    if principal.has("treasury") and not principal.has("credit"):
        return redirect("/forecast")
    if principal.has("cash") and not principal.has("credit"):
        return redirect("/cash")
    if principal.has("finance") and not principal.has("credit"):
        return redirect("/provision")
    return render("home.html", **session_context(session))


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The stylesheet (only the files named in STATIC_FILES are served)."""
    if name not in STATIC_FILES:
        return HTMLResponse("not found", status_code=404)
    return FileResponse(HERE / "static" / name, media_type=STATIC_FILES[name])


# ---- worklist ------------------------------------------------------------------------------------------

def parse_as_of(service: Any, text: str | None) -> pd.Timestamp:
    """The page's as-of date: the ledger's default when blank, else a date within the ledger's range
    (`LedgerError` naming the range otherwise)."""
    if not text:
        return service.state.default_as_of
    try:
        when = datetime.date.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(f"as_of {text[:40]!r} is not a date (expected YYYY-MM-DD)") from None
    return service.state.checked_as_of(when)


def in_bucket(table: pd.DataFrame, bucket: str) -> pd.DataFrame:
    """Rows whose oldest item's days past due fall in the bucket (all rows for an unknown bucket)."""
    if bucket not in BUCKETS:
        return table
    low, high = BUCKETS[bucket]
    return table[table["max_days_past_due"].between(low, high)]


def sorted_rows(table: pd.DataFrame, sort: str, descending: bool) -> pd.DataFrame:
    """The table sorted by one of SORTABLE (rank when unknown), ties by rank."""
    column = sort if sort in SORTABLE else "rank"
    keys = [column] if column == "rank" else [column, "rank"]
    return table.sort_values(keys, ascending=[not descending, True][: len(keys)], kind="stable")


def sort_links(filters: dict[str, str], sort: str, descending: bool) -> dict[str, str]:
    """Per sortable column, the worklist URL sorted by it (the current column toggles its direction)."""
    links = {}
    for column in SORTABLE:
        flip = column == sort and not descending
        links[column] = f"{BASE}/worklist?" + urlencode({**filters, "sort": column, "desc": "1" if flip else ""})
    return links


@router.get("/worklist")
@page
def worklist(request: Request, service: Service, as_of: str | None = None, collector: str | None = None,
             segment: str = "", bucket: str = "", sort: str = "rank", desc: str = "") -> Response:
    """The collection worklist with filters and sortable columns; a collector sees only their portfolio,
    unless their token sees every portfolio."""
    session = signed_in(service, request, "collector")
    principal, state = session.principal, service.state
    when = parse_as_of(service, as_of)
    collector = principal.collector if collector is None else collector  # "" asks for every collector
    check_collector(principal, collector or None)
    visible = visible_customers(principal, state)
    everyone = filtered_worklist(state.full_worklist(when), customers=visible)
    table = state.worklist(when, collector=collector or None, segment=segment or None, customers=visible)
    table = sorted_rows(in_bucket(table, bucket), sort, descending=desc == "1")
    filters = {"as_of": f"{when:%Y-%m-%d}", "collector": collector or "", "segment": segment, "bucket": bucket}
    return render("worklist.html", **session_context(session), as_of=when, filters=filters,
                  rows=table.head(WORKLIST_ROWS).to_dict("records"), count=len(table),
                  collectors=sorted(everyone["collector"].dropna().unique()),
                  segments=sorted(everyone["segment"].dropna().unique()), buckets=list(BUCKETS),
                  sort=sort, descending=desc == "1", links=sort_links(filters, sort, desc == "1"),
                  currency=state.base_currency, limit=WORKLIST_ROWS)


# ---- customer ------------------------------------------------------------------------------------------

@router.get("/customers")
@page
def find_customer(request: Request, service: Service, customer_id: str = "") -> Response:
    """The customer search box's answer: that customer's page."""
    signed_in(service, request, "collector", "credit")
    return redirect(f"/customers/{quote(customer_id.strip(), safe='')}")


@router.get("/customers/{customer_id}")
@page
def customer(request: Request, service: Service, customer_id: str, as_of: str | None = None,
             saved: str = "") -> Response:
    """One customer: open items with risk, deterioration with its explanation, history and the forms."""
    session = signed_in(service, request, "collector", "credit", "manager")
    when = parse_as_of(service, as_of)
    check_customer(session.principal, service.state, customer_id)
    return customer_page(service, session, customer_id, when, saved=saved)


def customer_page(service: Any, session: Session, customer_id: str, when: pd.Timestamp,
                  forms: dict[str, dict] | None = None, errors: dict[str, dict] | None = None,
                  saved: str = "", status: int = 200) -> HTMLResponse:
    """Render the customer page; `forms` and `errors` re-fill a form that did not validate."""
    state = service.state
    view = state.view(when)
    risk = view.customer_risk(customer_id)
    contributions = view.contributions(customer_id)
    row = view.worklist[view.worklist["customer_id"] == customer_id].to_dict("records")
    info = view.facts(customer_id)
    items = risk["open_items"].to_dict("records")
    defaults = {"promise": {"made_date": f"{when:%Y-%m-%d}", "promised_date": "", "amount": "", "note": ""},
                "dispute": {"invoice_id": "", "opened_date": f"{when:%Y-%m-%d}", "reason_code": "", "amount": ""},
                "contact": {"contact_date": f"{when:%Y-%m-%d}", "channel": "call", "outcome": "", "note": "",
                            "next_action_date": ""}}
    return render("customer.html", status, **session_context(session), as_of=when,
                  customer_id=customer_id, name=info["name"], segment=info["segment"],
                  collector=info.get("collector"), risk=risk, items=items, row=row[0] if row else None,
                  chart=contribution_chart(contributions), promises=state.store.list_promises(customer_id),
                  disputes=state.store.list_disputes(customer_id), contacts=state.store.list_contacts(customer_id),
                  forms=defaults | (forms or {}), errors=errors or {}, channels=CONTACT_CHANNELS, saved=saved,
                  escalation=live_escalation(state, customer_id),
                  currency=state.base_currency)


def live_escalation(state: Any, customer_id: str) -> dict | None:
    """The customer's live (not closed) escalation with its reasons, for the customer page; None without one."""
    import json

    from queues.escalations import live_escalations

    record = live_escalations(state.store.list_queue_items(queue="escalation", customer_id=customer_id)).get(customer_id)
    if record is None:
        return None
    return {**record, "reasons": json.loads(record.get("details") or "{}").get("reasons", [])}


def contribution_chart(contributions: list[dict], width: int = 720, bar_height: int = 22) -> dict:
    """Bars of an inline SVG chart of SHAP contributions: right (red) raises the risk, left (green) lowers it."""
    words = feature_descriptions()
    label_width, half = 330, (width - 330 - 20) / 2
    centre = label_width + half
    largest = max((abs(c["contribution"]) for c in contributions), default=0) or 1
    bars = []
    for index, item in enumerate(contributions):
        length = abs(item["contribution"]) / largest * half
        raises = item["contribution"] > 0
        bars.append({"y": index * bar_height + 4, "x": centre if raises else centre - length, "width": length,
                     "label": words.get(item["feature"], item["feature"]), "feature": item["feature"],
                     "value": item["value"], "contribution": item["contribution"],
                     "colour": "#c0392b" if raises else "#27864a"})
    return {"width": width, "height": len(bars) * bar_height + 8, "centre": centre, "bars": bars,
            "bar_height": bar_height - 6, "label_x": label_width - 8}


# ---- recording activity ----------------------------------------------------------------------------------

# The fields of each form, as the store takes them; the store's rules check them (one set of rules and
# messages for the API, the pages and the CLI).
FORM_FIELDS = {"promise": ("amount", "made_date", "promised_date", "note"),
               "dispute": ("invoice_id", "opened_date", "reason_code", "amount"),
               "contact": ("contact_date", "channel", "outcome", "note", "next_action_date")}
FREE_TEXT = ("note", "outcome")  # kept as typed; other fields lose surrounding blanks


def form_fields(kind: str, values: dict[str, str]) -> dict[str, Any]:
    """The store arguments of a form: fields as typed, thousands separators out of the amount, an empty
    optional date as None."""
    fields = {name: values.get(name, "") if name in FREE_TEXT else values.get(name, "").strip()
              for name in FORM_FIELDS[kind]}
    if "amount" in fields:
        fields["amount"] = fields["amount"].replace(",", "")
    if "next_action_date" in fields and not fields["next_action_date"]:
        fields["next_action_date"] = None
    return fields


def record(request: Request, service: Any, customer_id: str, kind: str, values: dict[str, str],
           scopes: tuple[str, ...]) -> Response:
    """Check the session, scope, CSRF token, portfolio and fields of one form, then write it and go back to
    the customer; a field the checks or the store refuse redisplays the form with its message (422)."""
    session = signed_in(service, request, *scopes)
    check_csrf(session.csrf, values.pop("csrf", ""))
    state = service.state
    when = parse_as_of(service, values.pop("as_of", ""))
    check_customer(session.principal, state, customer_id)
    risk = state.customer_risk(customer_id, when)  # NotFound for an unknown customer
    fields = form_fields(kind, values)
    errors = state.store.field_problems(kind, fields)
    if kind == "dispute" and fields["invoice_id"] not in set(risk["open_items"]["invoice_id"]):
        errors["invoice_id"] = "Choose one of this customer's open invoices."
    if not errors:
        try:
            write = {"promise": state.store.create_promise, "dispute": state.store.create_dispute,
                     "contact": state.store.create_contact}[kind]
            write(session.principal.user, customer_id=customer_id, now=recording_time(), **fields)
        except InvalidInput as error:
            # Next to its field when the form has one, else above the form.
            if error.field in values:
                errors[error.field] = error.problem
            else:
                errors["form"] = str(error)
    if errors:
        return customer_page(service, session, customer_id, when, forms={kind: values}, errors={kind: errors},
                             status=422)
    state.recorded({"customer_id": customer_id})
    return redirect(f"/customers/{quote(customer_id, safe='')}?" + urlencode({"as_of": f"{when:%Y-%m-%d}", "saved": kind}))


@router.post("/customers/{customer_id}/promises")
@page
def record_promise(request: Request, service: Service, customer_id: str, csrf: Annotated[str, Form()] = "",
                   as_of: Annotated[str, Form()] = "", amount: Annotated[str, Form()] = "",
                   made_date: Annotated[str, Form()] = "", promised_date: Annotated[str, Form()] = "",
                   note: Annotated[str, Form()] = "") -> Response:
    """Record a promise to pay (collector)."""
    values = {"csrf": csrf, "as_of": as_of, "amount": amount, "made_date": made_date,
              "promised_date": promised_date, "note": note}
    return record(request, service, customer_id, "promise", values, ("collector",))


@router.post("/customers/{customer_id}/disputes")
@page
def record_dispute(request: Request, service: Service, customer_id: str, csrf: Annotated[str, Form()] = "",
                   as_of: Annotated[str, Form()] = "", invoice_id: Annotated[str, Form()] = "",
                   opened_date: Annotated[str, Form()] = "", reason_code: Annotated[str, Form()] = "",
                   amount: Annotated[str, Form()] = "") -> Response:
    """Open a dispute on one of the customer's open invoices (collector, credit)."""
    values = {"csrf": csrf, "as_of": as_of, "invoice_id": invoice_id, "opened_date": opened_date,
              "reason_code": reason_code, "amount": amount}
    return record(request, service, customer_id, "dispute", values, ("collector", "credit"))


@router.post("/customers/{customer_id}/contacts")
@page
def record_contact(request: Request, service: Service, customer_id: str, csrf: Annotated[str, Form()] = "",
                   as_of: Annotated[str, Form()] = "", contact_date: Annotated[str, Form()] = "",
                   channel: Annotated[str, Form()] = "", outcome: Annotated[str, Form()] = "",
                   note: Annotated[str, Form()] = "", next_action_date: Annotated[str, Form()] = "") -> Response:
    """Log a call, e-mail or visit and its outcome (collector)."""
    values = {"csrf": csrf, "as_of": as_of, "contact_date": contact_date, "channel": channel,
              "outcome": outcome, "note": note, "next_action_date": next_action_date}
    return record(request, service, customer_id, "contact", values, ("collector",))


# ---- cash application ----------------------------------------------------------------------------------

CASH_ROWS = 500


@router.get("/cash")
@page
def cash(request: Request, service: Service, as_of: str | None = None, decision: str = "", saved: str = "") -> Response:
    """Unapplied payments with the matcher's proposals, largest first; confirm, change or reject (cash)."""
    session = signed_in(service, request, "cash")
    return cash_page(service, session, parse_as_of(service, as_of), decision, saved=saved)


def cash_page(service: Any, session: Session, when: pd.Timestamp, decision: str = "", saved: str = "",
              error: str = "", status: int = 200) -> Response:
    if decision not in ("", *DECISIONS):
        raise BadRequest(f"decision {decision[:20]!r} is not one of {', '.join(DECISIONS)}")
    state = service.state
    _, proposals = state.cash_proposals(when.date())
    rows = with_rejections(proposal_rows(proposals, decision or None), state.store.list_cash_applications())
    return render("cash.html", status, **session_context(session), as_of=when, decision=decision, rows=rows[:CASH_ROWS],
                  count=len(rows), limit=CASH_ROWS, saved=saved, error=error)


def cash_lines(text_value: str) -> list[tuple[str, float]]:
    """'INV1=100.00, INV2=50' as (invoice_id, amount) lines; `BadRequest` naming the part it cannot read."""
    lines = []
    for part in [part.strip() for part in text_value.split(",") if part.strip()]:
        invoice_id, _, amount = part.partition("=")
        try:
            lines.append((invoice_id.strip(), float(amount.replace(" ", ""))))
        except ValueError:
            raise BadRequest(f"{part[:60]!r}: expected DOCUMENT=AMOUNT, such as INV000123=100.00") from None
    if not lines:
        raise BadRequest("no document given: expected DOCUMENT=AMOUNT, such as INV000123=100.00")
    return lines


def form_action(request: Request, service: Any, scopes: tuple[str, ...], csrf: str, as_of: str,
                act: Callable[[Any, Session, pd.Timestamp], str], shown_again: Callable[..., Response], back: str,
                subject: str = "") -> Response:
    """What every decision form of a queue page does: check the session, scope and CSRF token, run `act` (which
    records and says what it did) and go back to the page at `back`; what the ledger or the store refuses is
    shown above the page by `shown_again(service, session, when, error=..., status=422)`, after `subject`."""
    session = signed_in(service, request, *scopes)
    check_csrf(session.csrf, csrf)
    when = parse_as_of(service, as_of)
    try:
        done = act(service.state, session, when)
    except (ArRiskError, InvalidInput) as error:
        return shown_again(service, session, when, error=f"{subject}: {error}" if subject else str(error), status=422)
    return redirect(f"{back}?" + urlencode({"as_of": f"{when:%Y-%m-%d}", "saved": done}))


def cash_action(request: Request, service: Any, payment_id: str, csrf: str, as_of: str,
                act: Callable[[Any, Session, pd.Timestamp], str]) -> Response:
    """A cash-application form (`form_action` on the cash page)."""
    return form_action(request, service, ("cash",), csrf, as_of, act, cash_page, "/cash", payment_id)


@router.post("/cash/{payment_id}/confirm")
@page
def confirm_cash(request: Request, service: Service, payment_id: str, csrf: Annotated[str, Form()] = "",
                 as_of: Annotated[str, Form()] = "") -> Response:
    """Apply the payment as the matcher proposes (cash)."""
    def act(state: Any, session: Session, when: pd.Timestamp) -> str:
        proposals = state.cash_proposals(when.date())[1]
        lines = proposal_lines(proposals, payment_id)
        if not lines:
            raise NotFound(f"payment {payment_id!r} has no proposal on {when:%Y-%m-%d}")
        record_cash(state, session.principal.user, payment_id, lines, "confirmed", when, "", None, proposals)
        return f"{payment_id} applied as proposed"

    return cash_action(request, service, payment_id, csrf, as_of, act)


@router.post("/cash/{payment_id}/change")
@page
def change_cash(request: Request, service: Service, payment_id: str, csrf: Annotated[str, Form()] = "",
                as_of: Annotated[str, Form()] = "", lines: Annotated[str, Form()] = "") -> Response:
    """Apply the payment to the documents and amounts typed (cash)."""
    def act(state: Any, session: Session, when: pd.Timestamp) -> str:
        record_cash(state, session.principal.user, payment_id, cash_lines(lines), "changed", when, "", None)
        return f"{payment_id} applied as changed"

    return cash_action(request, service, payment_id, csrf, as_of, act)


@router.post("/cash/{payment_id}/reject")
@page
def reject_cash(request: Request, service: Service, payment_id: str, csrf: Annotated[str, Form()] = "",
                as_of: Annotated[str, Form()] = "", note: Annotated[str, Form()] = "") -> Response:
    """Record that the proposal is wrong, with why (cash)."""
    def act(state: Any, session: Session, when: pd.Timestamp) -> str:
        state.store.record_cash_application(session.principal.user, payment=payment_facts(state.ledger, payment_id),
                                            lines=[], decision="rejected", applied_date=when.date(), note=note,
                                            now=recording_time())
        state.recorded({})
        return f"proposal for {payment_id} rejected"

    return cash_action(request, service, payment_id, csrf, as_of, act)


# ---- forecast ------------------------------------------------------------------------------------------

def forecast_chart(rows: list[dict], width: int = 760, height: int = 280) -> dict:
    """Coordinates of an inline SVG chart: the expected receipts line, its 10-90% band and the
    pays-on-due-date baseline, per week."""
    left, right, top, bottom = 90, 20, 16, 36
    baseline = "baseline_pays_on_due_date"
    highest = max([max(r["p90"], r["expected"], r.get(baseline, 0)) for r in rows], default=0) or 1
    step = (width - left - right) / max(len(rows) - 1, 1)

    def x(index: int) -> float:
        return round(left + index * step, 1)

    def y(value: float) -> float:
        return round(top + (1 - value / highest) * (height - top - bottom), 1)

    def line(column: str) -> str:
        return " ".join(f"{x(i)},{y(r[column])}" for i, r in enumerate(rows))

    band = line("p90") + " " + " ".join(f"{x(i)},{y(r['p10'])}" for i, r in reversed(list(enumerate(rows))))
    ticks = [{"y": y(highest * share), "label": f"{highest * share:,.0f}"} for share in (0, 0.25, 0.5, 0.75, 1)]
    labels = [{"x": x(i), "label": f"W{r['period']}"} for i, r in enumerate(rows)]
    return {"width": width, "height": height, "left": left, "right": width - right, "bottom": height - bottom,
            "expected": line("expected"), "baseline": line(baseline) if rows and baseline in rows[0] else "",
            "band": band, "ticks": ticks, "labels": labels}


@router.get("/forecast")
@page
def forecast(request: Request, service: Service, as_of: str | None = None) -> Response:
    """The 13-week cash forecast in the base currency: chart and table (treasury)."""
    session = signed_in(service, request, "treasury")
    when = parse_as_of(service, as_of)
    table = service.state.forecast(when, horizon_weeks=13)
    rows = table[table["converted"]].to_dict("records")
    return render("forecast.html", **session_context(session), as_of=when, rows=rows,
                  chart=forecast_chart(rows), currency=service.state.base_currency)
