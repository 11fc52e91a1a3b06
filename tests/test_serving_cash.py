"""Cash application through the API and the web page (issue 20, points 4 and 5): a bank payment nobody has
applied makes a paid invoice look overdue; a cash-application user confirms the matcher's proposal, the
application is recorded with the audit chain, and the next worklist sees the invoice paid. Short payments
open a deduction; rejections, changes, scope, refusals and the unapplied cash report.

One service for the module: each test works on bank payments and invoices of its own (customers apart), so
what one test records never changes what another asserts, in any order."""

from __future__ import annotations

import re
import zlib

import pandas as pd
import pytest
from starlette.testclient import TestClient

from features.asof import known_at
from features.settlement import document_state
from ledger.schema import UNIDENTIFIED_PAYER as UNIDENTIFIED
from serving.auth import hash_token
from tests.service_app import service_app

CASH, COLLECTOR, ADMIN = "arr_cash_application_token_0123", "arr_cash_collector_token_01234567", "arr_cash_admin_token_0123456789"
AS_OF = pd.Timestamp("2023-06-15")
DAY = f"{AS_OF:%Y-%m-%d}"
# Bank payment -> what it pays: the full open amount of its invoice ("full"), 300 less ("short").
PAYMENTS = {"BANK-CONFIRM": "full", "BANK-SHORT": "short", "BANK-WEB": "full", "BANK-CHANGE": "none",
            "BANK-UNKNOWN": "none"}


def overdue_invoices(ledger) -> pd.DataFrame:
    """One overdue invoice over 2,000 per customer with at least two overdue, in the most common currency,
    largest first."""
    state = document_state(known_at(ledger, AS_OF), AS_OF, 0.005)
    overdue = state[state["is_open"] & state["is_invoice"] & (state["due_date"] < AS_OF - pd.Timedelta(days=10))
                    & (state["open_amount"] > 2000)]
    counts = overdue["customer_id"].value_counts()
    overdue = overdue[overdue["customer_id"].isin(counts[counts >= 2].index)]
    currency = overdue["invoice_id"].map(ledger.invoices.set_index("invoice_id")["currency"])
    overdue = overdue.assign(currency=currency)[currency == currency.mode().iloc[0]]
    return overdue.sort_values("open_amount", ascending=False).drop_duplicates("customer_id")


def bank_line(payment_id: str, invoice: pd.Series, name: str, amount: float, text: str) -> dict:
    return {"payment_id": payment_id, "customer_id": None, "received_date": AS_OF - pd.Timedelta(days=1),
            "amount": round(amount, 2), "currency": invoice["currency"], "amount_base": round(amount, 2),
            "payer_name": name, "payer_account": f"DE00{zlib.crc32(payment_id.encode()):018d}", "remittance_text": text}


