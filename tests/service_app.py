"""One ASGI app of the service per test process: BentoML registers its metrics once per process, so a
second `to_asgi()` fails. Each `TestClient` start runs the app's start-up, which builds a new service
from the environment of that moment."""

from __future__ import annotations

from functools import cache


@cache
def service_app():
    from serving.service import ARRiskService

    return ARRiskService.to_asgi()
