"""The errors the activity store raises on purpose; anything else is a bug."""

from __future__ import annotations

from ledger.errors import ArRiskError, BadInput, Conflict
from ledger.errors import NotFound as LookupFailed


class StoreError(ArRiskError):
    """Base of the errors the activity store raises on purpose."""


class NotFound(StoreError, LookupFailed):
    """No record with that id."""


class VersionConflict(StoreError, Conflict):
    """The record changed since the caller read it (or was voided); re-read and retry."""


class IdempotencyMismatch(StoreError, Conflict):
    """An idempotency key was reused for a different request."""


class InvalidInput(StoreError, BadInput):
    """A field of the request is not acceptable; `field` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class AuditBroken(StoreError):
    """The audit log's head or a stored response fails its MAC: someone wrote to the database behind
    the store's back (or the audit key changed). Writes stop until an admin runs `arrisk audit verify`."""
