"""A real SMTP server for the tests: aiosmtpd on 127.0.0.1 (a free port), keeping every message it accepts.

`answers` scripts the replies to DATA: each message takes the next one ("451 ..." once, then accept), and an
empty list accepts everything. `refuse_rcpt` answers RCPT TO for those addresses with its reply."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from reminders.smtp import SmtpServer


@dataclass
class RecordingHandler:
    """Keeps (envelope sender, recipients, parsed message) of what the server accepted."""

    answers: list[str] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    received: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    data_commands: int = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_commands += 1
        if self.answers:
            answer = self.answers.pop(0)
            if not answer.startswith("250"):
                return answer
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def smtp_server(answers: list[str] | None = None,
                refuse_rcpt: dict[str, str] | None = None) -> Iterator[tuple[RecordingHandler, SmtpServer]]:
    """Run a real SMTP server on 127.0.0.1; yield its handler and the `SmtpServer` settings reaching it."""
    handler = RecordingHandler(answers=list(answers or []), refuse_rcpt=dict(refuse_rcpt or {}))
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, SmtpServer(host="127.0.0.1", port=port, security="none",
                                  sender="Receivables <ar@example.com>", timeout=10)
    finally:
        controller.stop()
