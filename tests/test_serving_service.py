"""The BentoML service through its ASGI app: every endpoint, scope and error path, with no network."""

from __future__ import annotations

import ast
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from runs.scoring import score, score_table
from serving.auth import hash_token
from tests.conftest import SCORING_DATE
from tests.service_app import service_app

TOKENS = {scope: f"arr_test_{scope}_token_0123456789" for scope in ("collector", "credit", "treasury", "admin")}
AS_OF = f"{SCORING_DATE:%Y-%m-%d}"


def bearer(scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[scope]}"}


@pytest.fixture(scope="module")
def client(scoring_ledger, champion_store, tmp_path_factory):
    from ledger import write_ledger

    ledger_dir = tmp_path_factory.mktemp("service") / "ledger"
    write_ledger(scoring_ledger, ledger_dir)
    reports = ledger_dir.parent / "reports"
    reports.mkdir()
    (reports / "drift.json").write_text('{"retrain": false, "drifted_share": 0.05}')
    (reports / "kpis.html").write_text("<!doctype html><title>KPIs</title>")
    collector = scoring_ledger.customers["collector"].iloc[0]
    entries = [f"{scope}:{scope}-user:{scope}:{hash_token(token)}" + (f":{collector}" if scope == "collector" else "")
               for scope, token in TOKENS.items()]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARRISK_LEDGER", str(ledger_dir))
        patch.setenv("ARRISK_TRACKING_URI", champion_store)
        patch.setenv("ARRISK_API_TOKENS", ",".join(entries))
        patch.setenv("ARRISK_REPORTS", str(reports))
        patch.delenv("ARRISK_TOKENS_FILE", raising=False)
        with no_network(patch), TestClient(service_app(), raise_server_exceptions=False) as test_client:
            test_client.collector = collector
            yield test_client


class no_network:
    """Refuse every connection that leaves the machine while the service starts and answers."""

    def __init__(self, patch: pytest.MonkeyPatch):
        self.patch = patch

    def __enter__(self):
        real_connect = socket.socket.connect

        def local_only(sock, address):
            host = address[0] if isinstance(address, tuple) else address
            if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
                raise OSError(f"network access attempted: {address}")
            return real_connect(sock, address)

        self.patch.setattr(socket.socket, "connect", local_only)
        return self

    def __exit__(self, *exc):
        return False


def test_health_needs_no_token_and_says_ready(client):
    response = client.get("/v1/health")
    assert response.status_code == 200 and response.json()["status"] == "ok" and response.json()["ready"] is True
    assert set(response.json()) == {"status", "ready", "warm"}


PROTECTED = [
    ("get", "/v1/info", None), ("post", "/v1/score", {"as_of": AS_OF}), ("get", "/v1/worklist", None),
    ("get", "/v1/customers/X", None), ("get", "/v1/customers/X/risk", None), ("get", "/v1/deterioration", None), ("get", "/v1/forecast", None),
    ("get", "/v1/aging", None), ("get", "/v1/dunning", None), ("get", "/v1/reports", None),
    ("get", "/v1/reports/kpis.html", None), ("get", "/v1/kpis?from=2023-01-01&to=2023-03-31", None),
]


@pytest.mark.parametrize("method, path, body", PROTECTED)
def test_every_endpoint_but_health_needs_a_token(client, method, path, body):
    for headers in ({}, {"Authorization": "Bearer arr_wrong"}, {"Authorization": "Basic abc"}):
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("method, path, body, allowed", [
    ("post", "/v1/score", {"as_of": AS_OF, "invoice_ids": None}, {"collector", "credit"}),
    ("get", "/v1/worklist?top=2", None, {"collector"}),
    ("get", "/v1/deterioration?top=2", None, {"credit"}),
    ("get", "/v1/forecast?horizon_weeks=2", None, {"treasury"}),
    ("get", "/v1/dunning", None, {"collector"}),
    ("get", "/v1/kpis?from=2023-04-01&to=2023-05-31", None, {"credit", "treasury"}),
])
def test_scopes_gate_endpoints_and_admin_may_do_everything(client, method, path, body, allowed):
    for scope in TOKENS:
        response = client.request(method, path, json=body, headers=bearer(scope))
        if scope in allowed or scope == "admin":
            assert response.status_code == 200, (scope, response.text)
        else:
            assert response.status_code == 403, (scope, response.text)
            assert response.json()["error"] == "forbidden"


