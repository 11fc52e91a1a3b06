"""The collections activity store: promises, disputes, contacts and dunning letters recorded by
collectors, with optimistic concurrency, idempotent writes and a hash-chained audit log."""

from activity.audit import verify_audit
from activity.store import (
    ActivityStore,
    IdempotencyMismatch,
    InvalidInput,
    NotFound,
    StoreError,
    VersionConflict,
)

__all__ = [
    "ActivityStore",
    "IdempotencyMismatch",
    "InvalidInput",
    "NotFound",
    "StoreError",
    "VersionConflict",
    "verify_audit",
]
