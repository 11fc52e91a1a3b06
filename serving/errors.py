"""How the API answers the named errors of `ledger.errors` (STYLE.md "Feast: named errors"), in one place.

    AuthError                       401 / 403 with its WWW-Authenticate challenge
    BadInput (LedgerError among)    400 "bad_input" (`field` when one problem names a column)
    activity InvalidInput           422 "bad_input" with `field`, like a request that fails validation
    RequestValidationError          422 "bad_input": every problem in `detail`, the first one's `field`
    NotFound                        404 "not_found"
    Conflict                        409 "version_conflict" / "idempotency_mismatch" / "conflict"
    NotReady                        503 "not_ready" with Retry-After: still loading (the ledger behind a run)
    NoModel                         409 "no_model": the service runs, but nothing was trained yet; training
                                    a model resolves it, retrying the same request does not (so not 503)
    Starlette HTTPException         its own status (unknown route 404, 405) in the same shape

There is no handler for `ValueError` or any other exception: anything not named above is our bug, logged
with its traceback by `serving.middleware.InternalErrors` and answered as a 500 naming the request id.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from activity.errors import AuditBroken, IdempotencyMismatch, InvalidInput, VersionConflict
from ledger.errors import BadInput, Conflict, LedgerError, NoModel, NotFound, NotReady
from serving.auth import AuthError, error_body


def auth_error(request: Request, error: AuthError) -> JSONResponse:
    """401 or 403 with the error's body and challenge header."""
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def bad_input(request: Request, error: BadInput) -> JSONResponse:
    """400, naming the field when the error names exactly one (422 for a store's field-level error)."""
    if isinstance(error, InvalidInput):
        return JSONResponse({"error": "bad_input", "detail": str(error), "field": error.field}, status_code=422)
    if isinstance(error, LedgerError):
        body = {"error": "bad_input", "detail": error.summary()}
        if len(error.problems) == 1:
            body["field"] = error.problems[0].column or error.problems[0].where
        return JSONResponse(body, status_code=400)
    return JSONResponse({"error": "bad_input", "detail": str(error)}, status_code=400)


def not_found(request: Request, error: NotFound) -> JSONResponse:
    return JSONResponse({"error": "not_found", "detail": str(error)}, status_code=404)


def conflict(request: Request, error: Conflict) -> JSONResponse:
    kind = ("version_conflict" if isinstance(error, VersionConflict)
            else "idempotency_mismatch" if isinstance(error, IdempotencyMismatch) else "conflict")
    return JSONResponse({"error": kind, "detail": str(error)}, status_code=409)


def no_model(request: Request, error: NoModel) -> JSONResponse:
    detail = error.summary() if isinstance(error, LedgerError) else str(error)
    return JSONResponse({"error": "no_model", "detail": detail}, status_code=409)


def not_ready(request: Request, error: NotReady) -> JSONResponse:
    return JSONResponse({"error": "not_ready", "detail": str(error)}, status_code=503, headers={"Retry-After": "5"})


def audit_broken(request: Request, error: AuditBroken) -> JSONResponse:
    """Writes stop until an admin checks the audit log: the request is fine, the store is not (503)."""
    return JSONResponse({"error": "audit_broken", "detail": str(error)}, status_code=503)


def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse(validation_body(error.errors()), status_code=422)


def http_error(request: Request, error: HTTPException) -> JSONResponse:
    # FastAPI's own 404 (no such route) and 405, in the same shape as every other error.
    return JSONResponse(error_body(error.status_code, str(error.detail)), status_code=error.status_code,
                        headers=getattr(error, "headers", None))


def validation_body(errors: list[dict]) -> dict[str, str]:
    """The documented error shape of pydantic errors: every problem in `detail`, the first one's `field`."""
    fields = [".".join(str(part) for part in e["loc"] if part not in ("body", "query", "path", "header"))
              for e in errors]
    detail = "; ".join(f"{field or 'body'}: {e['msg']}" for field, e in zip(fields, errors, strict=True))
    return {"error": "bad_input", "detail": detail, "field": fields[0] if fields else ""}


HANDLERS = {AuthError: auth_error, BadInput: bad_input, NotFound: not_found, Conflict: conflict,
            NoModel: no_model, NotReady: not_ready, AuditBroken: audit_broken, RequestValidationError: invalid_request,
            HTTPException: http_error}


def add_error_handlers(app: FastAPI) -> None:
    """Answer the named errors on `app` (Starlette picks the handler of the nearest class in the MRO)."""
    for error, handler in HANDLERS.items():
        app.add_exception_handler(error, handler)  # type: ignore[arg-type]
