"""Bank statements read into ledger `payments` rows: the incoming money that cash application matches.

Two formats, told apart by their content, not by the file name:

- ISO 20022 camt.053 (bank-to-customer statement, any version 001.02 to 001.13), read with lxml;
- SWIFT MT940 (with or without the `{1:...}{2:...}{4:` envelope), read with the `mt940` package.

Only incoming credits become payments: debits (outgoing money) are not customer payments, and reversals
(camt `RvslInd` true, MT940 `RC`/`RD`) undo an earlier entry rather than bring new money; both are
skipped without a word. A statement line's payer is not known yet, so `customer_id` is always missing
here: cash application finds the customer from `payer_account`, `payer_name` and `remittance_text`.

A statement read twice adds nothing twice: `payment_id` is a hash of what identifies the line (account,
statement, entry, date, amount, currency, payer account, remittance text), and `statement_ref` names the
statement and the entry, so `new_payments` drops the lines already in the ledger.

Bad input raises `LedgerError` naming the file, the entry (as `entry N`, with its line number) and the
field, never a parser's own exception.
"""

from __future__ import annotations

import decimal
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import mt940
import pandas as pd
from lxml import etree

from ledger.currencies import ISO_4217
from ledger.errors import LedgerError, Problem
from ledger.schema import columns_of

TITLE = "bad bank statement"
UNKNOWN_FORMAT = "expected a camt.053 XML or an MT940 statement"
CAMT053_NAMESPACE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.053\.001\.\d{2}")
# camt amounts: no sign, '.' as decimal point, at most 5 decimals (ActiveOrHistoricCurrencyAndAmount).
CAMT_AMOUNT = re.compile(r"\d{1,18}(\.\d{1,5})?")
CAMT_DATE_PATHS = ("ValDt/Dt", "ValDt/DtTm", "BookgDt/Dt", "BookgDt/DtTm")
# The text of SWIFT block 4 (the message itself) in an MT940 file with the `{1:...}{2:...}{4:` envelope.
SWIFT_BLOCK4 = re.compile(r"\{4:[ \t]*\r?\n(.*?)\r?\n-\}", re.DOTALL)
# A German (DFÜ-Abkommen) structured :86:, e.g. `166?00SEPA-GUTSCHRIFT?20EREF+...`: a 3-digit
# business transaction code, then `?NN` subfields.
STRUCTURED_86 = re.compile(r"\d{3}\?\d{2}")
SUBFIELD_86 = re.compile(r"\?(\d{2})([^?]*)")
# ?20-?29 hold the remittance text (Verwendungszweck), ?60-?63 its continuation.
REMITTANCE_SUBFIELDS = [str(n) for n in range(20, 30)] + ["60", "61", "62", "63"]
IBAN = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}")
MT940_ENTRY_EXPECTED = (
    "unreadable: expected value date YYMMDD, optional entry date MMDD, "
    "C, D, RC or RD, an amount like 1190,00 and a transaction type like NTRF"
)
# The parser keeps the :61: customer reference when an :86: follows, and gives us the :86: text as the
# bank sent it (we read its German ?NN subfields ourselves, see `_mt940_details`).
MT940_OPTIONS = mt940.Options(merge_keeps_values=True, unbounded_details=True, strip_bom=True)


@dataclass(frozen=True)
class _Line:
    """One incoming payment as the statement gives it, before it becomes a `payments` row."""

    account: str
    statement: str  # the statement's id for this account
    entry: str  # "3", or "5.2" for the second transaction of batch entry 5
    received: date
    amount: Decimal
    currency: str
    payer_name: str | None
    payer_account: str | None
    remittance_text: str | None
    reference: str | None


@dataclass(frozen=True)
class _Details:
    """What an MT940 :86: field says about the payer and the payment."""

    remittance_text: str | None
    payer_name: str | None
    payer_account: str | None


# --- public -------------------------------------------------------------------------------------------


