"""The settings: one pydantic object read from `ARRISK_*` environment variables.

Limits, security knobs and every place the project writes live here, not in the modules that apply them,
so an operator finds them in one place (README, "Settings"). Read with `Settings.from_environ(environ)`;
nothing is read at import.

Writable locations default to folders under `home` (`ARRISK_HOME`, default: the current working folder),
never under the installed package: a wheel in site-packages run from any folder writes into that folder,
and `make demo` run from the repository root writes into `out/` and `mlflow/` there as before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class SettingsError(ValueError):
    """An `ARRISK_*` setting has a value that cannot be used; the message names the variable."""


class Settings(BaseModel):
    """Limits, windows, security settings and locations of the service, the web pages and the CLI."""

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
    # -- where things are read and written: defaults under `home`, never under the installed package --
    # (a default factory receives the fields declared before it, hence `home` first)
    home: Path = Field(default_factory=Path.cwd, description=(
        "Folder the default locations below lie in. Default: the current working folder."))
    ledger: Path = Field(default_factory=lambda data: data["home"] / "out" / "demo" / "synthetic", description=(
        "Ledger the service answers from. Default: HOME/out/demo/synthetic (what `make demo` generates)."))
    tracking_uri: str = Field(
        default_factory=lambda data: sqlite_url(data["home"] / "mlflow" / "mlflow.db"), min_length=1,
        description="MLflow tracking and registry URI. Default: sqlite:///HOME/mlflow/mlflow.db (artifacts beside it).")
    database_url: str = Field(
        default_factory=lambda data: sqlite_url(data["home"] / "out" / "activity.sqlite"), min_length=1, repr=False,
        description="SQLAlchemy URL of the activity store (may hold a password). "
                    "Default: sqlite:///HOME/out/activity.sqlite.")
    runs: Path | None = Field(None, description=(
        "Folder of daily runs (`arrisk run --out`) the service answers from; without it, the service computes "
        "each date of `ledger` on demand."))
    runs_keep: int = Field(7, ge=1, le=3_650, description="`arrisk run` keeps this many newest runs, pruning older ones.")
    runs_poll_seconds: float = Field(10.0, ge=0, le=3_600, description=(
        "The service looks for a new complete run this often (0: only on `POST /v1/runs/reload`)."))
    runs_workers: int = Field(1, ge=1, le=64, description=(
        "Processes answering the API (BentoML workers); each holds the served runs in memory."))
    reports: Path = Field(default_factory=lambda data: data["home"] / "out" / "reports", description=(
        "Folder of the HTML reports the service links to. Default: HOME/out/reports."))
    log_file: Path = Field(default_factory=lambda data: data["home"] / "out" / "arrisk.log", description=(
        "Log file of the command line (tracebacks of internal errors). Default: HOME/out/arrisk.log."))
    # -- audit and tokens ------------------------------------------------------------------------
    audit_key: str | None = Field(None, min_length=32, repr=False, description=(
        "Secret key of the audit log's HMAC (kept out of the database). Without it, `audit_key_file`."))
    audit_key_file: Path = Field(default_factory=lambda data: data["home"] / "out" / "audit.key", description=(
        "File holding the audit key; created (mode 0600) with a random key when missing. "
        "Default: HOME/out/audit.key."))
    tokens_file: Path | None = Field(None, description="API tokens YAML file (none by default).")
    api_tokens: str | None = Field(None, repr=False, description=(
        "API tokens as `name:user:scopes:sha256,...`, added to those of `tokens_file`."))
    # -- web pages and API -----------------------------------------------------------------------
    cookie_secure: Literal["auto", "always", "never"] = Field("auto", description=(
        "Secure flag of the web cookies: auto (when the request is https), always (behind a TLS proxy), never."))
    session_minutes: int = Field(480, ge=1, le=10_080, description="A web session expires after this long.")
    login_attempts: int = Field(5, ge=1, description="Failed web logins allowed per client per window...")
    login_window_seconds: int = Field(300, ge=1, description="... before the client is locked out for the window.")
    metrics_public: bool = Field(False, description="Serve /metrics without a token (for a scraper on localhost).")
    # -- reminders: the SMTP server the outbox sends through (issue 22) ------------------------------
    smtp_host: str | None = Field(None, min_length=1, description=(
        "SMTP server the reminders go out through; without it `arrisk reminders send` refuses (use --dry-run)."))
    smtp_port: int | None = Field(None, ge=1, le=65_535, description=(
        "Its port. Default: 587 with starttls, 465 with tls, 25 with none."))
    smtp_security: Literal["starttls", "tls", "none"] = Field("starttls", description=(
        "starttls (upgrade a plain connection), tls (implicit TLS from the start) or none (a local relay only)."))
    smtp_user: str | None = Field(None, min_length=1, description="Login name on the SMTP server (none: no login).")
    smtp_password: str | None = Field(None, repr=False, description="... and its password.")
    smtp_sender: str | None = Field(None, min_length=3, description=(
        "The From address of the reminders, e.g. `Acme Receivables <ar@example.com>`."))
    smtp_timeout: float = Field(30.0, gt=0, le=600, description="Seconds to wait for the SMTP server per step.")
    # -- the finance report pack: who gets it and when (issue 22) --------------------------------------
    pack_recipients: str | None = Field(None, min_length=3, description=(
        "Comma-separated addresses the daily run sends the finance report pack to (none: it is not sent)."))
    pack_schedule: str = Field("daily", description=(
        "When the daily run sends the pack: daily, weekly:mon..sun or monthly (the last day of the month)."))

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        # Absolute, so the defaults under it do not move when a process changes its working folder.
        return home.expanduser().resolve()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of `environ` (default: the process environment); `SettingsError` names a bad one.

        Only the `ARRISK_*` variables of `environ` count: a setting absent from it takes its default, never
        a value of the process environment. A variable set to blanks counts as absent."""
        environ = os.environ if environ is None else environ
        try:
            # Only the variables named like a field: other ARRISK_* variables belong to other readers (tests).
            values = {key.removeprefix("ARRISK_").lower(): value for key, value in environ.items()
                      if key.startswith("ARRISK_") and key.removeprefix("ARRISK_").lower() in cls.model_fields
                      and value.strip()}
            return cls.model_validate(values)
        except ValidationError as error:
            problems = [f"ARRISK_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()]
            raise SettingsError("; ".join(problems)) from None


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file (`sqlite:////abs/path` for an absolute path)."""
    return f"sqlite:///{path}"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (`sqlite:///PATH`), None for any other database."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


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
