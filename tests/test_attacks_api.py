"""Issue 14, the API part: a replay of each attempt of the attack against the service's ASGI app, on
SQLite and on PostgreSQL (when ARRISK_TEST_POSTGRES_URL is set), and the keep-alive case on a real server.

Each test names the defect it pins: it failed on the code before the fix and passes after.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, make_url, text
from starlette.testclient import TestClient

from serving.auth import hash_token
from tests.conftest import SCORING_DATE
from tests.service_app import service_app

AS_OF = f"{SCORING_DATE:%Y-%m-%d}"
POSTGRES_URL = os.environ.get("ARRISK_TEST_POSTGRES_URL")
ROOT = Path(__file__).resolve().parents[1]
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


def empty_database(kind: str, folder: Path):
    """Yield the URL of an empty database: a SQLite file, or a fresh schema on the test PostgreSQL server."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'activity.sqlite'}"
        return
    if not POSTGRES_URL:
        pytest.skip("ARRISK_TEST_POSTGRES_URL is not set")
    schema = f"attack_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def service_environment(ledger_dir: Path, champion_store: str, database_url: str, ledger) -> dict[str, str]:
    return {"ARRISK_LEDGER": str(ledger_dir), "ARRISK_TRACKING_URI": champion_store,
            "ARRISK_API_TOKENS": token_entries(ledger), "ARRISK_DATABASE_URL": database_url,
            "ARRISK_AUDIT_KEY": AUDIT_KEY, "ARRISK_REPORTS": str(ledger_dir.parent / "reports")}


@pytest.fixture(scope="module")
def ledger_dir(scoring_ledger, tmp_path_factory) -> Path:
    from ledger import write_ledger

    folder = tmp_path_factory.mktemp("attacks") / "ledger"
    write_ledger(scoring_ledger, folder)
    return folder


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(request, scoring_ledger, champion_store, ledger_dir, tmp_path_factory):
    for database_url in empty_database(request.param, tmp_path_factory.mktemp("database")):
        with pytest.MonkeyPatch.context() as patch:
            for name, value in service_environment(ledger_dir, champion_store, database_url, scoring_ledger).items():
                patch.setenv(name, value)
            patch.delenv("ARRISK_TOKENS_FILE", raising=False)
            with TestClient(service_app(), raise_server_exceptions=False) as test_client:
                yield test_client


@pytest.fixture(scope="module")
def ana(client):
    """An open invoice of ana's portfolio and its customer."""
    row = client.post("/v1/score", json={"as_of": AS_OF}, headers=bearer("ana")).json()["rows"][0]
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


# ---- defect 10 (dates), 9 (date window) ----------------------------------------------------------------

@pytest.mark.parametrize("value", ["2023-02-30", "not-a-date", "9999-12-31", "0001-01-01", "2262-04-12"])
def test_bad_dates_on_every_create_are_422_naming_the_field_and_store_nothing(client, ana, value):
    before = {path: client.get(path, headers=bearer("admin")).json()["count"] for path in DATE_FIELDS}
    for path, body in create_bodies(ana).items():
        for field in DATE_FIELDS[path]:
            response = client.post(path, json=body | {field: value}, headers=bearer("ana"))
            assert response.status_code == 422, (path, field, response.text)
            assert response.json()["error"] == "bad_input" and response.json()["field"] == field, response.text
    assert {path: client.get(path, headers=bearer("admin")).json()["count"] for path in DATE_FIELDS} == before


def test_a_contact_dated_9999_12_31_is_refused_and_not_stored(client, ana):
    body = create_bodies(ana)["/v1/contacts"] | {"contact_date": "9999-12-31"}
    response = client.post("/v1/contacts", json=body, headers=bearer("ana"))
    assert response.status_code == 422 and response.json()["field"] == "contact_date"
    listed = client.get(f"/v1/contacts?customer_id={ana['customer_id']}", headers=bearer("admin")).json()["rows"]
    assert all(row["contact_date"] != "9999-12-31" for row in listed)
    assert client.get("/v1/worklist?top=1", headers=bearer("ana")).status_code == 200


@pytest.mark.parametrize("amount", ["1e30", "12345678901234567890.00", "NaN", "Infinity", "-1", "0", "0.001"])
def test_huge_or_odd_amounts_are_422_naming_the_amount(client, ana, amount):
    for path in ("/v1/promises", "/v1/disputes"):
        response = client.post(path, json=create_bodies(ana)[path] | {"amount": amount}, headers=bearer("ana"))
        assert response.status_code == 422 and response.json()["field"] == "amount", (path, response.text)


