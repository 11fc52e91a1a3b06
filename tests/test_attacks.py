"""Regression suite of the security issue (issue 14): each attempt of the attack replayed, one test each.
Each defect below has tests here that failed on the code before the fix and pass after; a few tests keep
what already held (escaped HTML in a note, a negative or sub-cent amount refused, a good login). The
defects it replays:

 1. A date pandas cannot hold (9999-12-31, 0001-01-01) poisoned the activity store: reads failed after it.
 2. `arrisk import --out` deleted a folder that was not a ledger (`--out .` emptied the project).
 3. No object-level authorization: a collector read and changed other collectors' customers and records.
 4. Money lost its cents on SQLite, and absurd amounts (1e30, NaN) were accepted.
 5. `audit verify` missed a deleted record, a tail cut off with its records, a record re-hashed with its
    entry (without the key), and an edited idempotency response.
 6. 500s, after which the keep-alive connection was reset; an as_of outside the ledger's dates was a 500.
 7. `arrisk serve` did not forward SIGTERM: `kill` left the server and its workers running.
 8. No limit on the request body, and the body was read before the token was checked.
 9. /metrics was public and grew a series for every random path.
10. An empty Idempotency-Key was one key shared by every request (a replay of another's answer).
11. Web pages: login brute force, a session cookie that outlived logout or expiry, session fixation, a CSRF
    token of another session, cookies without Secure behind a TLS proxy, missing security headers.
12. Staging folders left behind by a killed write, the ledger's full path in /v1/info for every role, and
    validation errors without the documented shape.

Sections: the store (SQLite and PostgreSQL), the API (its ASGI app, and a real server), the web pages and the
command line (real processes and folders). The PostgreSQL cases are skipped without ARRISK_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import bentoml
import pandas as pd
import pytest
from starlette.testclient import TestClient

from activity.audit import verify_audit
from activity.store import ActivityStore, InvalidInput
from serving.auth import hash_token
from serving.smoke import free_port, wait_until_healthy
from serving.web import AUTH_COOKIE, LOGIN_COOKIE, web_state
from tests.conftest import SCORING_DATE
from tests.service_app import service_app
from tests.stores import NOW, empty_database, new_store
from tests.test_activity_store import make_promise, tamper
from tests.test_web import (
    ADMIN,
    COLLECTOR,
    OTHER_PORTFOLIO,
    PORTFOLIO,
    TREASURY,
    UI,
    FakeClock,
    form_csrf,
    service_environment,
)

ROOT = Path(__file__).resolve().parents[1]

# tests.service_app gives one ASGI app per process, and each TestClient start builds the service anew (BentoML
# keeps one instance per app) from the environment of that moment. The API's and the web pages' clients are
# module-scoped, so in this one module both would live until its end: the later start would take over the
# earlier client's service, and the environment each sets would reach the other sections' tests and the
# processes the command-line tests start (they inherit os.environ). So the clients take turns, as the module
# boundary made them do when they were in separate files: starting one stops the one started before, and the
# environment a client is started in is put back as soon as the service has read it (it reads it only then).
_started_clients: list[contextlib.ExitStack] = []


def stop_started_client() -> None:
    """Stop the service's client started in this module, if one is still running."""
    while _started_clients:
        _started_clients.pop().close()


@contextlib.contextmanager
def started_client(environment: contextlib.AbstractContextManager, **options: str) -> Iterator[TestClient]:
    """A started TestClient of the service built in `environment` (a context that sets it), the only client
    running in this module until it ends or another one starts."""
    stop_started_client()
    running = contextlib.ExitStack()
    with environment:
        test_client = running.enter_context(TestClient(service_app(), raise_server_exceptions=False,
                                                       **options))
    _started_clients.append(running)
    try:
        yield test_client
    finally:
        if running in _started_clients:
            _started_clients.remove(running)
            running.close()


# ---- store ----
# The attacks replayed on the activity store itself (SQLite and PostgreSQL): each one that used to poison,
# corrupt or forge the store is now refused or found.

@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A migrated, empty store on each database the store supports."""
    for url in empty_database(request.param, tmp_path):
        activity = new_store(url)
        activity.migrate()
        yield activity
        activity.close()


def store_contact(store: ActivityStore, **overrides) -> dict:
    fields = {"customer_id": "C001", "contact_date": date(2024, 3, 1), "channel": "call", "now": NOW}
    return store.create_contact("mallory", **(fields | overrides))


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "2263-01-01"])
def test_attack_a_contact_date_pandas_cannot_hold_is_refused_and_the_store_stays_readable(store, day):
    with pytest.raises(InvalidInput, match="contact_date"):
        store_contact(store, contact_date=day)
    store_contact(store)
    assert len(store.ledger_tables()["contacts"]) == 1
    assert verify_audit(store) == []


def test_attack_a_huge_amount_keeps_its_cents_or_is_refused(store):
    assert make_promise(store, amount="9999999999999999.99")["amount"] == "9999999999999999.99"
    with pytest.raises(InvalidInput) as error:
        make_promise(store, amount=Decimal("1e30"))
    assert error.value.field == "amount"
    assert verify_audit(store) == []


def test_attack_a_deleted_record_is_found(store):
    store_contact(store)
    tamper(store, "DELETE FROM contacts")
    assert any("has audit entries but no record" in problem for problem in verify_audit(store))


def test_attack_the_tail_cut_off_with_its_records_is_found(store):
    store_contact(store)
    store_contact(store, outcome="second")
    tamper(store, "DELETE FROM contacts WHERE outcome = 'second'")
    tamper(store, "DELETE FROM audit_log WHERE seq = 2")
    assert verify_audit(store) == ["audit_log: entries 2..2 are missing from the end (cut off)"]


def test_attack_a_record_and_its_entry_rewritten_without_the_key_is_found(store):
    store_contact(store, outcome="no answer")
    tamper(store, "UPDATE contacts SET outcome = 'paid'")
    tamper(store, """UPDATE audit_log SET "after" = replace("after", 'no answer', 'paid')""")
    assert "audit_log seq 1: hash does not match its contents (entry edited)" in verify_audit(store)


def test_attack_an_edited_idempotency_response_is_found(store):
    store_contact(store, idempotency_key="k1")
    tamper(store, "UPDATE idempotency_keys SET response = replace(response, 'C001', 'C999')")
    assert verify_audit(store) == ["idempotency_keys mallory/k1: stored response edited (a retry would replay it)"]


def test_attack_an_empty_idempotency_key_is_refused_and_keys_belong_to_their_user(store):
    with pytest.raises(InvalidInput, match="idempotency_key"):
        store_contact(store, idempotency_key="")
    mine = store_contact(store, idempotency_key="k1")
    theirs = store.create_contact("victim", customer_id="C001", contact_date=date(2024, 3, 1), channel="call",
                                  idempotency_key="k1", now=NOW)
    assert theirs["contact_id"] != mine["contact_id"]


# ---- API ----
# Each attempt replayed against the service's ASGI app, on SQLite and on PostgreSQL, and the keep-alive and
# /metrics cases on a real server.

AS_OF = f"{SCORING_DATE:%Y-%m-%d}"
TOKENS = {role: f"arr_attack_{role}_token_0123456789abcdef" for role in ("ana", "bob", "credit", "admin")}
AUDIT_KEY = "attack-test-audit-key-0123456789abcdef"
OUT_OF_RANGE = ["2262-04-11", "2262-01-01", "2100-01-01", "9999-12-31", "1900-01-01", "0001-01-01"]


def bearer(role: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}", **extra}


def token_entries(ledger) -> str:
    """ana and bob collect for the ledger's first two collectors; credit and admin see everything."""
    ana, bob = ledger.customers["collector"].dropna().unique()[:2]
    scopes = {"ana": f"collector:{ana}", "bob": f"collector:{bob}", "credit": "credit:", "admin": "admin:"}
    return ",".join(f"{role}:{role}-user:{scopes[role].split(':')[0]}:{hash_token(token)}:{scopes[role].split(':')[1]}"
                    for role, token in TOKENS.items())