@pytest.fixture(scope="module")
def served(scoring_ledger, champion_store, tmp_path_factory):
    """The scoring ledger (with the bank's remittance data on its past payments: the ranker learns from
    them what memo lines are worth) plus the bank payments of PAYMENTS, each on an invoice of its own
    customer; a client of the service on it, and the invoice of each payment."""
    from ledger import write_ledger
    from ledger.remittance import with_remittance

    ledger, _ = with_remittance(scoring_ledger, 5)
    invoices = overdue_invoices(ledger)
    names = ledger.customers.set_index("customer_id")["name"]
    rows, of = [], {}
    for (payment_id, pays), (_, invoice) in zip(PAYMENTS.items(), invoices.iterrows(), strict=False):
        of[payment_id] = invoice
        name, owed = str(names[invoice["customer_id"]]), float(invoice["open_amount"])
        if pays == "full":
            rows.append(bank_line(payment_id, invoice, name.upper(), owed, f"Rechnung {invoice['invoice_id']}"))
        elif pays == "short":
            rows.append(bank_line(payment_id, invoice, name, owed - 300, f"RE {invoice['invoice_id']}"))
        else:  # a payer name of its own: once applied, a payer's name identifies its customer
            rows.append(bank_line(payment_id, invoice, f"Nobody Known {payment_id[5:].title()} Ltd", 123.45, "PAYMENT"))
    assert len(of) == len(PAYMENTS), "the scoring ledger has too few customers with overdue invoices"
    ledger = ledger.replace(payments=pd.concat([ledger.payments, pd.DataFrame(rows)], ignore_index=True))
    folder = tmp_path_factory.mktemp("cash")
    write_ledger(ledger, folder / "ledger")
    tokens = [f"cas:Casey Cash:cash:{hash_token(CASH)}", f"ana:Ana:collector+all_portfolios:{hash_token(COLLECTOR)}",
              f"root:Root:admin:{hash_token(ADMIN)}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARRISK_LEDGER", str(folder / "ledger"))
        patch.setenv("ARRISK_TRACKING_URI", champion_store)
        patch.setenv("ARRISK_API_TOKENS", ",".join(tokens))
        patch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{folder / 'activity.sqlite'}")
        patch.setenv("ARRISK_REPORTS", str(folder / "reports"))
        patch.delenv("ARRISK_TOKENS_FILE", raising=False)
        with TestClient(service_app(), raise_server_exceptions=False) as client:
            yield client, of


def headers(token: str = CASH) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def worklist_row(client, customer_id: str) -> dict | None:
    rows = client.get(f"/v1/worklist?as_of={DAY}", headers=headers(ADMIN)).json()["rows"]
    return next((row for row in rows if row["customer_id"] == customer_id), None)


def score_of(client, invoice_id: str):
    return client.post("/v1/score", json={"as_of": DAY, "invoice_ids": [invoice_id]}, headers=headers(ADMIN))


def aging_rows(client) -> dict[str, float]:
    """Total open per customer in the aging report (base currency, due-date basis)."""
    response = client.get(f"/v1/aging?as_of={DAY}", headers=headers(ADMIN))
    assert response.status_code == 200, response.text
    return {row["customer_id"]: row["Total"] for row in response.json()["rows"]}


def proposals(client) -> dict[str, dict]:
    response = client.get(f"/v1/cash/proposals?as_of={DAY}", headers=headers())
    assert response.status_code == 200, response.text
    return {row["payment_id"]: row for row in response.json()["rows"]}


def test_a_confirmed_application_is_audited_and_the_next_worklist_sees_the_invoice_paid(served):
    client, of = served
    invoice = of["BANK-CONFIRM"]
    before = worklist_row(client, invoice["customer_id"])
    assert before is not None and before["overdue_amount_base"] >= invoice["open_amount_base"] - 0.01
    aging_before = aging_rows(client)
    assert score_of(client, invoice["invoice_id"]).status_code == 200

    proposal = proposals(client)["BANK-CONFIRM"]
    assert proposal["customer_id"] == invoice["customer_id"] and proposal["identified_by"] == "name"
    assert [line["invoice_id"] for line in proposal["lines"]] == [invoice["invoice_id"]]
    assert proposal["decision"] in {"auto", "proposed"}

    confirmed = client.post("/v1/cash/applications", json={"payment_id": "BANK-CONFIRM", "applied_date": DAY},
                            headers=headers())
    assert confirmed.status_code == 201, confirmed.text
    assert confirmed.json()["decision"] == "confirmed" and confirmed.json()["deduction"] is None
    assert [line["created_by"] for line in confirmed.json()["lines"]] == ["Casey Cash"]

    after = worklist_row(client, invoice["customer_id"])
    overdue_after = 0.0 if after is None else after["overdue_amount_base"]
    assert overdue_after == pytest.approx(before["overdue_amount_base"] - invoice["open_amount_base"], abs=0.02)
    # Scores, aging and the customer page see the invoice paid at once, and the cash leave the unidentified row.
    score = score_of(client, invoice["invoice_id"])
    assert score.status_code == 404 and "not open" in score.text
    risk = client.get(f"/v1/customers/{invoice['customer_id']}/risk?as_of={DAY}", headers=headers(ADMIN)).json()
    assert invoice["invoice_id"] not in [item["invoice_id"] for item in risk["open_items"]]
    page = client.get(f"/v1/customers/{invoice['customer_id']}?as_of={DAY}", headers=headers(ADMIN)).json()
    assert invoice["invoice_id"] not in [item["invoice_id"] for item in page["open_items"]]
    aging_after, paid = aging_rows(client), float(invoice["open_amount_base"])
    assert aging_after[invoice["customer_id"]] == pytest.approx(aging_before[invoice["customer_id"]] - paid, abs=0.02)
    assert aging_after[UNIDENTIFIED] == pytest.approx(aging_before[UNIDENTIFIED] + paid, abs=0.02)
    # The payment has left the proposals; applying it again is a conflict; the audit chain holds.
    assert "BANK-CONFIRM" not in proposals(client)
    again = client.post("/v1/cash/applications", json={"payment_id": "BANK-CONFIRM", "applied_date": DAY,
                                                       "lines": [{"invoice_id": invoice["invoice_id"], "amount": "1.00"}]},
                        headers=headers())
    assert again.status_code == 409, again.text
    audit = client.get("/v1/audit/verify", headers=headers(ADMIN)).json()
    assert audit["ok"], audit


