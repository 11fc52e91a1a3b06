"""The append-only, hash-chained audit log: who changed what, and when.

Each entry's hash is sha256(prev_hash + canonical JSON of its contents), so editing or deleting
an entry breaks the chain; `verify_audit` finds where.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from activity.models import (
    AuditEntry,
    Base,
    Contact,
    Dispute,
    DunningLetter,
    Promise,
    canonical_json,
    primary_key,
    record_dict,
    utc_iso,
)

if TYPE_CHECKING:
    from activity.store import ActivityStore

GENESIS_HASH = "0" * 64
# The tables whose every write is audited; verify_audit checks their rows against the log.
AUDITED_MODELS: tuple[type[Base], ...] = (Promise, Dispute, Contact, DunningLetter)


def entry_hash(prev_hash: str, *, seq: int, recorded_at: datetime, user: str, action: str, table: str,
               record_id: str, before: Any, after: Any) -> str:
    """The hash of one entry, chained to the hash of the entry before it."""
    contents = [seq, utc_iso(recorded_at), user, action, table, record_id, before, after]
    return hashlib.sha256((prev_hash + canonical_json(contents)).encode("utf-8")).hexdigest()


def append_entry(session: Session, *, user: str, action: str, table: str, record_id: str,
                 before: dict | None, after: dict, now: datetime) -> AuditEntry:
    """Append one entry to the log; the caller's transaction must serialise writers (see store)."""
    last = session.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    seq, prev_hash = (last.seq + 1, last.hash) if last else (1, GENESIS_HASH)
    entry = AuditEntry(
        seq=seq, recorded_at=now, user_name=user, action=action, table_name=table, record_id=record_id,
        before=None if before is None else canonical_json(before), after=canonical_json(after),
        prev_hash=prev_hash,
        hash=entry_hash(prev_hash, seq=seq, recorded_at=now, user=user, action=action, table=table,
                        record_id=record_id, before=before, after=after),
    )
    session.add(entry)
    session.flush()
    return entry


def verify_audit(source: Session | ActivityStore) -> list[str]:
    """The problems found in the audit log and the audited tables; empty when all is intact."""
    if isinstance(source, Session):
        return _verify(source)
    with source.session() as session:
        return _verify(session)


def _verify(session: Session) -> list[str]:
    entries = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    problems = _chain_problems(entries)
    problems += _record_problems(session, entries)
    return problems


def _chain_problems(entries: list[AuditEntry]) -> list[str]:
    """Gaps in seq, links that do not point at the previous hash, and entries whose hash is wrong."""
    problems = []
    expected_seq, prev_hash = 1, GENESIS_HASH
    for entry in entries:
        if entry.seq != expected_seq:
            problems.append(f"audit_log: entries {expected_seq}..{entry.seq - 1} are missing (deleted?)")
        if entry.prev_hash != prev_hash:
            problems.append(f"audit_log seq {entry.seq}: prev_hash does not match the previous entry (chain broken)")
        try:
            before = None if entry.before is None else json.loads(entry.before)
            after = json.loads(entry.after)
        except json.JSONDecodeError:
            problems.append(f"audit_log seq {entry.seq}: before/after is not valid JSON (entry edited)")
        else:
            recomputed = entry_hash(entry.prev_hash, seq=entry.seq, recorded_at=entry.recorded_at,
                                    user=entry.user_name, action=entry.action, table=entry.table_name,
                                    record_id=entry.record_id, before=before, after=after)
            if recomputed != entry.hash:
                problems.append(f"audit_log seq {entry.seq}: hash does not match its contents (entry edited)")
        expected_seq, prev_hash = entry.seq + 1, entry.hash
    return problems


def _record_problems(session: Session, entries: list[AuditEntry]) -> list[str]:
    """Rows changed without an audit entry, or whose latest entry was cut off the end of the log."""
    latest = {(entry.table_name, entry.record_id): entry.after for entry in entries}
    problems = []
    for model in AUDITED_MODELS:
        for record in session.scalars(select(model)).all():
            record_id = primary_key(record)
            logged = latest.get((model.__tablename__, record_id))
            if logged is None:
                problems.append(f"{model.__tablename__} {record_id}: no audit entry")
            elif logged != canonical_json(record_dict(record)):
                problems.append(f"{model.__tablename__} {record_id}: differs from its latest audit entry")
    return problems

