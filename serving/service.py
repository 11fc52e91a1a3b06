"""The ar-risk API: a BentoML service that loads its state once and mounts the API (DESIGN.md §8, STYLE.md
BentoML and full-stack-fastapi-template).

The HTTP layer is the FastAPI app of `serving.routes` (a router per resource, answers typed by
`serving.schemas`, the caller and its scope from `serving.deps`, the named errors answered by
`serving.errors`), mounted on the BentoML service at `/v1`: OpenAPI docs at `/v1/docs`. This class only
starts up: it loads the days it answers from once, from the environment:

- `ARRISK_RUNS`: a folder of daily runs (`arrisk run`): the newest complete run is served, new ones are
  picked up every `ARRISK_RUNS_POLL_SECONDS`; without it, dates are computed on demand from
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
import threading
import time
from functools import cache

import bentoml
import pandas as pd

from configs.settings import Settings
from serving.auth import TokenStore, token_store_from_env
from serving.jobs import RunJobs
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
from serving.views import LedgerDays, RunDays, ServingState

log = logging.getLogger("arrisk.service")

api = create_api()


def load_state(environ: dict[str, str], settings: Settings) -> tuple[ServingState, TokenStore, str, str]:
    """The days the environment names (the runs of `ARRISK_RUNS`, else the ledger and its champions) and the
    tokens, loaded once; with the ledger's location and fingerprint."""
    from configs.settings import business_date_window
    from ledger import read_ledger
    from serving.activity import database_url, ledger_date_window, open_store
    from training.tracking import default_tracking_uri

    if settings.runs is not None:
        days = RunDays(settings.runs, settings.ledger if "ledger" in settings.model_fields_set else None)
        facts = days.newest_manifest.get("facts", {})
        window = business_date_window(pd.Timestamp(facts["first_invoice_date"]).date(),
                                      pd.Timestamp(facts["last_event_date"]).date(), settings)
        ledger_path, fingerprint = str(days.ledger_dir), str(days.newest_manifest.get("ledger_fingerprint"))
    else:
        from runs.scoring import load_champions

        ledger = read_ledger(settings.ledger.resolve())
        days = LedgerDays(ledger, load_champions(default_tracking_uri(settings)), settings.as_of_future_days)
        window = ledger_date_window(ledger, settings)
        ledger_path, fingerprint = str(settings.ledger.resolve()), ledger.fingerprint()
    # The store refuses records dated outside the ledger's window before anything is committed.
    store = open_store(database_url(environ), settings, window)
    return ServingState(days, store=store), token_store_from_env(environ), ledger_path, fingerprint


@bentoml.service(name="ar_risk", traffic={"timeout": 120}, workers=1)
@bentoml.asgi_app(api, path="/v1")
class ARRiskService:
    """Scores, worklists, explanations, flags and forecasts for one ledger and its champion models: the
    state the routes read through `serving.deps`."""

    def __init__(self) -> None:
        self.settings = Settings.from_environ(os.environ)
        self.state, self.tokens, self.ledger_path, self.fingerprint = load_state(dict(os.environ), self.settings)
        self.reports = self.settings.reports
        self.jobs = RunJobs(self.settings, self.state)
        # The default day now (a run's tables, or computed from the ledger), so the first request is fast;
        # the ledger behind a run (for writes and KPIs) and the lookups of the first writes in the background.
        self.state.view()
        threading.Thread(target=warm_up, args=(self.state,), name="arrisk-warm-up", daemon=True).start()
        if isinstance(self.state.days, RunDays) and self.settings.runs_poll_seconds > 0:
            threading.Thread(target=watch_runs, args=(self.state, self.settings.runs_poll_seconds),
                             name="arrisk-runs", daemon=True).start()
        if not len(self.tokens):
            log.warning("no API tokens configured (%s / %s): every endpoint but health answers 401",
                        "ARRISK_TOKENS_FILE", "ARRISK_API_TOKENS")


def warm_up(state: ServingState) -> None:
    try:
        state.warm_up()
    except Exception:  # a request that needs what failed here reports it itself
        log.exception("warming up failed; the first requests will do the work")


def watch_runs(state: ServingState, seconds: float) -> None:
    """Every `seconds`, pick up a new complete run (a failure is logged and retried at the next look)."""
    while True:
        time.sleep(seconds)
        try:
            changed = state.refresh()
            if changed:
                log.info("serving new runs: %s", ", ".join(f"{day:%Y-%m-%d}" for day in changed))
        except Exception:
            log.exception("could not pick up a new run; still serving the previous one")


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
