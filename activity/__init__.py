"""The collections activity store: promises, disputes, contacts and dunning letters recorded by
collectors, with optimistic concurrency, idempotent writes and a keyed, hash-chained audit log."""

from activity.audit import verify_audit
from activity.errors import (
    AuditBroken,
    IdempotencyMismatch,
    InvalidInput,
    NotFound,
    StoreError,
    VersionConflict,
)
from activity.store import ActivityStore

__all__ = [
    "ActivityStore",
    "AuditBroken",
    "IdempotencyMismatch",
    "InvalidInput",
    "NotFound",
    "StoreError",
    "VersionConflict",
    "verify_audit",
]
