"""Bank-statement remittance data for a ledger's payments, with its truth (issue "cash application", item 1).

`with_remittance` gives every payment what a bank statement line shows: the payer's name and account,
the memo line (`remittance_text`) and the statement entry (`statement_ref`), drawn with the noise cash
application has to cope with:
- payer names that differ from the customer master (upper case, legal form changed or dropped, extra
  words, a typo, cut to the bank's name length), and a parent company paying for its subsidiaries
  (`customers.parent_id`), from its own account;
- memo lines quoting the ids the payment is applied to as they are, without their prefix or leading
  zeros, after a word ("Rechnung", "RE", "Inv no"), several in one line, with a one-digit typo, cut at
  35 (an MT940 line) or 140 characters (camt.053 Ustrd), or no reference at all;
- overpayments (an existing payment raised above what it applies, its applications kept), duplicate
  payments (a copy received 0-3 days later, applied to nothing: unapplied cash) and, when asked for,
  payments whose payer is not identified yet (no `customer_id`).

The truth frame has one row per payment of the result: `payment_id`; `customer_id`, the customer whose
invoices it pays (also for duplicates, parent-paid and unidentified payments); `invoice_ids`, the
documents it settles (invoices and credit memos; empty for a duplicate); `kinds`, the '|'-joined flags
of `KINDS`; `expected_residual`, its amount minus what it applies (> 0 for over- and duplicate payments).
`overpayment` flags every payment with more cash than it applies (the ledger's own unapplied cash too).
What the ledger itself says about a payment is flagged too: `partial` (an invoice it pays stays short of
its amount after it: instalments and short payments) and `deduction` (it nets a credit memo, or the
short-paid rest of an invoice it pays is written off the day it is applied). `discount` flags a payment
made net of a cash discount: a `discount_share` of the payments that settle one invoice alone, in full, are
lowered by one of `discount_rates` of it, their application with them, and the discount is booked as the
invoice's write-off on the day it is applied (how a cash discount posting clears the rest); such a payment
is not also flagged `deduction`.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from ledger.store import Ledger
from ledger.validation import TOLERANCE

DUPLICATE_PREFIX = "PAYX-"
KINDS = ("plain", "no_prefix", "word_prefix", "multi_invoice", "typo", "truncated", "no_reference",
         "parent_payer", "name_variant", "partial", "deduction", "discount", "overpayment", "duplicate")
ID_STYLES = ("full", "digits", "number")  # INV000123, 000123, 123
WORD_PREFIXES = ("Rechnung ", "Invoice ", "RE ", "Inv no ", "Rg.Nr. ", "Facture ", "Re: ")
SEPARATORS = (" ", ", ", "/", "; ", " + ")
GENERIC_TEXTS = (None, "PAYMENT", "Invoice payment {month}", "Zahlung {month}", "Payment as agreed",
                 "SETTLEMENT", "Ihre Rechnungen {month}", "Paiement factures")
PAYER_WORDS = ("ZAHLUNGSVERKEHR", "ACCOUNTS PAYABLE", "TREASURY", "BUCHHALTUNG", "FINANCE DEPT", "HOLDING",
               "EUROPE")
LEGAL_FORM_VARIANTS = {
    "GmbH": ("GMBH", "Gesellschaft mbH", ""), "AG": ("Aktiengesellschaft", ""), "SAS": ("S.A.S.", ""),
    "SA": ("S.A.", ""), "B.V.": ("BV", ""), "S.p.A.": ("SPA", "S.P.A.", ""), "S.L.": ("SL", ""),
    "Inc.": ("Inc", "Incorporated", ""), "Ltd": ("Limited", "LTD", ""), "AB": ("Aktiebolag", ""),
    "Sp. z o.o.": ("SP ZOO", ""),
}
NAME_OPERATIONS = ("upper", "legal_form", "typo", "extra_words", "legal_form_upper")
ID_PATTERN = re.compile(r"^(.*?)(\d+)$")


@dataclass(frozen=True)
class RemittanceConfig:
    """Shares and ranges of the remittance noise; shares are of payments unless a comment says otherwise."""

    second_account_share: float = 0.10  # customers paying from two bank accounts
    second_account_use: float = 0.30  # payments of such a customer made from its second account
    subsidiary_share: float = 0.08  # customers with a parent company (customers.parent_id)
    parent_pays_share: float = 0.50  # subsidiaries' payments the parent makes, from its own account
    name_variant_share: float = 0.35  # payer names that differ from the master name
    name_limit: tuple[int, int] = (20, 35)  # the bank cuts a varied payer name to this many characters
    no_reference_share: float = 0.12  # memo lines with no id at all (empty or generic)
    no_prefix_share: float = 0.30  # of lines quoting ids: ids without prefix ("000123" or "123")
    word_prefix_share: float = 0.30  # of lines quoting ids: a word before them ("Rechnung", "RE", "Inv no")
    typo_share: float = 0.05  # of lines quoting ids: one digit of one id wrong
    short_line_share: float = 0.15  # lines cut at 35 characters (MT940) instead of 140 (camt.053 Ustrd)
    overpayment_share: float = 0.02  # of fully applied payments: raised above what they apply
    overpayment_range: tuple[float, float] = (0.01, 0.25)  # extra cash as a share of the amount
    duplicate_share: float = 0.01  # payments sent twice (the copy applies to nothing)
    duplicate_days: int = 3  # the copy arrives 0 to this many days later
    unidentified_share: float = 0.0  # payments whose payer is not identified yet (customer_id missing)
    discount_share: float = 0.03  # of payments settling one invoice alone and in full: net of a cash discount
    discount_rates: tuple[float, ...] = (0.02, 0.03)  # the discounts taken, as shares of the invoice


def with_remittance(ledger: Ledger, seed: int, config: RemittanceConfig | None = None) -> tuple[Ledger, pd.DataFrame]:
    """The ledger with remittance data on every payment, overpayments, duplicates and parent companies,
    and the truth frame (one row per payment); the same for the same ledger, seed and config."""
    config = config or RemittanceConfig()
    ledger, discounted = with_discounts(ledger, config, stream(seed, "discounts"))
    customers = ledger.customers
    payments = ledger.payments.reset_index(drop=True)
    n = len(payments)
    parent = parent_positions(customers, config.subsidiary_share, stream(seed, "parents"))
    first, second = customer_accounts(customers["country"].to_numpy(), config.second_account_share,
                                      stream(seed, "accounts"))
    customer = pd.Index(customers["customer_id"]).get_indexer(payments["customer_id"])
    payer = payer_positions(customer, parent, config.parent_pays_share, stream(seed, "payers"))
    account = payer_accounts(payer, first, second, config.second_account_use, stream(seed, "payer accounts"))
    name, name_varied = payer_names(customers["name"].to_numpy(dtype=object), payer, config,
                                    stream(seed, "payer names"))
    documents = applied_documents(payments["payment_id"], ledger.payment_applications)
    text, text_kinds = memo_lines(documents, payments["received_date"], config, stream(seed, "memo lines"))

    applied = applied_totals(payments["payment_id"], ledger.payment_applications)
    amount, amount_base = overpaid(payments["amount"].to_numpy(dtype=float),
                                   payments["amount_base"].to_numpy(dtype=float), applied, config,
                                   stream(seed, "overpayments"))
    partial, deduction = settlement_kinds(ledger, payments["payment_id"])
    remitted = payments.assign(amount=amount, amount_base=amount_base, payer_name=name, payer_account=account,
                               remittance_text=text)
    kinds = text_kinds | {"parent_payer": (payer != customer) & (payer >= 0), "name_variant": name_varied,
                          "partial": partial & ~discounted, "deduction": deduction & ~discounted,
                          "discount": discounted,
                          "overpayment": amount - applied > TOLERANCE, "duplicate": np.zeros(n, dtype=bool)}

    copied = duplicate_positions(amount, config.duplicate_share, stream(seed, "duplicates"))
    copies = duplicate_payments(remitted, copied, config.duplicate_days, stream(seed, "duplicate days"))
    every = pd.concat([remitted, copies], ignore_index=True)
    true_customer = every["customer_id"].to_numpy(dtype=object)
    every["customer_id"] = unidentified(true_customer, config.unidentified_share, stream(seed, "unidentified"))
    every["statement_ref"] = statement_refs(every["received_date"])

    all_kinds = {kind: np.concatenate([flags, flags[copied]]) for kind, flags in kinds.items()}
    all_kinds["duplicate"][n:] = True
    for kind in ("partial", "deduction", "discount", "overpayment"):
        all_kinds[kind][n:] = False
    truth = pd.DataFrame({
        "payment_id": every["payment_id"].to_numpy(dtype=object),
        "customer_id": true_customer,
        "invoice_ids": documents + [[] for _ in copied],
        "kinds": joined_kinds(all_kinds),
        "expected_residual": np.round(every["amount"].to_numpy() - np.concatenate([applied, np.zeros(len(copied))]),
                                      2),
    })
    result = ledger.replace(customers=customers.assign(parent_id=parent_ids(customers, parent)), payments=every)
    return result, truth


# --------------------------------------------------------------------------------------------------
# Random streams and customers


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent random stream per part, fixed by the seed and the part's name."""
    return np.random.default_rng([seed % 2**63, zlib.crc32(f"remittance/{name}".encode())])


