"""The web pages under /v1/ui: login into a server-side session, CSRF on every form, field errors, escaping,
scopes, and one scenario in headless Chromium against a real server under the service's Content-Security-
Policy (a recorded promise holds the customer). Attacks on the pages are in tests/test_attacks.py."""

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
from serving.web import AUTH_COOKIE
from tests.browser import chromium
from tests.service_app import service_app

COLLECTOR, CREDIT = "arr_web_collector_token_0123456789", "arr_web_credit_token_0123456789ab"
TREASURY, ADMIN = "arr_web_treasury_token_0123456789", "arr_web_admin_token_0123456789abcd"
OTHER_COLLECTOR = "arr_web_other_collector_token_01234"
# The ledger's collector names (tests.conftest's synthetic ledger): each collector token sees one portfolio.
PORTFOLIO, OTHER_PORTFOLIO = "Anna Berg", "Jonas Weber"
# What the service sends with every response (the API engineer's middleware); the browser test adds it
# itself so that the pages are checked under it whether or not the middleware is there.
CONTENT_SECURITY_POLICY = ("default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                           "form-action 'self'; base-uri 'none'")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "out" / "screenshots"
UI = "/v1/ui"


@contextlib.contextmanager
def service_environment(scoring_ledger, champion_store, folder: Path, **settings: str) -> Iterator[None]:
    """The environment the service reads at start-up: the test ledger, champions, tokens, a fresh store
    and `settings` as ARRISK_* variables (e.g. cookie_secure="always")."""
    from ledger import write_ledger

    write_ledger(scoring_ledger, folder / "ledger")
    tokens = [f"ana:Ana Collector:collector:{hash_token(COLLECTOR)}:{PORTFOLIO}",
              f"jo:Jo Collector:collector:{hash_token(OTHER_COLLECTOR)}:{OTHER_PORTFOLIO}",
              f"cy:Cy Credit:credit:{hash_token(CREDIT)}",
              f"tess:Tess Treasury:treasury:{hash_token(TREASURY)}", f"root:Root:admin:{hash_token(ADMIN)}"]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(f"ARRISK_{name.upper()}", value)
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


def form_csrf(html: str) -> str:
    """The CSRF token of the page's forms (every signed-in page has one in its logout form)."""
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def log_in(client: TestClient, token: str) -> str:
    """Log in through the form (CSRF token included) and return the new session's CSRF token."""
    client.cookies.clear()
    csrf = form_csrf(client.get(f"{UI}/login").text)
    response = client.post(f"{UI}/login", data={"token": token, "csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return form_csrf(client.get(f"{UI}/").text)


def customer_ids(client: TestClient) -> list[str]:
    """Customers on the collector's worklist (their portfolio) at the default date, in rank order."""
    log_in(client, COLLECTOR)
    return re.findall(r'data-customer="([^"]+)"', client.get(f"{UI}/worklist").text)


def test_every_page_redirects_to_login_without_a_valid_cookie(client):
    client.cookies.clear()
    for path in ("/", "/worklist", "/forecast", "/customers/C000001"):
        response = client.get(UI + path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == f"{UI}/login", path
    for forged in ("0" * 64, COLLECTOR):  # an unknown session id; the API token is no session id either
        client.cookies.set(AUTH_COOKIE, forged, path=UI)
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
    assert COLLECTOR not in good.headers["set-cookie"] and "secure" not in cookie  # http and cookie_secure=auto
    worklist = client.get(good.headers["location"])
    assert worklist.status_code == 200 and "Collection worklist" in worklist.text
    logout = client.post(f"{UI}/logout", data={"csrf": form_csrf(worklist.text)}, follow_redirects=False)
    assert logout.status_code == 303 and logout.headers["location"] == f"{UI}/login"
    assert client.get(f"{UI}/worklist", follow_redirects=False).status_code == 303


def test_over_https_the_cookies_are_secure_when_cookie_secure_is_auto(client):
    client.cookies.clear()
    https = "https://testserver" + UI
    form = client.get(f"{https}/login")
    assert "secure" in form.headers["set-cookie"].lower()
    good = client.post(f"{https}/login", data={"token": COLLECTOR, "csrf": form_csrf(form.text)},
                       follow_redirects=False)
    assert good.status_code == 303 and "secure" in good.headers["set-cookie"].lower()
    client.cookies.clear()


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
    # The store's own words, the same the API answers with.
    assert amount and "must be positive" in amount.group(0) and 'value="-5"' in amount.group(0)
    assert 'value="called back"' in response.text
    # A rule across fields is the store's too: it answers when the fields are each fine.
    response = client.post(f"{UI}/customers/{customer}/promises", data={
        "csrf": csrf, "amount": "5", "made_date": "2023-06-30", "promised_date": "2023-06-01"})
    promised = re.search(r'<label for="promise-promised_date">.*?</div>', response.text, re.S).group(0)
    assert response.status_code == 422 and "is before made_date" in promised
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
    csrf = log_in(client, TREASURY)
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


# ---- sessions and the login throttle, alone ---------------------------------------------------------

class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_session_lives_until_its_expiry_or_logout_and_each_has_its_own_csrf_token():
    from serving.auth import Principal
    from serving.sessions import SessionStore

    clock = FakeClock()
    store = SessionStore(lifetime_seconds=60, clock=clock)
    ana = Principal("Ana", "ana", frozenset({"collector"}))
    first, second = store.open(ana), store.open(ana)
    assert first.id != second.id and first.csrf != second.csrf and store.get(first.id) == first
    store.close(first.id)
    assert store.get(first.id) is None and store.get(second.id) == second
    clock.now += 59.9
    assert store.get(second.id) == second
    clock.now += 0.1  # 60 s after the login
    assert store.get(second.id) is None and store.get(None) is None and store.get("") is None
    store.open(ana)
    assert len(store) == 1  # the expired ones were swept at the login


def test_the_login_throttle_locks_a_client_out_for_a_sliding_window():
    from serving.sessions import LoginThrottle

    clock = FakeClock()
    throttle = LoginThrottle(attempts=3, window_seconds=100, clock=clock)
    for _ in range(2):
        throttle.failed("10.0.0.1")
        clock.now += 10
    assert throttle.retry_after("10.0.0.1") == 0
    throttle.failed("10.0.0.1")  # the third failure, at 120: the first was at 100
    assert throttle.retry_after("10.0.0.1") == 80 and throttle.retry_after("10.0.0.2") == 0
    clock.now += 80  # the first failure is a window old: two remain within it
    assert throttle.retry_after("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 10  # until the second failure (at 110) is a window old
    throttle.succeeded("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 0


def test_the_cookie_secure_setting_decides_the_secure_flag():
    from serving.web import cookie_is_secure

    assert [cookie_is_secure(setting, scheme) for setting in ("always", "never", "auto")
            for scheme in ("http", "https")] == [True, True, False, False, False, True]


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


def with_content_security_policy(app):
    """`app` answering every HTTP request with the service's Content-Security-Policy (unless it sends one)."""

    async def wrapped(scope, receive, send):
        async def send_with_policy(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"content-security-policy" for name, _ in headers):
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_policy if scope["type"] == "http" else send)

    return wrapped


def test_a_collector_records_a_promise_in_the_browser_and_the_worklist_holds_the_customer(
        scoring_ledger, champion_store, tmp_path):
    from playwright.sync_api import sync_playwright

    executable = chromium()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    app = with_content_security_policy(service_app())
    with service_environment(scoring_ledger, champion_store, tmp_path), running_server(app) as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        # Chromium reports each thing the policy blocks (an inline style, a script) on the console.
        refused = []
        page.on("console", lambda message: refused.append(message.text)
                if "Content Security Policy" in message.text else None)
        page.goto(f"{url}{UI}/worklist")
        assert page.url.endswith(f"{UI}/login")
        assert "frame-ancestors 'none'" in page.evaluate("fetch(location.href).then(r => r.headers.get("
                                                         "'content-security-policy'))")
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
        # The stylesheet applied under the policy: the header is dark, not the browser's default white.
        assert page.eval_on_selector("header", "e => getComputedStyle(e).backgroundColor") == "rgb(29, 39, 51)"
        assert refused == []
        page.click("nav >> text=Log out")
        page.wait_for_url(f"**{UI}/login")
        page.goto(f"{url}{UI}/worklist")
        assert page.url.endswith(f"{UI}/login")
        browser.close()


def test_worklist_buckets_are_the_aging_reports_overdue_buckets():
    import math

    from rules.aging import AGING_LIMITS, bucket_labels
    from serving.web import BUCKETS

    assert list(BUCKETS) == bucket_labels(AGING_LIMITS)[1:]  # every bucket but Current
    assert BUCKETS["1-30"] == (1, 30) and BUCKETS["31-60"] == (31, 60)
    assert BUCKETS[f"{AGING_LIMITS[-1]}+"] == (AGING_LIMITS[-1] + 1, math.inf)
