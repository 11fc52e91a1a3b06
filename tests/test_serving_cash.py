"""Cash application through the API (issue 20, point 4): a bank payment nobody has applied makes a paid
invoice look overdue; a cash-application user confirms the matcher's proposal, the application is recorded
with the audit chain, and the next worklist sees the invoice paid. Rejections, changes, scope and refusals."""

from __future__ import annotations

import pandas as pd
import pytest
from starlette.testclient import TestClient

from features.asof import known_at
from features.settlement import document_state
from serving.auth import hash_token
from tests.service_app import service_app

CASH, COLLECTOR, ADMIN = "arr_cash_application_token_0123", "arr_cash_collector_token_01234567", "arr_cash_admin_token_0123456789"
AS_OF = pd.Timestamp("2023-06-15")


def overdue_invoices(ledger) -> pd.DataFrame:
    """Overdue invoices on AS_OF of customers with at least two of them, largest first."""
    state = document_state(known_at(ledger, AS_OF), AS_OF, 0.005)
    overdue = state[state["is_open"] & state["is_invoice"] & (state["due_date"] < AS_OF - pd.Timedelta(days=10))]
    counts = overdue["customer_id"].value_counts()
    several = overdue[overdue["customer_id"].isin(counts[counts >= 2].index)]
    return several.sort_values("open_amount", ascending=False)


def overdue_invoice(ledger) -> pd.Series:
    """The largest overdue invoice on AS_OF of a customer with at least two overdue invoices."""
    return overdue_invoices(ledger).iloc[0]


def short_paid_invoice(ledger) -> pd.Series:
    """An overdue invoice of another customer, of more than 2,000, in the same currency as the first."""
    candidates = overdue_invoices(ledger)
    first = candidates.iloc[0]
    currency = ledger.invoices.set_index("invoice_id")["currency"]
    others = candidates[(candidates["customer_id"] != first["customer_id"]) & (candidates["open_amount"] > 2000)
                        & (candidates["invoice_id"].map(currency) == currency[first["invoice_id"]])]
    return others.iloc[0]


@pytest.fixture()
def served(scoring_ledger, champion_store, tmp_path):
    """The scoring ledger plus two bank payments not applied yet: one paying an overdue invoice in full and
    quoting it, one from a payer nobody knows; and a client of the service on it."""
    from ledger import write_ledger
    from ledger.remittance import with_remittance

    # The ranker learns what memo lines are worth from past payments: give them the bank's remittance data.
    scoring_ledger, _ = with_remittance(scoring_ledger, 5)
    invoice = overdue_invoice(scoring_ledger)
    customer = scoring_ledger.customers.set_index("customer_id").loc[invoice["customer_id"]]
    currency = scoring_ledger.invoices.set_index("invoice_id").at[invoice["invoice_id"], "currency"]
    short = short_paid_invoice(scoring_ledger)
    short_customer = scoring_ledger.customers.set_index("customer_id").loc[short["customer_id"]]
    bank = pd.DataFrame([
        {"payment_id": "BANK-1", "customer_id": None, "received_date": AS_OF - pd.Timedelta(days=1),
         "amount": round(float(invoice["open_amount"]), 2), "currency": currency,
         "amount_base": round(float(invoice["open_amount_base"]), 2), "payer_name": str(customer["name"]).upper(),
         "payer_account": "DE00123456780000000001", "remittance_text": f"Rechnung {invoice['invoice_id']}"},
        {"payment_id": "BANK-3", "customer_id": None, "received_date": AS_OF - pd.Timedelta(days=1),
         "amount": round(float(short["open_amount"]) - 300, 2), "currency": currency,
         "amount_base": round(float(short["open_amount"]) - 300, 2), "payer_name": str(short_customer["name"]),
         "payer_account": "DE00123456780000000003", "remittance_text": f"RE {short['invoice_id']}"},
        {"payment_id": "BANK-2", "customer_id": None, "received_date": AS_OF - pd.Timedelta(days=1),
         "amount": 123.45, "currency": currency, "amount_base": 123.45, "payer_name": "Nobody Known Ltd",
         "payer_account": "GB00NOBODY000000000000", "remittance_text": "PAYMENT"},
    ])
    ledger = scoring_ledger.replace(payments=pd.concat([scoring_ledger.payments, bank], ignore_index=True))
    write_ledger(ledger, tmp_path / "ledger")
    tokens = [f"cas:Casey Cash:cash:{hash_token(CASH)}", f"ana:Ana:collector+all_portfolios:{hash_token(COLLECTOR)}",
              f"root:Root:admin:{hash_token(ADMIN)}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARRISK_LEDGER", str(tmp_path / "ledger"))
        patch.setenv("ARRISK_TRACKING_URI", champion_store)
        patch.setenv("ARRISK_API_TOKENS", ",".join(tokens))
        patch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{tmp_path / 'activity.sqlite'}")
        patch.setenv("ARRISK_REPORTS", str(tmp_path / "reports"))
        patch.delenv("ARRISK_TOKENS_FILE", raising=False)
        with TestClient(service_app(), raise_server_exceptions=False) as client:
            yield client, invoice, short