def test_confirming_a_short_payment_opens_a_deduction_for_what_is_left(served):
    client, of = served
    short = of["BANK-SHORT"]
    proposal = proposals(client)["BANK-SHORT"]
    assert proposal["decision"] != "unmatched", proposal["reason"]
    assert proposal["residual"] == pytest.approx(-300.0) and proposal["deduction_reason"] == "short payment"
    confirmed = client.post("/v1/cash/applications", json={"payment_id": "BANK-SHORT", "applied_date": DAY},
                            headers=headers())
    assert confirmed.status_code == 201, confirmed.text
    deduction = confirmed.json()["deduction"]
    # A deduction queue record (issue 21); the memo line "RE <invoice>" names no reason keyword: unknown.
    assert (deduction["queue"], deduction["invoice_id"], deduction["payment_id"], deduction["reason_code"],
            deduction["amount"], deduction["status"]) == (
        "deduction", short["invoice_id"], "BANK-SHORT", "unknown", "300.00", "open")
    queued = client.get(f"/v1/deductions?as_of={DAY}&customer_id={short['customer_id']}", headers=headers()).json()
    assert deduction["item_id"] in [row["item_id"] for row in queued["rows"]]


def test_an_unknown_payer_is_unmatched_listed_as_unapplied_and_a_rejection_is_shown(served):
    client, _ = served
    unknown = proposals(client)["BANK-UNKNOWN"]
    assert unknown["decision"] == "unmatched" and unknown["reason"].startswith("payer not identified")
    rows = client.get(f"/v1/cash/unapplied?as_of={DAY}", headers=headers()).json()["rows"]
    listed = {row["payment_id"]: row for row in rows}["BANK-UNKNOWN"]
    assert listed["customer_id"] == "(unidentified payer)" and listed["age_days"] == 1
    assert listed["reason"].startswith("unmatched: payer not identified")
    rejected = client.post("/v1/cash/rejections", json={"payment_id": "BANK-UNKNOWN", "note": "not a customer of ours",
                                                         "applied_date": DAY}, headers=headers())
    assert rejected.status_code == 201, rejected.text
    shown = proposals(client)["BANK-UNKNOWN"]
    assert shown["rejected_by"] == "Casey Cash" and shown["rejection_note"] == "not a customer of ours"


