"""The append-only, keyed, hash-chained audit log: who changed what, and when.

Each entry's hash is HMAC-SHA256(audit key, prev_hash + canonical JSON of its contents), and the
contents include the number of rows of its table after the write. The key is never in the database,
so someone who can write to the database but does not hold the key cannot edit an entry and re-hash
the chain. The `audit_head` row (also HMAC'd) says which entry is the last, so cutting entries off the
end is found too; entries written before migration 0002 keep their plain sha256 hash
(`algorithm = "sha256"`, up to `audit_head.legacy_seq`) and are protected from then on because the
first keyed entry (or the head) commits to the last of them. Stored idempotency responses carry their
own HMAC. The database refuses UPDATE and DELETE on `audit_log` (triggers).

What remains possible without the key: putting back a complete, older copy of the database (a backup)
is consistent in itself, so it is only found by comparing with a copy of the head kept elsewhere;
deleting the head (or the whole log) is found but cannot be undone; responses of idempotency keys
stored before 0002 are only checked against the records their user created. Whoever holds the key
(it sits in `out/audit.key` next to the SQLite file unless ARRISK_AUDIT_KEY comes from elsewhere) can
rewrite everything. Changing the key makes every keyed entry fail: there is no key rotation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.orm import Session

from activity.errors import AuditBroken
from activity.models import (
    AuditEntry,
    AuditHead,
    Base,
    CashApplication,
    Contact,
    Dispute,
    DunningLetter,
    IdempotencyKey,
    Promise,
    QueueItem,
    canonical_json,
    primary_key,
    record_dict,
    utc_iso,
)

if TYPE_CHECKING:
    from activity.store import ActivityStore

GENESIS_HASH = "0" * 64
LEGACY = "sha256"
KEYED = "hmac-sha256"
HEAD_ID = 1
# The tables whose every write is audited; verify_audit checks their rows against the log.
AUDITED_MODELS: tuple[type[Base], ...] = (Promise, Dispute, Contact, DunningLetter, CashApplication, QueueItem)
MODELS_BY_TABLE = {model.__tablename__: model for model in AUDITED_MODELS}
# Columns added by migration 0002, and the value rows written before it have in them.
LEGACY_DEFAULTS = {"voided_at": None, "void_reason": None, "version": 1}


def entry_hash(prev_hash: str, *, seq: int, recorded_at: datetime, user: str, action: str, table: str,
               record_id: str, before: Any, after: Any) -> str:
    """The plain sha256 hash of an entry written before migration 0002, chained to the one before it."""
    contents = [seq, utc_iso(recorded_at), user, action, table, record_id, before, after]
    return hashlib.sha256((prev_hash + canonical_json(contents)).encode("utf-8")).hexdigest()


def keyed_entry_hash(key: bytes, prev_hash: str, *, seq: int, recorded_at: datetime, user: str, action: str,
                     table: str, record_id: str, before: Any, after: Any, table_count: int | None) -> str:
    """The HMAC of an entry under the audit key, chained to the hash of the entry before it."""
    contents = [seq, utc_iso(recorded_at), user, action, table, record_id, before, after, table_count]
    return _mac(key, prev_hash + canonical_json(contents))


def head_mac(key: bytes, seq: int, hash_: str, legacy_seq: int) -> str:
    """The HMAC of the audit head: the last entry's seq and hash, and where the keyed entries start."""
    return _mac(key, canonical_json([seq, hash_, legacy_seq]))


def idempotency_mac(key: bytes, row: IdempotencyKey) -> str:
    """The HMAC of a stored idempotency response, bound to its user, key and request fingerprint."""
    return _mac(key, canonical_json([row.user_name, row.key, row.fingerprint, row.response,
                                     utc_iso(row.recorded_at)]))


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def start_head(connection: Connection, key: bytes) -> None:
    """Write the head when the log becomes keyed (migration 0002): what is in the log now is legacy."""
    last = connection.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    seq, hash_ = (last.seq, last.hash) if last else (0, GENESIS_HASH)
    connection.execute(insert(AuditHead).values(id=HEAD_ID, seq=seq, hash=hash_, legacy_seq=seq,
                                                mac=head_mac(key, seq, hash_, seq)))


