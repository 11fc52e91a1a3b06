"""What a route depends on (STYLE.md "full-stack-fastapi-template"): the running service's state and the
caller, with the scopes the route needs.

Every API route names its caller with one of the aliases below (`principal: Collector`); the token and the
scope are checked by that dependency, before the request body is validated (a write without a token is
401, with the wrong scope 403, whatever its body). Without a token at all, `serving.middleware.TokenFirst`
answers 401 even before the body is read. One `HTTPBearer` scheme documents the token in OpenAPI; it is
`auto_error=False` so the 401 keeps our JSON body and `WWW-Authenticate` challenge (`serving.auth`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from configs.settings import Settings
from serving.auth import SCOPES, Forbidden, Principal
from serving.middleware import current_service
from serving.views import ServingState

bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="An API token: `Authorization: Bearer arr_...`; its scopes gate the routes.")


def get_service() -> Any:
    """The running `ARRiskService`: its `state`, `tokens`, `settings`, `ledger_path`, `fingerprint`, `reports`."""
    service = current_service()
    if service is None:
        raise RuntimeError("the ar-risk service has not started")  # a bug: routes run inside the service
    return service


Service = Annotated[Any, Depends(get_service)]


def get_state(service: Service) -> ServingState:
    """The ledger, champions, caches and activity store the service answers from."""
    return service.state


def get_settings(service: Service) -> Settings:
    return service.settings


State = Annotated[ServingState, Depends(get_state)]
CurrentSettings = Annotated[Settings, Depends(get_settings)]


def authenticated(request: Request, service: Service,
                  _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> Principal:
    """The caller of a valid bearer token; `Unauthorized` (401) when missing, malformed or unknown."""
    # The raw header, not `_credentials`: the scheme turns a malformed header into None, and the 401 should
    # say what was wrong with it.
    return service.tokens.authenticate(request.headers.get("authorization"))


CurrentUser = Annotated[Principal, Depends(authenticated)]


def require(*scopes: str) -> Callable[[Principal], Principal]:
    """A dependency: the caller, if its token holds one of `scopes` (admin holds all); else 401 or 403.
    The scopes are kept on the dependency (`.scopes`) for the OpenAPI document."""
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if not scopes or unknown:
        # A typo must fail at import, not lock everyone but admins out.
        raise ValueError(f"unknown scopes {unknown}: expected some of {', '.join(SCOPES)}")

    def caller_with_scope(principal: CurrentUser) -> Principal:
        return with_scope(principal, scopes)

    caller_with_scope.scopes = scopes  # type: ignore[attr-defined]
    caller_with_scope.__name__ = "caller_with_" + "_or_".join(scopes)
    return caller_with_scope


def with_scope(principal: Principal, scopes: tuple[str, ...]) -> Principal:
    """`principal` if it holds one of `scopes`; `Forbidden` (403) naming them otherwise."""
    if not any(principal.has(scope) for scope in scopes):
        raise Forbidden(" or ".join(scopes))
    return principal


def dependency_scopes(dependant: Dependant) -> tuple[str, ...] | None:
    """The scopes a route's `require` dependency asks for, at any depth (None: the route needs no token)."""
    pending = list(dependant.dependencies)
    while pending:
        sub = pending.pop()
        scopes = getattr(sub.call, "scopes", None)
        if scopes:
            return tuple(scopes)
        pending.extend(sub.dependencies)
    return None


class ScopesFirstRoute(APIRoute):
    """A route that checks the token and scope of its `require` dependency before FastAPI reads the body:
    FastAPI parses a JSON body before it solves dependencies, so a body that is not JSON at all would
    answer 422 to a caller without the scope. The dependency checks again; both ask `with_scope`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        scopes = dependency_scopes(self.dependant)
        if scopes is None:
            return handler

        async def scopes_first(request: Request) -> Response:
            with_scope(get_service().tokens.authenticate(request.headers.get("authorization")), scopes)
            return await handler(request)

        return scopes_first


AnyRole = Annotated[Principal, Depends(require("collector", "credit", "treasury", "cash"))]
Collector = Annotated[Principal, Depends(require("collector"))]
CollectorOrCredit = Annotated[Principal, Depends(require("collector", "credit"))]
Credit = Annotated[Principal, Depends(require("credit"))]
CreditOrTreasury = Annotated[Principal, Depends(require("credit", "treasury"))]
Treasury = Annotated[Principal, Depends(require("treasury"))]
Cash = Annotated[Principal, Depends(require("cash"))]
CashOrFinance = Annotated[Principal, Depends(require("cash", "credit", "treasury"))]
CollectorOrCash = Annotated[Principal, Depends(require("collector", "cash"))]  # the deductions queue
QueueRole = Annotated[Principal, Depends(require("collector", "credit", "treasury", "cash", "manager"))]  # SLA clocks
Manager = Annotated[Principal, Depends(require("manager"))]  # an escalation's decision
CollectorOrManager = Annotated[Principal, Depends(require("collector", "manager"))]  # the escalations queue
Finance = Annotated[Principal, Depends(require("finance"))]  # the bad-debt provision
Admin = Annotated[Principal, Depends(require("admin"))]


def recording_time() -> datetime.datetime:
    """When a change is recorded, for the audit trail: the one clock read in ar-risk, and it never feeds a
    score, a rule or a feature (those use the business dates in the record)."""
    return datetime.datetime.now(datetime.UTC)
