"""Object-level authorization (issue 14, defect 3): who sees and changes which customers and records.

Every route of the API is walked with each role and must answer the status its table row says; a route
missing from the table fails the test, so a new route has to be classified here.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from starlette.testclient import TestClient

from serving.access import (
    check_customer,
    check_record_change,
    sees_all_customers,
    visible_customers,
)
from serving.auth import NotPermitted, Principal, hash_token, parse_token_entries
from tests.conftest import SCORING_DATE
from tests.service_app import service_app

AS_OF = f"{SCORING_DATE:%Y-%m-%d}"
ROLES = ("own", "other", "lead", "credit", "treasury", "cash", "admin", "none")
TOKENS = {role: f"arr_access_{role}_token_0123456789abcdef" for role in ROLES if role != "none"}
AUDIT_KEY = "access-test-audit-key-0123456789abcdef"


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"} if role != "none" else {}


@pytest.fixture(scope="module")
def collectors(scoring_ledger) -> tuple[str, str]:
    names = scoring_ledger.customers["collector"].dropna().unique()
    return names[0], names[1]


@pytest.fixture(scope="module")
def client(scoring_ledger, champion_store, collectors, tmp_path_factory):
    from ledger import write_ledger

    folder = tmp_path_factory.mktemp("access")
    write_ledger(scoring_ledger, folder / "ledger")
    (folder / "reports").mkdir()
    (folder / "reports" / "kpis.html").write_text("<!doctype html><title>KPIs</title>")
    ana, bob = collectors
    scopes = {"own": f"collector:{ana}", "other": f"collector:{bob}", "lead": "team_lead:", "credit": "credit:",
              "treasury": "treasury:", "cash": "cash:", "admin": "admin:"}
    entries = []
    for role, token in TOKENS.items():
        scope, collector = scopes[role].split(":")
        entries.append(f"{role}:{role}-user:{scope}:{hash_token(token)}:{collector}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARRISK_LEDGER", str(folder / "ledger"))
        patch.setenv("ARRISK_TRACKING_URI", champion_store)
        patch.setenv("ARRISK_API_TOKENS", ",".join(entries))
        patch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{folder / 'activity.sqlite'}")
        patch.setenv("ARRISK_AUDIT_KEY", AUDIT_KEY)
        patch.setenv("ARRISK_REPORTS", str(folder / "reports"))
        patch.delenv("ARRISK_TOKENS_FILE", raising=False)
        with TestClient(service_app(), raise_server_exceptions=False) as test_client:
            yield test_client


@pytest.fixture(scope="module")
def own(client, collectors):
    """The `own` collector, one open invoice of its portfolio, and its customer."""
    rows = client.post("/v1/score", json={"as_of": AS_OF}, headers=bearer("own")).json()["rows"]
    return SimpleNamespace(collector=collectors[0], invoice_id=rows[0]["invoice_id"],
                           customer_id=rows[0]["customer_id"])


def created(client, kind: str, own, role: str = "own") -> dict:
    """A record of `kind` created by `role` on the own collector's customer."""
    bodies = {
        "promises": {"customer_id": own.customer_id, "amount": "10.00", "made_date": AS_OF, "promised_date": AS_OF},
        "disputes": {"invoice_id": own.invoice_id, "opened_date": AS_OF, "reason_code": "pricing", "amount": "5.00"},
        "contacts": {"customer_id": own.customer_id, "contact_date": AS_OF, "channel": "call"},
        "dunning-letters": {"invoice_id": own.invoice_id, "level": 1, "issued_date": AS_OF},
    }
    response = client.post(f"/v1/{kind}", json=bodies[kind], headers=bearer(role))
    assert response.status_code == 201, response.text
    return response.json()


