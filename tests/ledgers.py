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


def reminder_ledger() -> Ledger:
    """Five customers with overdue invoices as of 2024-03-31, for the reminders (issue 22), with the default
    dunning policy (level 1 at 7 days past due; level 2 at 21 days and 14 after level 1, fee 5, interest 8%):
    - C1 Müller GmbH (DE): contacts in German (billing and owner); I11 1,234.56 EUR due 2024-03-10 (21 days),
      I12 999.99 EUR due 2024-03-15 in open dispute (held), I13 500.00 USD due 2024-03-01 (30 days);
    - C2 Bolt Ltd (GB): one contact, role `other`, no language; I21 200.00 EUR due 2024-02-01 (59 days) had
      level 1 on 2024-02-15, so gets level 2; 50.00 EUR received 2024-03-20 and not applied;
    - C3 Carter Inc (US): no e-mail contact; I31 100.00 USD due 2024-03-20 (11 days);
    - C4 Dupont SA (FR): handed to legal in the tests; I41 300.00 EUR due 2024-03-01;
    - C5 Alpen GmbH (AT): no e-mail contact; I51 80.00 EUR due 2024-03-20 (11 days)."""
    customers = pd.DataFrame({
        "customer_id": ["C1", "C2", "C3", "C4", "C5"],
        "name": ["Müller GmbH", "Bolt Ltd", "Carter Inc", "Dupont SA", "Alpen GmbH"],
        "segment": ["mid"] * 5,
        "country": ["DE", "GB", "US", "FR", "AT"],
        "currency": ["EUR", "EUR", "USD", "EUR", "EUR"],
        "payment_terms_days": [30] * 5,
        "credit_limit": [10_000.0] * 5,
        "created_date": dates(*["2023-01-01"] * 5),
    })
    invoices = pd.DataFrame({
        "invoice_id": ["I11", "I12", "I13", "I21", "I31", "I41", "I51"],
        "customer_id": ["C1", "C1", "C1", "C2", "C3", "C4", "C5"],
        "doc_type": ["invoice"] * 7,
        "invoice_date": dates("2024-02-09", "2024-02-14", "2024-01-31", "2024-01-02", "2024-02-19", "2024-01-31",
                              "2024-02-19"),
        "due_date": dates("2024-03-10", "2024-03-15", "2024-03-01", "2024-02-01", "2024-03-20", "2024-03-01",
                          "2024-03-20"),
        "amount": [1234.56, 999.99, 500.0, 200.0, 100.0, 300.0, 80.0],
        "currency": ["EUR", "EUR", "USD", "EUR", "USD", "EUR", "EUR"],
        "amount_base": [1234.56, 999.99, 460.0, 200.0, 92.0, 300.0, 80.0],
        "cleared_date": dates(*[None] * 7),
    })
    payments = pd.DataFrame({
        "payment_id": ["P1"], "customer_id": ["C2"], "received_date": dates("2024-03-20"), "amount": [50.0],
        "currency": ["EUR"], "amount_base": [50.0],
    })
    applications = pd.DataFrame({
        "payment_id": pd.Series([], dtype=object), "invoice_id": pd.Series([], dtype=object),
        "applied_date": dates(), "amount": pd.Series([], dtype=float),
    })
    disputes = pd.DataFrame({
        "dispute_id": ["D1"], "invoice_id": ["I12"], "opened_date": dates("2024-03-20"),
        "resolved_date": dates(None), "reason": ["quality"], "amount": [999.99],
    })
    notices = pd.DataFrame({"invoice_id": ["I21"], "level": [1], "issued_date": dates("2024-02-15")})
    email_contacts = pd.DataFrame({
        "customer_id": ["C1", "C1", "C2", "C4"],
        "email": ["owner@mueller.example", "buchhaltung@mueller.example", "office@bolt.example", "ap@dupont.example"],
        "name": ["Hans Müller", "Anna Berg", "Ben Carter", None],
        "role": ["owner", "billing", "other", "accounts_payable"],
        "language": ["de", "de", None, "en"],
    })
    return Ledger(customers, invoices, payments, applications, disputes=disputes, dunning_notices=notices,
                  email_contacts=email_contacts, base_currency="EUR", source="tests")