def parent_positions(customers: pd.DataFrame, share: float, rng: np.random.Generator) -> np.ndarray:
    """Per customer: the row of its parent company, -1 when it has none. A ledger that names parents
    keeps them; otherwise a `share` of customers get a parent drawn among the customers that are no
    subsidiary (so a parent never has a parent)."""
    n = len(customers)
    if "parent_id" in customers and customers["parent_id"].notna().any():
        return pd.Index(customers["customer_id"]).get_indexer(customers["parent_id"])
    subsidiary = rng.random(n) < share
    candidates = np.flatnonzero(~subsidiary)
    if len(candidates) == 0:
        return np.full(n, -1)
    drawn = candidates[rng.integers(0, len(candidates), n)]
    return np.where(subsidiary, drawn, -1)


def parent_ids(customers: pd.DataFrame, parent: np.ndarray) -> np.ndarray:
    """The `parent_id` column: the parent's customer_id, None where there is none."""
    ids = customers["customer_id"].to_numpy(dtype=object)
    return np.where(parent >= 0, ids[np.maximum(parent, 0)], None)


def iban(country: str, digits: str) -> str:
    """An IBAN: two-letter country, mod-97 check digits, then `digits` as the account number."""
    code = country[:2].upper() if len(country) >= 2 and country[:2].isalpha() and country[:2].isascii() else "XX"
    numeric = digits + "".join(str(ord(letter) - 55) for letter in code) + "00"
    return f"{code}{98 - int(numeric) % 97:02d}{digits}"