# What each role gets on each route, asked about the `own` collector's customer and records.
#                  own  other lead credit treasury cash admin none
COLLECTOR_ONLY = (200, 403, 200, 403, 403, 403, 200, 401)
PORTFOLIO_READ = (200, 403, 200, 200, 403, 403, 200, 401)
EVERY_SCOPE = (200, 200, 200, 200, 200, 200, 200, 401)
STATUS = {
    ("get", "/health"): (200,) * 8,
    ("get", "/info"): EVERY_SCOPE,
    ("post", "/score"): PORTFOLIO_READ,
    ("get", "/worklist"): COLLECTOR_ONLY,
    ("get", "/customers/{customer_id}/risk"): PORTFOLIO_READ,
    ("get", "/customers/{customer_id}"): PORTFOLIO_READ,
    ("get", "/deterioration"): (403, 403, 403, 200, 403, 403, 200, 401),
    ("get", "/forecast"): (403, 403, 403, 403, 200, 403, 200, 401),
    ("get", "/aging"): EVERY_SCOPE,  # everyone may, a collector sees its portfolio's rows
    ("get", "/dunning"): (200, 200, 200, 403, 403, 403, 200, 401),  # filtered to the portfolio
    ("get", "/reports"): (403, 403, 403, 200, 200, 403, 200, 401),
    ("get", "/reports/{name}"): (403, 403, 403, 200, 200, 403, 200, 401),
    ("post", "/promises"): (201, 403, 201, 403, 403, 403, 201, 401),
    ("patch", "/promises/{promise_id}"): COLLECTOR_ONLY,
    ("get", "/promises"): PORTFOLIO_READ,
    ("post", "/disputes"): (201, 403, 201, 201, 403, 403, 201, 401),
    # credit may change disputes, but only those it opened: this one is the own collector's.
    ("patch", "/disputes/{dispute_id}"): (200, 403, 200, 403, 403, 403, 200, 401),
    ("get", "/disputes"): PORTFOLIO_READ,
    ("post", "/contacts"): (201, 403, 201, 403, 403, 403, 201, 401),
    ("patch", "/contacts/{contact_id}"): COLLECTOR_ONLY,
    ("get", "/contacts"): PORTFOLIO_READ,
    ("post", "/dunning-letters"): (201, 403, 201, 403, 403, 403, 201, 401),
    ("get", "/dunning-letters"): PORTFOLIO_READ,
    ("patch", "/admin/records/{table}/{record_id}"): (403, 403, 403, 403, 403, 403, 200, 401),
    ("post", "/admin/records/{table}/{record_id}/void"): (403, 403, 403, 403, 403, 403, 200, 401),
    ("get", "/audit/verify"): (403, 403, 403, 403, 403, 403, 200, 401),
    ("get", "/kpis"): (403, 403, 403, 200, 200, 403, 200, 401),
    ("get", "/runs"): EVERY_SCOPE,
    # This service computes on demand from a ledger: an admin's run is refused as a conflict (409).
    ("post", "/runs"): (403, 403, 403, 403, 403, 403, 409, 401),
    ("get", "/runs/jobs/{job_id}"): (403, 403, 403, 403, 403, 403, 404, 401),
    ("post", "/runs/reload"): (403, 403, 403, 403, 403, 403, 200, 401),
    ("get", "/cash/proposals"): (403, 403, 403, 403, 403, 200, 200, 401),
    ("get", "/cash/applications"): (403, 403, 403, 403, 403, 200, 200, 401),
    # Every payment of this ledger is applied: asking to apply or reject one it lacks is a 404.
    ("post", "/cash/applications"): (403, 403, 403, 403, 403, 404, 404, 401),
    ("post", "/cash/rejections"): (403, 403, 403, 403, 403, 404, 404, 401),
    ("post", "/cash/auto"): (403, 403, 403, 403, 403, 201, 201, 401),
    ("get", "/cash/unapplied"): (403, 403, 403, 200, 200, 200, 200, 401),
    # Deductions: a collector sees its portfolio's, cash every customer's; a deduction it lacks is a 404.
    ("get", "/deductions"): (200, 200, 200, 403, 403, 200, 200, 401),
    ("get", "/deductions/candidates"): (200, 200, 200, 403, 403, 200, 200, 401),
    ("get", "/deductions/report"): (200, 200, 200, 403, 403, 200, 200, 401),
    ("post", "/deductions/open"): (201, 201, 201, 403, 403, 201, 201, 401),
    ("get", "/deductions/{item_id}"): (404, 404, 404, 403, 403, 404, 404, 401),
    ("post", "/deductions/{item_id}/decision"): (404, 404, 404, 403, 403, 404, 404, 401),
    # Credit reviews are the credit team's; a customer or review the ledger and store lack is a 404.
    ("get", "/credit-reviews"): (403, 403, 403, 200, 403, 403, 200, 401),
    ("get", "/credit-reviews/{item_id}"): (403, 403, 403, 404, 403, 403, 404, 401),
    ("post", "/credit-reviews"): (403, 403, 403, 404, 403, 403, 404, 401),
    ("post", "/credit-reviews/{item_id}/decision"): (403, 403, 403, 404, 403, 403, 404, 401),
    ("get", "/sla"): EVERY_SCOPE,  # a collector sees the records of its portfolio
    # The provision is finance's (tests/test_serving_provision.py holds a finance token).
    ("get", "/provision"): (403, 403, 403, 403, 403, 403, 200, 401),
    ("get", "/provision/workbook"): (403, 403, 403, 403, 403, 403, 200, 401),
    # Escalations: a collector opens (its portfolio's), only a manager decides; unknown ones are a 404.
    ("get", "/escalations"): (200, 200, 200, 403, 403, 403, 200, 401),
    ("get", "/escalations/{item_id}"): (404, 404, 404, 403, 403, 403, 404, 401),
    ("post", "/escalations"): (403, 403, 404, 403, 403, 403, 404, 401),
    ("post", "/escalations/{item_id}/decision"): (403, 403, 403, 403, 403, 403, 404, 401),
    # Reminders (issue 22) are the collectors'; drafted on the ledger's third day (nothing overdue: no message);
    # a message the outbox lacks is a 404; sending without an SMTP server configured is a 400.
    ("post", "/reminders/drafts"): (201, 201, 201, 403, 403, 403, 201, 401),
    ("get", "/reminders"): (200, 200, 200, 403, 403, 403, 200, 401),
    ("get", "/reminders/{message_id}"): (404, 404, 404, 403, 403, 403, 404, 401),
    ("post", "/reminders/approvals"): (404, 404, 404, 403, 403, 403, 404, 401),
    ("post", "/reminders/sends"): (400, 400, 400, 403, 403, 403, 400, 401),
}