def api_service_environment(ledger_dir: Path, champion_store: str, database_url: str, ledger) -> dict[str, str]:
    return {"ARRISK_LEDGER": str(ledger_dir), "ARRISK_TRACKING_URI": champion_store,
            "ARRISK_API_TOKENS": token_entries(ledger), "ARRISK_DATABASE_URL": database_url,
            "ARRISK_AUDIT_KEY": AUDIT_KEY, "ARRISK_REPORTS": str(ledger_dir.parent / "reports")}


@contextlib.contextmanager
def api_environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ, and no ARRISK_TOKENS_FILE (the tokens are ARRISK_API_TOKENS)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in values.items():
            patch.setenv(name, value)
        patch.delenv("ARRISK_TOKENS_FILE", raising=False)
        yield


@pytest.fixture(scope="module")
def api_ledger_dir(scoring_ledger, tmp_path_factory) -> Path:
    from ledger import write_ledger

    folder = tmp_path_factory.mktemp("attacks") / "ledger"
    write_ledger(scoring_ledger, folder)
    return folder


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_client(request, scoring_ledger, champion_store, api_ledger_dir, tmp_path_factory):
    for database_url in empty_database(request.param, tmp_path_factory.mktemp("database")):
        environment = api_service_environment(api_ledger_dir, champion_store, database_url, scoring_ledger)
        with started_client(api_environment(environment)) as test_client:
            yield test_client


@pytest.fixture(scope="module")
def ana(api_client):
    """An open invoice of ana's portfolio and its customer."""
    row = api_client.post("/v1/score", json={"as_of": AS_OF}, headers=bearer("ana")).json()["rows"][0]
    return {"invoice_id": row["invoice_id"], "customer_id": row["customer_id"]}


def create_bodies(ana: dict) -> dict[str, dict]:
    return {
        "/v1/promises": {"customer_id": ana["customer_id"], "amount": "10.00", "made_date": AS_OF,
                         "promised_date": AS_OF},
        "/v1/disputes": {"invoice_id": ana["invoice_id"], "opened_date": AS_OF, "reason_code": "pricing",
                         "amount": "5.00"},
        "/v1/contacts": {"customer_id": ana["customer_id"], "contact_date": AS_OF, "channel": "call",
                         "next_action_date": AS_OF},
        "/v1/dunning-letters": {"invoice_id": ana["invoice_id"], "level": 1, "issued_date": AS_OF},
    }


DATE_FIELDS = {"/v1/promises": ("made_date", "promised_date"), "/v1/disputes": ("opened_date",),
               "/v1/contacts": ("contact_date", "next_action_date"), "/v1/dunning-letters": ("issued_date",)}


# -- defects 1 (dates the store cannot hold) and 4 (amounts) ---------------------------------------------

@pytest.mark.parametrize("value", ["2023-02-30", "not-a-date", "9999-12-31", "0001-01-01", "2262-04-12"])
def test_bad_dates_on_every_create_are_422_naming_the_field_and_store_nothing(api_client, ana, value):
    before = {path: api_client.get(path, headers=bearer("admin")).json()["count"] for path in DATE_FIELDS}
    for path, body in create_bodies(ana).items():
        for field in DATE_FIELDS[path]:
            response = api_client.post(path, json=body | {field: value}, headers=bearer("ana"))
            assert response.status_code == 422, (path, field, response.text)
            assert response.json()["error"] == "bad_input" and response.json()["field"] == field, response.text
    assert {path: api_client.get(path, headers=bearer("admin")).json()["count"] for path in DATE_FIELDS} == before


def test_a_contact_dated_9999_12_31_is_refused_and_not_stored(api_client, ana):
    body = create_bodies(ana)["/v1/contacts"] | {"contact_date": "9999-12-31"}
    response = api_client.post("/v1/contacts", json=body, headers=bearer("ana"))
    assert response.status_code == 422 and response.json()["field"] == "contact_date"
    listed = api_client.get(f"/v1/contacts?customer_id={ana['customer_id']}", headers=bearer("admin")).json()["rows"]
    assert all(row["contact_date"] != "9999-12-31" for row in listed)
    assert api_client.get("/v1/worklist?top=1", headers=bearer("ana")).status_code == 200


