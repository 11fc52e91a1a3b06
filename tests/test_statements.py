"""Bank statements (camt.053, MT940) read into `payments` rows: `ledger.statements`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ledger.errors import LedgerError
from ledger.schema import SCHEMAS, columns_of
from ledger.statements import new_payments, read_statements, statement_payments

FIXTURES = Path(__file__).parent / "fixtures" / "statements"
CAMT = FIXTURES / "camt053_example.xml"
MT940 = FIXTURES / "mt940_example.sta"
CAMT_STATEMENT = "DE89370400440532013000/CAMT053-20240305-0055"
MT940_STATEMENT = "37040044/0532013000/STARTUMS/00055/001"

def _row(date: str, amount: float, reference: str | None, payer_name: str | None, payer_account: str | None,
         remittance_text: str | None, statement_ref: str) -> dict:
    """An expected payment (in EUR, the account currency of both fixtures), as written by hand."""
    return {"received_date": pd.Timestamp(date), "amount": amount, "currency": "EUR", "amount_base": amount,
            "reference": reference, "payer_name": payer_name, "payer_account": payer_account,
            "remittance_text": remittance_text, "statement_ref": statement_ref}


# What the bank sent, written out by hand (payment_id and customer_id are checked separately).
CAMT_EXPECTED = [
    _row("2024-03-05", 1190.00, "E2E-ACME-1001", "ACME GMBH", "DE02120300000000202051",
         "Invoice INV-1001 INV-1002", f"{CAMT_STATEMENT}/1"),
    _row("2024-03-06", 2500.00, "2024030500012346", "Beta Handels AG", "AT611904300234573201",
         "INV-1003", f"{CAMT_STATEMENT}/2"),
    _row("2024-03-05", 99.90, "2024030500012347", "Gamma Services SARL", "0012345678",
         None, f"{CAMT_STATEMENT}/3"),
    _row("2024-03-06", 1000.00, "DELTA-PAY-5567", "Delta Logistik GmbH", "DE12500105170648489890",
         "INV-1005", f"{CAMT_STATEMENT}/5.1"),
    _row("2024-03-06", 500.00, "2024030500012349-2", "Epsilon KG", "DE75512108001245126199",
         "Teilzahlung INV-1006", f"{CAMT_STATEMENT}/5.2"),
]

MT940_EXPECTED = [
    _row("2024-03-05", 1190.00, "E2E-ZETA-7781", "Zeta Maschinenbau GmbH & Co. KG", "DE02120300000000202051",
         "EREF+E2E-ZETA-7781SVWZ+Rechnung INV-1008 INV-1009", f"{MT940_STATEMENT}/1"),
    _row("2024-03-05", 875.50, "OMEGA-PO-4471", None, None,
         "Payment for INV-1004 thank you Omega Trading Ltd, London", f"{MT940_STATEMENT}/2"),
    _row("2024-03-05", 420.00, None, "Theta Elektro GmbH", "DE02500105170137075030",
         "SVWZ+INV-1007", f"{MT940_STATEMENT}/4"),
]

CAMT_002 = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>MSG-1</MsgId><CreDtTm>2023-11-02T07:00:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>STMT-0001</Id>
      <CreDtTm>2023-11-02T07:00:00</CreDtTm>
      <Acct><Id><IBAN>NL91ABNA0417164300</IBAN></Id><Ccy>EUR</Ccy></Acct>
      <Ntry>
        <Amt Ccy="EUR">250.75</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts>BOOK</Sts>
        <BookgDt><DtTm>2023-11-01T16:45:00+01:00</DtTm></BookgDt>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls><TxDtls>
          <Refs><EndToEndId>KAPPA-88</EndToEndId></Refs>
          <RltdPties><Dbtr><Nm>Kappa BV</Nm></Dbtr></RltdPties>
          <RmtInf><Ustrd>INV-2001</Ustrd></RmtInf>
        </TxDtls></NtryDtls>
      </Ntry>
    </Stmt>
  </BkToCstmrStmt>
</Document>
"""


def _without_ids(frame: pd.DataFrame) -> list[dict]:
    """The rows as dicts, without the generated id and the (always missing) customer."""
    return frame.drop(columns=["payment_id", "customer_id"]).to_dict("records")