def test_a_changed_application_is_checked_against_what_the_documents_owe(served):
    client, of = served
    invoice = of["BANK-CHANGE"]
    too_much = {"payment_id": "BANK-CHANGE", "applied_date": DAY,
                "lines": [{"invoice_id": invoice["invoice_id"], "amount": "500.00"}]}
    response = client.post("/v1/cash/applications", json=too_much, headers=headers())
    assert response.status_code == 400 and "more than payment BANK-CHANGE" in response.text
    unknown = client.post("/v1/cash/applications", json={**too_much, "lines": [{"invoice_id": "NOPE", "amount": "1"}]},
                          headers=headers())
    assert unknown.status_code == 404 and "NOPE" in unknown.text
    part = client.post("/v1/cash/applications", json={**too_much, "lines": [{"invoice_id": invoice["invoice_id"],
                                                                             "amount": "100.00"}]}, headers=headers())
    assert part.status_code == 201, part.text
    assert part.json()["decision"] == "changed" and part.json()["lines"][0]["applied_amount"] == "100.00"


def test_cash_application_needs_the_cash_scope(served):
    client, _ = served
    assert client.get("/v1/cash/proposals", headers=headers(COLLECTOR)).status_code == 403
    assert client.post("/v1/cash/applications", json={"payment_id": "BANK-WEB"}, headers=headers(COLLECTOR)).status_code == 403
    assert client.get("/v1/cash/proposals").status_code == 401


def test_the_cash_page_lists_proposals_and_confirms_one(served):
    client, of = served
    form = client.get("/v1/ui/login").text
    landed = client.post("/v1/ui/login", data={"token": CASH, "csrf": re.search(r'name="csrf" value="([0-9a-f]+)"',
                                                                                 form).group(1)})
    assert landed.status_code == 200 and "Cash application" in landed.text, landed.text[:300]
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', landed.text).group(1)
    page = client.get(f"/v1/ui/cash?as_of={DAY}")
    assert page.status_code == 200
    assert 'data-payment="BANK-WEB"' in page.text and of["BANK-WEB"]["invoice_id"] in page.text
    refused = client.post("/v1/ui/cash/BANK-WEB/change", data={"csrf": csrf, "as_of": DAY,
                                                               "lines": f"{of['BANK-WEB']['invoice_id']}=99999999"})
    assert refused.status_code == 422 and "but it owes" in refused.text
    forged = client.post("/v1/ui/cash/BANK-WEB/reject", data={"csrf": "0" * 64, "as_of": DAY, "note": "x"})
    assert forged.status_code == 403
    done = client.post("/v1/ui/cash/BANK-WEB/confirm", data={"csrf": csrf, "as_of": DAY})
    assert done.status_code == 200 and "BANK-WEB applied as proposed" in done.text
    assert 'data-payment="BANK-WEB"' not in done.text
    assert client.get("/v1/cash/applications?payment_id=BANK-WEB", headers=headers()).json()["count"] == 1


def test_a_rejected_proposal_is_never_applied_automatically():
    from cash_application.confirm import automatic_payments

    proposals = pd.DataFrame({"payment_id": ["P1", "P1", "P2", "P3"], "decision": ["auto", "auto", "auto", "proposed"]})
    rejected = [{"payment_id": "P2", "decision": "rejected"}, {"payment_id": "P3", "decision": "confirmed"}]
    assert automatic_payments(proposals, rejected) == ["P1"]
    assert automatic_payments(proposals, []) == ["P1", "P2"]


@pytest.mark.parametrize(("typed", "named"), [("INV1=abc", "'INV1=abc'"), ("INV1", "'INV1'"), (" , ", "no document")])
def test_lines_typed_on_the_page_that_cannot_be_read_are_named(typed, named):
    from serving.web import BadRequest, cash_lines

    with pytest.raises(BadRequest, match=named):
        cash_lines(typed)
    assert cash_lines("INV1=100.50, INV2 = 1 000") == [("INV1", 100.5), ("INV2", 1000.0)]