def request_for(client, own, method: str, path: str) -> tuple[str, dict | None]:
    """The URL and body that ask `method path` about the own collector's customer (fresh records for
    changes, so each role meets version 1)."""
    queries = {"/worklist": "?collector={collector}&top=3", "/kpis": "?from=2023-04-01&to=2023-05-31",
               "/forecast": "?horizon_weeks=2", "/deterioration": "?top=2"}
    url = path + queries.get(path, "")
    if method == "get" and path in ("/promises", "/disputes", "/contacts", "/dunning-letters"):
        url += f"?customer_id={own.customer_id}"
    values = {"customer_id": own.customer_id, "name": "kpis.html", "collector": own.collector, "table": "contacts",
              "job_id": "no-such-job", "item_id": "DED-NONE", "message_id": "OUT-NONE"}
    body = None
    if method == "post" and path == "/score":
        body = {"as_of": AS_OF, "invoice_ids": [own.invoice_id]}
    elif method == "post" and path == "/runs":
        body = {"as_of": AS_OF}
    elif method == "post" and path in ("/runs/reload", "/cash/auto"):
        body = None
    elif method == "post" and path.startswith("/deductions/"):
        # Opened on the ledger's third day: no short payment yet, so the check records nothing.
        body = {"as_of": "2022-01-03"} if path == "/deductions/open" else {"expected_version": 1,
                                                                           "decision": "in_review"}
    elif method == "post" and path.startswith("/escalations"):
        body = {"customer_id": "NO-SUCH-CUSTOMER"} if path == "/escalations" else {
            "expected_version": 1, "decision": "legal", "decided_date": AS_OF}
    elif method == "post" and path.startswith("/credit-reviews"):
        body = {"customer_id": "NO-SUCH-CUSTOMER"} if path == "/credit-reviews" else {"expected_version": 1,
                                                                                       "decision": "approve"}
    elif method == "post" and path.startswith("/reminders/"):
        body = {"message_ids": ["OUT-NONE"]} if path == "/reminders/approvals" else {"as_of": "2022-01-03"}
    elif method == "post" and path.startswith("/cash/"):
        body = {"payment_id": "no-such-payment", "note": "wrong customer",
                "lines": [{"invoice_id": own.invoice_id, "amount": "1.00"}]}
        if path == "/cash/rejections":
            del body["lines"]
    elif method == "post" and not path.startswith("/admin"):
        body = {"/promises": {"customer_id": own.customer_id, "amount": "10.00", "made_date": AS_OF,
                              "promised_date": AS_OF},
                "/disputes": {"invoice_id": own.invoice_id, "opened_date": AS_OF, "reason_code": "pricing",
                              "amount": "5.00"},
                "/contacts": {"customer_id": own.customer_id, "contact_date": AS_OF, "channel": "call"},
                "/dunning-letters": {"invoice_id": own.invoice_id, "level": 1, "issued_date": AS_OF}}[path]
    elif method == "patch" and not path.startswith("/admin"):
        kind = path.split("/")[1]
        record = created(client, kind, own)
        values[path.split("{")[1].rstrip("}")] = record[kind.rstrip("s") + "_id"]
        body = {"expected_version": 1, "note": "changed"} if kind != "disputes" else {"expected_version": 1,
                                                                                       "owner": "someone"}
    elif path.startswith("/admin"):
        values["record_id"] = created(client, "contacts", own)["contact_id"]
        body = {"expected_version": 1, "reason": "entered twice"} if path.endswith("/void") else {
            "expected_version": 1, "changes": {"note": "corrected"}}
    return "/v1" + url.format(**values), body


