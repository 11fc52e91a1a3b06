"""E-mail contacts in the ledger contract (issue 22): validated, stored, imported and generated."""

from __future__ import annotations

import pandas as pd
import pytest

from ledger import LedgerError
from ledger.importing import import_ledger
from ledger.store import read_ledger, write_ledger
from ledger.synthetic import generate_ledger
from tests.ledgers import reminder_ledger, tiny_ledger


def contacts(**columns) -> pd.DataFrame:
    row = {"customer_id": "C1", "email": "ap@acme.example", "name": "Anna Berg", "role": "billing", "language": "de"}
    return pd.DataFrame([row | columns])


def problems(ledger) -> list[str]:
    with pytest.raises(LedgerError) as error:
        ledger.validate()
    return [str(problem) for problem in error.value.problems]


def test_a_valid_contact_table_passes_and_the_language_column_is_optional():
    tiny_ledger().replace(email_contacts=contacts()).validate()
    tiny_ledger().replace(email_contacts=contacts().drop(columns="language")).validate()


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("email", "Anna Berg", "expected an e-mail address such as ap@example.com, got 'Anna Berg'"),
    ("email", "ap@localhost", "expected an e-mail address"),
    ("email", "a p@acme.example", "expected an e-mail address"),
    ("customer_id", "C9", "no such customer_id in customers"),
    ("role", "boss", "expected one of"),
    ("language", "German", "expected an ISO 639-1 language code such as en or de, got 'German'"),
])
def test_a_bad_contact_is_named_by_row_and_column(column, value, expected):
    found = problems(tiny_ledger().replace(email_contacts=contacts(**{column: value})))
    assert len(found) == 1
    assert "email_contacts row 0" in found[0] and f"column {column}" in found[0] and expected in found[0]


def test_the_same_address_twice_for_a_customer_is_a_duplicate_whatever_its_case():
    table = pd.concat([contacts(), contacts(email="AP@Acme.example", role="owner")], ignore_index=True)
    found = problems(tiny_ledger().replace(email_contacts=table))
    assert [problem.split(" (")[0] for problem in found] == ["email_contacts row 0", "email_contacts row 1"]
    assert all("duplicate key (customer_id, email)" in problem for problem in found)
    # The same address at two customers (a shared service centre) is fine.
    tiny_ledger().replace(email_contacts=pd.concat([contacts(), contacts(customer_id="C2")])).validate()


def test_the_store_writes_and_reads_the_contacts_and_a_ledger_without_them_reads_empty(tmp_path):
    ledger = reminder_ledger()
    write_ledger(ledger, tmp_path / "with")
    pd.testing.assert_frame_equal(read_ledger(tmp_path / "with").email_contacts, ledger.email_contacts)
    write_ledger(tiny_ledger(), tmp_path / "without")
    (tmp_path / "without" / "email_contacts.parquet").unlink()  # a ledger written before the table existed
    assert read_ledger(tmp_path / "without").email_contacts.empty


def test_the_generic_csv_import_reads_email_contacts_csv(tmp_path):
    expected = reminder_ledger()
    for name, table in expected.tables().items():
        table.to_csv(tmp_path / f"{name}.csv", index=False, date_format="%Y-%m-%d")
    imported = import_ledger([tmp_path], "generic_csv")
    pd.testing.assert_frame_equal(imported.email_contacts, expected.email_contacts)


def test_a_bad_address_in_the_csv_import_is_named(tmp_path):
    expected = reminder_ledger()
    for name, table in expected.tables().items():
        table.to_csv(tmp_path / f"{name}.csv", index=False, date_format="%Y-%m-%d")
    bad = expected.email_contacts.assign(email=["owner@mueller.example", "Buchhaltung", "office@bolt.example",
                                                "ap@dupont.example"])
    bad.to_csv(tmp_path / "email_contacts.csv", index=False)
    with pytest.raises(LedgerError) as error:
        import_ledger([tmp_path], "generic_csv")
    assert "email_contacts" in str(error.value) and "'Buchhaltung'" in str(error.value)


def test_the_generator_gives_most_customers_one_or_two_contacts_in_their_countrys_language():
    ledger, _truth = generate_ledger(customers=400, months=3, seed=11)
    ledger.validate()
    per_customer = ledger.email_contacts.groupby("customer_id").size().reindex(ledger.customers["customer_id"],
                                                                                fill_value=0)
    # Drawn 10% none, 50% one, 40% two: 400 customers give about 40 +- 12 without any.
    assert set(per_customer) <= {0, 1, 2}
    assert 20 <= (per_customer == 0).sum() <= 60
    assert (per_customer > 0).mean() > 0.8
    country = ledger.email_contacts["customer_id"].map(ledger.customers.set_index("customer_id")["country"])
    expected = country.isin(["DE", "AT", "CH"]).map({True: "de", False: "en"})
    assert ledger.email_contacts["language"].tolist() == expected.tolist()
    first = ledger.email_contacts.drop_duplicates("customer_id")
    assert first["role"].isin(["billing", "accounts_payable"]).all()