@pytest.mark.parametrize("amount", ["1e30", "12345678901234567890.00", "NaN", "Infinity", "-1", "0", "0.001"])
def test_huge_or_odd_amounts_are_422_naming_the_amount(api_client, ana, amount):
    # The store's rules: a promise is for more than zero; a dispute may be for zero (the amount not known yet).
    for path in ("/v1/promises",) if amount == "0" else ("/v1/promises", "/v1/disputes"):
        response = api_client.post(path, json=create_bodies(ana)[path] | {"amount": amount}, headers=bearer("ana"))
        assert response.status_code == 422 and response.json()["field"] == "amount", (path, response.text)


# -- defect 6: as_of outside the ledger is a 400 with the range, never a 500 -----------------------------

def as_of_requests(ana: dict, day: str) -> list[tuple[str, str, dict | None]]:
    """Every route that takes a date, asked at `day`."""
    customer = ana["customer_id"]
    return [("get", f"/v1/worklist?as_of={day}", None), ("get", f"/v1/customers/{customer}?as_of={day}", None),
            ("get", f"/v1/customers/{customer}/risk?as_of={day}", None),
            ("get", f"/v1/deterioration?as_of={day}", None), ("get", f"/v1/forecast?as_of={day}", None),
            ("get", f"/v1/aging?as_of={day}", None), ("get", f"/v1/dunning?as_of={day}", None),
            ("post", "/v1/score", {"as_of": day}), ("get", f"/v1/kpis?from={day}&to={day}", None),
            ("get", f"/v1/kpis?from=2023-01-01&to={day}", None)]


@pytest.mark.parametrize("day", OUT_OF_RANGE)
def test_as_of_outside_the_ledger_is_400_naming_the_range_on_every_route(api_client, ana, day):
    for method, url, body in as_of_requests(ana, day):
        response = api_client.request(method, url, json=body, headers=bearer("admin"))
        assert response.status_code == 400, (url, response.text)
        assert "outside the ledger's dates" in response.json()["detail"] and "2022-" in response.json()["detail"]


def test_as_of_may_lie_up_to_the_configured_days_after_the_last_event(api_client, scoring_ledger):
    from features.labels import last_event_date

    last = last_event_date(scoring_ledger)
    allowed, refused = last + pd.Timedelta(days=92), last + pd.Timedelta(days=93)
    assert api_client.get(f"/v1/aging?as_of={allowed:%Y-%m-%d}", headers=bearer("admin")).status_code == 200
    assert api_client.get(f"/v1/aging?as_of={refused:%Y-%m-%d}", headers=bearer("admin")).status_code == 400


# -- defect 8: limits, and the token before the body -----------------------------------------------------

def test_an_oversize_body_is_413_before_parsing(api_client, ana):
    body = create_bodies(ana)["/v1/contacts"] | {"note": "x" * 20_000_000}
    response = api_client.post("/v1/contacts", json=body, headers=bearer("ana"))
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


def test_a_chunked_oversize_body_is_413(api_client):
    def chunks():
        for _ in range(40):
            yield b"x" * 65_536

    response = api_client.post("/v1/contacts", content=chunks(), headers=bearer("ana", **{"Content-Type": "application/json"}))
    assert response.status_code == 413


def test_long_text_fields_are_422_naming_the_field(api_client, ana):
    for path, field in (("/v1/contacts", "note"), ("/v1/contacts", "outcome"), ("/v1/promises", "note")):
        response = api_client.post(path, json=create_bodies(ana)[path] | {field: "x" * 2_001}, headers=bearer("ana"))
        assert response.status_code == 422 and response.json()["field"] == field, response.text
    long_id = {"customer_id": "C" * 101, "contact_date": AS_OF, "channel": "call"}
    response = api_client.post("/v1/contacts", json=long_id, headers=bearer("ana"))
    assert response.status_code == 422 and response.json()["field"] == "customer_id"
    assert api_client.get(f"/v1/customers/{'C' * 101}", headers=bearer("admin")).status_code == 422


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer arr_not_a_token"}])
def test_the_token_is_checked_before_the_body_is_read(api_client, headers):
    broken = api_client.post("/v1/promises", content=b"{not json", headers=headers | {"Content-Type": "application/json"})
    assert broken.status_code == 401 and broken.json()["error"] == "unauthorized"
    huge = api_client.post("/v1/contacts", content=b"x" * 2_000_000, headers=headers)
    assert huge.status_code == 401


# -- defect 9: /metrics ----------------------------------------------------------------------------------

def test_metrics_need_a_token(api_client):
    # The metrics themselves need BentoML's multiprocess directory: see the real server's test below.
    assert api_client.get("/metrics").status_code == 401
    assert api_client.get("/metrics", headers={"Authorization": "Bearer arr_not_a_token"}).status_code == 401


def test_metrics_labels_are_route_templates_or_other():
    from serving.service import metrics_label

    assert metrics_label("/v1/customers/C000001") == "/v1/customers/{customer_id}"
    assert metrics_label("/v1/customers/C000001/risk") == "/v1/customers/{customer_id}/risk"
    assert metrics_label("/v1/worklist") == "/v1/worklist"
    assert metrics_label("/v1/ui/customers/C1") == "/v1/ui/customers/{customer_id}"
    assert metrics_label("/metrics") == "/metrics"
    assert {metrics_label(path) for path in ("/v1/nope", "/wp-admin.php", "/v1", "/v1x/worklist")} == {"other"}


def test_which_paths_need_the_token_before_anything_else():
    from configs.settings import Settings
    from serving.middleware import token_checked_first

    private, public = Settings(), Settings(metrics_public=True)
    for path in ("/v1/info", "/v1/promises", "/v1/customers/C1", "/v1/no-such-route", "/v1/uix", "/v1/healthz"):
        assert token_checked_first(path, private)
    for path in ("/v1/health", "/v1/docs", "/v1/openapi.json", "/v1/ui/login", "/v1/ui/customers/C1"):
        assert not token_checked_first(path, private)
    assert token_checked_first("/metrics", private) and not token_checked_first("/metrics", public)


