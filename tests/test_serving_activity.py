"""Collections activity through the API: a recorded promise holds the customer's items in the next
worklist and turns its priority up once the promised date passes unpaid; retries, conflicts, audit."""

from __future__ import annotations

import pandas as pd
import pytest
from starlette.testclient import TestClient

from serving.auth import hash_token
from tests.service_app import service_app

COLLECTOR, ADMIN = "arr_activity_collector_token_0123", "arr_activity_admin_token_01234567"


@pytest.fixture()
def client(scoring_ledger, champion_store, tmp_path):
    from ledger import write_ledger

    write_ledger(scoring_ledger, tmp_path / "ledger")
    tokens = [f"ana:Ana Collector:collector+all_portfolios:{hash_token(COLLECTOR)}", f"root:Root:admin:{hash_token(ADMIN)}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARRISK_LEDGER", str(tmp_path / "ledger"))
        patch.setenv("ARRISK_TRACKING_URI", champion_store)
        patch.setenv("ARRISK_API_TOKENS", ",".join(tokens))
        patch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{tmp_path / 'activity.sqlite'}")
        patch.setenv("ARRISK_REPORTS", str(tmp_path / "reports"))
        patch.delenv("ARRISK_TOKENS_FILE", raising=False)
        with TestClient(service_app(), raise_server_exceptions=False) as test_client:
            yield test_client


def headers(token: str = COLLECTOR, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def worklist_row(client, as_of: pd.Timestamp, customer_id: str) -> dict | None:
    rows = client.get(f"/v1/worklist?as_of={as_of:%Y-%m-%d}", headers=headers(ADMIN)).json()["rows"]
    return next((row for row in rows if row["customer_id"] == customer_id), None)


def active_customer(client, as_of: pd.Timestamp) -> dict:
    """An active (not held, not escalated) customer in the middle of the worklist."""
    rows = client.get(f"/v1/worklist?as_of={as_of:%Y-%m-%d}", headers=headers(ADMIN)).json()["rows"]
    active = [row for row in rows if row["status"] == "active"]
    return active[len(active) // 2]


def test_a_promise_holds_the_items_then_raises_priority_once_broken(client):
    # The promised amount is more than the customer's payments could reach, so it is pending, then broken.
    as_of = pd.Timestamp("2023-06-15")
    before = active_customer(client, as_of)
    promise = {"customer_id": before["customer_id"], "amount": "1000000.00", "made_date": "2023-06-15",
               "promised_date": "2023-06-20"}
    response = client.post("/v1/promises", json=promise, headers=headers())
    assert response.status_code == 201, response.text
    assert response.json()["created_by"] == "Ana Collector"

    held = worklist_row(client, as_of, before["customer_id"])
    # Every overdue item is promised, so none is chased; items not yet due stay at risk (issue 16).
    assert held["status"] == "held" and held["score"] < before["score"]
    assert "pending promise" in held["reason_1"] and "2023-06-20" in held["reason_1"]

    # A week later nothing came from that customer: the promise is broken and the customer jumps.
    later = pd.Timestamp("2023-06-25")
    broken = worklist_row(client, later, before["customer_id"])
    assert broken["status"] == "escalated" and broken["reason_1"].endswith("broken")
    assert broken["score"] >= 3 * broken["money_at_risk_base"] > 0
    # Without the broken promise its score would be its money at risk: count who would rank above it then.
    rows = client.get(f"/v1/worklist?as_of={later:%Y-%m-%d}", headers=headers(ADMIN)).json()["rows"]
    rank_unescalated = 1 + sum(1 for row in rows if row["customer_id"] != before["customer_id"]
                               and row["status"] != "held" and row["score"] > broken["money_at_risk_base"])
    assert broken["rank"] < rank_unescalated

    # Before the promise was made, it does not exist.
    earlier = worklist_row(client, pd.Timestamp("2023-06-14"), before["customer_id"])
    assert earlier is None or earlier["status"] != "held"


def test_retry_with_the_same_key_creates_one_record(client, scoring_ledger):
    invoice = scoring_ledger.invoices[scoring_ledger.invoices["cleared_date"].isna()].iloc[0]
    body = {"invoice_id": invoice["invoice_id"], "opened_date": "2023-06-10", "reason_code": "pricing",
            "amount": "150.00"}
    first = client.post("/v1/disputes", json=body, headers=headers(**{"Idempotency-Key": "retry-1"}))
    again = client.post("/v1/disputes", json=body, headers=headers(**{"Idempotency-Key": "retry-1"}))
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    listed = client.get(f"/v1/disputes?customer_id={invoice['customer_id']}", headers=headers()).json()
    assert [row["dispute_id"] for row in listed["rows"]].count(first.json()["dispute_id"]) == 1
    other = client.post("/v1/disputes", json=body | {"amount": "99.00"}, headers=headers(**{"Idempotency-Key": "retry-1"}))
    assert other.status_code == 409 and other.json()["error"] == "idempotency_mismatch"


def test_two_collectors_cannot_silently_overwrite_each_other(client, scoring_ledger):
    customer = scoring_ledger.customers["customer_id"].iloc[0]
    created = client.post("/v1/contacts", json={"customer_id": customer, "contact_date": "2023-06-12",
                                                "channel": "call", "outcome": "no answer"}, headers=headers()).json()
    first = client.patch(f"/v1/contacts/{created['contact_id']}", json={"expected_version": 1, "note": "called twice"},
                         headers=headers())
    second = client.patch(f"/v1/contacts/{created['contact_id']}", json={"expected_version": 1, "note": "left voicemail"},
                          headers=headers())
    assert first.status_code == 200 and first.json()["version"] == 2
    assert second.status_code == 409 and second.json()["error"] == "version_conflict"


@pytest.mark.parametrize("body, status, field", [
    ({"customer_id": "NOBODY", "amount": "10.00", "made_date": "2023-06-01", "promised_date": "2023-06-05"}, 400,
     "customer_id"),
    ({"customer_id": "KNOWN", "amount": "-5", "made_date": "2023-06-01", "promised_date": "2023-06-05"}, 422,
     "amount"),
    ({"amount": "10.00", "made_date": "2023-06-01"}, 422, "promised_date"),
])
def test_bad_promises_are_rejected_naming_the_field(client, scoring_ledger, body, status, field):
    # KNOWN stands for a customer of the ledger: the amount is then the only problem (the store's rule).
    known = scoring_ledger.customers["customer_id"].iloc[1]
    body = {key: known if value == "KNOWN" else value for key, value in body.items()}
    response = client.post("/v1/promises", json=body, headers=headers())
    assert response.status_code == status and field in response.text


def test_audit_verify_is_for_admins_and_passes_on_an_untouched_log(client, scoring_ledger):
    customer = scoring_ledger.customers["customer_id"].iloc[1]
    client.post("/v1/contacts", json={"customer_id": customer, "contact_date": "2023-06-12", "channel": "email"},
                headers=headers())
    assert client.get("/v1/audit/verify", headers=headers()).status_code == 403
    assert client.get("/v1/audit/verify", headers=headers(ADMIN)).json() == {"ok": True, "problems": [], "unreadable": []}
