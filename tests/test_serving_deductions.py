"""Deductions and SLA clocks through the API and the web pages (issue 21, points 1, 4 and 5): short payments put
into the scoring ledger become candidates with the reason code of their memo line; opening them records
deductions that hold their invoices out of dunning and the worklist; decisions, the report, the SLA clocks,
scopes and refusals; and the page in the browser.

One service for the module: each test works on short payments of its own customers, so what one test records
never changes what another asserts, in any order (the report test reads only figures its own records move)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from starlette.testclient import TestClient

from features.asof import known_at
from features.settlement import document_state
from queues.sla import load_sla_policy
from serving.auth import hash_token
from tests.browser import chromium
from tests.conftest import SCORING_DATE
from tests.service_app import service_app
from tests.test_web import SCREENSHOTS, running_server, with_content_security_policy

CASH, ADMIN, TREASURY = "arr_ded_cash_token_0123456789abcd", "arr_ded_admin_token_0123456789abc", "arr_ded_tre_token_0123456789abcdef"
COLLECTOR, OTHER = "arr_ded_collector_token_012345678", "arr_ded_other_token_0123456789abc"
AS_OF = SCORING_DATE
DAY = f"{AS_OF:%Y-%m-%d}"
SHORT_PAID = pd.Timestamp("2023-06-10")  # the wait of 7 days ends 06-17: a deduction at AS_OF
# Short payment -> its memo line (and what the reason code must be).
# SHORT-DAMAGE comes first: its customer has no other overdue invoice.
MEMOS = {"SHORT-DAMAGE": ("{invoice} damaged goods", "damaged"), "SHORT-PRICE": ("Preisdifferenz RE {invoice}", "pricing"),
         "SHORT-VAT": ("Inv {invoice} VAT not due", "tax"), "SHORT-NONE": ("RE {invoice}", "unknown"),
         "SHORT-WEB": ("Rechnung {invoice} Fehlmenge", "quantity")}
UI = "/v1/ui"


def short_payable_invoices(ledger) -> pd.DataFrame:
    """One invoice per customer, overdue by more than 10 days on SHORT_PAID, over 200, never paid (not even
    later), not disputed, of a customer without a recent promise or a dunning block; the customers whose only
    overdue invoice it is first (their worklist row is held once it is), then the largest."""
    state = document_state(known_at(ledger, SHORT_PAID), SHORT_PAID, 0.005)
    open_items = state[state["is_open"] & state["is_invoice"]]
    overdue = open_items[open_items["due_date"] < SHORT_PAID - pd.Timedelta(days=10)]
    counts = overdue["customer_id"].value_counts()
    promised = set(ledger.promises.loc[ledger.promises["made_date"] >= "2023-04-01", "customer_id"])
    blocked = set(ledger.customers.loc[ledger.customers["dunning_block"].astype(bool), "customer_id"])
    chosen = overdue[(overdue["open_amount"] > 200)
                     & ~overdue["invoice_id"].isin(ledger.payment_applications["invoice_id"])
                     & ~overdue["invoice_id"].isin(ledger.disputes["invoice_id"])
                     & ~overdue["customer_id"].isin(promised | blocked)]
    chosen = chosen.assign(alone=chosen["customer_id"].map(counts) == 1)
    return chosen.sort_values(["alone", "open_amount"], ascending=False).drop_duplicates("customer_id")


@contextmanager
def short_paid_service(scoring_ledger, champion_store, folder: Path) -> Iterator[dict]:
    """The service's environment on the scoring ledger plus one short payment of 90% per MEMOS, each on an
    overdue invoice of a customer of its own (collector COLLECTOR's portfolio: the customer of SHORT-PRICE);
    yields per payment its invoice, customer and the rest it leaves."""
    from ledger import write_ledger

    ledger = scoring_ledger
    invoices = short_payable_invoices(ledger)
    assert len(invoices) >= len(MEMOS) and invoices["alone"].iat[0], "too few never-paid overdue invoices"
    currency = ledger.invoices.set_index("invoice_id")["currency"]
    payments, applications, of = [], [], {}
    for (payment_id, (memo, _)), (_, invoice) in zip(MEMOS.items(), invoices.iterrows(), strict=False):
        paid = round(float(invoice["open_amount"]) * 0.9, 2)
        rate = float(invoice["amount_base"]) / float(invoice["amount"])
        payments.append({"payment_id": payment_id, "customer_id": invoice["customer_id"], "received_date": SHORT_PAID,
                         "amount": paid, "currency": currency[invoice["invoice_id"]],
                         "amount_base": round(paid * rate, 2), "remittance_text": memo.format(invoice=invoice["invoice_id"])})
        applications.append({"payment_id": payment_id, "invoice_id": invoice["invoice_id"], "applied_date": SHORT_PAID,
                             "amount": paid})
        of[payment_id] = {"invoice_id": invoice["invoice_id"], "customer_id": invoice["customer_id"],
                          "rest": round(float(invoice["open_amount"]) - paid, 2)}
    ledger = ledger.replace(
        payments=pd.concat([ledger.payments, pd.DataFrame(payments)], ignore_index=True),
        payment_applications=pd.concat([ledger.payment_applications, pd.DataFrame(applications)], ignore_index=True))
    write_ledger(ledger, folder / "ledger")
    portfolio = of["SHORT-PRICE"]["customer_id"]
    collectors = ledger.customers.set_index("customer_id")["collector"]
    other = next(name for name in collectors.dropna().unique() if name != collectors[portfolio])
    tokens = [f"cas:Casey Cash:cash:{hash_token(CASH)}", f"root:Root:admin:{hash_token(ADMIN)}",
              f"tess:Tess:treasury:{hash_token(TREASURY)}",
              f"ana:Ana:collector:{hash_token(COLLECTOR)}:{collectors[portfolio]}",
              f"bob:Bob:collector:{hash_token(OTHER)}:{other}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARRISK_LEDGER", str(folder / "ledger"))
        patch.setenv("ARRISK_TRACKING_URI", champion_store)
        patch.setenv("ARRISK_API_TOKENS", ",".join(tokens))
        patch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{folder / 'activity.sqlite'}")
        patch.setenv("ARRISK_REPORTS", str(folder / "reports"))
        patch.delenv("ARRISK_TOKENS_FILE", raising=False)
        yield of


@pytest.fixture(scope="module")
def served(scoring_ledger, champion_store, tmp_path_factory):
    """A client of the service on the short-paid ledger, and what each short payment left."""
    with short_paid_service(scoring_ledger, champion_store, tmp_path_factory.mktemp("deductions")) as of, \
            TestClient(service_app(), raise_server_exceptions=False) as client:
        yield client, of


def headers(token: str = CASH) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def candidates(client) -> dict[str, dict]:
    response = client.get(f"/v1/deductions/candidates?as_of={DAY}", headers=headers())
    assert response.status_code == 200, response.text
    return {row["payment_id"]: row for row in response.json()["rows"]}


def opened(client) -> dict[str, dict]:
    """Open every candidate (idempotent: the first call opens, later ones skip) and list the live deductions."""
    response = client.post("/v1/deductions/open", json={"as_of": DAY}, headers=headers())
    assert response.status_code == 201, response.text
    rows = client.get(f"/v1/deductions?as_of={DAY}", headers=headers()).json()["rows"]
    return {row["payment_id"]: row for row in rows}


def worklist_row(client, customer_id: str) -> dict | None:
    rows = client.get(f"/v1/worklist?as_of={DAY}", headers=headers(ADMIN)).json()["rows"]
    return next((row for row in rows if row["customer_id"] == customer_id), None)


def test_short_payments_are_candidates_with_the_reason_code_of_their_memo_line(served):
    client, of = served
    found = candidates(client)
    for payment_id, (_, code) in MEMOS.items():
        row = found[payment_id]
        assert (row["invoice_id"], row["reason_code"]) == (of[payment_id]["invoice_id"], code)
        assert row["amount"] == pytest.approx(of[payment_id]["rest"], abs=0.01)
        assert row["opened_date"] == "2023-06-17"
    assert found["SHORT-PRICE"]["due_date"] == "2023-07-17" and found["SHORT-VAT"]["due_date"] == "2023-07-02"


def test_an_open_deduction_holds_its_invoice_out_of_the_worklist_until_rebilled(served):
    client, of = served
    customer = of["SHORT-DAMAGE"]["customer_id"]  # its only overdue invoice is the short-paid one
    before = worklist_row(client, customer)
    assert before["status"] != "held" and before["overdue_amount_base"] > 0
    deduction = opened(client)["SHORT-DAMAGE"]
    assert (deduction["status"], deduction["reason_code"]) == ("open", "damaged")
    assert deduction["owner"] in ("Logistics Desk", "Key Account Desk")  # by segment first, then reason
    assert deduction["details"]["remittance_text"].endswith("damaged goods")
    # The dunning rules' hold: the deduction is an open dispute of the invoice while it is open or in review.
    held = worklist_row(client, customer)
    hold = f"on hold: open dispute {deduction['item_id']} (deduction: damaged)"
    assert held["status"] == "held" and hold in held.values(), held

    review = client.post(f"/v1/deductions/{deduction['item_id']}/decision",
                         json={"expected_version": 1, "decision": "in_review"}, headers=headers())
    assert review.status_code == 200, review.text
    assert review.json()["status"] == "in_review" and worklist_row(client, customer)["status"] == "held"
    rebilled = client.post(f"/v1/deductions/{deduction['item_id']}/decision",
                           json={"expected_version": 2, "decision": "rebilled", "decided_date": DAY}, headers=headers())
    assert rebilled.status_code == 200, rebilled.text
    assert (rebilled.json()["status"], rebilled.json()["decision"]) == ("invalid", "rebilled")
    # Back to collections: the rest is chased again.
    back = worklist_row(client, customer)
    assert back["status"] != "held" and hold not in back.values()


def open_invoices(client, customer_id: str) -> set[str]:
    view = client.get(f"/v1/customers/{customer_id}?as_of={DAY}", headers=headers(ADMIN))
    assert view.status_code == 200, view.text
    return {row["invoice_id"] for row in view.json()["open_items"]}


def test_a_valid_deduction_closes_its_rest_and_opening_twice_opens_nothing(served):
    client, of = served
    invoice, customer = of["SHORT-VAT"]["invoice_id"], of["SHORT-VAT"]["customer_id"]
    deduction = opened(client)["SHORT-VAT"]
    again = client.post("/v1/deductions/open", json={"as_of": DAY}, headers=headers()).json()
    assert again["count"] == 0 and invoice not in {row["invoice_id"] for row in again["opened"]}
    assert "SHORT-VAT" not in candidates(client)
    assert invoice in open_invoices(client, customer)
    decided = client.post(f"/v1/deductions/{deduction['item_id']}/decision",
                          json={"expected_version": 1, "decision": "credit_memo", "decided_date": DAY}, headers=headers())
    assert decided.status_code == 200, decided.text
    # The valid deduction's credit memo closes the rest: the invoice leaves the open items.
    assert invoice not in open_invoices(client, customer)


def test_decisions_are_refused_with_a_clear_answer(served):
    client, _ = served
    deduction = opened(client)["SHORT-NONE"]
    url = f"/v1/deductions/{deduction['item_id']}/decision"
    no_date = client.post(url, json={"expected_version": 1, "decision": "write_off"}, headers=headers())
    assert no_date.status_code == 400 and "decided_date" in no_date.text
    stale = client.post(url, json={"expected_version": 7, "decision": "in_review"}, headers=headers())
    assert stale.status_code == 409
    unknown = client.post(url, json={"expected_version": 1, "decision": "ignore"}, headers=headers())
    assert unknown.status_code == 422
    assert client.post("/v1/deductions/DED-NONE/decision", json={"expected_version": 1, "decision": "in_review"},
                       headers=headers()).status_code == 404
    assert client.get("/v1/deductions", headers=headers(TREASURY)).status_code == 403


def test_a_collector_sees_and_decides_only_the_deductions_of_its_portfolio(served):
    client, of = served
    deductions = opened(client)
    mine = client.get(f"/v1/deductions?as_of={DAY}", headers=headers(COLLECTOR)).json()["rows"]
    assert of["SHORT-PRICE"]["customer_id"] in {row["customer_id"] for row in mine}
    others = client.get(f"/v1/deductions?as_of={DAY}", headers=headers(OTHER)).json()["rows"]
    assert of["SHORT-PRICE"]["customer_id"] not in {row["customer_id"] for row in others}
    price = deductions["SHORT-PRICE"]
    refused = client.post(f"/v1/deductions/{price['item_id']}/decision",
                          json={"expected_version": price["version"], "decision": "in_review"}, headers=headers(OTHER))
    assert refused.status_code == 403


def test_the_report_counts_the_open_deductions_by_reason_and_age(served):
    client, _ = served
    opened(client)
    report = client.get(f"/v1/deductions/report?as_of={DAY}", headers=headers()).json()
    live = client.get(f"/v1/deductions?as_of={DAY}", headers=headers()).json()["rows"]
    assert report["open_count"] == len(live) == sum(row["count"] for row in report["by_age_and_reason"])
    assert report["open_amount_base"] == pytest.approx(sum(row["amount_base"] for row in report["by_age_and_reason"]))
    by_reason = {row["reason_code"]: row for row in report["by_age_and_reason"]}
    assert by_reason["pricing"]["age_bucket"] == "0-30" and by_reason["pricing"]["count"] >= 1
    # Everything open was opened within the last 90 days: days outstanding at most 90.
    assert 0 < report["days_deduction_outstanding"] <= 90


def test_the_sla_clock_of_a_deduction_breaches_the_day_after_its_due_date(served):
    client, _ = served
    price = opened(client)["SHORT-PRICE"]  # pricing: due 30 days after 06-17, on 07-17

    def clock(day: str) -> dict:
        answer = client.get(f"/v1/sla?as_of={day}&queue=deduction", headers=headers(TREASURY))
        assert answer.status_code == 200, answer.text
        return {row["record_id"]: row for row in answer.json()["records"]}[price["item_id"]]

    assert clock("2023-07-17")["breached"] is False
    day_after = clock("2023-07-18")
    assert day_after["breached"] is True and day_after["is_open"] is True and day_after["days_open"] == 31
    teams = client.get("/v1/sla?as_of=2023-07-18&by=team", headers=headers()).json()["rows"]
    team = load_sla_policy().team(price["owner"])  # Pricing Desk: deductions; Key Account Desk: collections
    desk = next(row for row in teams if row["team"] == team and row["queue"] == "deduction")
    assert desk["breached_open"] >= 1


# ---- the web page --------------------------------------------------------------------------------------

def form_csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def test_the_page_decides_a_deduction_with_its_csrf_token_and_refuses_one_without(served):
    client, _ = served
    client.cookies.clear()
    csrf = form_csrf(client.get(f"{UI}/login").text)
    assert client.post(f"{UI}/login", data={"token": CASH, "csrf": csrf}, follow_redirects=False).status_code == 303
    opened(client)
    page = client.get(f"{UI}/deductions?as_of={DAY}")
    assert page.status_code == 200 and "Deductions" in page.text
    item = re.search(r'data-item="(DED[^"]+)"', page.text).group(1)
    version = re.search(rf'deductions/{item}/decision">.*?name="version" value="(\d+)"', page.text, re.S).group(1)
    form = {"as_of": DAY, "decision": "in_review", "version": version}
    assert client.post(f"{UI}/deductions/{item}/decision", data=form).status_code == 403
    done = client.post(f"{UI}/deductions/{item}/decision", data=form | {"csrf": form_csrf(page.text)},
                       follow_redirects=False)
    assert done.status_code == 303 and "saved=" in done.headers["location"]
    sla = client.get(f"{UI}/sla?as_of={DAY}&by=team")
    assert sla.status_code == 200 and "deductions" in sla.text
    client.cookies.clear()


def test_a_cash_user_opens_and_decides_deductions_in_the_browser(scoring_ledger, champion_store, tmp_path):
    from playwright.sync_api import sync_playwright

    executable = chromium()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    app = with_content_security_policy(service_app())
    with short_paid_service(scoring_ledger, champion_store, tmp_path) as of, running_server(app) as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        refused = []  # what the Content-Security-Policy blocks (an inline style, a script)
        page.on("console", lambda message: refused.append(message.text)
                if "Content Security Policy" in message.text else None)
        page.goto(f"{url}{UI}/deductions?as_of={DAY}")
        assert page.url.endswith(f"{UI}/login")
        page.fill("#token", CASH)
        page.click("button[type=submit]")
        page.click("nav >> text=Deductions")
        page.wait_for_url(f"**{UI}/deductions*")
        page.goto(f"{url}{UI}/deductions?as_of={DAY}")
        invoice = of["SHORT-WEB"]["invoice_id"]
        assert page.locator(f'table.candidates tr[data-invoice="{invoice}"]').count() == 1
        page.click("form[action$='/deductions/open'] button")
        page.wait_for_selector("p.saved")
        assert "deductions opened" in page.inner_text("p.saved")
        row = page.locator("table.deductions tr", has_text=invoice)
        assert "quantity" in row.inner_text() and "Fehlmenge" in row.inner_text()
        page.screenshot(path=SCREENSHOTS / "ui-deductions.png", full_page=True)
        row.locator("button", has_text="Valid: credit memo").click()
        page.wait_for_selector("p.saved")
        assert "credit memo" in page.inner_text("p.saved")
        assert page.locator("table.deductions tr", has_text=invoice).count() == 0  # decided: off the live queue
        page.select_option("select[name=status]", "valid")
        page.click("form.filters button")
        assert page.locator("table.deductions tr", has_text=invoice).count() == 1
        page.click("nav >> text=SLA")
        page.wait_for_url(f"**{UI}/sla*")
        assert page.locator("table.sla tbody tr").count() >= 1
        page.screenshot(path=SCREENSHOTS / "ui-sla.png", full_page=True)
        assert refused == []
        browser.close()
