"""The service's settings: one pydantic object read from `ARRISK_*` environment variables.

Limits and security knobs live here, not in the modules that apply them, so an operator finds them in
one place (README, "Settings"). Read with `Settings.from_environ(environ)`; nothing is read at import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_AUDIT_KEY_FILE = Path(__file__).resolve().parents[1] / "out" / "audit.key"


class SettingsError(ValueError):
    """An `ARRISK_*` setting has a value that cannot be used; the message names the variable."""


class Settings(BaseModel):
    """Limits, windows and security settings of the service, the web pages and the CLI."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- input limits ----------------------------------------------------------------------------
    max_body_bytes: int = Field(1_000_000, ge=1_024, description="Largest request body accepted (413 above).")
    max_text_chars: int = Field(2_000, ge=1, description="Longest free-text field (note, outcome, resolution).")
    # -- dates -----------------------------------------------------------------------------------
    date_window_past_years: int = Field(10, ge=0, le=100, description=(
        "A business date (made, promised, opened, contact, issued...) may lie this many years before the "
        "ledger's first invoice."))
    date_window_future_years: int = Field(5, ge=0, le=100, description=(
        "... and this many years after the ledger's last event."))
    as_of_future_days: int = Field(92, ge=0, le=3_650, description=(
        "`as_of` may lie this many days after the ledger's last event (a ledger exported yesterday is "
        "still current today); later dates are refused with the range."))
    # -- audit -----------------------------------------------------------------------------------
    audit_key: str | None = Field(None, min_length=32, description=(
        "Secret key of the audit log's HMAC (kept out of the database). Without it, `audit_key_file`."))
    audit_key_file: Path = Field(DEFAULT_AUDIT_KEY_FILE, description=(
        "File holding the audit key; created (mode 0600) with a random key when missing."))
    # -- web pages and API -----------------------------------------------------------------------
    cookie_secure: Literal["auto", "always", "never"] = Field("auto", description=(
        "Secure flag of the web cookies: auto (when the request is https), always (behind a TLS proxy), never."))
    session_minutes: int = Field(480, ge=1, le=10_080, description="A web session expires after this long.")
    login_attempts: int = Field(5, ge=1, description="Failed web logins allowed per client per window...")
    login_window_seconds: int = Field(300, ge=1, description="... before the client is locked out for the window.")
    metrics_public: bool = Field(False, description="Serve /metrics without a token (for a scraper on localhost).")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of `environ` (default: the process environment); `SettingsError` names a bad one."""
        environ = os.environ if environ is None else environ
        try:
            # Only the variables named like a field: ARRISK_LEDGER and friends belong to other readers.
            values = {key.removeprefix("ARRISK_").lower(): value for key, value in environ.items()
                      if key.startswith("ARRISK_") and key.removeprefix("ARRISK_").lower() in cls.model_fields}
            return cls.model_validate(values)
        except ValidationError as error:
            problems = [f"ARRISK_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()]
            raise SettingsError("; ".join(problems)) from None


def business_date_window(first_date: date, last_date: date, settings: Settings) -> tuple[date, date]:
    """The dates a record may carry: `date_window_past_years` before the ledger's first date to
    `date_window_future_years` after its last."""
    return (_years_from(first_date, -settings.date_window_past_years),
            _years_from(last_date, settings.date_window_future_years))


def _years_from(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February into a year without one
        return day.replace(year=day.year + years, day=28)
