"""Server-side web sessions and login throttling for the pages under /v1/ui (issue 14).

The session cookie holds only a random id; the store maps it to the principal, the session's own random
CSRF token and its expiry. Logging out deletes the entry, so the old cookie stops working at once, and
every login draws a new id (no session fixation). The login throttle counts failed logins per client and
refuses that client for the rest of the window once it reaches the limit.

Both live in the process, which is correct because BentoML runs this service with one worker
(`workers=1` in serving/service.py): every request meets the same store. A restart ends every session
(users log in again) and forgets the failure counts. More workers would need a shared store.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from serving.auth import Principal

Clock = Callable[[], float]  # seconds, monotonic; serving.web.new_web_state passes time.monotonic


@dataclass(frozen=True)
class Session:
    """One signed-in browser: who it is, the CSRF token of its forms and when it ends (clock seconds)."""

    id: str
    principal: Principal
    csrf: str
    expires: float


def new_secret() -> str:
    """A random token of 256 bits, as hex (session ids, CSRF tokens)."""
    return secrets.token_hex(32)


def same_secret(expected: str, presented: str | None) -> bool:
    """Whether `presented` equals `expected`, compared in constant time (no timing leak of the prefix)."""
    return bool(expected) and hmac.compare_digest(expected.encode("utf-8"), (presented or "").encode("utf-8"))


class SessionStore:
    """Sessions by id, each expiring `lifetime_seconds` after login; safe to share between threads."""

    def __init__(self, lifetime_seconds: float, clock: Clock) -> None:
        self.lifetime_seconds = lifetime_seconds
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, principal: Principal) -> Session:
        """A new session with a fresh id and CSRF token (expired ones are dropped on the way)."""
        now = self.clock()
        session = Session(new_secret(), principal, new_secret(), now + self.lifetime_seconds)
        with self._lock:
            # Swept at login, not on a timer: the store never holds more than the sessions of one lifetime.
            for expired in [key for key, value in self._sessions.items() if value.expires <= now]:
                del self._sessions[expired]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this id; None when unknown, closed or expired."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires <= self.clock():
                del self._sessions[session_id]
                session = None
        return session

    def close(self, session_id: str | None) -> None:
        """End the session (logout); nothing happens for an unknown id."""
        with self._lock:
            self._sessions.pop(session_id or "", None)


class LoginThrottle:
    """Failed logins per client: `attempts` failures within `window_seconds` lock the client out until the
    oldest of them is a window old; a success clears the client's count."""

    def __init__(self, attempts: int, window_seconds: float, clock: Clock) -> None:
        self.attempts = attempts
        self.window_seconds = window_seconds
        self.clock = clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again: 0 when it is not locked out."""
        now = self.clock()
        with self._lock:
            recent = self._recent(now).get(client, [])
        return recent[-self.attempts] + self.window_seconds - now if len(recent) >= self.attempts else 0.0

    def failed(self, client: str) -> None:
        """Count one failed login of `client`."""
        now = self.clock()
        with self._lock:
            self._recent(now).setdefault(client, []).append(now)

    def succeeded(self, client: str) -> None:
        """Forget the failures of `client` after a good login."""
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, now: float) -> dict[str, list[float]]:
        """The failures within the window, per client (the caller holds the lock)."""
        # Everything older is dropped here, so the table only ever holds clients that failed recently.
        cutoff = now - self.window_seconds
        self._failures = {client: kept for client, moments in self._failures.items()
                          if (kept := [moment for moment in moments if moment > cutoff])}
        return self._failures
