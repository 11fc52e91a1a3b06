"""Liveness and what the service answers from: the ledger, its fingerprint and the model versions."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from serving.auth import ADMIN, Principal
from serving.deps import AnyRole, ScopesFirstRoute, Service, State
from serving.schemas import Health, Info

router = APIRouter(tags=["health"], route_class=ScopesFirstRoute)


@router.get("/health", response_model=Health, summary="Liveness and readiness (no token needed)")
def health(state: State) -> Health:
    return Health(status="ok", ready=True, warm=state.warm.is_set())


@router.get("/info", response_model=Info, summary="Model versions and the ledger in use (any scope)")
def info(principal: AnyRole, service: Service) -> Info:
    state = service.state
    return Info(ledger=shown_ledger(principal, service.ledger_path), ledger_fingerprint=service.fingerprint,
                default_as_of=state.default_as_of.date(), model_versions=state.model_versions(),
                source=state.days.kind, runs=sorted(day.date() for day in getattr(state.days, "runs", {})),
                user=principal.user, scopes=sorted(principal.scopes))


def shown_ledger(principal: Principal, ledger_path: str) -> str:
    """The ledger's location as shown to `principal`: the full path for admins, the folder's name otherwise."""
    return ledger_path if principal.has(ADMIN) else Path(ledger_path).name
