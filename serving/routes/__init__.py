"""The API assembled: one router per resource, the web pages, the error handlers and the scopes of every
route in the OpenAPI document. `serving.service` mounts the app this builds at `/v1`."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from serving.deps import dependency_scopes
from serving.errors import add_error_handlers
from serving.middleware import InternalErrors
from serving.routes import (
    activity,
    admin,
    cash,
    credit_reviews,
    customers,
    deductions,
    deterioration,
    escalations,
    forecast,
    health,
    monitoring,
    provision,
    reminders,
    rule_reports,
    runs,
    scores,
    sla,
    worklist,
)
from serving.web import router as web_pages
from serving.web_credit_reviews import router as credit_review_pages
from serving.web_deductions import router as deduction_pages
from serving.web_escalations import router as escalation_pages
from serving.web_provision import router as provision_pages
from serving.web_reminders import router as reminder_pages

DESCRIPTION = (
    "Accounts-receivable risk: invoice scores, the collection worklist, customer views with explanations, "
    "deterioration flags, the cash forecast, aging, dunning and KPIs. Every endpoint but /v1/health needs "
    "`Authorization: Bearer <token>` with one of the scopes named in its description (`x-scopes`); admin "
    "holds every scope. Without a valid token the answer is 401, without the scope 403, both before the "
    "request body is validated.")
ROUTERS = (health.router, scores.router, worklist.router, customers.router, deterioration.router,
           forecast.router, rule_reports.router, monitoring.router, *activity.routers, admin.router,
           runs.router, cash.router, deductions.router, escalations.router, credit_reviews.router, sla.router,
           provision.router, reminders.router)


def create_api() -> FastAPI:
    """The FastAPI app of the service, every route declared."""
    api = FastAPI(title="ar-risk", version="1", description=DESCRIPTION)
    for router in ROUTERS:
        document_scopes(router)
        api.include_router(router)
    # The web pages for collectors, credit and treasury (server-rendered HTML under /v1/ui, see serving/web.py).
    api.include_router(web_pages)
    for pages in (deduction_pages, escalation_pages, credit_review_pages, provision_pages,  # issues 21, 23
                  reminder_pages):  # issue 22
        api.include_router(pages)
    add_error_handlers(api)
    # Inside FastAPI's own ServerErrorMiddleware, which would answer a plain-text 500 and re-raise.
    api.add_middleware(InternalErrors)
    return api


def document_scopes(router: APIRouter) -> None:
    """Name each route's scopes in its OpenAPI operation: `x-scopes` and a line of its description."""
    for route in router.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        scopes = dependency_scopes(route.dependant)
        if scopes is None:
            continue
        route.openapi_extra = {**(route.openapi_extra or {}), "x-scopes": list(scopes)}
        line = f"Scopes: {', '.join(scopes)}" + (" (or admin)." if scopes != ("admin",) else ".")
        route.description = f"{route.description}\n\n{line}" if route.description else line