# ---- defect 6: as_of outside the ledger is a 400 with the range, never a 500 ---------------------------

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
def test_as_of_outside_the_ledger_is_400_naming_the_range_on_every_route(client, ana, day):
    for method, url, body in as_of_requests(ana, day):
        response = client.request(method, url, json=body, headers=bearer("admin"))
        assert response.status_code == 400, (url, response.text)
        assert "outside the ledger's dates" in response.json()["detail"] and "2022-" in response.json()["detail"]


def test_as_of_may_lie_up_to_the_configured_days_after_the_last_event(client, scoring_ledger):
    from features.labels import last_event_date

    last = last_event_date(scoring_ledger)
    allowed, refused = last + pd.Timedelta(days=92), last + pd.Timedelta(days=93)
    assert client.get(f"/v1/aging?as_of={allowed:%Y-%m-%d}", headers=bearer("admin")).status_code == 200
    assert client.get(f"/v1/aging?as_of={refused:%Y-%m-%d}", headers=bearer("admin")).status_code == 400


# ---- defect 8: limits, and the token before the body ---------------------------------------------------

def test_an_oversize_body_is_413_before_parsing(client, ana):
    body = create_bodies(ana)["/v1/contacts"] | {"note": "x" * 20_000_000}
    response = client.post("/v1/contacts", json=body, headers=bearer("ana"))
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


def test_a_chunked_oversize_body_is_413(client):
    def chunks():
        for _ in range(40):
            yield b"x" * 65_536

    response = client.post("/v1/contacts", content=chunks(), headers=bearer("ana", **{"Content-Type": "application/json"}))
    assert response.status_code == 413


def test_long_text_fields_are_422_naming_the_field(client, ana):
    for path, field in (("/v1/contacts", "note"), ("/v1/contacts", "outcome"), ("/v1/promises", "note")):
        response = client.post(path, json=create_bodies(ana)[path] | {field: "x" * 2_001}, headers=bearer("ana"))
        assert response.status_code == 422 and response.json()["field"] == field, response.text
    long_id = {"customer_id": "C" * 101, "contact_date": AS_OF, "channel": "call"}
    response = client.post("/v1/contacts", json=long_id, headers=bearer("ana"))
    assert response.status_code == 422 and response.json()["field"] == "customer_id"
    assert client.get(f"/v1/customers/{'C' * 101}", headers=bearer("admin")).status_code == 422


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer arr_not_a_token"}])
def test_the_token_is_checked_before_the_body_is_read(client, headers):
    broken = client.post("/v1/promises", content=b"{not json", headers=headers | {"Content-Type": "application/json"})
    assert broken.status_code == 401 and broken.json()["error"] == "unauthorized"
    huge = client.post("/v1/contacts", content=b"x" * 2_000_000, headers=headers)
    assert huge.status_code == 401


# ---- defect 9: /metrics ---------------------------------------------------------------------------------

def test_metrics_need_a_token(client):
    # The metrics themselves need BentoML's multiprocess directory: see the real server's test below.
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer arr_not_a_token"}).status_code == 401


def test_metrics_labels_are_route_templates_or_other():
    from serving.service import metrics_label

    assert metrics_label("/v1/customers/C000001") == "/v1/customers/{customer_id}"
    assert metrics_label("/v1/customers/C000001/risk") == "/v1/customers/{customer_id}/risk"
    assert metrics_label("/v1/worklist") == "/v1/worklist"
    assert metrics_label("/v1/ui/customers/C1") == "/v1/ui/customers/{customer_id}"
    assert metrics_label("/metrics") == "/metrics"
    assert {metrics_label(path) for path in ("/v1/nope", "/wp-admin.php", "/v1", "/v1x/worklist")} == {"other"}


def test_which_paths_need_the_token_before_anything_else():
    from serving.middleware import token_checked_first
    from serving.settings import Settings

    private, public = Settings(), Settings(metrics_public=True)
    for path in ("/v1/info", "/v1/promises", "/v1/customers/C1", "/v1/no-such-route", "/v1/uix", "/v1/healthz"):
        assert token_checked_first(path, private)
    for path in ("/v1/health", "/v1/docs", "/v1/openapi.json", "/v1/ui/login", "/v1/ui/customers/C1"):
        assert not token_checked_first(path, private)
    assert token_checked_first("/metrics", private) and not token_checked_first("/metrics", public)