def test_every_route_gives_each_role_the_status_of_its_table_row(client, own):
    routes = {(method.lower(), path) for path, item in service_app_openapi(client).items() for method in item}
    assert routes == set(STATUS), f"routes missing from the table: {routes - set(STATUS)}"
    wrong = []
    for method, path in sorted(STATUS):
        for role, expected in zip(ROLES, STATUS[method, path], strict=True):
            url, body = request_for(client, own, method, path)
            response = client.request(method, url, json=body, headers=bearer(role))
            if response.status_code != expected:
                wrong.append(f"{role} {method.upper()} {url}: {response.status_code} (expected {expected}) "
                             f"{response.text[:150]}")
    assert not wrong, "\n".join(wrong)


def service_app_openapi(client) -> dict:
    return client.get("/v1/openapi.json").json()["paths"]


def test_a_collector_sees_only_its_portfolio_by_default(client, scoring_ledger, collectors):
    ana = collectors[0]
    portfolio = set(scoring_ledger.customers.loc[scoring_ledger.customers["collector"] == ana, "customer_id"])
    worklist = client.get(f"/v1/worklist?as_of={AS_OF}", headers=bearer("own")).json()
    assert worklist["count"] > 0 and {row["customer_id"] for row in worklist["rows"]} <= portfolio
    scores = client.post("/v1/score", json={"as_of": AS_OF}, headers=bearer("own")).json()
    everything = client.post("/v1/score", json={"as_of": AS_OF}, headers=bearer("credit")).json()
    assert 0 < scores["count"] < everything["count"]
    assert {row["customer_id"] for row in scores["rows"]} <= portfolio
    aging = client.get(f"/v1/aging?as_of={AS_OF}", headers=bearer("own")).json()["rows"]
    assert {row["customer_id"] for row in aging[:-1]} <= portfolio and aging[-1]["customer_id"] == "(all customers)"
    dunning = client.get(f"/v1/dunning?as_of={AS_OF}", headers=bearer("own")).json()["rows"]
    assert {row["customer_id"] for row in dunning} <= portfolio


def test_another_collectors_worklist_and_customers_are_refused(client, own, collectors):
    response = client.get(f"/v1/worklist?collector={collectors[0]}", headers=bearer("other"))
    assert response.status_code == 403 and "not yours" in response.json()["detail"]
    response = client.get(f"/v1/customers/{own.customer_id}", headers=bearer("other"))
    assert response.status_code == 403
    assert response.json()["detail"] == f"customer {own.customer_id} is not in your portfolio"
    response = client.post("/v1/score", json={"invoice_ids": [own.invoice_id]}, headers=bearer("other"))
    assert response.status_code == 403 and own.invoice_id in response.json()["detail"]
    lead = client.get(f"/v1/worklist?as_of={AS_OF}&collector={collectors[1]}", headers=bearer("lead")).json()
    assert lead["count"] > 0 and {row["collector"] for row in lead["rows"]} == {collectors[1]}