def test_info_reports_model_versions_and_the_ledger_fingerprint(client, scoring_ledger):
    body = client.get("/v1/info", headers=bearer("credit")).json()
    assert body["ledger_fingerprint"] == scoring_ledger.fingerprint()
    assert body["model_versions"] == {"late": "1", "timing": "1", "deterioration": "1"}
    assert body["default_as_of"] == AS_OF and body["user"] == "credit-user"


def test_api_scores_equal_the_batch_scores(client, scoring_ledger, champions):
    batch = score_table(score(scoring_ledger, SCORING_DATE, champions), champions).set_index("invoice_id")
    wanted = batch.index[:5].tolist()
    response = client.post("/v1/score", json={"as_of": AS_OF, "invoice_ids": wanted}, headers=bearer("credit"))
    assert response.status_code == 200, response.text
    rows = pd.DataFrame(response.json()["rows"]).set_index("invoice_id")
    assert rows.index.tolist() == wanted
    assert np.allclose(rows["p_late"], batch.loc[wanted, "p_late"])
    assert np.allclose(rows["p_unpaid"], batch.loc[wanted, "p_unpaid"])
    assert (rows["pay_date_p50"] == batch.loc[wanted, "pay_date_p50"].dt.strftime("%Y-%m-%d")).all()
    buckets = rows[["p_on_time", "p_late_1_30", "p_late_31_60", "p_late_61_90", "p_late_90_plus"]].sum(axis=1)
    assert np.allclose(buckets, 1.0)
    assert all(len(reasons) >= 1 for reasons in rows["reasons"])


@pytest.mark.parametrize("body, status, field", [
    ({"as_of": "2023-02-30"}, 422, "as_of"),
    ({"as_of": AS_OF, "invoice_ids": []}, 422, "invoice_ids"),
    ({"as_of": AS_OF, "invoice_ids": "INV1"}, 422, "invoice_ids"),
    ({"as_of": "1990-01-01"}, 400, "as_of"),
    ({"as_of": AS_OF, "invoice_ids": ["NOPE"]}, 404, "NOPE"),
])
def test_bad_score_requests_are_4xx_naming_the_problem(client, body, status, field):
    response = client.post("/v1/score", json=body, headers=bearer("collector"))
    assert response.status_code == status
    assert field in response.text and "Traceback" not in response.text


def test_worklist_of_a_collector_token_is_its_portfolio(client):
    mine = client.get(f"/v1/worklist?as_of={AS_OF}", headers=bearer("collector")).json()
    everyone = client.get(f"/v1/worklist?as_of={AS_OF}", headers=bearer("admin")).json()
    assert 0 < mine["count"] < everyone["count"]
    assert {row["collector"] for row in mine["rows"]} == {client.collector}
    assert [row["rank"] for row in mine["rows"]] == list(range(1, mine["count"] + 1))
    top = client.get(f"/v1/worklist?as_of={AS_OF}&top=3", headers=bearer("admin")).json()
    assert [row["customer_id"] for row in top["rows"]] == [row["customer_id"] for row in everyone["rows"][:3]]
    assert client.get("/v1/worklist?top=0", headers=bearer("admin")).status_code == 422


def test_customer_view_has_items_risk_explanation_and_kpis(client):
    first = client.get(f"/v1/worklist?as_of={AS_OF}&top=1", headers=bearer("admin")).json()["rows"][0]
    response = client.get(f"/v1/customers/{first['customer_id']}?as_of={AS_OF}", headers=bearer("credit"))
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["worklist"]["rank"] == 1
    assert len(view["open_items"]) >= 1 and all("p_late" in item for item in view["open_items"])
    assert 0 <= view["deterioration_probability"] <= 1
    assert view["deterioration_contributions"] and view["aging"] and view["kpis"]
    assert client.get("/v1/customers/NOBODY", headers=bearer("credit")).status_code == 404
    risk = client.get(f"/v1/customers/{first['customer_id']}/risk?as_of={AS_OF}", headers=bearer("credit")).json()
    assert [item["invoice_id"] for item in risk["open_items"]] == [item["invoice_id"] for item in view["open_items"]]
    assert risk["deterioration_probability"] == pytest.approx(view["deterioration_probability"])
    assert client.get("/v1/customers/NOBODY/risk", headers=bearer("credit")).status_code == 404
    # A collector is not told whether a customer outside its portfolio exists.
    assert client.get("/v1/customers/NOBODY/risk", headers=bearer("collector")).status_code == 403


