"""Import of an SAP FBL5N line-item export (sap_fbl5n mapping): payments rebuilt from clearing
documents reconcile to the export's open and cleared items, residual items and partial payments
come out right, and the .csv and .xlsx exports give the same ledger."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ledger import read_ledger, write_ledger
from ledger.importing import import_ledger

FIXTURES = Path(__file__).parent / "fixtures" / "fbl5n"
CSV = FIXTURES / "fbl5n_export.csv"
XLSX = FIXTURES / "fbl5n_export.xlsx"
RECEIVABLE_TYPES = ("RV", "DR", "DG")


@pytest.fixture(scope="module")
def ledger():
    return import_ledger([CSV], "sap_fbl5n")


@pytest.fixture(scope="module")
def export() -> pd.DataFrame:
    """The export read plainly, independently of the importer: German amounts and dates."""
    lines = pd.read_csv(CSV, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)

    def amount(text: str) -> float:
        negative = text.startswith("-") or text.endswith("-")
        value = float(text.strip("-").replace(".", "").replace(",", "."))
        return -value if negative else value

    def date(text: str) -> pd.Timestamp:
        return pd.NaT if text in ("", "00.00.0000") else pd.Timestamp(pd.to_datetime(text, format="%d.%m.%Y"))

    return lines.assign(
        amount=lines["Betrag in Belegwährung"].map(amount),
        amount_base=lines["Betrag in Hauswährung"].map(amount),
        cleared_on=lines["Ausgleichsdatum"].map(date),
        is_open=lines["Ausgleichsbeleg"] == "",
        root=_roots(lines),
    )


def _roots(lines: pd.DataFrame) -> list[str]:
    """The invoice each line belongs to, following invoice references line by line (slow and plain)."""
    receivables = set(lines.loc[lines["Belegart"].isin(RECEIVABLE_TYPES), "Belegnummer"])
    reference_of = {}
    for line in lines.itertuples():
        continues = (line.Belegart not in RECEIVABLE_TYPES and line.Rechnungsbezug
                     and line.Ausgleichsbeleg != line.Belegnummer)
        if continues:
            reference_of[line.Belegnummer] = line.Rechnungsbezug
    roots = []
    for line in lines.itertuples():
        root = line.Belegnummer
        if line.Belegart not in RECEIVABLE_TYPES and line.Rechnungsbezug and line.Ausgleichsbeleg != line.Belegnummer:
            root = line.Rechnungsbezug
            while root not in receivables:
                root = reference_of[root]
        roots.append(root)
    return roots


def open_amounts(ledger) -> tuple[pd.Series, pd.Series]:
    """Per invoice and per payment: what is still open (invoice) or unapplied (payment)."""
    applied = ledger.payment_applications.groupby("invoice_id")["amount"].sum()
    invoices = ledger.invoices.set_index("invoice_id")
    used = ledger.payment_applications.groupby("payment_id")["amount"].sum()
    payments = ledger.payments.set_index("payment_id")
    return (invoices["amount"] - applied.reindex(invoices.index).fillna(0.0),
            payments["amount"] - used.reindex(payments.index).fillna(0.0))


def test_open_items_per_customer_reconcile_to_the_export(ledger, export):
    open_invoice, unapplied = open_amounts(ledger)
    invoices = ledger.invoices.set_index("invoice_id")
    payments = ledger.payments.set_index("payment_id")
    invoice_share = open_invoice / invoices["amount"]
    payment_share = (unapplied / payments["amount"]).where(payments["amount"] != 0, 0.0)
    ledger_open = pd.concat([
        pd.DataFrame({"customer_id": invoices["customer_id"], "currency": invoices["currency"],
                      "amount": open_invoice, "amount_base": invoices["amount_base"] * invoice_share}),
        pd.DataFrame({"customer_id": payments["customer_id"], "currency": payments["currency"],
                      "amount": -unapplied, "amount_base": -payments["amount_base"] * payment_share}),
    ])
    open_lines = export[export["is_open"]].rename(columns={"Konto": "customer_id", "Belegwährung": "currency"})

    by_currency = ledger_open.groupby(["customer_id", "currency"])["amount"].sum()
    expected = open_lines.groupby(["customer_id", "currency"])["amount"].sum()
    pd.testing.assert_series_equal(by_currency[by_currency.abs() > 0.005].round(2), expected.round(2),
                                   check_names=False)
    in_base = ledger_open.groupby("customer_id")["amount_base"].sum()
    expected_base = open_lines.groupby("customer_id")["amount_base"].sum()
    pd.testing.assert_series_equal(in_base.reindex(expected_base.index).round(2), expected_base.round(2),
                                   check_names=False)
    assert expected_base.to_dict() == pytest.approx(
        {"100001": 9760.00, "100002": 2150.00, "100003": 5575.00, "100004": 101500.00, "100005": -250.00})


def test_cleared_items_reconcile_to_their_clearing_groups(ledger, export):
    cleared = export[~export["is_open"]]
    groups = cleared.groupby("Ausgleichsbeleg")[["amount", "amount_base"]].sum()
    assert (groups.abs() < 0.005).all().all()  # the fixture itself: every clearing balances

    open_invoice, _ = open_amounts(ledger)
    per_root = export.groupby("root")
    still_open = per_root.apply(lambda lines: lines.loc[lines["is_open"], "amount"].sum(), include_groups=False)
    invoices = ledger.invoices.set_index("invoice_id")
    pd.testing.assert_series_equal(open_invoice.round(2), still_open.reindex(invoices.index).round(2),
                                   check_names=False)
    last_clearing = per_root.apply(lambda lines: pd.NaT if lines["is_open"].any() else lines["cleared_on"].max(),
                                   include_groups=False)
    expected_cleared = last_clearing.reindex(invoices.index).astype("datetime64[ns]")
    pd.testing.assert_series_equal(invoices["cleared_date"], expected_cleared, check_names=False)


def test_each_payment_is_minus_the_sum_of_its_document_lines(ledger, export):
    documents = export[~export["Belegart"].isin(RECEIVABLE_TYPES)].groupby("Belegnummer")
    payments = ledger.payments.set_index("payment_id")
    expected = -documents["amount"].sum()
    pd.testing.assert_series_equal(payments.loc[expected.index, "amount"], expected + 0.0, check_names=False)
    pd.testing.assert_series_equal(payments.loc[expected.index, "amount_base"],
                                   -documents["amount_base"].sum() + 0.0, check_names=False)
    assert (ledger.payments["amount"] >= 0).all()


def applications_of(ledger, invoice_id: str) -> list[tuple[str, str, float]]:
    rows = ledger.payment_applications[ledger.payment_applications["invoice_id"] == invoice_id]
    rows = rows.sort_values("applied_date")
    return [(p, f"{d:%Y-%m-%d}", a) for p, d, a in zip(rows["payment_id"], rows["applied_date"], rows["amount"],
                                                     strict=True)]


def invoice(ledger, invoice_id: str) -> pd.Series:
    return ledger.invoices.set_index("invoice_id").loc[invoice_id]


def test_residual_item_keeps_one_invoice_partly_paid_then_cleared(ledger):
    # 10,000 invoice; 4,000 paid with a residual item of 6,000, which is paid on 15.04.
    assert applications_of(ledger, "1800000004") == [("1400000003", "2024-03-10", 4000.0),
                                                     ("1400000006", "2024-04-15", 6000.0)]
    assert invoice(ledger, "1800000004")["cleared_date"] == pd.Timestamp("2024-04-15")
    # 8,000 invoice; 3,000 paid with a residual item of 5,000 still open.
    assert applications_of(ledger, "1800000005") == [("1400000007", "2024-04-10", 3000.0)]
    assert pd.isna(invoice(ledger, "1800000005")["cleared_date"])
    assert "1400000007" not in set(ledger.invoices["invoice_id"])  # the residual is no invoice of its own
    # In USD: 5,000 invoice, 2,000 paid, 3,000 residual open; the payment's base amount is 2,000 x 0.92.
    assert applications_of(ledger, "1800000021") == [("1400000021", "2024-03-05", 2000.0)]
    payment = ledger.payments.set_index("payment_id").loc["1400000021"]
    assert (payment["amount"], payment["currency"], payment["amount_base"]) == (2000.0, "USD", 1840.0)


def test_partial_payments_apply_on_their_posting_date(ledger):
    # 3,000 invoice: 1,000 paid on account of it on 01.03, the rest on 20.03 clearing all three items.
    assert applications_of(ledger, "1600000001") == [("1400000010", "2024-03-01", 1000.0),
                                                     ("1400000011", "2024-03-20", 2000.0)]
    assert invoice(ledger, "1600000001")["cleared_date"] == pd.Timestamp("2024-03-20")
    # 2,500 invoice with an open partial payment of 800: 1,700 open.
    assert applications_of(ledger, "1600000002") == [("1400000012", "2024-04-20", 800.0)]
    assert pd.isna(invoice(ledger, "1600000002")["cleared_date"])
    # Written with a leading minus and thousands dots: -23.456,78 against 123.456,78.
    assert applications_of(ledger, "1800000033") == [("1400000032", "2024-04-10", 23456.78)]


def test_open_payments_without_reference_are_unapplied_cash(ledger):
    _, unapplied = open_amounts(ledger)
    assert unapplied[unapplied > 0].to_dict() == {"1400000013": 450.0, "1400000040": 250.0}
    assert "100005" in set(ledger.customers["customer_id"])  # a customer known only by its payment


def test_clearing_without_cash_is_a_payment_of_zero(ledger):
    # AB 100000001 (no lines of its own) clears an invoice against a credit memo of the same amount.
    assert applications_of(ledger, "1800000007") == [("100000001", "2024-02-15", 1190.0)]
    assert applications_of(ledger, "1700000002") == [("100000001", "2024-02-15", -1190.0)]
    payment = ledger.payments.set_index("payment_id").loc["100000001"]
    assert (payment["amount"], payment["received_date"]) == (0.0, pd.Timestamp("2024-02-15"))
    # AB 100000004 clears 500 of an invoice against a credit memo and leaves a residual item of 1,500.
    assert applications_of(ledger, "1800000032") == [("100000004", "2024-03-20", 500.0)]
    assert applications_of(ledger, "1700000030") == [("100000004", "2024-03-20", -500.0)]


def test_cash_cleared_together_pays_the_oldest_invoice_first(ledger):
    # Two payments on account (600 on 01.03, 400 on 05.03) cleared on 10.03 against 700 and 300.
    assert applications_of(ledger, "1800000030") == [("1400000030", "2024-03-10", 600.0),
                                                     ("1400000031", "2024-03-10", 100.0)]
    assert applications_of(ledger, "1800000031") == [("1400000031", "2024-03-10", 300.0)]
    # A payment and a credit memo cleared together: the payment applies the credit memo.
    assert applications_of(ledger, "1700000001") == [("1400000002", "2024-02-20", -595.0)]


def test_documents_types_currencies_and_customers(ledger):
    invoices = ledger.invoices.set_index("invoice_id")
    assert invoices.loc["1700000001", "doc_type"] == "credit_memo" and invoices.loc["1600000001", "doc_type"] == "invoice"
    assert invoices.loc["1800000020", ["amount", "currency", "amount_base"]].tolist() == [10000.0, "USD", 9200.0]
    assert invoices.loc["1800000003", "invoice_date"] == pd.Timestamp("2024-01-20")  # Belegdatum, not posting
    assert invoices.loc["1800000001", "reference"] == "4500012345"
    customers = ledger.customers.set_index("customer_id")
    assert customers["currency"].to_dict() == {"100001": "EUR", "100002": "EUR", "100003": "USD",
                                               "100004": "EUR", "100005": "EUR"}
    assert customers.loc["100002", "payment_terms_days"] == 45 and customers.loc["100001", "payment_terms_days"] == 30
    assert customers.loc["100004", "created_date"] == pd.Timestamp("2024-02-15")
    assert ledger.base_currency == "EUR" and ledger.source == "import:sap_fbl5n"


def test_dunning_levels_become_notices_and_blocks_flag_invoices(ledger):
    notices = ledger.dunning_notices.set_index("invoice_id")
    assert notices["level"].to_dict() == {"1600000002": 2, "1800000005": 1, "1800000021": 1, "1800000022": 1}
    assert notices.loc["1800000005", "issued_date"] == pd.Timestamp("2024-04-22")  # from the residual item
    blocked = ledger.invoices.loc[ledger.invoices["dunning_block"], "invoice_id"]
    assert blocked.tolist() == ["1600000004"]


def test_csv_and_xlsx_give_the_same_ledger(ledger):
    from_xlsx = import_ledger([XLSX], "sap_fbl5n")
    for name, table in ledger.tables().items():
        pd.testing.assert_frame_equal(from_xlsx.tables()[name], table, obj=name)


def test_utf8_csv_reads_like_the_windows_1252_one(ledger, tmp_path):
    utf8 = tmp_path / "fbl5n_utf8.csv"
    utf8.write_text(CSV.read_bytes().decode("cp1252"), encoding="utf-8-sig")
    pd.testing.assert_frame_equal(import_ledger([utf8], "sap_fbl5n").payment_applications,
                                  ledger.payment_applications)


def test_an_export_split_over_two_files_gives_the_same_ledger(ledger, tmp_path):
    lines = CSV.read_bytes().decode("cp1252").splitlines()
    header, body = lines[0], lines[1:]
    first, second = tmp_path / "part1.csv", tmp_path / "part2.csv"
    first.write_text("\n".join([header, *body[:20]]), encoding="cp1252")
    second.write_text("\n".join([header, *body[20:]]), encoding="cp1252")
    split = import_ledger([first, second], "sap_fbl5n")
    for name, table in ledger.tables().items():
        pd.testing.assert_frame_equal(split.tables()[name], table, obj=name)


def test_the_imported_ledger_survives_a_write_and_read(ledger, tmp_path):
    write_ledger(ledger, tmp_path / "ledger")
    again = read_ledger(tmp_path / "ledger")
    for name, table in ledger.tables().items():
        pd.testing.assert_frame_equal(again.tables()[name], table, obj=name, check_dtype=False)


def test_the_xlsx_fixture_is_what_make_xlsx_writes():
    import datetime
    import importlib.util

    from openpyxl import load_workbook

    spec = importlib.util.spec_from_file_location("make_xlsx", FIXTURES / "make_xlsx.py")
    make_xlsx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_xlsx)
    workbook = load_workbook(XLSX, read_only=True)
    rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    workbook.close()
    with open(CSV, encoding="cp1252") as handle:
        header, *body = [line.rstrip("\r\n").split(";") for line in handle]
    assert rows[0] == tuple(header)
    assert rows[1:] == [tuple(make_xlsx.cell_value(c, t) for c, t in zip(header, row, strict=True)) for row in body]
    # Real dates and numbers, not text: the reader must take both.
    first = dict(zip(header, rows[1], strict=True))
    assert isinstance(first["Belegdatum"], datetime.datetime) and isinstance(first["Konto"], int)
    assert isinstance(first["Betrag in Belegwährung"], int | float)  # Excel hands back 11900.0 as 11900


def test_optional_columns_may_be_left_out_of_the_mapping(ledger, tmp_path):
    text = (Path(__file__).resolve().parents[1] / "configs" / "mappings" / "sap_fbl5n.yaml").read_text()
    optional = ("reference:", "dunning_level:", "dunning_date:", "dunning_block:")
    lean = "\n".join(line for line in text.splitlines() if not line.strip().startswith(optional))
    mapping = tmp_path / "fbl5n_lean.yaml"
    mapping.write_text(lean)
    imported = import_ledger([CSV], mapping)
    assert imported.dunning_notices.empty and "reference" not in imported.invoices
    pd.testing.assert_frame_equal(imported.payment_applications, ledger.payment_applications)