def append_entry(session: Session, key: bytes, *, user: str, action: str, table: str, record_id: str,
                 before: dict | None, after: dict, now: datetime) -> AuditEntry:
    """Append one keyed entry and move the head; the caller's transaction must serialise writers."""
    head = session.get(AuditHead, HEAD_ID)
    # Chaining onto a forged head or a cut log would sign the forgery; stop instead.
    if head is None or not hmac.compare_digest(head.mac, head_mac(key, head.seq, head.hash, head.legacy_seq)):
        raise AuditBroken("the audit head is missing or fails its MAC (database written without the store, "
                          "or another audit key): run `arrisk audit verify`")
    last = session.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    if tuple(last or (0, GENESIS_HASH)) != (head.seq, head.hash):
        raise AuditBroken("the audit log does not end where its head says (entries cut off or added behind "
                          "the store's back): run `arrisk audit verify`")
    table_count = session.scalar(select(func.count()).select_from(MODELS_BY_TABLE[table]))
    seq = head.seq + 1
    entry = AuditEntry(
        seq=seq, recorded_at=now, user_name=user, action=action, table_name=table, record_id=record_id,
        before=None if before is None else canonical_json(before), after=canonical_json(after),
        prev_hash=head.hash, algorithm=KEYED, table_count=table_count,
        hash=keyed_entry_hash(key, head.hash, seq=seq, recorded_at=now, user=user, action=action, table=table,
                              record_id=record_id, before=before, after=after, table_count=table_count),
    )
    session.add(entry)
    head.seq, head.hash = seq, entry.hash
    head.mac = head_mac(key, head.seq, head.hash, head.legacy_seq)
    session.flush()
    return entry


def verify_audit(store: ActivityStore) -> list[str]:
    """The problems found in the audit log, its head, the audited tables, the stored idempotency
    responses and the records the store cannot use (`unreadable_records`); empty when all is intact."""
    with store.session() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        head = session.get(AuditHead, HEAD_ID)
        head_ok = head is not None and hmac.compare_digest(
            head.mac, head_mac(store.audit_key, head.seq, head.hash, head.legacy_seq))
        problems = _chain_problems(entries, store.audit_key, head.legacy_seq if head_ok else None)
        problems += _head_problems(entries, head, head_ok)
        problems += _record_problems(session, entries)
        problems += _idempotency_problems(session, entries, store.audit_key)
    problems += [f"{bad['table']} {bad['record_id']}: {bad['field']} {bad['problem']} (correct or void it)"
                 for bad in store.unreadable_records()]
    return problems


def _chain_problems(entries: list[AuditEntry], key: bytes, legacy_seq: int | None) -> list[str]:
    """Gaps in seq, broken links, wrong hashes, and plain sha256 entries where only keyed ones belong."""
    problems = []
    expected_seq, prev_hash = 1, GENESIS_HASH
    for entry in entries:
        if entry.seq != expected_seq:
            problems.append(f"audit_log: entries {expected_seq}..{entry.seq - 1} are missing (deleted?)")
        if entry.prev_hash != prev_hash:
            problems.append(f"audit_log seq {entry.seq}: prev_hash does not match the previous entry (chain broken)")
        expected_algorithm = None if legacy_seq is None else LEGACY if entry.seq <= legacy_seq else KEYED
        if expected_algorithm is not None and entry.algorithm != expected_algorithm:
            problems.append(f"audit_log seq {entry.seq}: algorithm {entry.algorithm!r} where {expected_algorithm!r} "
                            "belongs (entry forged without the key?)")
        if _recomputed_hash(entry, key) != entry.hash:
            problems.append(f"audit_log seq {entry.seq}: hash does not match its contents (entry edited)")
        expected_seq, prev_hash = entry.seq + 1, entry.hash
    return problems