# -- defect 10: empty idempotency keys -------------------------------------------------------------------

@pytest.mark.parametrize("key", ["", " ", "\t"])
def test_an_empty_idempotency_key_is_422(api_client, ana, key):
    response = api_client.post("/v1/contacts", json=create_bodies(ana)["/v1/contacts"],
                           headers=bearer("ana", **{"Idempotency-Key": key}))
    assert response.status_code == 422 and response.json()["field"] == "idempotency_key"


# -- defect 3: other collectors' data --------------------------------------------------------------------

def test_a_collector_cannot_read_another_collectors_data(api_client, ana, scoring_ledger):
    bob = scoring_ledger.customers["collector"].dropna().unique()[1]
    assert api_client.get(f"/v1/worklist?collector={bob}", headers=bearer("ana")).status_code == 403
    assert api_client.get(f"/v1/customers/{ana['customer_id']}", headers=bearer("bob")).status_code == 403
    mine = api_client.post("/v1/score", json={}, headers=bearer("ana")).json()["rows"]
    theirs = api_client.post("/v1/score", json={}, headers=bearer("bob")).json()["rows"]
    assert not {row["customer_id"] for row in mine} & {row["customer_id"] for row in theirs}
    assert api_client.post("/v1/score", json={"invoice_ids": [ana["invoice_id"]]}, headers=bearer("bob")).status_code == 403
    created = api_client.post("/v1/contacts", json=create_bodies(ana)["/v1/contacts"], headers=bearer("ana")).json()
    listed = api_client.get("/v1/contacts", headers=bearer("bob")).json()["rows"]
    assert created["contact_id"] not in {row["contact_id"] for row in listed}


def test_a_patch_of_another_users_record_is_403(api_client, ana):
    created = api_client.post("/v1/contacts", json=create_bodies(ana)["/v1/contacts"], headers=bearer("admin")).json()
    response = api_client.patch(f"/v1/contacts/{created['contact_id']}", json={"expected_version": 1, "note": "mine now"},
                            headers=bearer("ana"))
    assert response.status_code == 403
    assert api_client.get(f"/v1/contacts?customer_id={ana['customer_id']}", headers=bearer("admin")).json()["rows"]


# -- defect 12: the ledger's path ------------------------------------------------------------------------

def test_info_shows_the_ledger_path_only_to_admins(api_client, api_ledger_dir):
    assert api_client.get("/v1/info", headers=bearer("ana")).json()["ledger"] == api_ledger_dir.name
    assert api_client.get("/v1/info", headers=bearer("admin")).json()["ledger"] == str(api_ledger_dir.resolve())


# -- error shapes, request ids and security headers ------------------------------------------------------

def test_validation_errors_have_the_documented_shape(api_client):
    response = api_client.post("/v1/score", json={"as_of": "2023-02-30"}, headers=bearer("admin"))
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"error", "detail", "field"} and body["error"] == "bad_input" and body["field"] == "as_of"
    assert isinstance(body["detail"], str)


def test_every_answer_has_a_request_id_and_the_security_headers(api_client):
    answers = [api_client.get("/v1/health"), api_client.get("/v1/info"), api_client.get("/v1/no-such", headers=bearer("admin")),
               api_client.post("/v1/score", json={"as_of": "x"}, headers=bearer("admin")),
               api_client.post("/v1/contacts", content=b"x" * 2_000_000, headers=bearer("ana")),
               api_client.get("/v1/ui/login"), api_client.get("/metrics")]
    for answer in answers:
        assert len(answer.headers["x-request-id"]) >= 16, answer.url
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert api_client.get("/v1/info", headers=bearer("admin")).headers["cache-control"] == "no-store"


def test_a_sane_client_request_id_is_echoed_and_another_replaced(api_client):
    assert api_client.get("/v1/health", headers={"X-Request-ID": "scan-42"}).headers["x-request-id"] == "scan-42"
    for insane in ("a" * 200, "a b", "<script>"):
        echoed = api_client.get("/v1/health", headers={"X-Request-ID": insane}).headers["x-request-id"]
        assert echoed != insane and len(echoed) == 32


# -- a real server: a 500 keeps the connection; a bad stored row does not stop the start -----------------

