"""Money and dates written the way a reader of the language expects them (Babel): de_DE 1.234,56 € and
31.03.2024; en_GB €1,234.56 and 31 Mar 2024."""

from __future__ import annotations

import pandas as pd
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_currency

from ledger.errors import BadInput

# The locale of a language when the reminder policy does not say (the statement PDF on its own).
DEFAULT_LOCALES = {"en": "en_GB", "de": "de_DE"}


def locale_of(language: str, locales: dict[str, str] | None = None) -> str:
    """The Babel locale a language is written in: the policy's, else `DEFAULT_LOCALES`, else the language."""
    locale = (locales or {}).get(language) or DEFAULT_LOCALES.get(language) or language
    try:
        Locale.parse(locale)
    except (UnknownLocaleError, ValueError):
        raise BadInput(f"language {language!r}: {locale!r} is not a locale Babel knows") from None
    return locale


def money(amount: float, currency: str, locale: str) -> str:
    """An amount in its currency, rounded to cents: "1.234,56 €" (de_DE), "€1,234.56" (en_GB)."""
    return format_currency(round(float(amount), 2), currency, locale=locale)


def calendar_date(date: pd.Timestamp, locale: str) -> str:
    """A calendar date in the locale's medium form: "31.03.2024" (de_DE), "31 Mar 2024" (en_GB)."""
    return format_date(pd.Timestamp(date).date(), "medium", locale=locale)