def test_deterioration_flags_come_with_evidence_and_reasons(client):
    body = client.get(f"/v1/deterioration?as_of={AS_OF}&flagged_only=false&top=5", headers=bearer("credit")).json()
    probabilities = [row["deterioration_probability"] for row in body["rows"]]
    assert probabilities == sorted(probabilities, reverse=True) and body["count"] == 5
    assert all("max_days_past_due" in row and isinstance(row["reasons"], list) for row in body["rows"])


def test_forecast_has_thirteen_weeks_per_currency_with_intervals_and_baselines(client):
    body = client.get(f"/v1/forecast?as_of={AS_OF}", headers=bearer("treasury")).json()
    rows = pd.DataFrame(body["rows"])
    total = rows[rows["converted"]]
    assert len(total) == 13 and total["period"].tolist() == list(range(1, 14))
    assert (total["p10"] <= total["p50"]).all() and (total["p50"] <= total["p90"]).all()
    assert "baseline_pays_on_due_date" in rows
    days = client.get(f"/v1/forecast?as_of={AS_OF}&freq=day&horizon_weeks=2&currency=eur",
                      headers=bearer("treasury")).json()
    assert days["count"] >= 14 and {row["currency"] for row in days["rows"]} == {"EUR"}
    assert client.get("/v1/forecast?freq=month", headers=bearer("treasury")).status_code == 422
    assert client.get("/v1/forecast?horizon_weeks=99", headers=bearer("treasury")).status_code == 422


def test_rules_endpoints_answer_and_reject_bad_dates(client):
    aging = client.get(f"/v1/aging?as_of={AS_OF}", headers=bearer("collector")).json()
    assert aging["rows"][-1]["customer_id"] == "(all customers)"
    kpis = client.get("/v1/kpis?from=2023-01-01&to=2023-03-31", headers=bearer("credit")).json()
    assert kpis["count"] == 3 and all(row["dso_simple"] is not None for row in kpis["rows"])
    assert client.get("/v1/kpis?from=2023-03-31&to=2023-01-01", headers=bearer("credit")).status_code == 400
    assert client.get("/v1/kpis?from=2023-01-01", headers=bearer("credit")).status_code == 422
    assert client.get("/v1/aging?basis=posting_date", headers=bearer("credit")).status_code == 422


def test_latest_reports_are_listed_with_their_summaries_and_served(client):
    listing = client.get("/v1/reports", headers=bearer("treasury")).json()
    assert [row["name"] for row in listing["rows"]] == ["drift.json", "kpis.html"]
    assert listing["rows"][0]["summary"] == {"retrain": False, "drifted_share": 0.05}
    page = client.get("/v1/reports/kpis.html", headers=bearer("credit"))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert client.get("/v1/reports/drift.html", headers=bearer("credit")).status_code == 404
    assert client.get("/v1/reports/..%2F..%2Fetc%2Fpasswd", headers=bearer("credit")).status_code == 404
    assert client.get("/v1/reports", headers=bearer("collector")).status_code == 403


def test_openapi_docs_are_served(client):
    schema = client.get("/v1/openapi.json").json()
    assert {"/health", "/score", "/worklist", "/customers/{customer_id}", "/forecast"} <= set(schema["paths"])