def headers(token: str = CASH) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def worklist_row(client, customer_id: str) -> dict | None:
    rows = client.get(f"/v1/worklist?as_of={AS_OF:%Y-%m-%d}", headers=headers(ADMIN)).json()["rows"]
    return next((row for row in rows if row["customer_id"] == customer_id), None)


def proposals(client) -> dict[str, dict]:
    response = client.get(f"/v1/cash/proposals?as_of={AS_OF:%Y-%m-%d}", headers=headers())
    assert response.status_code == 200, response.text
    return {row["payment_id"]: row for row in response.json()["rows"]}


def test_a_confirmed_application_is_audited_and_the_next_worklist_sees_the_invoice_paid(served):
    client, invoice, _ = served
    before = worklist_row(client, invoice["customer_id"])
    assert before is not None and before["overdue_amount_base"] >= invoice["open_amount_base"] - 0.01

    proposal = proposals(client)["BANK-1"]
    assert proposal["customer_id"] == invoice["customer_id"] and proposal["identified_by"] == "name"
    assert [line["invoice_id"] for line in proposal["lines"]] == [invoice["invoice_id"]]
    assert proposal["decision"] in {"auto", "proposed"}

    confirmed = client.post("/v1/cash/applications", json={"payment_id": "BANK-1", "applied_date": f"{AS_OF:%Y-%m-%d}"},
                            headers=headers())
    assert confirmed.status_code == 201, confirmed.text
    assert confirmed.json()["decision"] == "confirmed"
    assert [line["created_by"] for line in confirmed.json()["lines"]] == ["Casey Cash"]

    after = worklist_row(client, invoice["customer_id"])
    overdue_after = 0.0 if after is None else after["overdue_amount_base"]
    assert overdue_after == pytest.approx(before["overdue_amount_base"] - invoice["open_amount_base"], abs=0.02)
    # The payment has left the proposals; applying it again is a conflict; the audit chain holds.
    assert "BANK-1" not in proposals(client)
    again = client.post("/v1/cash/applications", json={"payment_id": "BANK-1", "applied_date": f"{AS_OF:%Y-%m-%d}",
                                                       "lines": [{"invoice_id": invoice["invoice_id"], "amount": "1.00"}]},
                        headers=headers())
    assert again.status_code == 409, again.text
    audit = client.get("/v1/audit/verify", headers=headers(ADMIN)).json()
    assert audit["ok"], audit


def test_an_unknown_payer_is_unmatched_and_a_rejection_is_shown_with_its_reason(served):
    client, _, _ = served
    unknown = proposals(client)["BANK-2"]
    assert unknown["decision"] == "unmatched" and unknown["reason"].startswith("payer not identified")
    rejected = client.post("/v1/cash/rejections", json={"payment_id": "BANK-1", "note": "paid for another company",
                                                         "applied_date": f"{AS_OF:%Y-%m-%d}"}, headers=headers())
    assert rejected.status_code == 201, rejected.text
    shown = proposals(client)["BANK-1"]
    assert shown["rejected_by"] == "Casey Cash" and shown["rejection_note"] == "paid for another company"


