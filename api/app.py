"""The application factory: ``create_app(settings)`` wires routes, errors and the ES client.

The ``lifespan`` owns exactly one ``AsyncElasticsearch`` client per process (its connection
pool is shared by every request) and closes it on shutdown. Routes reach it, and the settings,
through the dependencies in :mod:`api.deps`, which tests may override.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from elasticsearch import AsyncElasticsearch
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api import errors
from api.routes import facets, health, items, review, search
from api.settings import Settings
from store.connection import serializers

API_VERSION = "1"


def make_client(settings: Settings) -> AsyncElasticsearch:
    """An async client configured from the settings; secrets go to the client, nowhere else."""
    options: dict[str, Any] = {
        "request_timeout": settings.es_request_timeout,
        "connections_per_node": settings.es_max_connections,
        "verify_certs": settings.es_verify_certs,
        # orjson for every JSON mimetype, the compatibility-mode ones (what ES 9 answers) too.
        "serializers": serializers(),
    }
    if settings.es_ca_certs is not None:
        options["ca_certs"] = str(settings.es_ca_certs)
    if settings.es_api_key is not None:
        options["api_key"] = settings.es_api_key.get_secret_value()
    elif settings.es_username is not None:
        password = "" if settings.es_password is None else settings.es_password.get_secret_value()
        options["basic_auth"] = (settings.es_username, password)
    return AsyncElasticsearch(settings.es_hosts(), **options)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A ready-to-serve app; ``settings`` default to the environment."""
    settings = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = make_client(settings)
        app.state.es = client
        try:
            yield
        finally:
            app.state.es = None
            await client.close()

    app = FastAPI(
        title="autotag",
        version=API_VERSION,
        summary="Search and review ML predictions about images.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.es = None
    errors.install(app)
    for module in (search, facets, items, review):
        app.include_router(module.router, prefix="/v1")
    app.include_router(health.router, prefix="/v1")

    def openapi() -> dict[str, Any]:
        # The page-size bound is configuration; publish the configured one.
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            size = schema["components"]["schemas"]["SearchRequest"]["properties"]["size"]
            for option in size.get("anyOf", [size]):
                if "maximum" in option:
                    option["maximum"] = settings.max_page_size
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
