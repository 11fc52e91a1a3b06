"""Attacks on the web pages (issue 14), each replayed against the ASGI app: login brute force, a session
cookie reused after logout or after it expired, session fixation, a CSRF token of another session, cookies
without Secure behind a TLS proxy, absurd amounts and dates, as_of extremes, another collector's customer,
over-long text and HTML in a note. Each answer must be a 4xx page (never a 500) and nothing may be stored.
(To be merged into tests/test_attacks.py.)"""

from __future__ import annotations

import re

import bentoml
import pytest
from starlette.testclient import TestClient

from serving.web import AUTH_COOKIE, LOGIN_COOKIE, web_state
from tests.service_app import service_app
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

ATTEMPTS, WINDOW_SECONDS, SESSION_MINUTES, MAX_TEXT = 3, 600, 30, 100
HTTPS = "https://testserver"  # cookie_secure=always: the test client sends the cookies back over https only


@pytest.fixture(scope="module")
def client(scoring_ledger, champion_store, tmp_path_factory):
    """A service behind a (pretend) TLS proxy with a small login limit and short sessions."""
    settings = {"cookie_secure": "always", "login_attempts": str(ATTEMPTS),
                "login_window_seconds": str(WINDOW_SECONDS), "session_minutes": str(SESSION_MINUTES),
                "max_text_chars": str(MAX_TEXT)}
    with service_environment(scoring_ledger, champion_store, tmp_path_factory.mktemp("attacks"), **settings), \
            TestClient(service_app(), base_url=HTTPS, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def service(client):
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
    # Whatever a test left locked out is forgotten: the next test's client is the same address.
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


# ---- login and sessions --------------------------------------------------------------------------------

def test_login_brute_force_is_locked_out_for_the_window_even_with_the_right_token(client, clock):
    client.cookies.clear()
    csrf = login_form_csrf(client)
    for attempt in range(ATTEMPTS):
        assert try_login(client, f"arr_guess_{attempt}", csrf).status_code == 401
    locked = try_login(client, COLLECTOR, csrf)
    assert locked.status_code == 429 and "Too many failed logins" in locked.text
    assert 0 < int(locked.headers["retry-after"]) <= WINDOW_SECONDS
    assert AUTH_COOKIE not in locked.headers.get("set-cookie", "")
    clock.now += WINDOW_SECONDS - 1
    assert try_login(client, COLLECTOR, csrf).status_code == 429  # still within the window
    clock.now += 2
    assert try_login(client, COLLECTOR, csrf).status_code == 303


def test_a_good_login_resets_the_count_of_failures(client, clock):
    client.cookies.clear()
    csrf = login_form_csrf(client)
    for _ in range(ATTEMPTS - 1):
        assert try_login(client, "arr_guess", csrf).status_code == 401
    assert try_login(client, COLLECTOR, csrf).status_code == 303
    client.cookies.clear()
    csrf = login_form_csrf(client)
    for _ in range(ATTEMPTS - 1):  # ATTEMPTS - 1 failures after the success: not locked out yet
        assert try_login(client, "arr_guess", csrf).status_code == 401
    assert try_login(client, COLLECTOR, csrf).status_code == 303


def test_the_session_cookie_is_a_random_id_that_stops_working_after_logout(client, clock):
    csrf = log_in(client, COLLECTOR)
    session_id = client.cookies.get(AUTH_COOKIE)
    assert COLLECTOR not in session_id and re.fullmatch(r"[0-9a-f]{64}", session_id)
    logout = client.post(f"{UI}/logout", data={"csrf": csrf}, follow_redirects=False)
    assert logout.status_code == 303
    client.cookies.set(AUTH_COOKIE, session_id, path=UI)  # the stolen or kept copy of the cookie
    replay = client.get(f"{UI}/worklist", follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"] == f"{UI}/login"


def test_a_session_ends_after_session_minutes(client, clock):
    log_in(client, COLLECTOR)
    clock.now += SESSION_MINUTES * 60 - 1
    assert client.get(f"{UI}/worklist", follow_redirects=False).status_code == 200
    clock.now += 1
    assert client.get(f"{UI}/worklist", follow_redirects=False).headers["location"] == f"{UI}/login"


def test_every_login_gets_a_new_session_id_and_csrf_token_and_a_planted_id_is_not_kept(client, clock):
    client.cookies.clear()
    csrf = login_form_csrf(client)
    planted = "a" * 64  # an attacker's cookie set before the victim logs in (session fixation)
    cookies = f"{AUTH_COOKIE}={planted}; {LOGIN_COOKIE}={client.cookies.get(LOGIN_COOKIE)}"
    response = client.post(f"{UI}/login", data={"token": COLLECTOR, "csrf": csrf}, headers={"cookie": cookies},
                           follow_redirects=False)
    assert response.status_code == 303
    first_id, first_csrf = client.cookies.get(AUTH_COOKIE), form_csrf(client.get(f"{UI}/").text)
    # Logging in again from the same browser (it still sends the first session's cookie):
    assert try_login(client, COLLECTOR, login_form_csrf(client)).status_code == 303
    second_id, second_csrf = client.cookies.get(AUTH_COOKIE), form_csrf(client.get(f"{UI}/").text)
    assert planted not in (first_id, second_id) and first_id != second_id and first_csrf != second_csrf
    for old in (planted, first_id):  # the planted id never worked; the first session ended at the second login
        replay = client.get(f"{UI}/worklist", headers={"cookie": f"{AUTH_COOKIE}={old}"}, follow_redirects=False)
        assert replay.headers["location"] == f"{UI}/login"


def test_a_csrf_token_of_another_session_is_refused(client, clock, service, scoring_ledger):
    customer = portfolio_customers(scoring_ledger, PORTFOLIO)[0]
    other_csrf = log_in(client, COLLECTOR)
    log_in(client, COLLECTOR)
    response = client.post(f"{UI}/customers/{customer}/contacts", data={
        "csrf": other_csrf, "contact_date": "2023-06-30", "channel": "call", "outcome": "forged"})
    assert response.status_code == 403 and "security token" in response.text
    assert service.state.store.list_contacts(customer) == []


def test_behind_a_tls_proxy_the_cookies_are_secure_even_over_http(client, clock):
    client.cookies.clear()
    http = "http://testserver" + UI  # what the service sees behind a proxy that ends TLS
    form = client.get(f"{http}/login")
    assert LOGIN_COOKIE in form.headers["set-cookie"] and "secure" in form.headers["set-cookie"].lower()
    # The pre-login cookie was Secure, so the client keeps it for https only: hand it over by hand.
    nonce = re.search(rf"{LOGIN_COOKIE}=([0-9a-f]+)", form.headers["set-cookie"]).group(1)
    good = client.post(f"{http}/login", data={"token": COLLECTOR, "csrf": form_csrf(form.text)},
                       headers={"cookie": f"{LOGIN_COOKIE}={nonce}"}, follow_redirects=False)
    session_cookie = [c for c in good.headers.get_list("set-cookie") if c.startswith(f"{AUTH_COOKIE}=")]
    assert good.status_code == 303 and len(session_cookie) == 1 and "secure" in session_cookie[0].lower()


# ---- bad input on the forms --------------------------------------------------------------------------

@pytest.mark.parametrize(("amount", "message"), [
    ("1e30", "at most"), ("NaN", "Enter an amount"), ("Infinity", "Enter an amount"),
    ("-1", "more than zero"), ("1e-5", "At most two decimals")])
def test_an_absurd_promise_amount_redisplays_the_form_and_stores_nothing(client, clock, service, scoring_ledger,
                                                                         amount, message):
    customer = portfolio_customers(scoring_ledger, PORTFOLIO)[1]
    csrf = log_in(client, COLLECTOR)
    response = client.post(f"{UI}/customers/{customer}/promises", data={
        "csrf": csrf, "amount": amount, "made_date": "2023-06-30", "promised_date": "2023-07-05"})
    assert response.status_code == 422
    field = re.search(r'<label for="promise-amount">.*?</div>', response.text, re.S).group(0)
    assert message in field and f'value="{amount}"' in field
    assert service.state.store.list_promises(customer) == []


@pytest.mark.parametrize("when", ["9999-12-31", "0001-01-01"])
def test_records_dated_outside_the_ledger_window_are_refused_and_nothing_is_stored(client, clock, service,
                                                                                   scoring_ledger, when):
    customer = portfolio_customers(scoring_ledger, PORTFOLIO)[2]
    csrf = log_in(client, COLLECTOR)
    contact = client.post(f"{UI}/customers/{customer}/contacts", data={
        "csrf": csrf, "contact_date": when, "channel": "call", "outcome": "far away"})
    assert contact.status_code == 422 and 'id="contact-contact_date-error"' in contact.text
    promise = client.post(f"{UI}/customers/{customer}/promises", data={
        "csrf": csrf, "amount": "10", "made_date": "2023-06-30", "promised_date": when})
    assert promise.status_code == 422 and 'id="promise-promised_date-error"' in promise.text
    invoice = re.search(r'<option value="([^"]+)">', contact.text).group(1)
    dispute = client.post(f"{UI}/customers/{customer}/disputes", data={
        "csrf": csrf, "invoice_id": invoice, "opened_date": when, "reason_code": "pricing", "amount": "10"})
    assert dispute.status_code == 422 and 'id="dispute-opened_date-error"' in dispute.text
    store = service.state.store
    assert store.list_contacts(customer) == store.list_promises(customer) == store.list_disputes(customer) == []
    assert client.get(f"{UI}/worklist").status_code == 200  # and the pages still work


def test_text_longer_than_max_text_chars_is_refused(client, clock, service, scoring_ledger):
    customer = portfolio_customers(scoring_ledger, PORTFOLIO)[3]
    csrf = log_in(client, COLLECTOR)
    response = client.post(f"{UI}/customers/{customer}/contacts", data={
        "csrf": csrf, "contact_date": "2023-06-30", "channel": "call", "note": "x" * (MAX_TEXT + 1)})
    assert response.status_code == 422 and f"At most {MAX_TEXT} characters" in response.text
    assert service.state.store.list_contacts(customer) == []


@pytest.mark.parametrize("when", ["2262-04-11", "2262-04-12", "2262-01-01", "2100-01-01", "1900-01-01"])
def test_as_of_far_outside_the_ledger_is_a_400_page_naming_the_range(client, clock, service, scoring_ledger, when):
    first, last = service.state.as_of_range()
    customer = portfolio_customers(scoring_ledger, PORTFOLIO)[0]
    log_in(client, ADMIN)
    for path in ("/worklist", f"/customers/{customer}", "/forecast"):
        response = client.get(f"{UI}{path}?as_of={when}")
        assert response.status_code == 400, (path, response.text[-300:])
        assert "Bad request" in response.text and f"{first:%Y-%m-%d}" in response.text
        assert f"{last:%Y-%m-%d}" in response.text


def test_an_unreadable_as_of_is_a_400_page(client, clock):
    log_in(client, TREASURY)
    for text in ("tomorrow", "2023-02-30", "9" * 5000):
        response = client.get(f"{UI}/forecast", params={"as_of": text})
        assert response.status_code == 400 and "is not a date (expected YYYY-MM-DD)" in response.text


# ---- portfolios ----------------------------------------------------------------------------------------

def test_a_collector_sees_and_changes_only_their_portfolio(client, clock, service, scoring_ledger):
    mine = set(portfolio_customers(scoring_ledger, PORTFOLIO))
    theirs = portfolio_customers(scoring_ledger, OTHER_PORTFOLIO)[0]
    csrf = log_in(client, COLLECTOR)
    assert set(worklist_customers(client)) <= mine
    assert set(re.findall(r'data-customer="([^"]+)"', client.get(f"{UI}/worklist?collector=").text)) <= mine
    assert client.get(f"{UI}/worklist", params={"collector": OTHER_PORTFOLIO}).status_code == 403
    page = client.get(f"{UI}/customers/{theirs}")
    assert page.status_code == 403 and "not in your portfolio" in page.text and "Not allowed" in page.text
    promise = client.post(f"{UI}/customers/{theirs}/promises", data={
        "csrf": csrf, "amount": "10", "made_date": "2023-06-30", "promised_date": "2023-07-05"})
    assert promise.status_code == 403 and service.state.store.list_promises(theirs) == []
    log_in(client, ADMIN)  # the page itself works: the 403 was the portfolio's
    assert client.get(f"{UI}/customers/{theirs}").status_code == 200


def test_html_in_a_note_is_rendered_escaped(client, clock, scoring_ledger):
    customer = portfolio_customers(scoring_ledger, PORTFOLIO)[4]
    csrf = log_in(client, COLLECTOR)
    attack = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
    saved = client.post(f"{UI}/customers/{customer}/contacts", data={
        "csrf": csrf, "contact_date": "2023-06-30", "channel": "call", "note": attack, "outcome": attack})
    assert saved.status_code == 200 and "The contact was recorded." in saved.text
    assert "<img src=x" not in saved.text and "<script>alert" not in saved.text
    assert saved.text.count("&#34;&gt;&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;") == 2
