"""Pure-ASGI middleware of the service: request ids, JSON 500s, security headers, the token before the body,
body limits, a guarded /metrics, and BentoML's HTTP metrics labelled by route template.

Pure ASGI (not Starlette's BaseHTTPMiddleware) so a body is never read twice and an error never escapes:
Starlette's ServerErrorMiddleware answers a 500 and then re-raises, and uvicorn drops the keep-alive
connection, so the next request on it is reset. `InternalErrors` answers and does not re-raise.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

log = logging.getLogger("arrisk.service")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_KEY = "arrisk.request_id"  # where the request id travels in the ASGI scope
ORIGINAL_PATH_KEY = "arrisk.path"
# A client's X-Request-ID is echoed only when it is short and plain (it ends up in logs).
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
CONTENT_SECURITY_POLICY = ("default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                           "form-action 'self'; base-uri 'none'")
SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
# /v1 paths answered without a bearer token: health, the API docs, and the web pages (a cookie instead).
PUBLIC_PATHS = frozenset({"/v1/health", "/v1/docs", "/v1/docs/oauth2-redirect", "/v1/redoc", "/v1/openapi.json",
                          "/v1/ui"})
PUBLIC_PREFIXES = ("/v1/ui/",)
METRICS_PATH = "/metrics"
# BentoML's own routes, labelled as themselves; any other path outside /v1 is "other".
BENTOML_PATHS = frozenset({"/", "/metrics", "/healthz", "/livez", "/readyz", "/docs.json", "/schema.json"})


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header `name` (lowercase bytes), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def request_id(scope: Scope) -> str:
    """The client's X-Request-ID when sane, else a fresh random one."""
    presented = header(scope, b"x-request-id")
    return presented if presented and SANE_REQUEST_ID.fullmatch(presented) else uuid.uuid4().hex


async def send_json(send: Send, status: int, body: dict, headers: Iterable[tuple[str, str]] = ()) -> None:
    """Answer with a JSON body."""
    content = json.dumps(body).encode("utf-8")
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    raw += [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})


def current_service() -> Any | None:
    """The running `ARRiskService` instance, or None before it is built."""
    import bentoml

    try:
        return bentoml.get_current_service()
    except Exception:  # BentoMLException: "service isn't instantiated yet"
        return None


class RequestIds:
    """Give every request an id (a sane client X-Request-ID or a fresh one), echoed in the answer."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope.setdefault(REQUEST_ID_KEY, request_id(scope))

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", scope[REQUEST_ID_KEY].encode())]
            await send(message)

        await self.app(scope, receive, with_id)


class InternalErrors:
    """Answer an unexpected exception with a logged JSON 500 naming the request id; never re-raise."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            identifier = scope.setdefault(REQUEST_ID_KEY, request_id(scope))
            log.exception("unexpected error on %s %s (request id %s)", scope.get("method"), scope.get("path"),
                          identifier)
            if not started:  # once an answer has begun, all that is left is to end it quietly
                await send_json(send, 500, {"error": "internal", "request_id": identifier,
                                            "detail": f"unexpected error; see the service log for request id "
                                                      f"{identifier}"})


class SecurityHeaders:
    """Security headers on every answer, and `Cache-Control: no-store` on JSON (API answers are private)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_security_headers(list(message.get("headers", [])))
            await send(message)

        await self.app(scope, receive, secured)


def with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` plus the security headers they lack (and no-store on JSON without a Cache-Control)."""
    present = {key.lower() for key, _ in headers}
    added = [(key, value) for key, value in SECURITY_HEADERS if key not in present]
    json_answer = any(key.lower() == b"content-type" and value.startswith(b"application/json")
                      for key, value in headers)
    if json_answer and b"cache-control" not in present:
        added.append((b"cache-control", b"no-store"))
    return headers + added


def needs_token_first(path: str) -> bool:
    """Whether `path` is an API path whose bearer token is checked before its body is read."""
    return path.startswith("/v1/") and path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES)