@pytest.fixture(scope="module")
def server(scoring_ledger, champion_store, api_ledger_dir, tmp_path_factory):
    """The service under uvicorn on a free local port, over a SQLite store holding a bad old row."""
    folder = tmp_path_factory.mktemp("server")
    database = folder / "activity.sqlite"
    environment = dict(os.environ, **api_service_environment(api_ledger_dir, champion_store,
                                                             f"sqlite:///{database}", scoring_ledger))
    environment.pop("ARRISK_TOKENS_FILE", None)
    # What `bentoml serve` sets up for its workers; without it BentoML's /metrics cannot be generated.
    environment["PROMETHEUS_MULTIPROC_DIR"] = str(folder / "prometheus")
    (folder / "prometheus").mkdir()
    # Migrate an empty store with the CLI's code, then write a row an older version could have stored.
    subprocess.run([sys.executable, "-c", "from serving.activity import open_store; open_store("
                    f"{str('sqlite:///' + str(database))!r})"], cwd=ROOT, env=environment, check=True, timeout=120)
    customer = scoring_ledger.customers["customer_id"].iloc[0]
    with sqlite3.connect(database) as connection:
        # Today's schema checks dates with triggers; an older version had none: written without them.
        triggers = connection.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                                      "AND tbl_name = 'contacts'").fetchall()
        for name, _ in triggers:
            connection.execute(f'DROP TRIGGER "{name}"')
        columns = [row[1] for row in connection.execute("PRAGMA table_info(contacts)")]
        values = {"contact_id": "CNT-old-bad-row", "customer_id": customer, "contact_date": "9999-12-31",
                  "channel": "call", "outcome": "", "note": "", "next_action_date": None, "created_by": "old",
                  "recorded_at": "2023-06-01 00:00:00.000000", "version": 1}
        names = [name for name in columns if name in values]
        connection.execute(f"INSERT INTO contacts ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                           [values[name] for name in names])
        for _, sql in triggers:
            connection.execute(sql)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "tests.service_app:service_app",
                                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                               cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/v1/health")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"the service did not start: {process.stdout.read().decode()[-3000:]}")
                time.sleep(1)
        else:
            pytest.fail("the service did not answer within 180 s")
        yield {"port": port, "database": database}
    finally:
        process.terminate()
        process.wait(timeout=30)


def exchange(connection: http.client.HTTPConnection, method: str, path: str, token: str | None = None,
             body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {TOKENS[token]}"
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_the_service_starts_and_answers_with_a_bad_row_in_the_store(server):
    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=60)
    status, _, body = exchange(connection, "GET", "/v1/worklist?top=3", "ana")
    assert status == 200 and json.loads(body)["count"] == 3
    status, _, body = exchange(connection, "GET", "/v1/audit/verify", "admin")
    assert status == 200 and "CNT-old-bad-row" in body.decode()


def test_a_500_is_json_with_a_request_id_and_the_connection_stays_usable(server):
    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=60)
    assert exchange(connection, "GET", "/v1/health")[0] == 200
    # Before the fix, as_of=2262-04-11 was a 500, and the next request on the connection was reset.
    status, _, body = exchange(connection, "GET", "/v1/forecast?as_of=2262-04-11", "admin")
    assert status == 400, body
    with sqlite3.connect(server["database"]) as database:  # the store's disk goes bad under the service
        database.execute("ALTER TABLE disputes RENAME TO disputes_gone")
    try:
        status, headers, body = exchange(connection, "GET", "/v1/disputes", "admin", headers={"X-Request-ID": "r-500"})
        assert status == 500 and headers["x-request-id"] == "r-500"
        assert json.loads(body) | {"detail": ""} == {"error": "internal", "detail": "", "request_id": "r-500"}
        status, _, _ = exchange(connection, "GET", "/v1/health")
        assert status == 200
    finally:
        with sqlite3.connect(server["database"]) as database:
            database.execute("ALTER TABLE disputes_gone RENAME TO disputes")


def test_a_chunked_oversize_body_is_413_on_a_real_server(server):
    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=60)
    chunks = (b"x" * 65_536 for _ in range(40))
    connection.request("POST", "/v1/contacts", body=chunks, encode_chunked=True,
                       headers={"Authorization": f"Bearer {TOKENS['ana']}", "Content-Type": "application/json",
                                "Transfer-Encoding": "chunked"})
    assert connection.getresponse().status == 413


def test_metrics_need_a_token_and_random_paths_do_not_grow_them(server):
    """Defect 9: 200 random paths used to add 200 series each; now they share a template or "other"."""
    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=60)
    assert exchange(connection, "GET", "/metrics")[0] == 401
    status, _, before = exchange(connection, "GET", "/metrics", "credit")
    assert status == 200
    for number in range(200):
        exchange(connection, "GET", f"/v1/customers/RANDOM{number}", "admin")
        exchange(connection, "GET", f"/nothing/here/{number}")
    status, _, after = exchange(connection, "GET", "/metrics", "credit")
    text = after.decode()
    assert "RANDOM" not in text and "/nothing/here" not in text
    assert 'endpoint="/v1/customers/{customer_id}"' in text and 'endpoint="other"' in text
    # A few new series (a template and "other", with their status codes and histogram buckets), not 400.
    assert len(text.splitlines()) - len(before.decode().splitlines()) < 120


# ---- web pages ----
# Each attack replayed against the ASGI app: login brute force, a session cookie reused after logout or after
# it expired, session fixation, a CSRF token of another session, cookies without Secure behind a TLS proxy,
# absurd amounts and dates, as_of extremes, another collector's customer, over-long text and HTML in a note.
# Each answer must be a 4xx page (never a 500) and nothing may be stored.

ATTEMPTS, WINDOW_SECONDS, SESSION_MINUTES, MAX_TEXT = 3, 600, 30, 100
HTTPS = "https://testserver"  # cookie_secure=always: the test web_client sends the cookies back over https only


@pytest.fixture(scope="module")
def web_client(scoring_ledger, champion_store, tmp_path_factory):
    """A service behind a (pretend) TLS proxy with a small login limit and short sessions."""
    settings = {"cookie_secure": "always", "login_attempts": str(ATTEMPTS),
                "login_window_seconds": str(WINDOW_SECONDS), "session_minutes": str(SESSION_MINUTES),
                "max_text_chars": str(MAX_TEXT)}
    folder = tmp_path_factory.mktemp("attacks")
    environment = service_environment(scoring_ledger, champion_store, folder, **settings)
    with started_client(environment, base_url=HTTPS) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def service(web_client):
    """The running service instance (its activity store, its ledger)."""
    return bentoml.get_current_service()


@pytest.fixture()
def clock(service):
    """The web sessions' and login throttle's clock, under the test's control."""
    fake = FakeClock()
    state = web_state(service)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(state.sessions, "clock", fake)
        patch.setattr(state.throttle, "clock", fake)
        yield fake
    # Whatever a test left locked out is forgotten: the next test's web_client is the same address.
    state.throttle.succeeded("testclient")


def login_form_csrf(client: TestClient) -> str:
    """A fresh login form's CSRF token (the pre-login cookie is kept by the client)."""
    return form_csrf(client.get(f"{UI}/login").text)


def try_login(client: TestClient, token: str, csrf: str):
    return client.post(f"{UI}/login", data={"token": token, "csrf": csrf}, follow_redirects=False)


def log_in(client: TestClient, token: str) -> str:
    """Log in and return the session's CSRF token (read from the page, as a browser has it)."""
    client.cookies.clear()
    response = try_login(client, token, login_form_csrf(client))
    assert response.status_code == 303, response.text
    return form_csrf(client.get(f"{UI}/").text)


