"""Sending one rendered message over SMTP (standard library `smtplib`), or writing it as an .eml file.

A failure is either temporary (a 4xx reply, a refused or timed-out connection: the message was not taken, try
again later) or permanent (a 5xx reply: the server's reason is kept and the message is not retried).
`send_with_retries` retries the temporary ones with exponential backoff; its `sleep` is injectable so tests do
not wait. Whether a message may be sent at all (at most once) is the outbox's business, not this module's.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from configs.settings import Settings
from ledger.errors import BadInput

DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
ATTEMPTS = 3
FIRST_BACKOFF_SECONDS = 5.0


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to send: host, port, security (starttls, tls, none), optional login, From address."""

    host: str
    port: int
    security: str
    sender: str
    user: str | None = None
    password: str | None = None
    timeout: float = 30.0


class SendFailure(Exception):
    """A message the SMTP server did not take; `reason` is its answer (code and text) or the connection error."""

    def __init__(self, reason: str, temporary: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary


def smtp_server(settings: Settings) -> SmtpServer:
    """The SMTP server of the settings (`ARRISK_SMTP_*`); `BadInput` naming what is missing."""
    if settings.smtp_host is None:
        raise BadInput("no SMTP server: set ARRISK_SMTP_HOST (and ARRISK_SMTP_SENDER), or use --dry-run DIR")
    if settings.smtp_sender is None:
        raise BadInput("no sender address: set ARRISK_SMTP_SENDER, e.g. 'Receivables <ar@example.com>'")
    if (settings.smtp_user is None) != (settings.smtp_password is None):
        raise BadInput("ARRISK_SMTP_USER and ARRISK_SMTP_PASSWORD go together: set both or neither")
    return SmtpServer(host=settings.smtp_host, port=settings.smtp_port or DEFAULT_PORTS[settings.smtp_security],
                      security=settings.smtp_security, sender=settings.smtp_sender, user=settings.smtp_user,
                      password=settings.smtp_password, timeout=settings.smtp_timeout)


def server_reason(code: int, text: bytes | str) -> str:
    """The server's answer as one line, e.g. '550 5.1.1 mailbox unknown'."""
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(words.split())}"


def refused_failure(refused: dict) -> SendFailure:
    """The failure of a message every recipient of which the server refused: temporary only if all were 4xx."""
    reasons = "; ".join(f"{address}: {server_reason(code, text)}" for address, (code, text) in sorted(refused.items()))
    return SendFailure(reasons, temporary=all(400 <= code < 500 for code, _ in refused.values()))


def send_message(message: bytes, recipients: Iterable[str], server: SmtpServer) -> dict[str, str]:
    """Send the message's bytes to `recipients` in one SMTP transaction; answers the recipients the server
    refused while taking the message for the others (address -> reason). Raises `SendFailure`."""
    recipients = list(recipients)
    try:
        with _connection(server) as smtp:
            if server.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if server.user is not None:
                smtp.login(server.user, server.password or "")
            refused = smtp.sendmail(server.sender, recipients, message)
    except smtplib.SMTPRecipientsRefused as error:
        raise refused_failure(error.recipients) from None
    except smtplib.SMTPResponseException as error:  # sender refused, data refused, login refused, 421 ...
        raise SendFailure(server_reason(error.smtp_code, error.smtp_error),
                          temporary=400 <= error.smtp_code < 500) from None
    except (OSError, smtplib.SMTPException) as error:  # refused, timed out, disconnected: nothing was taken
        raise SendFailure(f"{type(error).__name__}: {error}", temporary=True) from None
    return {address: server_reason(code, text) for address, (code, text) in refused.items()}


def send_with_retries(message: bytes, recipients: Iterable[str], server: SmtpServer, *, attempts: int = ATTEMPTS,
                      first_backoff: float = FIRST_BACKOFF_SECONDS,
                      sleep: Callable[[float], None] = time.sleep) -> tuple[int, dict[str, str]]:
    """Send, retrying a temporary failure after `first_backoff`, then twice that, ... up to `attempts` tries:
    (the tries made, the recipients refused). Raises the last `SendFailure` (a permanent one at once)."""
    recipients = list(recipients)
    for attempt in range(1, attempts + 1):
        try:
            return attempt, send_message(message, recipients, server)
        except SendFailure as failure:
            if not failure.temporary or attempt == attempts:
                raise
            sleep(first_backoff * 2 ** (attempt - 1))
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def eml_name(key: str) -> str:
    """A file name for a message's idempotency key: 'C1:2:2024-03-31' -> 'C1_2_2024-03-31.eml'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") + ".eml"


def write_eml(message: bytes, folder: Path, key: str) -> Path:
    """Write the message as FOLDER/<key>.eml (what a mail client opens) instead of sending it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / eml_name(key)
    path.write_bytes(message)
    return path


def _connection(server: SmtpServer) -> smtplib.SMTP:
    if server.security == "tls":
        return smtplib.SMTP_SSL(server.host, server.port, timeout=server.timeout,
                                context=ssl.create_default_context())
    return smtplib.SMTP(server.host, server.port, timeout=server.timeout)
