"""The web pages under /v1/ui: login by token cookie, CSRF on every form, field errors, escaping, scopes,
and one scenario in headless Chromium against a real server (a recorded promise holds the customer)."""

from __future__ import annotations

import contextlib
import datetime
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from serving.auth import hash_token
from serving.web import AUTH_COOKIE, csrf_token
from tests.browser import chromium
from tests.service_app import service_app

COLLECTOR, CREDIT = "arr_web_collector_token_0123456789", "arr_web_credit_token_0123456789ab"
TREASURY, ADMIN = "arr_web_treasury_token_0123456789", "arr_web_admin_token_0123456789abcd"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "out" / "screenshots"
UI = "/v1/ui"


@contextlib.contextmanager
def service_environment(scoring_ledger, champion_store, folder: Path) -> Iterator[None]:
    """The environment the service reads at start-up: the test ledger, champions, tokens and a fresh store."""
    from ledger import write_ledger

    write_ledger(scoring_ledger, folder / "ledger")
    tokens = [f"ana:Ana Collector:collector:{hash_token(COLLECTOR)}", f"cy:Cy Credit:credit:{hash_token(CREDIT)}",
              f"tess:Tess Treasury:treasury:{hash_token(TREASURY)}", f"root:Root:admin:{hash_token(ADMIN)}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARRISK_LEDGER", str(folder / "ledger"))
        patch.setenv("ARRISK_TRACKING_URI", champion_store)
        patch.setenv("ARRISK_API_TOKENS", ",".join(tokens))
        patch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{folder / 'activity.sqlite'}")
        patch.setenv("ARRISK_REPORTS", str(folder / "reports"))
        patch.delenv("ARRISK_TOKENS_FILE", raising=False)
        yield