def statement_payments(path: str | Path) -> pd.DataFrame:
    """The incoming credits of one bank statement file (camt.053 or MT940) as `payments` rows.

    Columns are those of the `payments` contract, in its order. `customer_id` is always missing (the
    payer is not identified yet). `amount_base` equals `amount`: a statement is in its account's
    currency, and the conversion to the ledger's base currency happens where that currency is known,
    not here. Debits and reversals are skipped. `LedgerError` for a file that cannot be read, is in
    neither format, or has an entry that cannot be read.
    """
    file = str(path)
    data = _file_bytes(file)
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        lines = _camt_lines(file, _camt_root(file, data))
    else:
        text = _decoded(data)
        if not _is_mt940(text):
            raise LedgerError(Problem(file, None, None, UNKNOWN_FORMAT), title=TITLE)
        lines = _mt940_lines(file, text)
    return _payments_frame(lines)


def new_payments(existing: pd.DataFrame, read: pd.DataFrame) -> pd.DataFrame:
    """The rows of `read` not yet in `existing`, each once: a statement read twice adds nothing twice.

    A row is already known when its `payment_id` is in `existing`, or its `statement_ref` (when it has
    one) equals the `statement_ref` of a row in `existing`. Within `read`, only the first row of each
    `payment_id` and of each `statement_ref` is kept.
    """
    known_ids = set(existing["payment_id"]) if "payment_id" in existing else set()
    known_refs = set(_statement_refs(existing).dropna())
    refs = _statement_refs(read)
    is_new = ~read["payment_id"].isin(known_ids) & ~(refs.notna() & refs.isin(known_refs))
    is_first = ~read["payment_id"].duplicated() & ~(refs.notna() & refs.duplicated())
    return read[is_new & is_first].reset_index(drop=True)


