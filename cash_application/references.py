"""Invoice numbers in a memo line: what a payer wrote ('Rechnung INV000123', 'RE 123, 124', '000123') read
as numbers, compared with the open items' numbers exactly or with one digit wrong."""

from __future__ import annotations

import re

import pandas as pd

DIGITS = re.compile(r"\d{3,}")
TRAILING_DIGITS = re.compile(r"(\d+)$")


def text_numbers(texts: pd.Series) -> list[frozenset[str]]:
    """Per memo line: the numbers of three digits or more in it, leading zeros dropped."""
    return [frozenset(number.lstrip("0") or "0" for number in DIGITS.findall(text)) if isinstance(text, str)
            else frozenset() for text in texts]


def document_number(document_id: str) -> str:
    """The trailing digits of a document id, leading zeros dropped ('INV000123' -> '123'); '' if none."""
    found = TRAILING_DIGITS.search(document_id)
    return (found.group(1).lstrip("0") or "0") if found else ""


def one_digit_off(a: str, b: str) -> bool:
    """Whether two numbers of the same length differ in exactly one digit (a typo)."""
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1


def reference_hits(numbers: frozenset[str], item_numbers: list[str]) -> tuple[list[bool], list[bool]]:
    """Per open item: whether the memo line quotes its number exactly, and whether only with one digit
    wrong (and no other item has that number exactly)."""
    exact = [number in numbers for number in item_numbers]
    if not numbers:
        return exact, exact
    unmatched = numbers - set(item_numbers)
    fuzzy = [not hit and any(one_digit_off(number, quoted) for quoted in unmatched)
             for hit, number in zip(exact, item_numbers, strict=True)]
    return exact, fuzzy


def referenced_customers(numbers: list[frozenset[str]], documents: pd.DataFrame) -> list[str | None]:
    """Per memo line: the one customer whose open documents (invoice_id, customer_id) it quotes, or None
    when it quotes none or documents of several customers."""
    owner: dict[str, set[str]] = {}
    for document_id, customer in zip(documents["invoice_id"], documents["customer_id"], strict=True):
        owner.setdefault(document_number(document_id), set()).add(customer)
    found = []
    for quoted in numbers:
        customers = set().union(*(owner.get(number, set()) for number in quoted)) if quoted else set()
        found.append(customers.pop() if len(customers) == 1 else None)
    return found