def test_lists_show_only_the_records_of_the_portfolio(client, own):
    contact = created(client, "contacts", own)
    mine = client.get("/v1/contacts", headers=bearer("own")).json()["rows"]
    theirs = client.get("/v1/contacts", headers=bearer("other")).json()["rows"]
    assert contact["contact_id"] in {row["contact_id"] for row in mine}
    assert contact["contact_id"] not in {row["contact_id"] for row in theirs}


def test_a_record_is_changed_by_its_creator_a_team_lead_or_an_admin(client, own):
    contact = created(client, "contacts", own, role="lead")
    change = {"expected_version": 1, "note": "not mine"}
    response = client.patch(f"/v1/contacts/{contact['contact_id']}", json=change, headers=bearer("own"))
    assert response.status_code == 403 and "lead-user" in response.json()["detail"]
    assert client.patch(f"/v1/contacts/{contact['contact_id']}", json=change, headers=bearer("admin")).status_code == 200


def test_the_store_portfolio_wins_over_the_ledger_column(client, scoring_ledger, collectors):
    from serving.middleware import current_service

    outside = scoring_ledger.customers.loc[scoring_ledger.customers["collector"] != collectors[0], "customer_id"]
    store = current_service().state.store
    store.upsert_user(collectors[0], "collector")
    store.assign_portfolio(collectors[0], [outside.iloc[0]])
    try:
        assert client.get(f"/v1/customers/{outside.iloc[0]}", headers=bearer("own")).status_code == 200
        worklist = client.get(f"/v1/worklist?as_of={AS_OF}", headers=bearer("own")).json()
        assert {row["customer_id"] for row in worklist["rows"]} <= {outside.iloc[0]}
    finally:
        with store.session() as session, session.begin():
            from activity.models import Portfolio

            session.query(Portfolio).delete()


# ---- the plain functions -----------------------------------------------------------------------------

def principal(*scopes: str, collector: str | None = None, all_portfolios: bool = False, user: str = "u"):
    return Principal(user=user, name=user, scopes=frozenset(scopes), collector=collector,
                     all_portfolios=all_portfolios)


@pytest.fixture(scope="module")
def state(scoring_ledger):
    """What access needs of a serving state: no activity store, the ledger's collector column."""
    return SimpleNamespace(store=None, base_ledger=scoring_ledger)


def test_who_sees_every_customer():
    assert not sees_all_customers(principal("collector", collector="A"))
    assert all(sees_all_customers(p) for p in (principal("team_lead"), principal("credit"), principal("treasury"),
                                              principal("admin"), principal("collector", all_portfolios=True)))


def test_a_collector_token_without_a_collector_name_sees_no_customer(state):
    assert visible_customers(principal("collector"), state) == frozenset()
    with pytest.raises(NotPermitted, match="not in your portfolio"):
        check_customer(principal("collector"), state, state.base_ledger.customers["customer_id"].iloc[0])


def test_visible_customers_of_a_collector_are_its_ledger_portfolio(state, collectors):
    customers = state.base_ledger.customers
    expected = frozenset(customers.loc[customers["collector"] == collectors[0], "customer_id"])
    assert visible_customers(principal("collector", collector=collectors[0]), state) == expected
    assert visible_customers(principal("credit"), state) is None


def test_record_changes_need_the_creator_a_team_lead_or_an_admin():
    record = {"created_by": "ana"}
    check_record_change(principal("collector", user="ana"), record)
    check_record_change(principal("team_lead", user="lea"), record)
    check_record_change(principal("admin", user="root"), record)
    with pytest.raises(NotPermitted):
        check_record_change(principal("collector", "credit", user="bob"), record)


def test_all_portfolios_is_a_flag_among_the_scopes_of_the_environment_format():
    sha = "0" * 64
    entry, plain = parse_token_entries(f"lea:Lea:collector+all_portfolios:{sha}:Lea,ana:Ana:collector:{'1' * 64}")
    assert entry.scopes == ("collector",) and entry.all_portfolios and not plain.all_portfolios
