"""Credit reviews through the API, the web page, the browser and the CLI (issue 21, points 3 and 5): the credit
team's queue with each candidate's recommended limit, formula and inputs; a review opened and decided with the
audit chain; the decided limit becomes the customer's limit, so the next worklist reads the customer over it.

One service for the module: each test opens the review of a customer of its own (candidates apart), so what
one test records never changes what another asserts, in any order."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from tests.browser import chromium
from tests.conftest import SCORING_DATE
from tests.service_app import service_app
from tests.test_web import (
    ADMIN,
    COLLECTOR,
    CREDIT,
    SCREENSHOTS,
    UI,
    form_csrf,
    log_in,
    running_server,
    service_environment,
    with_content_security_policy,
)

DAY = f"{SCORING_DATE:%Y-%m-%d}"


@pytest.fixture(scope="module")
def client(scoring_ledger, champion_store, tmp_path_factory):
    with service_environment(scoring_ledger, champion_store, tmp_path_factory.mktemp("credit")), \
            TestClient(service_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def headers(token: str = CREDIT) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def candidates(client) -> list[dict]:
    response = client.get(f"/v1/credit-reviews?as_of={DAY}&kind=candidate", headers=headers())
    assert response.status_code == 200, response.text
    return response.json()["rows"]


def worklist_rows(client) -> dict[str, dict]:
    rows = client.get(f"/v1/worklist?as_of={DAY}", headers=headers(ADMIN)).json()["rows"]
    return {row["customer_id"]: row for row in rows}


def reasons(row: dict) -> list[str]:
    return [reason for reason in row["reasons"] if reason] if "reasons" in row else [
        row.get(f"reason_{n}") for n in (1, 2, 3) if row.get(f"reason_{n}")]


def test_the_queue_shows_each_candidates_recommended_limit_with_its_formula_and_inputs(client):
    rows = candidates(client)
    assert rows, "the scoring ledger has no credit-review candidate"
    for row in rows:
        assert row["kind"] == "candidate" and row["reason_code"] in ("deteriorating", "near_limit", "new_customer")
        assert row["formula"].startswith(f"{row['recommended_limit']:,.0f} = floor to 1,000 of ")
        assert {"monthly_sales_base", "payment_terms_days", "avg_days_late", "deterioration_probability",
                "safety_factor", "basis"} <= set(row["inputs"]) and row["inputs"]["as_of"] == DAY
    probabilities = [row["deterioration_probability"] for row in rows]
    assert probabilities == sorted(probabilities, reverse=True)
    assert client.get(f"/v1/credit-reviews?as_of={DAY}", headers=headers(COLLECTOR)).status_code == 403


def test_a_decided_lower_limit_is_audited_and_the_next_worklist_reads_the_customer_over_it(client):
    worklist = worklist_rows(client)
    customer = next(row["customer_id"] for row in candidates(client)
                    if row["customer_id"] in worklist and not any("over credit limit" in reason
                                                                  for reason in reasons(worklist[row["customer_id"]])))
    opened = client.post("/v1/credit-reviews", json={"customer_id": customer, "opened_date": DAY}, headers=headers())
    assert opened.status_code == 201, opened.text
    review = opened.json()
    assert customer not in [row["customer_id"] for row in candidates(client)]  # its open review is listed instead
    assert (review["status"], review["owner"], review["created_by"]) == ("open", "Credit Team", "Cy Credit")
    assert review["due_date"] == "2023-07-10"  # 10 days for a credit review (configs/sla/default.yaml)
    assert review["details"]["formula"].startswith(f"{float(review['amount']):,.0f} = ")
    assert review["details"]["inputs"]["as_of"] == DAY
    again = client.post("/v1/credit-reviews", json={"customer_id": customer, "opened_date": DAY}, headers=headers())
    assert again.status_code == 409, again.text

    no_limit = client.post(f"/v1/credit-reviews/{review['item_id']}/decision",
                           json={"expected_version": 1, "decision": "change", "decided_date": DAY}, headers=headers())
    assert no_limit.status_code == 400 and "limit" in no_limit.text
    decided = client.post(f"/v1/credit-reviews/{review['item_id']}/decision",
                          json={"expected_version": 1, "decision": "change", "limit": 1.0, "decided_date": DAY,
                                "note": "cut to a token limit"}, headers=headers())
    assert decided.status_code == 200, decided.text
    assert (decided.json()["decision"], decided.json()["decided_amount"], decided.json()["version"]) == (
        "change", "1.00", 2)
    stale = client.post(f"/v1/credit-reviews/{review['item_id']}/decision",
                        json={"expected_version": 1, "decision": "approve", "decided_date": DAY}, headers=headers())
    assert stale.status_code in (400, 409), stale.text

    shown = client.get(f"/v1/credit-reviews/{review['item_id']}", headers=headers()).json()
    assert (shown["status"], shown["decision"], shown["note"]) == ("decided", "change", "cut to a token limit")
    audit = client.get("/v1/audit/verify", headers=headers(ADMIN)).json()
    assert audit["ok"], audit
    # The customer's limit is 1.00 now: its open receivables are far over it, and the next worklist says so.
    assert any("over credit limit" in reason for reason in reasons(worklist_rows(client)[customer]))
    page = client.get(f"/v1/customers/{customer}?as_of={DAY}", headers=headers(ADMIN)).json()
    assert page["credit_limit"] == 1.0  # the customer view shows the decided limit, not the run's


def test_a_customer_without_a_trigger_gets_no_review(client, scoring_ledger):
    listed = {row["customer_id"] for row in candidates(client)}
    recorded = {row["customer_id"] for row in client.get(f"/v1/credit-reviews?as_of={DAY}&kind=recorded",
                                                         headers=headers()).json()["rows"]}
    quiet = next(c for c in scoring_ledger.customers["customer_id"] if c not in listed | recorded)
    response = client.post("/v1/credit-reviews", json={"customer_id": quiet, "opened_date": DAY}, headers=headers())
    assert response.status_code == 400 and "no credit-review trigger" in response.text


def test_the_credit_team_opens_and_decides_a_review_on_the_page(client):
    csrf = log_in(client, CREDIT)
    page = client.get(f"{UI}/credit-reviews?as_of={DAY}")
    assert page.status_code == 200 and "Credit reviews" in page.text and "monthly sales x" in page.text
    customer = re.findall(r'<tr data-customer="([^"]+)"', page.text)[-1]
    forged = client.post(f"{UI}/credit-reviews/open", data={"csrf": "0" * 64, "as_of": DAY, "customer_id": customer})
    assert forged.status_code == 403
    opened = client.post(f"{UI}/credit-reviews/open", data={"csrf": csrf, "as_of": DAY, "customer_id": customer},
                         follow_redirects=False)
    assert opened.status_code == 303, opened.text
    page = client.get(opened.headers["location"])
    item_id = re.search(rf'data-review="(CRV-[^"]+)" data-customer="{re.escape(customer)}"', page.text).group(1)
    assert f"opened for {customer}" in page.text
    hold = client.post(f"{UI}/credit-reviews/{item_id}/decide",
                       data={"csrf": form_csrf(page.text), "as_of": DAY, "version": "1", "decision": "credit_hold"})
    assert hold.status_code == 200 and f"review {item_id}: credit hold, limit 0.00" in hold.text
    twice = client.post(f"{UI}/credit-reviews/{item_id}/decide",
                        data={"csrf": csrf, "as_of": DAY, "version": "2", "decision": "approve"})
    assert twice.status_code == 422 and "already decided" in twice.text
    log_in(client, COLLECTOR)
    assert client.get(f"{UI}/credit-reviews").status_code == 403


def test_the_cli_lists_opens_and_decides_reviews(scoring_ledger, champion_store, tmp_path):
    import json

    from typer.testing import CliRunner

    from ledger import write_ledger
    from serving.cli import app

    write_ledger(scoring_ledger, tmp_path / "ledger")
    database = f"sqlite:///{tmp_path / 'activity.sqlite'}"
    env = {"ARRISK_DATABASE_URL": database, "ARRISK_AUDIT_KEY": "cli-credit-audit-key-0123456789abcdef"}
    runner = CliRunner()
    common = ["--ledger", str(tmp_path / "ledger"), "--as-of", DAY, "--tracking-uri", champion_store]
    listed = runner.invoke(app, ["credit-reviews", "list", *common, "--out", str(tmp_path / "queue.json")], env=env)
    assert listed.exit_code == 0, listed.output
    rows = json.loads((tmp_path / "queue.json").read_text())
    customer = rows[0]["customer_id"]
    assert rows[0]["kind"] == "candidate" and "monthly_sales_base" in json.loads(rows[0]["inputs"])
    opened = runner.invoke(app, ["credit-reviews", "open", *common, "--customer", customer, "--user", "cy"], env=env)
    assert opened.exit_code == 0, opened.output
    item_id = re.search(r'"item_id": "(CRV-[^"]+)"', opened.output).group(1)
    decided = runner.invoke(app, ["credit-reviews", "decide", "--review", item_id, "--version", "1",
                                  "--decision", "approve", "--decided-date", DAY, "--user", "cy"], env=env)
    assert decided.exit_code == 0, decided.output
    assert '"decision": "approve"' in decided.output
    bad = runner.invoke(app, ["credit-reviews", "decide", "--review", item_id, "--version", "2",
                              "--decision", "raise", "--decided-date", DAY, "--user", "cy"], env=env)
    assert bad.exit_code == 1 and "expected one of approve, change, credit_hold" in bad.output
    shown = runner.invoke(app, ["credit-reviews", "list", *common, "--out", str(tmp_path / "after.json")], env=env)
    assert shown.exit_code == 0, shown.output
    recorded = [row for row in json.loads((tmp_path / "after.json").read_text()) if row["kind"] == "recorded"]
    assert [(row["item_id"], row["status"], row["decision"]) for row in recorded] == [(item_id, "decided", "approve")]
    assert recorded[0]["decided_amount"] == f"{rows[0]['recommended_limit']:.2f}"


def test_the_credit_team_decides_a_review_in_the_browser(scoring_ledger, champion_store, tmp_path):
    from playwright.sync_api import sync_playwright

    executable = chromium()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    app = with_content_security_policy(service_app())
    with service_environment(scoring_ledger, champion_store, tmp_path), running_server(app) as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        refused = []
        page.on("console", lambda message: refused.append(message.text)
                if "Content Security Policy" in message.text else None)
        page.goto(f"{url}{UI}/credit-reviews?as_of={DAY}")
        assert page.url.endswith(f"{UI}/login")
        page.fill("#token", CREDIT)
        page.click("button[type=submit]")
        page.goto(f"{url}{UI}/credit-reviews?as_of={DAY}")
        candidate = page.locator("table.candidates tbody tr").first
        customer = candidate.get_attribute("data-customer")
        candidate.locator("text=Inputs").click()  # the formula's inputs unfold
        assert "monthly_sales_base" in candidate.inner_text()
        candidate.locator("button[type=submit]").click()
        page.wait_for_selector(f"text=opened for {customer}")
        review = page.locator(f'table.reviews tr[data-customer="{customer}"]')
        review.locator("select[name=decision]").select_option("change")
        review.locator("input[name=limit]").fill("25,000")
        review.locator("input[name=note]").fill("limit agreed with sales")
        review.locator("button[type=submit]").click()
        page.wait_for_selector("text=change, limit 25,000.00")
        decided = page.locator(f'table.reviews tr[data-customer="{customer}"]')
        assert decided.get_attribute("class") == "status-decided" and "change: 25,000.00" in decided.inner_text()
        page.screenshot(path=SCREENSHOTS / "ui-credit-reviews.png", full_page=True)
        assert refused == []
        browser.close()