def _error_text(path: Path) -> str:
    """The message of the LedgerError that reading `path` raises."""
    with pytest.raises(LedgerError) as caught:
        statement_payments(path)
    return str(caught.value)


def _copy(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    """A copy of a fixture with `old` replaced by `new` (which must be there)."""
    text = source.read_text(encoding="utf-8")
    assert old in text
    target = tmp_path / source.name
    target.write_bytes(text.replace(old, new).encode("utf-8"))
    return target


# --- what is read ---


def test_camt_credits_become_payments_with_their_remittance_information():
    frame = statement_payments(CAMT)

    assert list(frame.columns) == columns_of("payments")
    assert _without_ids(frame) == CAMT_EXPECTED
    assert frame["customer_id"].isna().all()


def test_camt_skips_the_debit_and_the_reversal():
    refs = set(statement_payments(CAMT)["statement_ref"])

    assert f"{CAMT_STATEMENT}/4" not in refs  # the bank fee
    assert f"{CAMT_STATEMENT}/6" not in refs  # the fee reversed: a credit, but a reversal
    assert len(refs) == 5


def test_camt_batch_entry_gives_one_payment_per_transaction():
    frame = statement_payments(CAMT)
    batch = frame[frame["statement_ref"].str.startswith(f"{CAMT_STATEMENT}/5")]

    assert batch["amount"].tolist() == [1000.00, 500.00]
    assert batch["payer_name"].tolist() == ["Delta Logistik GmbH", "Epsilon KG"]


def test_camt_of_an_older_version_with_the_payer_name_directly_under_dbtr(tmp_path):
    path = tmp_path / "statement.xml"
    path.write_text(CAMT_002, encoding="utf-8")

    assert _without_ids(statement_payments(path)) == [
        _row("2023-11-01", 250.75, "KAPPA-88", "Kappa BV", None, "INV-2001",
             "NL91ABNA0417164300/STMT-0001/1"),
    ]


def test_mt940_credits_become_payments_with_their_remittance_information():
    frame = statement_payments(MT940)

    assert list(frame.columns) == columns_of("payments")
    assert _without_ids(frame) == MT940_EXPECTED
    assert frame["customer_id"].isna().all()


def test_mt940_skips_the_debit_and_the_reversal():
    refs = set(statement_payments(MT940)["statement_ref"])

    assert f"{MT940_STATEMENT}/3" not in refs  # the direct debit (D)
    assert f"{MT940_STATEMENT}/5" not in refs  # the returned credit (RC)
    assert len(refs) == 3


def test_mt940_in_a_swift_envelope_reads_the_same(tmp_path):
    text = MT940.read_text(encoding="ascii")
    path = tmp_path / "statement.fin"
    envelope = "{1:F01COBADEFFAXXX0000000000}{2:I940COBADEFFXXXXN}{4:\n"
    path.write_text(envelope + text.replace("\r\n-\r\n", "\n") + "-}", encoding="ascii")

    assert _without_ids(statement_payments(path)) == MT940_EXPECTED


def test_the_frames_pass_the_payments_schema():
    SCHEMAS["payments"].validate(statement_payments(CAMT))
    SCHEMAS["payments"].validate(statement_payments(MT940))
    SCHEMAS["payments"].validate(read_statements([CAMT, MT940]))


# --- each payment once ---


def test_payment_ids_are_stable_and_unique():
    first = statement_payments(CAMT)["payment_id"].tolist()

    assert first == statement_payments(CAMT)["payment_id"].tolist()
    assert all(pid.startswith("BANK-") and len(pid) == 21 for pid in first)
    assert len(set(first) | set(statement_payments(MT940)["payment_id"])) == 8


def test_a_statement_read_twice_adds_nothing_twice():
    ledger = statement_payments(CAMT)

    assert len(new_payments(ledger, statement_payments(CAMT))) == 0
    assert _without_ids(new_payments(ledger, statement_payments(MT940))) == MT940_EXPECTED
    assert len(read_statements([CAMT, MT940, CAMT, MT940])) == 8


def test_a_known_statement_line_is_not_new_even_under_another_id():
    ledger = statement_payments(MT940)
    ledger["payment_id"] = ["P-1", "P-2", "P-3"]

    assert len(new_payments(ledger, statement_payments(MT940))) == 0


def test_new_payments_keeps_unknown_lines_of_a_ledger_without_statement_refs():
    ledger = pd.DataFrame({"payment_id": ["P-1"], "amount": [10.0]})

    assert len(new_payments(ledger, statement_payments(CAMT))) == 5


# --- bad input ---


def test_unknown_format_names_the_file(tmp_path):
    path = tmp_path / "payments.csv"
    path.write_text("date;amount;text\n2024-03-05;1190,00;INV-1001\n", encoding="utf-8")

    message = _error_text(path)

    assert str(path) in message
    assert "expected a camt.053 XML or an MT940 statement" in message


def test_other_iso_20022_message_is_not_a_statement(tmp_path):
    path = tmp_path / "pain.xml"
    path.write_text('<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"/>', encoding="utf-8")

    message = _error_text(path)

    assert str(path) in message
    assert "expected a camt.053 XML or an MT940 statement" in message
    assert "pain.001.001.09" in message


def test_malformed_xml_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text(CAMT.read_text(encoding="utf-8").replace("</Ntry>", "</Entry>", 1), encoding="utf-8")

    message = _error_text(path)

    assert f"{path} row " in message
    assert "malformed XML" in message


def test_camt_amount_that_is_no_number_names_the_entry_and_field(tmp_path):
    path = _copy(tmp_path, CAMT, '<Amt Ccy="EUR">2500.00</Amt>\n        <CdtDbtInd>CRDT',
                 '<Amt Ccy="EUR">2.500,00</Amt>\n        <CdtDbtInd>CRDT')

    message = _error_text(path)

    assert str(path) in message
    assert "(entry 2) column Amt: '2.500,00' is not an amount" in message


def test_camt_problems_of_several_entries_are_reported_together(tmp_path):
    path = _copy(tmp_path, CAMT, "<Dt>2024-03-06</Dt>", "<Dt>06.03.2024</Dt>")
    path.write_text(path.read_text(encoding="utf-8").replace('Ccy="EUR">99.90', 'Ccy="EURO">99.90'),
                    encoding="utf-8")

    message = _error_text(path)

    assert "2 problem(s)" in message
    assert "(entry 2) column ValDt/Dt: '06.03.2024': expected a date like 2024-03-05" in message
    assert "(entry 3) column Amt/@Ccy: 'EURO': expected an ISO 4217 currency code" in message


def test_mt940_broken_statement_line_names_the_file_line_and_entry(tmp_path):
    path = _copy(tmp_path, MT940, ":61:2403050305CR875,50", ":61:24030X0305CR875,50")

    message = _error_text(path)

    assert f"{path} row 9 (entry 2) column :61: statement line: unreadable: expected value date" in message


def test_mt940_impossible_date_names_the_entry(tmp_path):
    path = _copy(tmp_path, MT940, ":61:2403050306CR420,00", ":61:2413050306CR420,00")

    assert f"{path} row 16 (entry 4) column :61: statement line: unreadable" in _error_text(path)


def test_mt940_broken_balance_names_the_field_and_line(tmp_path):
    path = _copy(tmp_path, MT940, ":62F:C240306EUR12055,50", ":62F:X240306EUR12055,50")

    assert f"{path} row 23 column :62F: field: unreadable" in _error_text(path)


def test_missing_file_is_a_ledger_error(tmp_path):
    path = tmp_path / "nowhere.xml"

    assert f"{path}: cannot be read" in _error_text(path)


def test_read_statements_reports_every_bad_file(tmp_path):
    unknown = tmp_path / "a.txt"
    unknown.write_text("hello\n", encoding="utf-8")
    broken = tmp_path / "b.xml"
    broken.write_text("<Document", encoding="utf-8")

    with pytest.raises(LedgerError) as caught:
        read_statements([CAMT, unknown, broken])

    assert [problem.where for problem in caught.value.problems] == [str(unknown), str(broken)]
