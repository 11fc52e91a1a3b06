"""Import of the IBM sample (ibm_sample mapping): counts, reconciliation, disputes, no labels."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ledger import read_ledger
from ledger.importing import import_ledger
from serving.cli import app

IBM = Path(__file__).resolve().parents[1] / "samples" / "ibm" / "ibm_wa_accounts_receivable.csv"


@pytest.fixture(scope="module")
def ibm():
    return import_ledger([IBM], "ibm_sample")


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return pd.read_csv(IBM, dtype=str)


def test_every_invoice_and_customer_is_imported(ibm, sample):
    assert len(ibm.invoices) == 2466 and ibm.invoices["invoice_id"].is_unique
    assert len(ibm.customers) == 100
    assert set(ibm.invoices["invoice_id"]) == set(sample["invoiceNumber"])  # leading zeros kept
    assert ibm.source == "import:ibm_sample" and ibm.base_currency == "USD"
    assert (ibm.invoices["currency"] == "USD").all() and (ibm.customers["currency"] == "USD").all()
    assert (ibm.customers["payment_terms_days"] == 30).all()


def test_payments_reconcile_to_the_invoice_amounts(ibm, sample):
    applied = ibm.payment_applications.groupby("invoice_id")["amount"].sum()
    amounts = ibm.invoices.set_index("invoice_id")["amount"]
    pd.testing.assert_series_equal(applied.reindex(amounts.index), amounts, check_names=False)
    assert ibm.payments["amount"].sum() == pytest.approx(pd.to_numeric(sample["InvoiceAmount"]).sum(), abs=0.005)
    assert ibm.payment_applications["amount"].sum() == pytest.approx(ibm.invoices["amount"].sum(), abs=0.005)
    assert len(ibm.payments) == 2466 and ibm.payment_applications["payment_id"].is_unique


def test_each_invoice_is_paid_on_its_settled_date(ibm, sample):
    settled = pd.to_datetime(sample.set_index("invoiceNumber")["SettledDate"], format="%m/%d/%Y")
    invoices = ibm.invoices.set_index("invoice_id")
    assert (invoices["cleared_date"] == settled.reindex(invoices.index)).all()
    received = ibm.payments.set_index("payment_id")["received_date"]
    applications = ibm.payment_applications
    assert (applications["applied_date"].to_numpy() == received.reindex(applications["payment_id"]).to_numpy()).all()


def test_disputed_invoices_become_disputes(ibm, sample):
    flagged = set(sample.loc[sample["Disputed"] == "Yes", "invoiceNumber"])
    assert len(ibm.disputes) == len(flagged) == 561
    assert set(ibm.disputes["invoice_id"]) == flagged
    disputes = ibm.disputes.join(ibm.invoices.set_index("invoice_id"), on="invoice_id", rsuffix="_invoice")
    assert (disputes["opened_date"] == disputes["invoice_date"]).all()
    assert (disputes["resolved_date"] == disputes["cleared_date"]).all()
    assert (disputes["amount"] == disputes["amount_invoice"]).all()


def test_the_labels_appear_nowhere_in_the_ledger(ibm, sample):
    days_late = pd.to_numeric(sample["DaysLate"]).to_numpy()
    days_to_settle = pd.to_numeric(sample["DaysToSettle"]).to_numpy()
    for name, table in ibm.tables().items():
        lowered = {column.lower() for column in table.columns}
        assert not lowered & {"daystosettle", "dayslate", "days_late", "days_to_settle"}, name
        if len(table) == len(sample):
            for column in table.columns:
                values = table[column].to_numpy()
                assert not (values.dtype.kind in "if" and ((values == days_late).all()
                                                           or (values == days_to_settle).all())), (name, column)


def test_disputes_may_open_at_the_due_date_instead(tmp_path):
    text = (Path(__file__).resolve().parents[1] / "configs" / "mappings" / "ibm_sample.yaml").read_text()
    mapping = tmp_path / "ibm_due.yaml"
    mapping.write_text(text.replace("opened_at: invoice_date", "opened_at: due_date"))
    ledger = import_ledger([IBM], mapping)
    disputes = ledger.disputes.join(ledger.invoices.set_index("invoice_id")[["due_date", "cleared_date"]], on="invoice_id")
    expected = disputes[["due_date", "cleared_date"]].min(axis=1)
    assert (disputes["opened_date"] == expected).all()
    assert (disputes["opened_date"] < disputes["due_date"]).any()  # paid early: opened when settled
    assert ledger.source == "import:ibm_due"


def test_cli_imports_the_sample_and_the_result_validates(tmp_path):
    runner = CliRunner()
    out = tmp_path / "ibm"
    result = runner.invoke(app, ["import", str(IBM), "--mapping", "ibm_sample", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2,466" in result.output
    assert runner.invoke(app, ["validate", str(out)]).exit_code == 0
    assert len(read_ledger(out).invoices) == 2466