def customer_accounts(country: np.ndarray, second_share: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per customer: its main IBAN, and a second one (None for most) for a `second_share` of them."""
    n = len(country)
    digits = rng.integers(0, 10, (2, n, 18)).astype(np.uint8) + ord("0")
    numbers = [[row.tobytes().decode() for row in block] for block in digits]
    first = np.array([iban(str(code), number) for code, number in zip(country, numbers[0], strict=True)],
                     dtype=object)
    has_second = rng.random(n) < second_share
    second = np.array([iban(str(code), number) if has else None
                       for code, number, has in zip(country, numbers[1], has_second, strict=True)], dtype=object)
    return first, second


# --------------------------------------------------------------------------------------------------
# Payer


def payer_positions(customer: np.ndarray, parent: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Per payment: the customer row that pays it, the parent for a `share` of subsidiaries' payments
    (-1 where the payment names no known customer)."""
    parent_of = np.where(customer >= 0, parent[np.maximum(customer, 0)] if len(parent) else -1, -1)
    by_parent = (parent_of >= 0) & (rng.random(len(customer)) < share)
    return np.where(by_parent, parent_of, customer)


def payer_accounts(payer: np.ndarray, first: np.ndarray, second: np.ndarray, use_second: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Per payment: the payer's account, its second one for a `use_second` share where it has two."""
    known = payer >= 0
    row = np.maximum(payer, 0)
    if len(first) == 0:
        return np.full(len(payer), None, dtype=object)
    other = second[row]
    take_second = known & pd.notna(other) & (rng.random(len(payer)) < use_second)
    return np.where(known, np.where(take_second, other, first[row]), None)


def payer_names(master: np.ndarray, payer: np.ndarray, config: RemittanceConfig,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per payment: the payer's name as the bank shows it, and whether it differs from the master name
    (a `name_variant_share` of payments)."""
    n = len(payer)
    known = payer >= 0
    names = np.where(known, master[np.maximum(payer, 0)] if len(master) else None, None)
    operation = rng.integers(0, len(NAME_OPERATIONS), n)
    pick, where = rng.random(n), rng.random(n)
    limit = rng.integers(config.name_limit[0], config.name_limit[1] + 1, n)
    chosen = np.flatnonzero(known & (rng.random(n) < config.name_variant_share))
    names[chosen] = [name_variant(str(names[i]), NAME_OPERATIONS[operation[i]], pick[i], where[i], int(limit[i]))
                     for i in chosen]
    varied = np.zeros(n, dtype=bool)
    varied[chosen] = names[chosen] != master[np.maximum(payer[chosen], 0)] if len(chosen) else False
    return names, varied


def name_variant(name: str, operation: str, pick: float, where: float, limit: int) -> str:
    """`name` as a payer's bank may write it: upper case, legal form changed or dropped, a typo, or extra
    words, then cut to `limit` characters; never the name itself."""
    if operation == "upper":
        varied = name.upper()
    elif operation in ("legal_form", "legal_form_upper"):
        varied = with_legal_form_varied(name, pick)
        varied = varied.upper() if operation == "legal_form_upper" else varied
    elif operation == "typo":
        varied = with_letter_typo(name, pick, where)
    else:
        varied = f"{name.upper()} {PAYER_WORDS[int(pick * len(PAYER_WORDS))]}"
    varied = varied[:limit].rstrip()
    if varied == name:
        varied = name.upper() if name.upper() != name else f"{name} {PAYER_WORDS[0]}"[:max(limit, len(name) + 2)]
    return varied


def with_legal_form_varied(name: str, pick: float) -> str:
    """`name` with its legal form written another way or dropped (unchanged when it has none we know)."""
    for form, variants in LEGAL_FORM_VARIANTS.items():
        if name.endswith(" " + form):
            variant = variants[int(pick * len(variants))]
            head = name[: -len(form) - 1]
            return f"{head} {variant}" if variant else head
    return name


def with_letter_typo(name: str, pick: float, where: float) -> str:
    """`name` with one letter dropped or swapped with the next one."""
    letters = [i for i, char in enumerate(name[:-1]) if char.isalpha() and name[i + 1].isalpha()]
    if not letters:
        return name
    i = letters[int(where * len(letters))]
    if pick < 0.5:
        return name[:i] + name[i + 1:]
    return name[:i] + name[i + 1] + name[i] + name[i + 2:]


# --------------------------------------------------------------------------------------------------
# Memo line


def applied_documents(payment_ids: pd.Series, applications: pd.DataFrame) -> list[list[str]]:
    """Per payment: the ids of the documents it is applied to, in the order of the applications."""
    row = pd.Index(payment_ids).get_indexer(applications["payment_id"])
    order = np.argsort(row, kind="stable")
    row = row[order]
    ids = applications["invoice_id"].to_numpy(dtype=object)[order][row >= 0]
    row = row[row >= 0]
    bounds = np.searchsorted(row, np.arange(len(payment_ids) + 1))
    return [ids[start:stop].tolist() for start, stop in pairwise(bounds)]


def id_token(document_id: str, style: str) -> str:
    """A document id as a payer writes it: as is ('full'), without its prefix ('digits': 000123) or also
    without leading zeros ('number': 123); ids that do not end in digits stay as they are."""
    match = ID_PATTERN.match(document_id)
    if match is None or style == "full":
        return document_id
    digits = match.group(2)
    return digits if style == "digits" else digits.lstrip("0") or "0"


def with_digit_typo(token: str, where: float, shift: int) -> str:
    """`token` with one of its digits replaced by another (unchanged when it has none)."""
    positions = [i for i, char in enumerate(token) if char.isdigit()]
    if not positions:
        return token
    i = positions[int(where * len(positions))]
    return f"{token[:i]}{(int(token[i]) + shift) % 10}{token[i + 1:]}"


def memo_line(ids: list[str], style: str, word: str, separator: str, typo_at: float, shift: int,
              limit: int) -> tuple[str, bool, bool]:
    """The memo line quoting `ids`, whether a typo went in (`typo_at` in [0, 1) says where, NaN for none),
    and whether the bank cut it at `limit` characters."""
    tokens = [id_token(document_id, style) for document_id in ids]
    typo = False
    if not np.isnan(typo_at):
        k = int(typo_at * len(tokens))
        wrong = with_digit_typo(tokens[k], typo_at * len(tokens) - k, shift)
        typo, tokens[k] = wrong != tokens[k], wrong
    text = word + separator.join(tokens)
    return text[:limit].rstrip(), typo, len(text) > limit


def generic_texts(received: pd.Series, rng: np.random.Generator) -> np.ndarray:
    """Per payment: a memo line without any reference (None for an empty one)."""
    template = rng.integers(0, len(GENERIC_TEXTS), len(received))
    month = received.dt.month_name().to_numpy(dtype=object)
    return np.array([None if GENERIC_TEXTS[t] is None else GENERIC_TEXTS[t].format(month=m)
                     for t, m in zip(template, month, strict=True)], dtype=object)


def memo_lines(documents: list[list[str]], received: pd.Series, config: RemittanceConfig,
               rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per payment: the memo line and its text flags (plain, no_prefix, word_prefix, multi_invoice,
    typo, truncated, no_reference)."""
    n = len(documents)
    count = np.array([len(ids) for ids in documents], dtype=np.int64)
    no_reference = (rng.random(n) < config.no_reference_share) | (count == 0)
    stripped = rng.random(n) < config.no_prefix_share
    style = np.where(stripped, rng.integers(1, len(ID_STYLES), n), 0)
    worded = rng.random(n) < config.word_prefix_share
    word = np.where(worded, np.array(WORD_PREFIXES, dtype=object)[rng.integers(0, len(WORD_PREFIXES), n)], "")
    separator = np.array(SEPARATORS, dtype=object)[rng.integers(0, len(SEPARATORS), n)]
    typo_at = np.where(rng.random(n) < config.typo_share, rng.random(n), np.nan)
    shift = rng.integers(1, 10, n)
    limit = np.where(rng.random(n) < config.short_line_share, 35, 140)
    generic = generic_texts(received, rng)

    text = generic.copy()
    typo = np.zeros(n, dtype=bool)
    truncated = np.zeros(n, dtype=bool)
    quoted = np.flatnonzero(~no_reference)
    lines = [memo_line(documents[i], ID_STYLES[style[i]], word[i], separator[i], typo_at[i], int(shift[i]),
                       int(limit[i])) for i in quoted]
    if lines:
        text[quoted] = [line for line, _, _ in lines]
        typo[quoted] = [wrong for _, wrong, _ in lines]
        truncated[quoted] = [cut for _, _, cut in lines]
    referenced = ~no_reference
    return text, {
        "plain": referenced & ~stripped & ~worded & ~typo & ~truncated,
        "no_prefix": referenced & stripped,
        "word_prefix": referenced & worded,
        "multi_invoice": referenced & (count >= 2),
        "typo": typo,
        "truncated": truncated,
        "no_reference": no_reference,
    }


# --------------------------------------------------------------------------------------------------
# Amounts: what the ledger says, overpayments, duplicates


def applied_totals(payment_ids: pd.Series, applications: pd.DataFrame) -> np.ndarray:
    """Per payment: the total of its applications (0 when it has none)."""
    totals = applications.groupby("payment_id")["amount"].sum()
    return payment_ids.map(totals).fillna(0.0).to_numpy(dtype=float)


def settlement_kinds(ledger: Ledger, payment_ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per payment: whether an invoice it pays is still short of its amount after it (instalments, short
    payments), and whether it is net of a deduction (it nets a credit memo, or the short-paid rest of an
    invoice it pays is written off the day it is applied)."""
    applications, invoices = ledger.payment_applications, ledger.invoices
    payment = pd.Index(payment_ids).get_indexer(applications["payment_id"])
    document = pd.Index(invoices["invoice_id"]).get_indexer(applications["invoice_id"])
    known = document >= 0
    row = np.maximum(document, 0)
    is_invoice = known & (invoices["doc_type"].to_numpy(dtype=object)[row] == "invoice")
    is_memo = known & (invoices["doc_type"].to_numpy(dtype=object)[row] == "credit_memo")
    applied_day = applications["applied_date"].to_numpy(dtype="datetime64[ns]")
    paid_so_far = cumulative_per_group(applications["amount"].to_numpy(dtype=float), document, applied_day, payment)
    short = is_invoice & (invoices["amount"].to_numpy(dtype=float)[row] - paid_so_far > TOLERANCE)
    written_off = invoices["invoice_id"].map(ledger.writeoffs.set_index("invoice_id")["date"])
    deducted = is_memo | (is_invoice & (written_off.to_numpy(dtype="datetime64[ns]")[row] == applied_day))

    def per_payment(flags: np.ndarray) -> np.ndarray:
        hits = payment[flags & (payment >= 0)]
        return np.bincount(hits, minlength=len(payment_ids)) > 0

    return per_payment(short), per_payment(deducted)


def with_discounts(ledger: Ledger, config: RemittanceConfig, rng: np.random.Generator) -> tuple[Ledger, np.ndarray]:
    """The ledger with a `discount_share` of the payments that settle one invoice alone and in full (its one
    application, no write-off) made net of a cash discount: payment and application lowered by the discount,
    which is written off the invoice the day it is applied; and per payment (ledger order) whether it was."""
    payments, applications, invoices = ledger.payments, ledger.payment_applications, ledger.invoices
    per_payment = applications.groupby("payment_id")["invoice_id"].agg(["size", "first"])
    per_invoice = applications.groupby("invoice_id").size()
    facts = invoices.set_index("invoice_id")
    invoice = payments["payment_id"].map(per_payment["first"])
    alone = (payments["payment_id"].map(per_payment["size"]) == 1) & invoice.map(per_invoice).eq(1)
    alone &= invoice.map(facts["doc_type"]).eq("invoice") & ~invoice.isin(ledger.writeoffs["invoice_id"])
    alone &= (payments["amount"] - invoice.map(facts["amount"])).abs().le(TOLERANCE)
    chosen = (alone & (rng.random(len(payments)) < config.discount_share)).to_numpy()
    rate = rng.choice(np.asarray(config.discount_rates, dtype=float), len(payments))
    discount = np.round(payments["amount"].to_numpy(dtype=float) * rate, 2)
    amount = np.where(chosen, np.round(payments["amount"].to_numpy(dtype=float) - discount, 2), payments["amount"])
    scale = np.divide(amount, payments["amount"].to_numpy(dtype=float), out=np.ones(len(payments)),
                      where=payments["amount"].to_numpy(dtype=float) > 0)
    lowered = pd.Series(amount, index=payments["payment_id"].to_numpy())[chosen]
    applied = applications["payment_id"].map(lowered)
    booked = applications[applications["payment_id"].isin(lowered.index)]
    writeoffs = pd.DataFrame({"invoice_id": booked["invoice_id"].to_numpy(), "date": booked["applied_date"].to_numpy(),
                              "amount": (booked["amount"] - booked["payment_id"].map(lowered)).round(2).to_numpy()})
    return ledger.replace(
        payments=payments.assign(amount=amount, amount_base=np.round(payments["amount_base"] * scale, 2)),
        payment_applications=applications.assign(amount=applied.fillna(applications["amount"])),
        writeoffs=pd.concat([ledger.writeoffs, writeoffs], ignore_index=True) if len(writeoffs) else ledger.writeoffs,
    ), chosen


def cumulative_per_group(values: np.ndarray, group: np.ndarray, *order: np.ndarray) -> np.ndarray:
    """Per row: the sum of `values` over the rows of its group up to and including it, rows ordered
    within a group by the `order` keys (first key first)."""
    sorted_rows = np.lexsort((*order[::-1], group))
    running = pd.Series(values[sorted_rows]).groupby(group[sorted_rows], sort=False).cumsum().to_numpy()
    result = np.empty(len(values))
    result[sorted_rows] = running
    return result


def overpaid(amount: np.ndarray, amount_base: np.ndarray, applied: np.ndarray, config: RemittanceConfig,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Amount and base amount per payment, an `overpayment_share` of the fully applied ones raised by
    some extra cash (the base amount by the same rate)."""
    n = len(amount)
    eligible = (amount - applied <= TOLERANCE) & (amount > 0)
    chosen = eligible & (rng.random(n) < config.overpayment_share)
    extra = np.round(amount * rng.uniform(*config.overpayment_range, n), 2) + 0.01
    raised = np.where(chosen, np.round(amount + extra, 2), amount)
    rate = np.divide(raised, amount, out=np.ones(n), where=amount > 0)
    return raised, np.where(chosen, np.round(amount_base * rate, 2), amount_base)


def duplicate_positions(amount: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Rows of the payments sent twice: a `share` of those with money in them."""
    return np.flatnonzero((rng.random(len(amount)) < share) & (amount > 0))


def duplicate_payments(payments: pd.DataFrame, copied: np.ndarray, days: int,
                       rng: np.random.Generator) -> pd.DataFrame:
    """Copies of the payments at rows `copied` (same payer, text and amount) received 0 to `days` days
    later, but not after the last payment of the ledger, with new ids that no payment has."""
    copies = payments.iloc[copied].reset_index(drop=True)
    last = payments["received_date"].max()
    later = copies["received_date"] + pd.to_timedelta(rng.integers(0, days + 1, len(copies)), unit="D")
    numbers = payments["payment_id"].str.extract(rf"^{re.escape(DUPLICATE_PREFIX)}(\d+)$")[0].dropna()
    first = int(numbers.astype(np.int64).max()) if len(numbers) else 0
    ids = [f"{DUPLICATE_PREFIX}{number:06d}" for number in range(first + 1, first + len(copies) + 1)]
    return copies.assign(payment_id=np.array(ids, dtype=object), received_date=later.where(later <= last, last))


def unidentified(customer_id: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """The payments' customer_id, None for a `share` whose payer is not identified yet."""
    hidden = rng.random(len(customer_id)) < share
    return np.where(hidden, None, customer_id)


def statement_refs(received: pd.Series) -> np.ndarray:
    """Per payment: its bank statement entry, "ST<yyyymmdd>-<entry>", entries numbered within the day."""
    day = received.dt.normalize()
    entry = received.groupby(day).cumcount() + 1
    dates = pd.Series(day.unique())
    labels = pd.Series(("ST" + dates.dt.strftime("%Y%m%d")).to_numpy(), index=dates)
    return (day.map(labels) + "-" + entry.astype(str).str.zfill(4)).to_numpy(dtype=object)


def joined_kinds(flags: dict[str, np.ndarray]) -> np.ndarray:
    """Per payment: the names of its flags in `KINDS` order, joined with '|'."""
    n = len(next(iter(flags.values())))
    joined = pd.Series([""] * n, dtype=object)
    for kind in KINDS:
        joined = joined + np.where(flags[kind], kind + "|", "")
    return joined.str.rstrip("|").to_numpy(dtype=object)



def with_cash_to_apply(ledger: Ledger, since: pd.Timestamp) -> Ledger:
    """The ledger as cash application finds it when the payments received from `since` on have just come
    in from the bank: they have no applications and no `customer_id` yet, the documents they settled are
    open again (no `cleared_date`), and what was written off those documents from `since` on (a discount or
    deduction booked when the payment was applied) is not booked yet. For tests and benchmarks of the
    matcher, with the remittance truth of `with_remittance` as the answer."""
    payments = ledger.payments
    arriving = payments["received_date"] >= pd.Timestamp(since)
    ids = set(payments.loc[arriving, "payment_id"])
    applications = ledger.payment_applications
    stripped = applications["payment_id"].isin(ids)
    reopened = ledger.invoices["invoice_id"].isin(applications.loc[stripped, "invoice_id"])
    writeoffs = ledger.writeoffs
    booked_later = writeoffs["invoice_id"].isin(applications.loc[stripped, "invoice_id"]) & (
        writeoffs["date"] >= pd.Timestamp(since))
    return ledger.replace(
        payments=payments.assign(customer_id=payments["customer_id"].where(~arriving, None)),
        payment_applications=applications[~stripped].reset_index(drop=True),
        writeoffs=writeoffs[~booked_later].reset_index(drop=True),
        invoices=ledger.invoices.assign(cleared_date=ledger.invoices["cleared_date"].where(~reopened)),
    )