def test_bentofile_builds_a_bento_offline(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    environment = dict(os.environ, BENTOML_HOME=str(tmp_path / "bentoml"), BENTOML_DO_NOT_TRACK="True")
    result = subprocess.run([sys.executable, "-m", "bentoml", "build", str(root), "--output", "tag"],
                            capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    bentos = list((tmp_path / "bentoml" / "bentos" / "ar_risk").glob("*/src/serving/service.py"))
    assert len(bentos) == 1
    assert (bentos[0].parents[1] / "configs" / "worklist" / "default.yaml").exists()


# ---- routers over dependencies (issue 15) -----------------------------------------------------------------

WRITE_METHODS = ("post", "put", "patch", "delete")
# Invalid for every write route: a date that does not exist, an empty id list, and no required field.
INVALID_BODY = {"as_of": "2023-02-30", "invoice_ids": []}


def write_routes(schema: dict) -> list[tuple[str, str, list[str]]]:
    """(method, /v1 path with its parameters filled in, scopes) of every write route with a body in the OpenAPI
    document (`POST /runs/reload` has none)."""
    routes = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method in WRITE_METHODS and "requestBody" in operation:
                filled = path.replace("{table}", "promises")
                filled = re.sub(r"\{[^}]+\}", "X1", filled)
                routes.append((method, "/v1" + filled, operation["x-scopes"]))
    return routes


def test_every_write_route_checks_token_and_scope_before_the_body(client):
    routes = write_routes(client.get("/v1/openapi.json").json())
    assert len(routes) >= 10  # score, 4 creates, 3 updates, 2 admin
    for method, path, scopes in routes:
        wrong_scope = next(scope for scope in ("collector", "credit", "treasury") if scope not in scopes)
        for headers, status in (({}, 401), ({"Authorization": "Bearer arr_wrong"}, 401),
                                ({"Authorization": "Basic abc"}, 401), (bearer(wrong_scope), 403)):
            response = client.request(method, path, json=INVALID_BODY, headers=headers)
            assert response.status_code == status, (method, path, headers, response.text)
            assert response.json()["error"] == ("unauthorized" if status == 401 else "forbidden")
            assert response.headers["www-authenticate"].startswith("Bearer")
        # Not even JSON: FastAPI parses the body before it solves dependencies, the route checks first.
        response = client.request(method, path, content=b"{not json", headers={
            **bearer(wrong_scope), "Content-Type": "application/json"})
        assert response.status_code == 403, (method, path, response.text)
        # The body was invalid indeed: with the right scope it is the body's 422.
        response = client.request(method, path, json=INVALID_BODY, headers=bearer("admin"))
        assert response.status_code == 422, (method, path, response.text)


def test_openapi_lists_the_bearer_scheme_the_scopes_and_the_row_columns(client):
    schema = client.get("/v1/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if path == "/health":
                assert "security" not in operation and "x-scopes" not in operation
                continue
            assert operation["security"] == [{"bearer": []}], (method, path)
            assert operation["x-scopes"] and set(operation["x-scopes"]) <= set(TOKENS) | {"team_lead", "cash", "manager", "finance"}, (method, path)
            assert "Scopes: " + ", ".join(operation["x-scopes"]) in operation["description"], (method, path)
    assert schema["paths"]["/forecast"]["get"]["x-scopes"] == ["treasury"]
    assert schema["paths"]["/promises"]["post"]["x-scopes"] == ["collector"]
    assert schema["paths"]["/cash/applications"]["post"]["x-scopes"] == ["cash"]
    components = schema["components"]["schemas"]
    # DESIGN.md §9: the columns of `arrisk score`, and the worklist's.
    assert {"invoice_id", "customer_id", "p_late", "expected_days_late", "pay_date_p10", "pay_date_p50",
            "pay_date_p90"} <= set(components["ScoreRow"]["properties"])
    assert {"rank", "customer_id", "money_at_risk_base", "next_dunning_action", "reason_1"} <= set(
        components["WorklistRow"]["properties"])
    score_answer = schema["paths"]["/score"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    rows = components[score_answer["$ref"].rsplit("/", 1)[-1]]["properties"]
    assert set(rows) == {"as_of", "rows", "count"} and rows["rows"]["items"]["$ref"].endswith("/ScoreRow")


def test_a_plain_value_error_in_a_route_is_a_logged_500_with_a_request_id(client, monkeypatch, caplog):
    import bentoml

    def broken(*args, **kwargs):
        raise ValueError("a bug of ours, not the caller's input")

    monkeypatch.setattr(bentoml.get_current_service().state, "deterioration_flags", broken)
    response = client.get("/v1/deterioration", headers={**bearer("credit"), "X-Request-ID": "value-error-1"})
    assert response.status_code == 500
    assert response.json()["error"] == "internal" and response.json()["request_id"] == "value-error-1"
    assert response.headers["x-request-id"] == "value-error-1"
    assert "a bug of ours" not in response.text  # the message stays in the log
    assert any("value-error-1" in record.getMessage() for record in caplog.records)


def test_a_kpi_period_ending_before_it_starts_is_bad_input_not_a_bug(client):
    response = client.get("/v1/kpis?from=2023-03-31&to=2023-01-01", headers=bearer("credit"))
    assert response.status_code == 400
    assert response.json() == {"error": "bad_input", "detail": "'to' must not be before 'from'"}


def imported_modules(path: Path) -> set[str]:
    """The modules a source file imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_the_service_and_the_web_pages_do_not_import_each_other():
    serving = Path(__file__).resolve().parents[1] / "serving"
    assert not {name for name in imported_modules(serving / "web.py") if name.startswith("serving.service")}
    assert not {name for name in imported_modules(serving / "service.py") if name.startswith("serving.web")}
    # And importing the pages does not load the service (whatever imports them indirectly).
    check = "import sys, serving.web; assert 'serving.service' not in sys.modules, 'serving.service loaded'"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120,
                            cwd=serving.parent)
    assert result.returncode == 0, result.stderr[-2000:]
