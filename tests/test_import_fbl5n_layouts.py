"""FBL5N layouts without Rechnungsbezug (REBZG) and Letzte Mahnung: residual items and partial payments
are linked as SAP links them, by the Zuordnung or the Referenz they share with exactly one invoice of the
customer, and the ledger reconciles to the export as the one linked by invoice references does."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ledger import read_ledger
from ledger.errors import LedgerError
from ledger.importing import import_ledger, load_mapping
from ledger.importing.clearing_documents import line_items_import
from rules.dunning import dunning_proposal, load_policy
from serving.cli import app

FIXTURES = Path(__file__).parent / "fixtures" / "fbl5n"
WITH_REFERENCES = FIXTURES / "fbl5n_export.csv"
# The same export with the columns Rechnungsbezug and Letzte Mahnung left out of the layout and a column
# Referenz (XBLNR) added: residual items carry the invoice's Zuordnung, three lines only its Referenz.
WITHOUT_REFERENCES = FIXTURES / "fbl5n_export_without_invoice_reference.csv"
AMBIGUOUS = FIXTURES / "fbl5n_ambiguous_residual.csv"
SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "mappings" / "sap_fbl5n.yaml"


@pytest.fixture(scope="module")
def mapping():
    """The shipped mapping: its invoice reference and dunning date columns are optional, Zuordnung and
    Referenz apart."""
    return "sap_fbl5n"


@pytest.fixture(scope="module")
def imported(mapping):
    name, config = load_mapping(mapping)
    return line_items_import([WITHOUT_REFERENCES], config, name)


@pytest.fixture(scope="module")
def ledger(imported):
    return imported[0]


def applications_of(ledger, invoice_id: str) -> list[tuple[str, str, float]]:
    rows = ledger.payment_applications[ledger.payment_applications["invoice_id"] == invoice_id]
    rows = rows.sort_values("applied_date")
    return [(p, f"{d:%Y-%m-%d}", a) for p, d, a in zip(rows["payment_id"], rows["applied_date"], rows["amount"],
                                                     strict=True)]


def test_each_rule_links_the_items_the_fixture_gives_it(imported):
    _, report = imported
    # Zuordnung copied from the invoice: residuals 1400000003, 1400000021, 100000004, partial payment 1400000010.
    # Referenz only: residual 1400000007, partial payments 1400000012 and 1400000032.
    assert report.linked == {"invoice reference": 0, "assignment": 4, "reference": 3}
    assert report.lines()[:3] == ["residual items and partial payments linked by invoice reference: 0",
                                  "residual items and partial payments linked by assignment: 4",
                                  "residual items and partial payments linked by reference: 3"]


def test_the_export_with_invoice_references_links_every_item_by_them():
    name, config = load_mapping("sap_fbl5n")
    _, report = line_items_import([WITH_REFERENCES], config, name)
    assert report.linked == {"invoice reference": 7, "assignment": 0, "reference": 0}
    assert report.notes == []


def test_the_ledger_reference_is_the_referenz_when_the_export_has_one(ledger):
    references = ledger.invoices.set_index("invoice_id")["reference"]
    assert (references["1800000001"], references["1600000002"]) == ("90000101", "RE-24-0102")


def test_linking_by_assignment_or_reference_gives_the_applications_invoice_references_give(ledger):
    by_invoice_reference = import_ledger([WITH_REFERENCES], "sap_fbl5n")
    pd.testing.assert_frame_equal(ledger.payment_applications, by_invoice_reference.payment_applications)
    columns = ["payment_id", "customer_id", "received_date", "amount", "currency", "amount_base"]
    pd.testing.assert_frame_equal(ledger.payments[columns], by_invoice_reference.payments[columns])


def test_each_invoice_is_cleared_on_the_date_the_export_says(ledger):
    cleared = ledger.invoices.set_index("invoice_id")["cleared_date"]
    assert cleared.dropna().dt.strftime("%Y-%m-%d").to_dict() == {
        "1800000001": "2024-02-02",
        "1800000002": "2024-02-20", "1800000003": "2024-02-20", "1700000001": "2024-02-20",
        "1800000004": "2024-04-15",  # its residual item (Zuordnung 4500012420) cleared on 15.04
        "1800000007": "2024-02-15", "1700000002": "2024-02-15",
        "1600000001": "2024-03-20",  # its partial payment (Zuordnung ANL-2024-01) cleared with the rest
        "1600000003": "2024-02-10",
        "1800000020": "2024-02-12",
        "1800000030": "2024-03-10", "1800000031": "2024-03-10",
        "1700000030": "2024-03-20",
    }
    # Open at the key date: residual items still open keep their invoice open.
    assert sorted(cleared[cleared.isna()].index) == [
        "1600000002", "1600000004", "1700000020", "1800000005", "1800000006", "1800000021", "1800000022",
        "1800000023", "1800000032", "1800000033"]


def test_open_items_at_the_key_date_are_those_of_the_export(ledger):
    applied = ledger.payment_applications.groupby("invoice_id")["amount"].sum()
    invoices = ledger.invoices.set_index("invoice_id")
    still_open = (invoices["amount"] - applied.reindex(invoices.index).fillna(0.0)).round(2)
    assert still_open[still_open != 0].to_dict() == {
        "1800000005": 5000.0,  # 8,000 - 3,000 paid: the open residual item, linked by its Referenz 90000105
        "1800000006": 4760.0,
        "1600000002": 1700.0,  # 2,500 - 800 partial payment linked by its Referenz RE-24-0102
        "1600000004": 900.0,
        "1800000021": 3000.0,  # USD residual whose Zuordnung PO-77145 is also the credit memo's: a debit
        "1700000020": -500.0,  # continues no credit memo, so only the invoice matches
        "1800000022": 2500.0,
        "1800000023": 1000.0,
        "1800000032": 1500.0,  # the residual item AB 100000004 left (Zuordnung K-4713, also the credit memo's)
        "1800000033": 100000.0,  # 123,456.78 - 23,456.78 paid on account of it (Referenz 90000133)
    }
    used = ledger.payment_applications.groupby("payment_id")["amount"].sum()
    payments = ledger.payments.set_index("payment_id")
    unapplied = (payments["amount"] - used.reindex(payments.index).fillna(0.0)).round(2)
    # 1400000013's Referenz AVIS-0013 matches no invoice: a credit linked to none is cash on account.
    assert unapplied[unapplied != 0].to_dict() == {"1400000013": 450.0, "1400000040": 250.0}
    assert applications_of(ledger, "1800000021") == [("1400000021", "2024-03-05", 2000.0)]
    assert applications_of(ledger, "1600000002") == [("1400000012", "2024-04-20", 800.0)]


def test_a_dunning_level_without_a_date_is_kept_with_the_date_unknown(imported):
    ledger, report = imported
    # Mahnstufe > 0 on 1400000007 (residual of 1800000005), 1600000002, 1400000021 (of 1800000021) and 1800000022;
    # without Letzte Mahnung the day each notice went out is unknown, the level is not: it is kept, known from
    # the export's date (its latest date: payment 1400000040 posted on 03.05.2024).
    notices = ledger.dunning_notices.set_index("invoice_id").sort_index()
    assert notices["level"].to_dict() == {"1600000002": 2, "1800000005": 1, "1800000021": 1, "1800000022": 1}
    assert notices["issued_date"].isna().all()
    assert (notices["known_date"] == pd.Timestamp("2024-05-03")).all()
    assert report.notes == ["4 documents carry a dunning level without a date: the level is kept, its notice "
                            "date unknown, and counts from the export's date 2024-05-03"]


def test_the_dunning_run_after_such_an_import_never_sends_level_1_again(ledger):
    policy = load_policy(SHIPPED.parents[1] / "dunning" / "default.yaml")
    proposal = dunning_proposal(ledger, pd.Timestamp("2024-05-10"), policy).set_index("invoice_id")
    # 1800000005 and 1800000021 stand at level 1 and are past level 2's 21 days: level 2 waits 14 days from
    # the export's date, since the first notice may have gone out that day.
    for invoice_id in ("1800000005", "1800000021"):
        row = proposal.loc[invoice_id]
        assert (row["last_level"], row["level"], row["status"]) == (1, 2, "held")
        assert row["reason"].endswith("level 2 waits until 2024-05-17")
    later = dunning_proposal(ledger, pd.Timestamp("2024-05-17"), policy).set_index("invoice_id")
    assert later.loc[["1800000005", "1800000021"], "status"].tolist() == ["proposed", "proposed"]
    assert later.loc[["1800000005", "1800000021"], "level"].tolist() == [2, 2]


def test_a_residual_matching_two_invoices_or_none_is_an_error_naming_file_row_and_candidates(mapping):
    with pytest.raises(LedgerError) as raised:
        import_ledger([AMBIGUOUS], mapping)
    problems = {problem.row: problem for problem in raised.value.problems}
    assert sorted(problems) == [5, 8]
    several, none = problems[5], problems[8]
    assert several.where == str(AMBIGUOUS) and several.column == "Zuordnung"
    # Both invoices of customer 200001 carry Zuordnung PO-88001; the residual's Referenz AVIS-0050 matches neither.
    assert several.message.endswith("its assignment PO-88001, reference AVIS-0050 match several invoices of "
                                    "customer 200001: 1800000050, 1800000051")
    assert none.message.endswith("its assignment PO-99999, reference AVIS-0060 match no invoice of customer "
                                 "200002: cannot tell which invoice it belongs to")


ENGLISH = {"Buchungskreis": "Company Code", "Konto": "Account", "Belegnummer": "Document Number",
           "Belegart": "Document Type", "Belegdatum": "Document Date", "Buchungsdatum": "Posting Date",
           "Nettofälligkeit": "Net due date", "Betrag in Belegwährung": "Amount in doc. curr.",
           "Belegwährung": "Document currency", "Betrag in Hauswährung": "Amount in local currency",
           "Hauswährung": "Local Currency", "Ausgleichsbeleg": "Clearing Document",
           "Ausgleichsdatum": "Clearing date", "Zuordnung": "Assignment", "Referenz": "Reference",
           "Mahnstufe": "Dunning level", "Mahnsperre": "Dunning block", "Text": "Text"}


def german_number(text: str) -> float:
    """1.234,56- as -1234.56."""
    sign = -1.0 if text.endswith("-") else 1.0
    return sign * float(text.rstrip("-").replace(".", "").replace(",", "."))


def test_the_standard_layout_as_english_xlsx_imports_to_the_german_csvs_ledger(tmp_path):
    # The same items as the English GUI exports them to Excel: English headers, real numbers and dates.
    frame = pd.read_csv(WITHOUT_REFERENCES, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)
    for column in ("Betrag in Belegwährung", "Betrag in Hauswährung"):
        frame[column] = frame[column].map(german_number)
    for column in ("Belegdatum", "Buchungsdatum", "Nettofälligkeit", "Ausgleichsdatum"):
        frame[column] = pd.to_datetime(frame[column], format="%d.%m.%Y", errors="coerce")  # 00.00.0000: empty
    path = tmp_path / "fbl5n_english.xlsx"
    frame.rename(columns=ENGLISH).to_excel(path, index=False)
    english, german = import_ledger([path], "sap_fbl5n"), import_ledger([WITHOUT_REFERENCES], "sap_fbl5n")
    for name, table in german.tables().items():
        pd.testing.assert_frame_equal(english.tables()[name], table, check_dtype=False, obj=name)
    assert len(german.invoices) > 10 and len(german.payment_applications) > 10


def test_arrisk_import_of_the_standard_layout_says_what_each_rule_linked(tmp_path):
    from typer.testing import CliRunner

    from serving.cli import app

    result = CliRunner().invoke(app, ["import", str(WITHOUT_REFERENCES), "--mapping", "sap_fbl5n",
                                      "--out", str(tmp_path / "ledger")])
    assert result.exit_code == 0, result.output
    assert "linked by assignment: 4" in result.output and "linked by reference: 3" in result.output
    assert "Rechnungsbezug" in result.output  # the note: the column is not in this layout


@pytest.mark.parametrize("partitions", [[], ["--partitions", "2"]], ids=["whole", "partitioned"])
def test_the_import_command_prints_what_each_rule_linked_and_the_undated_levels(tmp_path, partitions):
    result = CliRunner().invoke(app, ["import", "--mapping", "sap_fbl5n", "--out", str(tmp_path / "ledger"),
                                      *partitions, str(WITHOUT_REFERENCES)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "residual items and partial payments linked by assignment: 4" in result.output
    assert "residual items and partial payments linked by reference: 3" in result.output
    assert "4 documents carry a dunning level without a date" in result.output
    assert len(read_ledger(tmp_path / "ledger").dunning_notices) == 4