def test_a_changed_application_is_checked_against_what_the_documents_owe(served):
    client, invoice, _ = served
    too_much = {"payment_id": "BANK-2", "applied_date": f"{AS_OF:%Y-%m-%d}",
                "lines": [{"invoice_id": invoice["invoice_id"], "amount": "500.00"}]}
    response = client.post("/v1/cash/applications", json=too_much, headers=headers())
    assert response.status_code == 400 and "more than payment BANK-2" in response.text
    unknown = client.post("/v1/cash/applications", json={**too_much, "lines": [{"invoice_id": "NOPE", "amount": "1"}]},
                          headers=headers())
    assert unknown.status_code == 404 and "NOPE" in unknown.text
    part = client.post("/v1/cash/applications", json={**too_much, "lines": [{"invoice_id": invoice["invoice_id"],
                                                                             "amount": "100.00"}]}, headers=headers())
    assert part.status_code == 201, part.text
    assert part.json()["decision"] == "changed" and part.json()["lines"][0]["applied_amount"] == "100.00"


def test_confirming_a_short_payment_opens_a_deduction_for_what_is_left(served):
    client, _, short = served
    proposal = proposals(client)["BANK-3"]
    assert proposal["decision"] != "unmatched", proposal["reason"]
    assert proposal["residual"] == pytest.approx(-300.0) and proposal["deduction_reason"] == "short payment"
    confirmed = client.post("/v1/cash/applications", json={"payment_id": "BANK-3", "applied_date": f"{AS_OF:%Y-%m-%d}"},
                            headers=headers())
    assert confirmed.status_code == 201, confirmed.text
    deduction = confirmed.json()["deduction"]
    assert (deduction["invoice_id"], deduction["reason_code"], deduction["amount"]) == (
        short["invoice_id"], "deduction: short payment", "300.00")
    disputes = client.get(f"/v1/disputes?customer_id={short['customer_id']}", headers=headers(ADMIN)).json()["rows"]
    assert [row["reason_code"] for row in disputes] == ["deduction: short payment"]


def test_unapplied_cash_lists_each_payment_with_the_matchers_reason(served):
    client, _, _ = served
    rows = client.get(f"/v1/cash/unapplied?as_of={AS_OF:%Y-%m-%d}", headers=headers()).json()["rows"]
    by_id = {row["payment_id"]: row for row in rows}
    assert by_id["BANK-2"]["customer_id"] == "(unidentified payer)" and by_id["BANK-2"]["age_days"] == 1
    assert by_id["BANK-2"]["reason"].startswith("unmatched: payer not identified")
    assert by_id["BANK-1"]["reason"].startswith(("the matcher applies it", "awaiting review"))


def test_cash_application_needs_the_cash_scope(served):
    client, _, _ = served
    assert client.get("/v1/cash/proposals", headers=headers(COLLECTOR)).status_code == 403
    assert client.post("/v1/cash/applications", json={"payment_id": "BANK-1"}, headers=headers(COLLECTOR)).status_code == 403
    assert client.get("/v1/cash/proposals").status_code == 401


def web_login(client) -> str:
    """Log the cash token in to the web pages; the CSRF token of the page it lands on."""
    import re

    form = client.get("/v1/ui/login").text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form).group(1)
    landed = client.post("/v1/ui/login", data={"token": CASH, "csrf": csrf})
    assert landed.status_code == 200 and "Cash application" in landed.text, landed.text[:300]
    return re.search(r'name="csrf" value="([0-9a-f]+)"', landed.text).group(1)


def test_the_cash_page_lists_proposals_and_confirms_one(served):
    client, invoice, _ = served
    csrf = web_login(client)
    page = client.get(f"/v1/ui/cash?as_of={AS_OF:%Y-%m-%d}")
    assert page.status_code == 200
    assert 'data-payment="BANK-1"' in page.text and invoice["invoice_id"] in page.text
    refused = client.post("/v1/ui/cash/BANK-2/change", data={"csrf": csrf, "as_of": f"{AS_OF:%Y-%m-%d}",
                                                             "lines": f"{invoice['invoice_id']}=500"})
    assert refused.status_code == 422 and "more than payment BANK-2" in refused.text
    done = client.post("/v1/ui/cash/BANK-1/confirm", data={"csrf": csrf, "as_of": f"{AS_OF:%Y-%m-%d}"})
    assert done.status_code == 200 and "BANK-1 applied as proposed" in done.text
    assert 'data-payment="BANK-1"' not in done.text
    forged = client.post("/v1/ui/cash/BANK-2/reject", data={"csrf": "0" * 64, "as_of": f"{AS_OF:%Y-%m-%d}",
                                                            "note": "x"})
    assert forged.status_code == 403
    assert client.get("/v1/cash/applications?payment_id=BANK-1", headers=headers()).json()["count"] == 1