def portfolio_customers(scoring_ledger, collector: str) -> list[str]:
    customers = scoring_ledger.customers
    return sorted(customers.loc[customers["collector"] == collector, "customer_id"])


def worklist_customers(client: TestClient) -> list[str]:
    return re.findall(r'data-customer="([^"]+)"', client.get(f"{UI}/worklist").text)


# -- login and sessions ----------------------------------------------------------------------------------

def test_login_brute_force_is_locked_out_for_the_window_even_with_the_right_token(web_client, clock):
    web_client.cookies.clear()
    csrf = login_form_csrf(web_client)
    for attempt in range(ATTEMPTS):
        assert try_login(web_client, f"arr_guess_{attempt}", csrf).status_code == 401
    locked = try_login(web_client, COLLECTOR, csrf)
    assert locked.status_code == 429 and "Too many failed logins" in locked.text
    assert 0 < int(locked.headers["retry-after"]) <= WINDOW_SECONDS
    assert AUTH_COOKIE not in locked.headers.get("set-cookie", "")
    clock.now += WINDOW_SECONDS - 1
    assert try_login(web_client, COLLECTOR, csrf).status_code == 429  # still within the window
    clock.now += 2
    assert try_login(web_client, COLLECTOR, csrf).status_code == 303


def test_a_good_login_resets_the_count_of_failures(web_client, clock):
    web_client.cookies.clear()
    csrf = login_form_csrf(web_client)
    for _ in range(ATTEMPTS - 1):
        assert try_login(web_client, "arr_guess", csrf).status_code == 401
    assert try_login(web_client, COLLECTOR, csrf).status_code == 303
    web_client.cookies.clear()
    csrf = login_form_csrf(web_client)
    for _ in range(ATTEMPTS - 1):  # ATTEMPTS - 1 failures after the success: not locked out yet
        assert try_login(web_client, "arr_guess", csrf).status_code == 401
    assert try_login(web_client, COLLECTOR, csrf).status_code == 303