def read_statements(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The payments of several statement files, concatenated, each payment once (see `new_payments`).

    `LedgerError` with the problems of every file, not only the first bad one.
    """
    frames, problems = [], []
    for path in paths:
        try:
            frames.append(statement_payments(path))
        except LedgerError as error:
            problems += error.problems
    if problems:
        raise LedgerError(problems, title=TITLE)
    together = pd.concat(frames, ignore_index=True) if frames else _payments_frame([])
    return new_payments(_payments_frame([]), together)


# --- rows ---------------------------------------------------------------------------------------------


def _payments_frame(lines: list[_Line]) -> pd.DataFrame:
    """The `payments` rows of the lines, in contract column order and dtypes."""
    frame = pd.DataFrame([_payment_row(line) for line in lines], columns=columns_of("payments"))
    frame["received_date"] = pd.to_datetime(frame["received_date"]).astype("datetime64[ns]")
    frame["amount"] = frame["amount"].astype(float)
    frame["amount_base"] = frame["amount_base"].astype(float)
    return frame


def _payment_row(line: _Line) -> dict[str, object]:
    """One `payments` row; `amount_base` is the amount itself (the statement is in its account currency)."""
    amount = float(line.amount)
    return {
        "payment_id": _payment_id(line),
        "customer_id": None,
        "received_date": line.received,
        "amount": amount,
        "currency": line.currency,
        "amount_base": amount,
        "reference": line.reference,
        "payer_name": line.payer_name,
        "payer_account": line.payer_account,
        "remittance_text": line.remittance_text,
        "statement_ref": f"{line.statement}/{line.entry}",
    }


def _payment_id(line: _Line) -> str:
    """"BANK-" and 16 hex digits of a hash of what identifies the line: the same file gives the same ids."""
    parts = [line.account, line.statement, line.entry, line.received.isoformat(), repr(float(line.amount)),
             line.currency, line.payer_account or "", line.remittance_text or ""]
    return "BANK-" + hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def _statement_refs(frame: pd.DataFrame) -> pd.Series:
    """The frame's `statement_ref` column, or all missing when it has none."""
    if "statement_ref" in frame:
        return frame["statement_ref"]
    return pd.Series(None, index=frame.index, dtype=object)


# --- reading the file ---------------------------------------------------------------------------------


def _file_bytes(file: str) -> bytes:
    """The file's content; `LedgerError` when it cannot be read."""
    try:
        return Path(file).read_bytes()
    except OSError as error:
        problem = Problem(file, None, None, f"cannot be read ({error.strerror})")
        raise LedgerError(problem, title=TITLE) from error


def _decoded(data: bytes) -> str:
    """The text of a statement file: UTF-8 (with or without a byte order mark), else ISO 8859-1."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# --- camt.053 -----------------------------------------------------------------------------------------


def _camt_root(file: str, data: bytes) -> etree._Element:
    """The root of a camt.053 document; `LedgerError` for malformed XML or another XML message."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        message = f"malformed XML ({error.msg}): {UNKNOWN_FORMAT}"
        raise LedgerError(Problem(file, error.lineno, None, message), title=TITLE) from error
    namespace = etree.QName(root).namespace or ""
    if not CAMT053_NAMESPACE.fullmatch(namespace):
        message = f"{UNKNOWN_FORMAT}, not XML in namespace {namespace!r}" if namespace else UNKNOWN_FORMAT
        raise LedgerError(Problem(file, root.sourceline, None, message), title=TITLE)
    return root


def _camt_lines(file: str, root: etree._Element) -> list[_Line]:
    """The incoming payments of every statement in the document; every bad entry reported at once."""
    statements = _children(root, "BkToCstmrStmt/Stmt")
    if not statements:
        raise LedgerError(Problem(file, root.sourceline, "BkToCstmrStmt/Stmt",
                                  "missing: expected at least one statement"), title=TITLE)
    lines: list[_Line] = []
    problems: list[Problem] = []
    for statement in statements:
        try:
            statement_id = _camt_statement_id(file, statement)
        except LedgerError as error:
            problems += error.problems
            continue
        for number, entry in enumerate(_children(statement, "Ntry"), start=1):
            try:
                lines += _camt_entry_lines(file, statement_id, number, entry)
            except LedgerError as error:
                problems += error.problems
    if problems:
        raise LedgerError(problems, title=TITLE)
    return lines


def _camt_statement_id(file: str, statement: etree._Element) -> tuple[str, str]:
    """The statement's account (IBAN, else other id) and its id (`Id`, else `ElctrncSeqNb`)."""
    account = _first_text(statement, "Acct/Id/IBAN", "Acct/Id/Othr/Id")
    statement_id = _first_text(statement, "Id", "ElctrncSeqNb")
    if account is None:
        raise LedgerError(Problem(file, statement.sourceline, "Acct/Id",
                                  "missing: expected the account's IBAN or Othr/Id"), title=TITLE)
    if statement_id is None:
        raise LedgerError(Problem(file, statement.sourceline, "Id",
                                  "missing: expected the statement's Id or ElctrncSeqNb"), title=TITLE)
    return account, f"{account}/{statement_id}"


def _camt_entry_lines(file: str, statement_id: tuple[str, str], number: int,
                      entry: etree._Element) -> list[_Line]:
    """The payments of one `Ntry`: none for a debit or a reversal, one per `TxDtls` for a batch."""
    direction = _text(entry, "CdtDbtInd")
    if direction not in ("CRDT", "DBIT"):
        found = "missing" if direction is None else repr(direction)
        raise _entry_error(file, number, entry, "CdtDbtInd", f"{found}: expected CRDT or DBIT")
    if direction == "DBIT" or (_text(entry, "RvslInd") or "").lower() in ("true", "1"):
        return []
    account, statement = statement_id
    received = _camt_date(file, number, entry)
    # An entry without details still is one payment: read its (missing) details from the entry itself.
    transactions = _children(entry, "NtryDtls/TxDtls") or [entry]
    is_batch = len(transactions) > 1
    lines = []
    for index, transaction in enumerate(transactions, start=1):
        amount, currency = _camt_transaction_amount(file, number, entry, transaction, is_batch)
        lines.append(_Line(
            account=account,
            statement=statement,
            entry=f"{number}.{index}" if is_batch else str(number),
            received=received,
            amount=amount,
            currency=currency,
            payer_name=_first_text(transaction, "RltdPties/Dbtr/Nm", "RltdPties/Dbtr/Pty/Nm"),
            payer_account=_first_text(transaction, "RltdPties/DbtrAcct/Id/IBAN",
                                      "RltdPties/DbtrAcct/Id/Othr/Id"),
            remittance_text=_camt_remittance(transaction),
            reference=_camt_reference(entry, transaction),
        ))
    return lines


def _camt_transaction_amount(file: str, number: int, entry: etree._Element, transaction: etree._Element,
                             is_batch: bool) -> tuple[Decimal, str]:
    """The amount of one transaction: the entry's own, or in a batch the transaction's `Amt` (else
    `AmtDtls/TxAmt/Amt`), which a batch must give: it cannot be split otherwise."""
    if not is_batch:
        return _camt_amount(file, number, entry, "Amt")
    for path in ("Amt", "AmtDtls/TxAmt/Amt"):
        if _child(transaction, path) is not None:
            return _camt_amount(file, number, transaction, path)
    raise _entry_error(file, number, transaction, "TxDtls/Amt",
                       "missing in a batch entry: expected Amt or AmtDtls/TxAmt/Amt for each TxDtls")


def _camt_amount(file: str, number: int, element: etree._Element, path: str) -> tuple[Decimal, str]:
    """The amount at `path` and its `Ccy` currency; `LedgerError` unless a plain amount in ISO 4217."""
    found = _child(element, path)
    if found is None:
        raise _entry_error(file, number, element, path, "missing: expected the amount")
    text = (found.text or "").strip()
    if not CAMT_AMOUNT.fullmatch(text):
        message = f"{text!r} is not an amount: expected digits with a '.' decimal point, like 1190.00"
        raise _entry_error(file, number, found, path, message)
    currency = found.get("Ccy")
    if currency not in ISO_4217:
        message = f"{currency!r}: expected an ISO 4217 currency code"
        raise _entry_error(file, number, found, f"{path}/@Ccy", message)
    return Decimal(text), currency


def _camt_date(file: str, number: int, entry: etree._Element) -> date:
    """The entry's value date, else its booking date (a date-time counts by its own calendar date)."""
    for path in CAMT_DATE_PATHS:
        text = _text(entry, path)
        if text is not None:
            try:
                return date.fromisoformat(text[:10])
            except ValueError:
                raise _entry_error(file, number, _child(entry, path), path,
                                   f"{text!r}: expected a date like 2024-03-05") from None
    raise _entry_error(file, number, entry, "ValDt", "missing: expected ValDt or BookgDt")


def _camt_remittance(transaction: etree._Element) -> str | None:
    """Every unstructured remittance line, then every structured creditor reference, space-separated."""
    parts = [_clean(element.text) for element in _children(transaction, "RmtInf/Ustrd")]
    parts += [_clean(element.text) for element in _children(transaction, "RmtInf/Strd/CdtrRefInf/Ref")]
    return " ".join(part for part in parts if part) or None


def _camt_reference(entry: etree._Element, transaction: etree._Element) -> str | None:
    """The payer's end-to-end id, unless NOTPROVIDED; else the bank's reference for the transaction."""
    end_to_end = _text(transaction, "Refs/EndToEndId")
    if end_to_end and end_to_end.upper() != "NOTPROVIDED":
        return end_to_end
    return _text(transaction, "Refs/AcctSvcrRef") or _text(entry, "AcctSvcrRef")


def _entry_error(file: str, number: int, element: etree._Element | None, column: str,
                 message: str) -> LedgerError:
    """The error for a field of entry `number`, at the line of `element`."""
    line = element.sourceline if element is not None else None
    return LedgerError(Problem(file, line, column, message, key=f"entry {number}"), title=TITLE)


def _child(element: etree._Element, path: str) -> etree._Element | None:
    """The first element at a `/`-separated path of local names, in the document's own namespace."""
    return element.find(_qualified(element, path))


def _children(element: etree._Element, path: str) -> list[etree._Element]:
    """Every element at a `/`-separated path of local names, in the document's own namespace."""
    return element.findall(_qualified(element, path))


def _qualified(element: etree._Element, path: str) -> str:
    """`A/B` as `{namespace}A/{namespace}B`, with the namespace of `element` (whatever camt version)."""
    namespace = etree.QName(element).namespace
    prefix = f"{{{namespace}}}" if namespace else ""
    return "/".join(prefix + part for part in path.split("/"))


def _text(element: etree._Element, path: str) -> str | None:
    """The stripped text at `path`, or None when the element is missing or empty."""
    found = _child(element, path)
    return _clean(found.text) if found is not None else None


def _first_text(element: etree._Element, *paths: str) -> str | None:
    """The text at the first of `paths` that has one."""
    for path in paths:
        text = _text(element, path)
        if text is not None:
            return text
    return None


def _clean(text: str | None) -> str | None:
    """The text without surrounding white space, or None when nothing is left."""
    return (text or "").strip() or None


# --- MT940 --------------------------------------------------------------------------------------------


def _is_mt940(text: str) -> bool:
    """Whether the text is an MT940 statement: it starts with `:20:` or has `:61:` lines."""
    body = _mt940_body(text)
    return body.lstrip().startswith(":20:") or re.search(r"(?m)^:61:", body) is not None


def _mt940_body(text: str) -> str:
    """The statement text without the SWIFT envelope (`{1:...}{2:...}{4:` ... `-}`) when it has one."""
    messages = SWIFT_BLOCK4.findall(text)
    return "\n".join(messages) if messages else text


def _mt940_lines(file: str, text: str) -> list[_Line]:
    """The incoming payments of every statement (each starting at `:20:`) in the file."""
    entry_lines = [n for n, line in enumerate(text.splitlines(), start=1) if line.startswith(":61:")]
    lines: list[_Line] = []
    for block in re.split(r"(?m)^(?=:20:)", _mt940_body(text)):
        if not block.strip():
            continue
        count = len(re.findall(r"(?m)^:61:", block))
        transactions = _mt940_statement(file, text, block, entry_lines[:count])
        entry_lines = entry_lines[count:]
        lines += _mt940_statement_lines(file, transactions)
    return lines


def _mt940_statement(file: str, text: str, block: str, entry_lines: list[int]) -> mt940.models.Transactions:
    """One statement parsed by the `mt940` package; `LedgerError` naming the entry or field it could not read.

    `entry_lines` are the file's line numbers of the block's `:61:` lines, for the error message.
    """
    started: list[dict] = []  # the :61: lines the parser got past the pattern of, to tell which one failed

    def note_entry(transactions: object, tag: object, tag_dict: dict, *args: object) -> dict:
        started.append(tag_dict)
        return tag_dict

    processors = {"pre_statement": [mt940.processors.date_fixup_pre_processor, note_entry],
                  "post_transaction_details": []}
    transactions = mt940.models.Transactions(processors=processors, options=MT940_OPTIONS)
    try:
        transactions.parse(block)
    except (RuntimeError, ValueError, decimal.InvalidOperation) as error:
        in_entry = len(started) > len(transactions.transactions)
        problem = _mt940_problem(file, text, error, len(transactions.transactions), in_entry, entry_lines)
        raise LedgerError(problem, title=TITLE) from error
    if len(transactions.transactions) != len(entry_lines):
        message = "a statement line without a transaction type: expected e.g. NTRF after the amount"
        problem = Problem(file, entry_lines[0] if entry_lines else None, ":61: statement line", message)
        raise LedgerError(problem, title=TITLE)
    return transactions


def _mt940_problem(file: str, text: str, error: Exception, parsed: int, in_entry: bool,
                   entry_lines: list[int]) -> Problem:
    """What the `mt940` parser failed on, after `parsed` statement lines: a :61: line (the parser's
    pattern did not match it, or `in_entry`: its date or amount was impossible) or another field."""
    tag = error.args[1] if isinstance(error, RuntimeError) and len(error.args) == 3 else None
    if isinstance(tag, mt940.tags.Statement) or (tag is None and in_entry):
        line = entry_lines[parsed] if parsed < len(entry_lines) else None
        return Problem(file, line, ":61: statement line", MT940_ENTRY_EXPECTED, key=f"entry {parsed + 1}")
    if isinstance(tag, mt940.tags.Tag):
        return Problem(file, _tag_line(text, tag.id, str(error.args[2])), f":{tag.id}: field", "unreadable")
    return Problem(file, None, None, f"unreadable MT940 statement ({error})")


def _mt940_statement_lines(file: str, transactions: mt940.models.Transactions) -> list[_Line]:
    """The credits (status C) of one parsed statement; debits and reversals (D, RC, RD) are skipped."""
    account = _clean(transactions.data.get("account_identification"))
    if account is None:
        problem = Problem(file, None, ":25: account", "missing: expected the account the statement is for")
        raise LedgerError(problem, title=TITLE)
    statement = "/".join(part for part in (account, _clean(transactions.data.get("transaction_reference")),
                                           _mt940_statement_number(transactions.data)) if part)
    lines = []
    for number, transaction in enumerate(transactions, start=1):
        data = transaction.data
        if str(data.get("status", "")).upper() != "C":
            continue
        amount = data["amount"]
        if amount.currency not in ISO_4217:
            message = f"{amount.currency!r}: expected the statement's ISO 4217 currency"
            raise LedgerError(Problem(file, None, ":60F: opening balance", message, key=f"entry {number}"),
                              title=TITLE)
        details = _mt940_details(data.get("transaction_details"))
        value_date = data["date"]
        lines.append(_Line(
            account=account,
            statement=statement,
            entry=str(number),
            received=date(value_date.year, value_date.month, value_date.day),
            amount=abs(amount.amount),
            currency=amount.currency,
            payer_name=details.payer_name,
            payer_account=details.payer_account,
            remittance_text=details.remittance_text,
            reference=_mt940_reference(data.get("customer_reference")),
        ))
    return lines


def _mt940_statement_number(data: dict) -> str | None:
    """The :28C: statement number, with its sequence number when there is one (`00055/001`)."""
    number = _clean(data.get("statement_number"))
    sequence = _clean(data.get("sequence_number"))
    return f"{number}/{sequence}" if number and sequence else number


def _mt940_reference(customer_reference: str | None) -> str | None:
    """The :61: customer reference, unless the bank says there is none (NONREF)."""
    reference = _clean(customer_reference)
    return None if reference is None or reference.upper() == "NONREF" else reference


def _mt940_details(text: str | None) -> _Details:
    """Payer and remittance text of an :86: field.

    German structured details (`166?00...?20...`): ?20-?29 (and ?60-?63) joined as they are, since the
    bank cut the text into 27-character pieces wherever it fell; ?32 and ?33 the payer's name; ?31 the
    payer's account (an IBAN, or a domestic account number given as `bank code/account`, the bank code
    from ?30). Otherwise the lines of free text joined with a space; the payer is then unknown.
    """
    if not text:
        return _Details(None, None, None)
    joined = "".join(line.strip("\r\n") for line in text.splitlines())
    if not STRUCTURED_86.match(joined):
        free = " ".join(line.strip() for line in text.splitlines() if line.strip())
        return _Details(free or None, None, None)
    fields = _subfields(joined)
    return _Details(
        remittance_text=_clean("".join(fields.get(code, "") for code in REMITTANCE_SUBFIELDS)),
        payer_name=_clean(fields.get("32", "") + fields.get("33", "")),
        payer_account=_payer_account(_clean(fields.get("30")), _clean(fields.get("31"))),
    )


def _subfields(details: str) -> dict[str, str]:
    """The `?NN` subfields of a structured :86:, by code; a code given twice has its parts joined."""
    fields: dict[str, str] = {}
    for code, value in SUBFIELD_86.findall(details):
        fields[code] = fields.get(code, "") + value
    return fields


def _payer_account(bank_code: str | None, account: str | None) -> str | None:
    """The payer's IBAN as it is; a domestic account number with its bank code in front when given."""
    if account is None or bank_code is None or IBAN.fullmatch(account):
        return account
    return f"{bank_code}/{account}"


def _tag_line(text: str, tag_id: object, value: str) -> int | None:
    """The line number of the field `:<tag_id>:` whose value starts as `value` does."""
    first = value.strip().splitlines()[0] if value.strip() else ""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(f":{tag_id}:") and line[len(f":{tag_id}:"):].startswith(first):
            return number
    return None
