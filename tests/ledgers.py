"""Small ledgers made in code, for tests: every value visible in the test that uses it."""

from __future__ import annotations

import pandas as pd

from ledger import Ledger


def dates(*values: str | None) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values)), dtype="datetime64[ns]")


def tiny_ledger() -> Ledger:
    """Two customers, four documents: one paid late, one partly paid, one open, one credit memo
    cleared against an invoice by a net payment; one dispute, one promise, one write-off."""
    customers = pd.DataFrame({
        "customer_id": ["C1", "C2"],
        "name": ["Acme GmbH", "Bolt SA"],
        "segment": ["mid", "small"],
        "country": ["DE", "FR"],
        "currency": ["EUR", "EUR"],
        "payment_terms_days": [30, 45],
        "credit_limit": [10_000.0, 2_000.0],
        "created_date": dates("2023-01-01", "2023-06-01"),
    })
    invoices = pd.DataFrame({
        "invoice_id": ["I1", "I2", "I3", "CM1", "I4"],
        "customer_id": ["C1", "C1", "C2", "C1", "C2"],
        "doc_type": ["invoice", "invoice", "invoice", "credit_memo", "invoice"],
        "invoice_date": dates("2024-01-05", "2024-02-01", "2024-02-10", "2024-02-15", "2024-01-10"),
        "due_date": dates("2024-02-04", "2024-03-02", "2024-03-26", "2024-02-15", "2024-02-24"),
        "amount": [1000.0, 500.0, 800.0, -200.0, 300.0],
        "currency": ["EUR"] * 5,
        "amount_base": [1000.0, 500.0, 800.0, -200.0, 300.0],
        "cleared_date": dates("2024-02-20", None, None, "2024-03-01", "2024-06-30"),
    })
    payments = pd.DataFrame({
        "payment_id": ["P1", "P2", "P3"],
        "customer_id": ["C1", "C1", "C2"],
        "received_date": dates("2024-02-20", "2024-03-01", "2024-03-05"),
        "amount": [1000.0, 100.0, 50.0],
        "currency": ["EUR"] * 3,
        "amount_base": [1000.0, 100.0, 50.0],
    })
    applications = pd.DataFrame({
        "payment_id": ["P1", "P2", "P2"],
        "invoice_id": ["I1", "I2", "CM1"],
        "applied_date": dates("2024-02-20", "2024-03-01", "2024-03-01"),
        "amount": [1000.0, 300.0, -200.0],
    })
    disputes = pd.DataFrame({
        "dispute_id": ["D1"], "invoice_id": ["I3"], "opened_date": dates("2024-03-01"),
        "resolved_date": dates(None), "reason": ["pricing"], "amount": [800.0],
    })
    promises = pd.DataFrame({
        "promise_id": ["PR1"], "customer_id": ["C1"], "invoice_id": ["I2"],
        "made_date": dates("2024-03-05"), "promised_date": dates("2024-03-15"), "amount": [200.0],
        "kept": pd.array([False], dtype="boolean"),
    })
    writeoffs = pd.DataFrame({"invoice_id": ["I4"], "date": dates("2024-06-30"), "amount": [300.0]})
    return Ledger(customers, invoices, payments, applications, disputes=disputes, promises=promises,
                  writeoffs=writeoffs, base_currency="EUR", source="tests")
