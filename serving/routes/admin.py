"""Administration: corrections and voids go through the audit chain; the chain can be verified."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body

from serving.deps import Admin, ScopesFirstRoute, State, recording_time
from serving.schemas import RECORD_TABLES, ActivityRecord, AuditCheck, IdInPath, RecordCorrection, RecordVoid

router = APIRouter(tags=["admin"], route_class=ScopesFirstRoute)
RecordTable = Literal[RECORD_TABLES]  # type: ignore[valid-type]


@router.patch("/admin/records/{table}/{record_id}", response_model=ActivityRecord, response_model_exclude_unset=True,
              summary="Correct a record, audited (admin)")
def correct_record(table: RecordTable, record_id: IdInPath, correction: RecordCorrection, principal: Admin,
                   state: State) -> dict:
    record = state.store.correct(principal.user, table, record_id, correction.expected_version,
                                 now=recording_time(), **correction.changes)
    return state.recorded(record)


@router.post("/admin/records/{table}/{record_id}/void", response_model=ActivityRecord,
             response_model_exclude_unset=True, summary="Void a record with a reason, audited (admin)")
def void_record(table: RecordTable, record_id: IdInPath, void: Annotated[RecordVoid, Body()], principal: Admin,
                state: State) -> dict:
    record = state.store.void(principal.user, table, record_id, void.expected_version, reason=void.reason,
                              now=recording_time())
    return state.recorded(record)


@router.get("/audit/verify", response_model=AuditCheck,
            summary="Check the audit log's hash chain, the records against it, and list unreadable records (admin)")
def audit_verify(principal: Admin, state: State) -> AuditCheck:
    from activity.audit import verify_audit

    problems = verify_audit(state.store)
    unreadable = state.store.unreadable_records()
    return AuditCheck(ok=not problems and not unreadable, problems=problems, unreadable=unreadable)