# ---- defect 10: empty idempotency keys ------------------------------------------------------------------

@pytest.mark.parametrize("key", ["", " ", "\t"])
def test_an_empty_idempotency_key_is_422(client, ana, key):
    response = client.post("/v1/contacts", json=create_bodies(ana)["/v1/contacts"],
                           headers=bearer("ana", **{"Idempotency-Key": key}))
    assert response.status_code == 422 and response.json()["field"] == "idempotency_key"


# ---- defect 3: other collectors' data -------------------------------------------------------------------

def test_a_collector_cannot_read_another_collectors_data(client, ana, scoring_ledger):
    bob = scoring_ledger.customers["collector"].dropna().unique()[1]
    assert client.get(f"/v1/worklist?collector={bob}", headers=bearer("ana")).status_code == 403
    assert client.get(f"/v1/customers/{ana['customer_id']}", headers=bearer("bob")).status_code == 403
    mine = client.post("/v1/score", json={}, headers=bearer("ana")).json()["rows"]
    theirs = client.post("/v1/score", json={}, headers=bearer("bob")).json()["rows"]
    assert not {row["customer_id"] for row in mine} & {row["customer_id"] for row in theirs}
    assert client.post("/v1/score", json={"invoice_ids": [ana["invoice_id"]]}, headers=bearer("bob")).status_code == 403
    created = client.post("/v1/contacts", json=create_bodies(ana)["/v1/contacts"], headers=bearer("ana")).json()
    listed = client.get("/v1/contacts", headers=bearer("bob")).json()["rows"]
    assert created["contact_id"] not in {row["contact_id"] for row in listed}


def test_a_patch_of_another_users_record_is_403(client, ana):
    created = client.post("/v1/contacts", json=create_bodies(ana)["/v1/contacts"], headers=bearer("admin")).json()
    response = client.patch(f"/v1/contacts/{created['contact_id']}", json={"expected_version": 1, "note": "mine now"},
                            headers=bearer("ana"))
    assert response.status_code == 403
    assert client.get(f"/v1/contacts?customer_id={ana['customer_id']}", headers=bearer("admin")).json()["rows"]


# ---- defect 12: the ledger's path ----------------------------------------------------------------------

def test_info_shows_the_ledger_path_only_to_admins(client, ledger_dir):
    assert client.get("/v1/info", headers=bearer("ana")).json()["ledger"] == ledger_dir.name
    assert client.get("/v1/info", headers=bearer("admin")).json()["ledger"] == str(ledger_dir.resolve())


# ---- error shapes, request ids and security headers ----------------------------------------------------

def test_validation_errors_have_the_documented_shape(client):
    response = client.post("/v1/score", json={"as_of": "2023-02-30"}, headers=bearer("admin"))
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"error", "detail", "field"} and body["error"] == "bad_input" and body["field"] == "as_of"
    assert isinstance(body["detail"], str)


def test_every_answer_has_a_request_id_and_the_security_headers(client):
    answers = [client.get("/v1/health"), client.get("/v1/info"), client.get("/v1/no-such", headers=bearer("admin")),
               client.post("/v1/score", json={"as_of": "x"}, headers=bearer("admin")),
               client.post("/v1/contacts", content=b"x" * 2_000_000, headers=bearer("ana")),
               client.get("/v1/ui/login"), client.get("/metrics")]
    for answer in answers:
        assert len(answer.headers["x-request-id"]) >= 16, answer.url
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert client.get("/v1/info", headers=bearer("admin")).headers["cache-control"] == "no-store"


def test_a_sane_client_request_id_is_echoed_and_another_replaced(client):
    assert client.get("/v1/health", headers={"X-Request-ID": "scan-42"}).headers["x-request-id"] == "scan-42"
    for insane in ("a" * 200, "a b", "<script>"):
        echoed = client.get("/v1/health", headers={"X-Request-ID": insane}).headers["x-request-id"]
        assert echoed != insane and len(echoed) == 32


# ---- a real server: a 500 keeps the connection; a bad stored row does not stop the start -----------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(scoring_ledger, champion_store, ledger_dir, tmp_path_factory):
    """The service under uvicorn on a free local port, over a SQLite store holding a bad old row."""
    folder = tmp_path_factory.mktemp("server")
    database = folder / "activity.sqlite"
    environment = dict(os.environ, **service_environment(ledger_dir, champion_store, f"sqlite:///{database}",
                                                         scoring_ledger))
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
