"""Escalations through the API (issue 21 points 2 and 5): the queue ranked by the deterioration probability,
opening an escalation (collector or manager), the manager-only decision, and the worklist's `escalation` column
and the customer page showing a live one.

One service for the module: each test escalates customers of its own, so what one records never changes what
another asserts, in any order."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from starlette.testclient import TestClient

from serving.auth import hash_token
from tests.service_app import service_app

MANAGER, COLLECTOR, ADMIN = ("arr_escalation_manager_token_0123", "arr_escalation_collector_token_012",
                             "arr_escalation_admin_token_0123456")
AS_OF = pd.Timestamp("2023-06-15")
DAY = f"{AS_OF:%Y-%m-%d}"


@contextlib.contextmanager
def environment(scoring_ledger, champion_store, folder: Path) -> Iterator[None]:
    """The service's environment: the scoring ledger, the champions, a fresh store and three tokens (a manager,
    a collector who sees every portfolio, an admin)."""
    from ledger import write_ledger

    write_ledger(scoring_ledger, folder / "ledger")
    tokens = [f"mia:Mia Manager:manager:{hash_token(MANAGER)}",
              f"ana:Ana:collector+all_portfolios:{hash_token(COLLECTOR)}", f"root:Root:admin:{hash_token(ADMIN)}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARRISK_LEDGER", str(folder / "ledger"))
        patch.setenv("ARRISK_TRACKING_URI", champion_store)
        patch.setenv("ARRISK_API_TOKENS", ",".join(tokens))
        patch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{folder / 'activity.sqlite'}")
        patch.setenv("ARRISK_REPORTS", str(folder / "reports"))
        patch.delenv("ARRISK_TOKENS_FILE", raising=False)
        yield


@pytest.fixture(scope="module")
def served(scoring_ledger, champion_store, tmp_path_factory):
    """A client of the service (see `environment`)."""
    with environment(scoring_ledger, champion_store, tmp_path_factory.mktemp("escalations")), \
            TestClient(service_app(), raise_server_exceptions=False) as client:
        yield client


def headers(token: str = MANAGER) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def queue(client, token: str = MANAGER) -> list[dict]:
    response = client.get(f"/v1/escalations?as_of={DAY}", headers=headers(token))
    assert response.status_code == 200, response.text
    return response.json()["rows"]


def worklist_rows(client) -> dict[str, dict]:
    response = client.get(f"/v1/worklist?as_of={DAY}", headers=headers(ADMIN))
    assert response.status_code == 200, response.text
    return {row["customer_id"]: row for row in response.json()["rows"]}


def unrecorded_candidate(client, index: int) -> dict:
    """The `index`-th candidate (in rank order) without a recorded escalation that is on the worklist."""
    on_worklist = worklist_rows(client)
    rows = [row for row in queue(client) if row.get("item_id") is None and row["customer_id"] in on_worklist]
    assert len(rows) > index, "the scoring ledger escalates too few customers"
    return rows[index]


def open_escalation(client, customer_id: str, token: str = COLLECTOR):
    return client.post("/v1/escalations", json={"customer_id": customer_id, "opened_date": DAY, "note": "see why"},
                       headers=headers(token))


def test_a_manager_opens_and_decides_an_escalation_in_the_browser(scoring_ledger, champion_store, tmp_path):
    # First in the module: its server starts before the module's TestClient does (one service at a time).
    from playwright.sync_api import sync_playwright

    from tests.browser import chromium
    from tests.test_web import SCREENSHOTS, running_server, with_content_security_policy

    executable = chromium()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    app = with_content_security_policy(service_app())
    with environment(scoring_ledger, champion_store, tmp_path), running_server(app) as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        refused = []
        page.on("console", lambda message: refused.append(message.text)
                if "Content Security Policy" in message.text else None)
        page.goto(f"{url}/v1/ui/escalations?as_of={DAY}")
        assert page.url.endswith("/v1/ui/login")
        page.fill("#token", MANAGER)
        page.click("button[type=submit]")
        page.wait_for_url("**/v1/ui/escalations")  # a manager's first page
        page.goto(f"{url}/v1/ui/escalations?as_of={DAY}")

        row = page.locator("tr[data-customer]:not([data-item])").first
        customer = row.get_attribute("data-customer")
        row.locator("button", has_text="Open").click()
        page.wait_for_selector(f"text=opened for {customer}")
        recorded = page.locator(f'tr[data-customer="{customer}"]')
        item_id = recorded.get_attribute("data-item")
        assert item_id and "open" in recorded.inner_text() and "AR Manager" in recorded.inner_text()
        recorded.locator("select[name=decision]").select_option("credit_hold")
        recorded.locator("input[name=note]").fill("stop deliveries")
        recorded.locator("button", has_text="Decide").click()
        page.wait_for_selector(f"text={item_id}: credit_hold (decided)")
        assert "decided credit_hold" in page.locator(f'tr[data-customer="{customer}"]').inner_text()
        page.screenshot(path=SCREENSHOTS / "ui-escalations.png", full_page=True)

        page.locator(f'tr[data-customer="{customer}"] a').first.click()
        page.wait_for_url(f"**/v1/ui/customers/{customer}*")
        assert f"{item_id}: Escalated to AR Manager" in page.inner_text(".escalation")
        assert refused == []
        browser.close()


def test_the_queue_is_ranked_by_deterioration_probability_with_every_reason(served):
    rows = queue(served)
    assert rows, "no customer escalated on the scoring ledger"
    probabilities = [row["deterioration_probability"] for row in rows if row.get("rank") is not None]
    assert probabilities == sorted(probabilities, reverse=True)
    assert [row["rank"] for row in rows if row.get("rank") is not None] == list(range(1, len(probabilities) + 1))
    for row in rows:
        assert row["reason_code"] == row["triggers"][0] and len(row["reasons"]) == len(row["triggers"])
        assert set(row["evidence"]) == set(row["triggers"]) and row["owner"] == "AR Manager"
    assert queue(served, COLLECTOR) == rows  # a collector who sees every portfolio sees the same queue


def test_an_opened_escalation_is_audited_and_shown_in_the_worklist_column(served):
    candidate = unrecorded_candidate(served, 0)
    customer_id = candidate["customer_id"]
    assert worklist_rows(served)[customer_id]["escalation"] is None

    opened = open_escalation(served, customer_id)
    assert opened.status_code == 201, opened.text
    record = opened.json()
    assert (record["queue"], record["status"], record["owner"], record["created_by"]) == (
        "escalation", "open", "AR Manager", "Ana")
    assert record["reason_code"] == candidate["reason_code"]
    assert record["details"]["reasons"] == candidate["reasons"]
    assert (record["opened_date"], record["due_date"]) == (DAY, "2023-06-20")  # the SLA's 5 days
    assert worklist_rows(served)[customer_id]["escalation"] == f"open: {candidate['reason_code']}"
    row = next(row for row in queue(served) if row["customer_id"] == customer_id)
    assert row["item_id"] == record["item_id"] and row["status"] == "open" and row["sla_breached"] is False

    again = open_escalation(served, customer_id, MANAGER)
    assert again.status_code == 409, again.text


def test_only_a_manager_decides_and_a_closed_escalation_leaves_the_worklist(served):
    customer_id = unrecorded_candidate(served, 1)["customer_id"]
    record = open_escalation(served, customer_id).json()
    decision = {"expected_version": record["version"], "decision": "legal", "decided_date": DAY, "note": "to legal"}

    refused = served.post(f"/v1/escalations/{record['item_id']}/decision", json=decision, headers=headers(COLLECTOR))
    assert refused.status_code == 403, refused.text
    assert served.get(f"/v1/escalations/{record['item_id']}", headers=headers()).json()["status"] == "open"

    decided = served.post(f"/v1/escalations/{record['item_id']}/decision", json=decision, headers=headers())
    assert decided.status_code == 200, decided.text
    assert (decided.json()["status"], decided.json()["decision"], decided.json()["version"]) == (
        "decided", "legal", record["version"] + 1)
    assert worklist_rows(served)[customer_id]["escalation"] == f"decided: {record['reason_code']} -> legal"

    stale = served.post(f"/v1/escalations/{record['item_id']}/decision", json=decision, headers=headers())
    assert stale.status_code == 409, stale.text
    closed = served.post(f"/v1/escalations/{record['item_id']}/decision",
                         json={**decision, "expected_version": record["version"] + 1, "close": True},
                         headers=headers())
    assert closed.status_code == 200 and closed.json()["status"] == "closed", closed.text
    assert worklist_rows(served)[customer_id]["escalation"] is None


def test_a_customer_no_rule_escalates_cannot_be_escalated(served):
    escalated = {row["customer_id"] for row in queue(served)}
    quiet = next(customer for customer in sorted(worklist_rows(served)) if customer not in escalated)
    refused = open_escalation(served, quiet)
    assert refused.status_code == 400 and "no escalation rule fires" in refused.text


def test_a_decision_outside_the_list_or_without_a_token_is_refused(served):
    bad = served.post("/v1/escalations/ESC999/decision", json={"expected_version": 1, "decision": "forgive",
                                                               "decided_date": DAY}, headers=headers())
    assert bad.status_code == 422
    assert served.get(f"/v1/escalations?as_of={DAY}").status_code == 401
    assert served.get("/v1/escalations/ESC999", headers=headers()).status_code == 404


def test_the_customer_page_shows_a_live_escalation(served):
    candidate = unrecorded_candidate(served, 2)
    record = open_escalation(served, candidate["customer_id"]).json()
    login = served.get("/v1/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
    served.post("/v1/ui/login", data={"token": COLLECTOR, "csrf": csrf}, follow_redirects=False)
    page = served.get(f"/v1/ui/customers/{candidate['customer_id']}?as_of={DAY}")
    assert page.status_code == 200, page.text
    assert record["item_id"] in page.text and "Escalated to AR Manager" in page.text
    assert candidate["reasons"][0].split(":")[0] in page.text