def test_the_session_cookie_is_a_random_id_that_stops_working_after_logout(web_client, clock):
    csrf = log_in(web_client, COLLECTOR)
    session_id = web_client.cookies.get(AUTH_COOKIE)
    assert COLLECTOR not in session_id and re.fullmatch(r"[0-9a-f]{64}", session_id)
    logout = web_client.post(f"{UI}/logout", data={"csrf": csrf}, follow_redirects=False)
    assert logout.status_code == 303
    web_client.cookies.set(AUTH_COOKIE, session_id, path=UI)  # the stolen or kept copy of the cookie
    replay = web_client.get(f"{UI}/worklist", follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"] == f"{UI}/login"


def test_a_session_ends_after_session_minutes(web_client, clock):
    log_in(web_client, COLLECTOR)
    clock.now += SESSION_MINUTES * 60 - 1
    assert web_client.get(f"{UI}/worklist", follow_redirects=False).status_code == 200
    clock.now += 1
    assert web_client.get(f"{UI}/worklist", follow_redirects=False).headers["location"] == f"{UI}/login"


def test_every_login_gets_a_new_session_id_and_csrf_token_and_a_planted_id_is_not_kept(web_client, clock):
    web_client.cookies.clear()
    csrf = login_form_csrf(web_client)
    planted = "a" * 64  # an attacker's cookie set before the victim logs in (session fixation)
    cookies = f"{AUTH_COOKIE}={planted}; {LOGIN_COOKIE}={web_client.cookies.get(LOGIN_COOKIE)}"
    response = web_client.post(f"{UI}/login", data={"token": COLLECTOR, "csrf": csrf}, headers={"cookie": cookies},
                           follow_redirects=False)
    assert response.status_code == 303
    first_id, first_csrf = web_client.cookies.get(AUTH_COOKIE), form_csrf(web_client.get(f"{UI}/").text)
    # Logging in again from the same browser (it still sends the first session's cookie):
    assert try_login(web_client, COLLECTOR, login_form_csrf(web_client)).status_code == 303
    second_id, second_csrf = web_client.cookies.get(AUTH_COOKIE), form_csrf(web_client.get(f"{UI}/").text)
    assert planted not in (first_id, second_id) and first_id != second_id and first_csrf != second_csrf
    for old in (planted, first_id):  # the planted id never worked; the first session ended at the second login
        replay = web_client.get(f"{UI}/worklist", headers={"cookie": f"{AUTH_COOKIE}={old}"}, follow_redirects=False)
        assert replay.headers["location"] == f"{UI}/login"


def test_a_csrf_token_of_another_session_is_refused(web_client, clock, service, scoring_ledger):
    customer = portfolio_customers(scoring_ledger, PORTFOLIO)[0]
    other_csrf = log_in(web_client, COLLECTOR)
    log_in(web_client, COLLECTOR)
    response = web_client.post(f"{UI}/customers/{customer}/contacts", data={
        "csrf": other_csrf, "contact_date": "2023-06-30", "channel": "call", "outcome": "forged"})
    assert response.status_code == 403 and "security token" in response.text
    assert service.state.store.list_contacts(customer) == []


def test_behind_a_tls_proxy_the_cookies_are_secure_even_over_http(web_client, clock):
    web_client.cookies.clear()
    http = "http://testserver" + UI  # what the service sees behind a proxy that ends TLS
    form = web_client.get(f"{http}/login")
    assert LOGIN_COOKIE in form.headers["set-cookie"] and "secure" in form.headers["set-cookie"].lower()
    # The pre-login cookie was Secure, so the web_client keeps it for https only: hand it over by hand.
    nonce = re.search(rf"{LOGIN_COOKIE}=([0-9a-f]+)", form.headers["set-cookie"]).group(1)
    good = web_client.post(f"{http}/login", data={"token": COLLECTOR, "csrf": form_csrf(form.text)},
                       headers={"cookie": f"{LOGIN_COOKIE}={nonce}"}, follow_redirects=False)
    session_cookie = [c for c in good.headers.get_list("set-cookie") if c.startswith(f"{AUTH_COOKIE}=")]
    assert good.status_code == 303 and len(session_cookie) == 1 and "secure" in session_cookie[0].lower()


# -- bad input on the forms ------------------------------------------------------------------------------

@pytest.mark.parametrize(("amount", "message"), [
    ("1e30", "is larger than"), ("NaN", "must be finite"), ("Infinity", "must be finite"),
    ("-1", "must be positive"), ("1e-5", "has more than 2 decimal places")])
def test_an_absurd_promise_amount_redisplays_the_form_and_stores_nothing(web_client, clock, service, scoring_ledger,
                                                                         amount, message):
    customer = portfolio_customers(scoring_ledger, PORTFOLIO)[1]
    csrf = log_in(web_client, COLLECTOR)
    response = web_client.post(f"{UI}/customers/{customer}/promises", data={
        "csrf": csrf, "amount": amount, "made_date": "2023-06-30", "promised_date": "2023-07-05"})
    assert response.status_code == 422
    field = re.search(r'<label for="promise-amount">.*?</div>', response.text, re.S).group(0)
    assert message in field and f'value="{amount}"' in field
    assert service.state.store.list_promises(customer) == []


@pytest.mark.parametrize("when", ["9999-12-31", "0001-01-01"])
def test_records_dated_outside_the_ledger_window_are_refused_and_nothing_is_stored(web_client, clock, service,
                                                                                   scoring_ledger, when):
    customer = portfolio_customers(scoring_ledger, PORTFOLIO)[2]
    csrf = log_in(web_client, COLLECTOR)
    contact = web_client.post(f"{UI}/customers/{customer}/contacts", data={
        "csrf": csrf, "contact_date": when, "channel": "call", "outcome": "far away"})
    assert contact.status_code == 422 and 'id="contact-contact_date-error"' in contact.text
    promise = web_client.post(f"{UI}/customers/{customer}/promises", data={
        "csrf": csrf, "amount": "10", "made_date": "2023-06-30", "promised_date": when})
    assert promise.status_code == 422 and 'id="promise-promised_date-error"' in promise.text
    invoice = re.search(r'<option value="([^"]+)">', contact.text).group(1)
    dispute = web_client.post(f"{UI}/customers/{customer}/disputes", data={
        "csrf": csrf, "invoice_id": invoice, "opened_date": when, "reason_code": "pricing", "amount": "10"})
    assert dispute.status_code == 422 and 'id="dispute-opened_date-error"' in dispute.text
    store = service.state.store
    assert store.list_contacts(customer) == store.list_promises(customer) == store.list_disputes(customer) == []
    assert web_client.get(f"{UI}/worklist").status_code == 200  # and the pages still work


def test_text_longer_than_max_text_chars_is_refused(web_client, clock, service, scoring_ledger):
    customer = portfolio_customers(scoring_ledger, PORTFOLIO)[3]
    csrf = log_in(web_client, COLLECTOR)
    response = web_client.post(f"{UI}/customers/{customer}/contacts", data={
        "csrf": csrf, "contact_date": "2023-06-30", "channel": "call", "note": "x" * (MAX_TEXT + 1)})
    assert response.status_code == 422 and f"is longer than {MAX_TEXT} characters" in response.text
    assert service.state.store.list_contacts(customer) == []


@pytest.mark.parametrize("when", ["2262-04-11", "2262-04-12", "2262-01-01", "2100-01-01", "1900-01-01"])
def test_as_of_far_outside_the_ledger_is_a_400_page_naming_the_range(web_client, clock, service, scoring_ledger, when):
    days = service.state.days
    first = days.first_invoice_date
    last = days.default_as_of + pd.Timedelta(days=days.as_of_future_days)
    customer = portfolio_customers(scoring_ledger, PORTFOLIO)[0]
    log_in(web_client, ADMIN)
    for path in ("/worklist", f"/customers/{customer}", "/forecast"):
        response = web_client.get(f"{UI}{path}?as_of={when}")
        assert response.status_code == 400, (path, response.text[-300:])
        assert "Bad request" in response.text and f"{first:%Y-%m-%d}" in response.text
        assert f"{last:%Y-%m-%d}" in response.text


def test_an_unreadable_as_of_is_a_400_page(web_client, clock):
    log_in(web_client, TREASURY)
    for typed in ("tomorrow", "2023-02-30", "9" * 5000):
        response = web_client.get(f"{UI}/forecast", params={"as_of": typed})
        assert response.status_code == 400 and "is not a date (expected YYYY-MM-DD)" in response.text


# -- portfolios ------------------------------------------------------------------------------------------

def test_a_collector_sees_and_changes_only_their_portfolio(web_client, clock, service, scoring_ledger):
    mine = set(portfolio_customers(scoring_ledger, PORTFOLIO))
    theirs = portfolio_customers(scoring_ledger, OTHER_PORTFOLIO)[0]
    csrf = log_in(web_client, COLLECTOR)
    assert set(worklist_customers(web_client)) <= mine
    assert set(re.findall(r'data-customer="([^"]+)"', web_client.get(f"{UI}/worklist?collector=").text)) <= mine
    assert web_client.get(f"{UI}/worklist", params={"collector": OTHER_PORTFOLIO}).status_code == 403
    page = web_client.get(f"{UI}/customers/{theirs}")
    assert page.status_code == 403 and "not in your portfolio" in page.text and "Not allowed" in page.text
    promise = web_client.post(f"{UI}/customers/{theirs}/promises", data={
        "csrf": csrf, "amount": "10", "made_date": "2023-06-30", "promised_date": "2023-07-05"})
    assert promise.status_code == 403 and service.state.store.list_promises(theirs) == []
    log_in(web_client, ADMIN)  # the page itself works: the 403 was the portfolio's
    assert web_client.get(f"{UI}/customers/{theirs}").status_code == 200


def test_html_in_a_note_is_rendered_escaped(web_client, clock, scoring_ledger):
    customer = portfolio_customers(scoring_ledger, PORTFOLIO)[4]
    csrf = log_in(web_client, COLLECTOR)
    attack = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
    saved = web_client.post(f"{UI}/customers/{customer}/contacts", data={
        "csrf": csrf, "contact_date": "2023-06-30", "channel": "call", "note": attack, "outcome": attack})
    assert saved.status_code == 200 and "The contact was recorded." in saved.text
    assert "<img src=x" not in saved.text and "<script>alert" not in saved.text
    assert saved.text.count("&#34;&gt;&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;") == 2


# ---- command line ----
# Real processes and real folders: writers never delete what they did not write, a killed import leaves
# nothing behind for good, `kill` of `arrisk serve` stops the server, and out-of-window dates are refused.

ARRISK = [sys.executable, "-m", "serving.cli"]
IBM_SAMPLE = ROOT / "samples" / "ibm" / "ibm_wa_accounts_receivable.csv"


def arrisk(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run this checkout's `arrisk` command (from any folder) and capture what it prints."""
    return subprocess.run([*ARRISK, *args], cwd=cwd, env=this_checkout(env or dict(os.environ)),
                          capture_output=True, text=True, timeout=300)


def this_checkout(environment: dict[str, str]) -> dict[str, str]:
    """The environment with this checkout first on the import path, whatever the working folder."""
    return environment | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))}


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes, and every subfolder (as b"/")."""
    return {str(p.relative_to(folder)): (b"/" if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def staging_siblings(target: Path) -> list[str]:
    """The hidden staging folders a ledger write leaves beside its target."""
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))


def test_import_over_a_folder_that_is_not_a_ledger_is_refused_and_touches_nothing(tmp_path):
    # The report's reproduction: mkdir -p x/sub; echo precious > x/important.txt; arrisk import ... --out x
    (tmp_path / "x" / "sub").mkdir(parents=True)
    (tmp_path / "x" / "important.txt").write_text("precious\n")
    before = tree(tmp_path / "x")

    result = arrisk("import", str(IBM_SAMPLE), "--mapping", "ibm_sample", "--out", "x", cwd=tmp_path)

    assert result.returncode != 0
    assert tree(tmp_path / "x") == before
    assert (tmp_path / "x" / "important.txt").read_text() == "precious\n" and (tmp_path / "x" / "sub").is_dir()
    assert f"{tmp_path / 'x'}: is a folder that is not an ar-risk ledger" in result.stderr
    assert "important.txt, sub/" in result.stderr and "Traceback" not in result.stderr
    assert staging_siblings(tmp_path / "x") == []


def test_import_with_out_dot_in_a_project_copy_leaves_the_project_as_it_was(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "configs", project / "configs")
    (project / "README.md").write_text("the project\n")
    before = tree(project)

    result = arrisk("import", str(IBM_SAMPLE), "--mapping", "ibm_sample", "--out", ".", cwd=project)

    assert result.returncode != 0
    assert tree(project) == before
    assert f"{project}: is a folder that is not an ar-risk ledger" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]  # no staging folder beside it either


def test_a_killed_import_leaves_no_staging_behind_after_the_next_import(tmp_path):
    # Generating a large ledger spends long enough writing that SIGKILL lands while the staging folder is
    # being filled (the poll below waits for it to appear).
    target = tmp_path / "ledger"
    writer = subprocess.Popen([*ARRISK, "generate", "--customers", "3000", "--months", "24", "--out", str(target)],
                              cwd=ROOT, env=this_checkout(dict(os.environ)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not staging_siblings(target) and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert writer.returncode == -signal.SIGKILL, "the generator finished before it could be killed mid-write"
    assert staging_siblings(target) != [], "SIGKILL mid-write leaves the staging folder (the defect's premise)"

    result = arrisk("import", str(IBM_SAMPLE), "--mapping", "ibm_sample", "--out", str(target))

    assert result.returncode == 0, result.stderr
    assert staging_siblings(target) == []
    assert arrisk("validate", str(target)).returncode == 0


@pytest.fixture
def served_ledger(scoring_ledger, champion_store, tmp_path):
    """A ledger folder and the environment `arrisk serve` reads (models, a throwaway activity store)."""
    from ledger import write_ledger

    write_ledger(scoring_ledger, tmp_path / "ledger")
    environment = dict(os.environ, ARRISK_TRACKING_URI=champion_store, ARRISK_API_TOKENS="",
                       ARRISK_DATABASE_URL=f"sqlite:///{tmp_path / 'activity.sqlite'}")
    environment.pop("ARRISK_TOKENS_FILE", None)
    return tmp_path / "ledger", environment


def descendants(pid: int) -> set[int]:
    """The pids of every process below `pid` (children, their children...), from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_sigterm_to_arrisk_serve_stops_the_server_and_its_workers(served_ledger):
    ledger_dir, environment = served_ledger
    port = free_port()
    serve = subprocess.Popen([*ARRISK, "serve", "--ledger", str(ledger_dir), "--port", str(port)], cwd=ROOT,
                             env=this_checkout(environment), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", serve, seconds=150)
        server_processes = descendants(serve.pid)
        assert server_processes, "arrisk serve runs the server as a child process"

        os.kill(serve.pid, signal.SIGTERM)  # what `kill <pid>` sends

        serve.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(running(pid) for pid in server_processes) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in server_processes if running(pid)] == []
        assert port_free(port)
    finally:
        for pid in [serve.pid, *descendants(serve.pid)]:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_contact_dated_9999_12_31_is_refused_and_nothing_is_stored(scoring_ledger, tmp_path):
    from ledger import write_ledger

    write_ledger(scoring_ledger, tmp_path / "ledger")
    environment = dict(os.environ, ARRISK_DATABASE_URL=f"sqlite:///{tmp_path / 'activity.sqlite'}")
    customer = scoring_ledger.customers["customer_id"].iloc[0]

    result = arrisk("activity", "contact", "--user", "ana", "--customer", customer, "--contact-date", "9999-12-31",
                    "--channel", "call", "--ledger", str(tmp_path / "ledger"), env=environment)

    assert result.returncode == 1
    assert "contact_date" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    listing = arrisk("activity", "list", "contacts", env=environment)
    assert listing.returncode == 0 and json.loads(listing.stdout) == []