class TokenFirst:
    """Refuse a request without a valid bearer token before its body is read (scopes: the route's job);
    /metrics too unless `Settings.metrics_public`."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = current_service()
        if scope["type"] != "http" or service is None or not token_checked_first(scope["path"], service.settings):
            return await self.app(scope, receive, send)
        from serving.auth import AuthError

        try:
            service.tokens.authenticate(header(scope, b"authorization"))
        except AuthError as error:
            return await send_json(send, error.status, error.body(), error.headers.items())
        await self.app(scope, receive, send)


def token_checked_first(path: str, settings) -> bool:
    """Whether a request to `path` needs a valid token before anything else."""
    return needs_token_first(path) or (path == METRICS_PATH and not settings.metrics_public)


class BodyLimit:
    """Refuse a body over `Settings.max_body_bytes` with 413: by Content-Length up front, and by counting a
    chunked body while it streams in (buffered up to the limit, then handed on whole)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = current_service()
        if scope["type"] != "http" or service is None or not has_body(scope):
            return await self.app(scope, receive, send)
        limit = service.settings.max_body_bytes
        too_large = {"error": "payload_too_large", "detail": f"the request body is over {limit} bytes"}
        length = header(scope, b"content-length")
        # The HTTP server has refused a Content-Length that is not a number already.
        if length is not None and length.isdigit() and int(length) > limit:
            return await send_json(send, 413, too_large)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await send_json(send, 413, too_large)
            if not message.get("more_body", False):
                break
        await self.app(scope, replay(b"".join(chunks), receive), send)


def has_body(scope: Scope) -> bool:
    """Whether the request announces a body (a Content-Length above 0 or a chunked transfer)."""
    length = header(scope, b"content-length")
    return (length is not None and length != "0") or header(scope, b"transfer-encoding") is not None


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` once, then whatever the client sends next (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


# ---- metrics labels ------------------------------------------------------------------------------------

def route_label(path: str, templates: Iterable[tuple[re.Pattern, str]], mount: str = "/v1") -> str:
    """The metrics label of `path`: its route template under `mount`, BentoML's own path, or "other"."""
    if path in BENTOML_PATHS:
        return path
    if path == mount or path.startswith(mount + "/"):
        inner = path[len(mount):] or "/"
        for pattern, template in templates:
            if pattern.match(inner):
                return mount + template
    return "other"


def route_templates(app: Any) -> list[tuple[re.Pattern, str]]:
    """(path regex, path template) of each route of a Starlette or FastAPI app or router."""
    found = []
    for route in app.routes:
        if hasattr(route, "path_regex"):
            found.append((route.path_regex, route.path_format))
        elif hasattr(route, "original_router"):  # FastAPI 0.16x wraps included routers (routes keep full paths)
            found += route_templates(route.original_router)
    return found


def label_metrics_by_route(label: Callable[[str], str]) -> None:
    """Make BentoML's HTTP metrics label requests by `label(path)` instead of the raw path.

    BentoML 1.4 (`bentoml/_internal/server/http/instruments.py`, RunnerTrafficMetricsMiddleware) labels
    every request with `scope["path"]` before any user middleware runs, so each random path or customer
    id became a new time series. The app factory imports that class when it builds the app, so a subclass
    put in its place is the one hook ahead of it: it shows the metrics a path bounded by `label` and
    gives the app the real path back.
    """
    from bentoml._internal.server.http import instruments

    base = getattr(instruments.RunnerTrafficMetricsMiddleware, "unlabelled", instruments.RunnerTrafficMetricsMiddleware)

    class RouteLabelledMetrics(base):
        unlabelled = base

        def __init__(self, app: App, **options: Any) -> None:
            super().__init__(with_original_path(app), **options)

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return await super().__call__(scope, receive, send)
            labelled = {**scope, "path": label(scope["path"]), ORIGINAL_PATH_KEY: scope["path"]}
            await super().__call__(labelled, receive, send)

    instruments.RunnerTrafficMetricsMiddleware = RouteLabelledMetrics


def with_original_path(app: App) -> App:
    """`app` called with the path the metrics middleware replaced by its label."""

    async def restored(scope: Scope, receive: Receive, send: Send) -> None:
        if ORIGINAL_PATH_KEY in scope:
            scope = {**scope, "path": scope[ORIGINAL_PATH_KEY]}
            del scope[ORIGINAL_PATH_KEY]
        await app(scope, receive, send)

    return restored