@pytest.fixture(scope="module")
def client(scoring_ledger, champion_store, tmp_path_factory):
    """One started service for the fast tests (each test uses its own customer, so their writes do not meet)."""
    with service_environment(scoring_ledger, champion_store, tmp_path_factory.mktemp("web")), \
            TestClient(service_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def log_in(client: TestClient, token: str) -> str:
    """Log in through the form (CSRF token included) and return the session cookie's CSRF token."""
    client.cookies.clear()
    form = client.get(f"{UI}/login")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text).group(1)
    response = client.post(f"{UI}/login", data={"token": token, "csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf_token(client.cookies.get(AUTH_COOKIE))


def customer_ids(client: TestClient) -> list[str]:
    """Customers on the whole worklist (as admin) at the default date, in rank order."""
    log_in(client, ADMIN)
    return re.findall(r'data-customer="([^"]+)"', client.get(f"{UI}/worklist?collector=").text)


def test_every_page_redirects_to_login_without_a_valid_cookie(client):
    client.cookies.clear()
    for path in ("/", "/worklist", "/forecast", "/customers/C000001"):
        response = client.get(UI + path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == f"{UI}/login", path
    client.cookies.set(AUTH_COOKIE, "arr_not_a_token", path=UI)
    assert client.get(f"{UI}/worklist", follow_redirects=False).headers["location"] == f"{UI}/login"


def test_a_bad_token_is_refused_and_a_good_one_sets_a_strict_httponly_cookie(client):
    client.cookies.clear()
    form = client.get(f"{UI}/login")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text).group(1)
    bad = client.post(f"{UI}/login", data={"token": "arr_wrong", "csrf": csrf})
    assert bad.status_code == 401 and "That token is not valid" in bad.text
    good = client.post(f"{UI}/login", data={"token": COLLECTOR, "csrf": csrf}, follow_redirects=False)
    cookie = good.headers["set-cookie"].lower()
    assert good.status_code == 303 and "httponly" in cookie and "samesite=strict" in cookie and "path=/v1/ui" in cookie
    worklist = client.get(good.headers["location"])
    assert worklist.status_code == 200 and "Collection worklist" in worklist.text
    assert client.get(f"{UI}/logout", follow_redirects=False).status_code == 303
    assert client.get(f"{UI}/worklist", follow_redirects=False).status_code == 303


def test_the_login_form_needs_its_csrf_token(client):
    client.cookies.clear()
    client.get(f"{UI}/login")
    assert client.post(f"{UI}/login", data={"token": COLLECTOR}).status_code == 403


def test_worklist_filters_by_bucket_and_sorts(client):
    log_in(client, COLLECTOR)
    page = client.get(f"{UI}/worklist?collector=&bucket=31-60&sort=money_at_risk_base&desc=1")
    assert page.status_code == 200
    days = [int(d) for d in re.findall(r'<td class="num dpd">(\d+)</td>', page.text)]
    assert days and all(31 <= d <= 60 for d in days)
    amounts = [float(a.replace(",", "")) for a in re.findall(r'<td class="num risk">([\d,.]+)</td>', page.text)]
    assert amounts == sorted(amounts, reverse=True)


def test_a_post_without_the_csrf_token_is_refused(client):
    customer = customer_ids(client)[0]
    csrf = log_in(client, COLLECTOR)
    form = {"amount": "100.00", "made_date": "2023-06-30", "promised_date": "2023-07-05", "as_of": ""}
    for data in (form, form | {"csrf": "0" * 64}):
        response = client.post(f"{UI}/customers/{customer}/promises", data=data)
        assert response.status_code == 403 and "security token" in response.text
    assert client.get(f"{UI}/customers/{customer}").text.count("None recorded.") == 3
    assert csrf  # the right token would have worked: see the tests below


def test_field_errors_are_shown_next_to_the_field_with_the_values_kept(client):
    customer = customer_ids(client)[1]
    csrf = log_in(client, COLLECTOR)
    response = client.post(f"{UI}/customers/{customer}/promises", data={
        "csrf": csrf, "amount": "-5", "made_date": "2023-06-30", "promised_date": "2023-06-01",
        "note": "called back"})
    assert response.status_code == 422
    amount = re.search(r'<div class="field invalid">\s*<label for="promise-amount">.*?</div>', response.text, re.S)
    assert amount and "more than zero" in amount.group(0) and 'value="-5"' in amount.group(0)
    promised = re.search(r'<label for="promise-promised_date">.*?</div>', response.text, re.S).group(0)
    assert "cannot be before" in promised
    assert 'value="called back"' in response.text
    other = client.post(f"{UI}/customers/{customer}/disputes", data={
        "csrf": csrf, "invoice_id": "INV-NOT-THEIRS", "opened_date": "2023-06-30", "reason_code": "pricing",
        "amount": "10"})
    assert other.status_code == 422 and "Choose one of this customer&#39;s open invoices" in other.text
    contact = client.post(f"{UI}/customers/{customer}/contacts", data={
        "csrf": csrf, "contact_date": "2023-06-30", "channel": "pigeon"})
    assert contact.status_code == 422 and 'id="contact-channel-error"' in contact.text


def test_recorded_text_is_escaped_on_the_customer_page(client):
    customer = customer_ids(client)[2]
    csrf = log_in(client, COLLECTOR)
    attack = "<script>alert('x')</script>"
    promise = client.post(f"{UI}/customers/{customer}/promises", follow_redirects=False, data={
        "csrf": csrf, "amount": "1,000.50", "made_date": "2023-06-30", "promised_date": "2023-07-03", "note": attack})
    assert promise.status_code == 303, promise.text
    contact = client.post(f"{UI}/customers/{customer}/contacts", data={
        "csrf": csrf, "contact_date": "2023-06-30", "channel": "call", "outcome": attack})
    assert contact.status_code == 200 and "The contact was recorded." in contact.text
    assert attack not in contact.text
    assert contact.text.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") == 2
    assert "1,000.50" in contact.text and "Ana Collector" in contact.text


def test_scopes_decide_who_may_record_what(client):
    customer = customer_ids(client)[3]
    dispute = {"opened_date": "2023-06-30", "reason_code": "pricing", "amount": "10"}
    log_in(client, TREASURY)
    csrf = csrf_token(client.cookies.get(AUTH_COOKIE))
    refused = client.post(f"{UI}/customers/{customer}/promises", data={
        "csrf": csrf, "amount": "100", "made_date": "2023-06-30", "promised_date": "2023-07-05"})
    assert refused.status_code == 403 and "Not allowed" in refused.text
    assert client.get(f"{UI}/forecast").status_code == 200
    csrf = log_in(client, CREDIT)
    page = client.get(f"{UI}/customers/{customer}")
    assert 'id="dispute-form"' in page.text and 'id="promise-form"' not in page.text
    invoice = re.search(r'<option value="([^"]+)">', page.text).group(1)
    assert client.post(f"{UI}/customers/{customer}/disputes", data={"csrf": csrf, "invoice_id": invoice, **dispute},
                       follow_redirects=False).status_code == 303
    assert client.post(f"{UI}/customers/{customer}/contacts", data={
        "csrf": csrf, "contact_date": "2023-06-30", "channel": "call"}).status_code == 403
    assert client.get(f"{UI}/worklist").status_code == 403


def test_the_forecast_page_draws_the_band_and_the_baseline(client):
    log_in(client, TREASURY)
    page = client.get(f"{UI}/forecast")
    assert page.status_code == 200 and "<polygon" in page.text and page.text.count("<polyline") == 2
    assert page.text.count("<tr><td>") == 13


# ---- a real server and a real browser --------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_server(app) -> Iterator[str]:
    """Serve `app` with uvicorn on a free local port in a thread; yield its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_collector_records_a_promise_in_the_browser_and_the_worklist_holds_the_customer(
        scoring_ledger, champion_store, tmp_path):
    from playwright.sync_api import sync_playwright

    executable = chromium()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with service_environment(scoring_ledger, champion_store, tmp_path), running_server(service_app()) as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}{UI}/worklist")
        assert page.url.endswith(f"{UI}/login")
        page.screenshot(path=SCREENSHOTS / "ui-login.png", full_page=True)
        page.fill("#token", ADMIN)
        page.click("button[type=submit]")
        page.wait_for_url(f"**{UI}/worklist")
        page.screenshot(path=SCREENSHOTS / "ui-worklist.png", full_page=True)

        active = page.locator("tr.status-active")
        row = active.nth(active.count() // 2)
        customer = row.get_attribute("data-customer")
        row.locator("a").first.click()
        page.wait_for_url(f"**{UI}/customers/{customer}*")
        as_of = datetime.date.fromisoformat(page.input_value("#promise-made_date"))
        page.fill("#promise-amount", "1000000000")
        page.fill("#promise-promised_date", (as_of + datetime.timedelta(days=5)).isoformat())
        page.fill("#promise-note", "pays after the board meeting")
        page.click("#promise-form button[type=submit]")
        page.wait_for_selector("text=The promise was recorded.")
        page.screenshot(path=SCREENSHOTS / "ui-customer.png", full_page=True)

        page.click("nav >> text=Worklist")
        held = page.locator(f'tr[data-customer="{customer}"]')
        assert held.get_attribute("class") == "status-held"
        assert "pending promise" in held.inner_text()
        page.click("nav >> text=Forecast")
        page.wait_for_selector("svg.chart polyline")
        page.screenshot(path=SCREENSHOTS / "ui-forecast.png", full_page=True)
        browser.close()