def _recomputed_hash(entry: AuditEntry, key: bytes) -> str | None:
    """The hash the entry should have by its algorithm; None when its contents cannot be read."""
    try:
        before = None if entry.before is None else json.loads(entry.before)
        after = json.loads(entry.after)
    except json.JSONDecodeError:
        return None
    fields = {"seq": entry.seq, "recorded_at": entry.recorded_at, "user": entry.user_name, "action": entry.action,
              "table": entry.table_name, "record_id": entry.record_id, "before": before, "after": after}
    if entry.algorithm == KEYED:
        return keyed_entry_hash(key, entry.prev_hash, table_count=entry.table_count, **fields)
    if entry.algorithm == LEGACY:
        return entry_hash(entry.prev_hash, **fields)
    return None


def _head_problems(entries: list[AuditEntry], head: AuditHead | None, head_ok: bool) -> list[str]:
    """Whether the head is genuine and the log ends where it says."""
    if head is None:
        return ["audit_head: missing, so the end of the log cannot be checked (deleted?)"]
    if not head_ok:
        return ["audit_head: fails its MAC (edited, or the audit key is not the one the log was written with)"]
    last_seq, last_hash = (entries[-1].seq, entries[-1].hash) if entries else (0, GENESIS_HASH)
    if head.seq > last_seq:
        return [f"audit_log: entries {last_seq + 1}..{head.seq} are missing from the end (cut off)"]
    if head.seq < last_seq:
        return [f"audit_log: entries {head.seq + 1}..{last_seq} were appended without the store (not in the head)"]
    if head.hash != last_hash:
        return [f"audit_log seq {last_seq}: is not the entry the head points at (replaced)"]
    return []


def _record_problems(session: Session, entries: list[AuditEntry]) -> list[str]:
    """Rows changed or added without an audit entry, entries whose row is gone, and row counts that
    differ from the count the last keyed entry of their table committed to."""
    latest = {(entry.table_name, entry.record_id): entry for entry in entries}
    counted = {entry.table_name: entry.table_count for entry in entries if entry.table_count is not None}
    problems = []
    for model in AUDITED_MODELS:
        table = model.__tablename__
        records = session.scalars(select(model)).all()
        for record in records:
            record_id = primary_key(record)
            entry = latest.get((table, record_id))
            if entry is None:
                problems.append(f"{table} {record_id}: no audit entry")
            elif not _matches(record_dict(record), entry.after):
                problems.append(f"{table} {record_id}: differs from its latest audit entry")
        present = {primary_key(record) for record in records}
        problems += [f"{table} {record_id}: has audit entries but no record (deleted?)"
                     for name, record_id in latest if name == table and record_id not in present]
        if table in counted and counted[table] != len(records):
            problems.append(f"{table}: {len(records)} records, but the audit log counted {counted[table]} "
                            "after its last write (rows deleted or added behind its back)")
    return problems


def _matches(current: dict, logged_json: str) -> bool:
    """Whether a row equals what its latest entry logged; entries before 0002 lack the columns it added."""
    try:
        logged = json.loads(logged_json)
    except json.JSONDecodeError:
        return False
    expected = {column: logged.get(column, LEGACY_DEFAULTS.get(column)) for column in current}
    return canonical_json(expected) == canonical_json(current) and set(logged) <= set(current)


def _idempotency_problems(session: Session, entries: list[AuditEntry], key: bytes) -> list[str]:
    """Stored responses that fail their MAC; older ones (no MAC) must be a record their user created."""
    created = {(entry.user_name, entry.after) for entry in entries if entry.action == "create"}
    problems = []
    for row in session.scalars(select(IdempotencyKey)).all():
        if row.mac is None:
            genuine = (row.user_name, row.response) in created
        else:
            genuine = hmac.compare_digest(row.mac, idempotency_mac(key, row))
        if not genuine:
            problems.append(f"idempotency_keys {row.user_name}/{row.key}: stored response edited "
                            "(a retry would replay it)")
    return problems
