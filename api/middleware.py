"""What wraps every request: its id, its metrics, its log line, and CORS when configured.

:func:`install` is called once by the app factory. The observing middleware is plain ASGI (no
``BaseHTTPMiddleware``: no extra task or body copy per request). For each HTTP request it

- takes the id from ``X-Request-ID`` when sane, else makes one (:mod:`api.request_id`), keeps
  it in a context variable for the request's log lines and Elasticsearch calls, and returns it
  in the response's ``X-Request-ID``;
- counts the request and its latency under its route *template* (``/v1/items/{item_id}``, never
  the raw path) and status, in :mod:`api.metrics`;
- writes one JSON access line (:mod:`api.logs`): method, route, path, status, duration, id.

A bug that escapes every handler is answered here, with the usual 500 envelope and the id,
and logged with its traceback and the id.

CORS is off unless ``AUTOTAG_CORS_ORIGINS`` names origins: then Starlette's ``CORSMiddleware``
answers preflights for those origins only.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import logs, metrics, request_id
from api.errors import envelope
from api.settings import Settings

log = logging.getLogger("autotag.api")

UNMATCHED: Final = "unmatched"
# What a dashboard on another origin may send and read.
CORS_HEADERS: Final = ["Content-Type", "X-API-Key", request_id.HEADER]
CORS_EXPOSED: Final = [request_id.HEADER, "Retry-After"]


def route_template(scope: Scope, root_path: str = "") -> str:
    """The matched route's whole path template (``/v1/items/{item_id}``), or ``unmatched``.

    FastAPI resolves included routers lazily and leaves their route, prefix-less, in
    ``scope["route"]``; the matched route with its prefixes is its effective route context
    (tests/api/test_metrics.py pins the result, so a FastAPI that moves it shows at once).
    Routes added to the app itself (``/metrics``, the page) are in ``scope["route"]`` whole; a
    mount (static assets) only extends the ``root_path`` (``root_path`` is the request's
    before routing), and ``/openapi.json`` only sets its endpoint.
    """
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    route = context if context is not None else scope.get("route")
    template = getattr(route, "path_format", None)
    if isinstance(template, str) and template:
        return template
    if scope.get("endpoint") is not None:
        mounted = str(scope.get("root_path", ""))[len(root_path) :]
        if mounted:
            return mounted + "/{path}"
        if not scope.get("path_params"):
            return str(scope["path"])
    return UNMATCHED


class ObserveRequests:
    """Request id, metrics and the access line for every HTTP request."""

    def __init__(self, app: ASGIApp, measures: metrics.Metrics) -> None:
        self.app = app
        self.measures = measures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        root_path = str(scope.get("root_path", ""))
        rid = request_id.accept(Headers(scope=scope).get(request_id.HEADER))
        token = request_id.current.set(rid)
        status = 500
        started = False
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                MutableHeaders(scope=message)[request_id.HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log.exception("unhandled error", exc_info=exc)
            if started:
                raise
            await envelope(500, "internal_error", "An unexpected error occurred")(
                scope, receive, send_with_id
            )
        finally:
            seconds = time.perf_counter() - start
            method, route = scope["method"], route_template(scope, root_path)
            self.measures.requests.labels(method, route, str(status)).inc()
            self.measures.request_seconds.labels(method, route, str(status)).observe(seconds)
            logs.access_log.info(
                "%s %s %d",
                method,
                route,
                status,
                extra={
                    "fields": {
                        "method": method,
                        "route": route,
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                    }
                },
            )
            request_id.current.reset(token)


def install(app: FastAPI, settings: Settings) -> None:
    """Metrics (``/metrics`` when enabled), request ids and access logs; CORS if configured."""
    measures = metrics.Metrics.create()
    app.state.metrics = measures
    if settings.metrics:
        app.include_router(metrics.router())
    logs.register_secrets(*settings.secret_values())
    origins = settings.cors_origin_list()
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSED,
            max_age=600,
        )
    # Added last, so it is outermost: preflights answered by CORS are counted and logged too.
    app.add_middleware(ObserveRequests, measures=measures)
