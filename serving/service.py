"""The ar-risk API: a BentoML service that loads its state once and mounts the API (DESIGN.md §8, STYLE.md
BentoML and full-stack-fastapi-template).

The HTTP layer is the FastAPI app of `serving.routes` (a router per resource, answers typed by
`serving.schemas`, the caller and its scope from `serving.deps`, the named errors answered by
`serving.errors`), mounted on the BentoML service at `/v1`: OpenAPI docs at `/v1/docs`. This class only
starts up: it loads the champion models and the ledger once, from the environment:

- `ARRISK_LEDGER`: ledger directory (default `HOME/out/demo/synthetic`, the README demo's; `HOME` is
  `ARRISK_HOME`, default the working folder);
- `ARRISK_TRACKING_URI`: MLflow store with the champions (default `HOME/mlflow/`);
- `ARRISK_TOKENS_FILE` and/or `ARRISK_API_TOKENS`: API tokens (see `serving.auth`); without any, every
  endpoint but health answers 401;
- `ARRISK_REPORTS`: the folder of `arrisk report` outputs served under `/v1/reports` (`HOME/out/reports`);
- `ARRISK_DATABASE_URL`: the activity store; these and the limits and windows: `configs.settings.Settings`.

Who sees which customer is `serving.access`; request ids, JSON 500s, body limits, the token before the
body, security headers and the metrics labels are `serving.middleware`.

Run it with `arrisk serve` or `bentoml serve serving.service:ARRiskService`.
"""

from __future__ import annotations

import logging
import os
from functools import cache

import bentoml

from configs.settings import Settings
from serving.auth import TokenStore, token_store_from_env
from serving.middleware import (
    BodyLimit,
    InternalErrors,
    RequestIds,
    SecurityHeaders,
    TokenFirst,
    label_metrics_by_route,
    route_label,
    route_templates,
)
from serving.routes import create_api
from serving.views import ServingState

log = logging.getLogger("arrisk.service")

api = create_api()


def load_state(environ: dict[str, str], settings: Settings) -> tuple[ServingState, TokenStore, str]:
    """The ledger, the champions and the tokens named by the environment, loaded once."""
    from ledger import read_ledger
    from serving.activity import database_url, ledger_date_window, open_store
    from serving.scoring import load_champions
    from training.tracking import default_tracking_uri

    ledger_dir = settings.ledger.resolve()
    tracking_uri = default_tracking_uri(settings)
    ledger = read_ledger(ledger_dir)
    # The store refuses records dated outside the ledger's window before anything is committed.
    store = open_store(database_url(environ), settings, ledger_date_window(ledger, settings))
    state = ServingState(ledger, load_champions(tracking_uri), store=store,
                         as_of_future_days=settings.as_of_future_days)
    state.champions.require("timing")
    return state, token_store_from_env(environ), str(ledger_dir)


@bentoml.service(name="ar_risk", traffic={"timeout": 120}, workers=1)
@bentoml.asgi_app(api, path="/v1")
class ARRiskService:
    """Scores, worklists, explanations, flags and forecasts for one ledger and its champion models: the
    state the routes read through `serving.deps`."""

    def __init__(self) -> None:
        self.settings = Settings.from_environ(os.environ)
        self.state, self.tokens, self.ledger_path = load_state(dict(os.environ), self.settings)
        self.reports = self.settings.reports
        self.fingerprint = self.state.ledger.fingerprint()
        # Score and rank the ledger's latest day now, so the first request of the morning is fast.
        self.state.full_worklist()
        if not len(self.tokens):
            log.warning("no API tokens configured (%s / %s): every endpoint but health answers 401",
                        "ARRISK_TOKENS_FILE", "ARRISK_API_TOKENS")


# Outermost first: every answer gets its request id and security headers, even a 500 or a 413.
for _middleware in (RequestIds, SecurityHeaders, InternalErrors, TokenFirst, BodyLimit):
    ARRiskService.add_asgi_middleware(_middleware)


@cache
def api_route_templates() -> list:
    """The API's routes as (regex, template), once every route is declared."""
    return route_templates(api)


def metrics_label(path: str) -> str:
    """The route template of `path` for BentoML's HTTP metrics ("other" for unknown paths)."""
    return route_label(path, api_route_templates())


label_metrics_by_route(metrics_label)
