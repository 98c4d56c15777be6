"""The application factory: ``create_app(settings)`` wires routes, errors and the ES client.

The ``lifespan`` owns exactly one ``AsyncElasticsearch`` client per process (its connection
pool is shared by every request) and closes it on shutdown. Routes reach it, and the settings,
through the dependencies in :mod:`api.deps`, which tests may override.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from elasticsearch import AsyncElasticsearch
from fastapi import FastAPI

from api import errors, middleware
from api.autotags import AutotagJobs
from api.es_transport import make_client
from api.images import ImageService
from api.logs import log_older_schema, log_started
from api.metrics import metrics_of
from api.routes import (
    autotags,
    docs,
    evaluate,
    export,
    facets,
    health,
    images,
    items,
    page,
    review,
    review_query,
    runs,
    search,
    slices,
)
from api.settings import Settings
from api.similarity import ClipService
from store.calls import drive_async
from store.connection import node_urls
from store.mapping import SCHEMA_VERSION
from store.migrate import older_schema_op

API_VERSION = "1"


async def _check_schema(client: AsyncElasticsearch, index: str) -> None:
    """Warn when the index is of an older schema; a node not up yet is not this check's to
    report (health is)."""
    try:
        older = await drive_async(client, older_schema_op(index))
    except Exception:  # any failure here only skips a warning
        return
    if older is not None:
        log_older_schema(older[0], older[1], SCHEMA_VERSION)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A ready-to-serve app; ``settings`` default to the environment."""
    settings = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = make_client(settings, metrics_of(app).es_seconds)
        app.state.es = client
        log_started(node_urls(settings), settings.index)
        await _check_schema(client, settings.index)
        try:
            yield
        finally:
            app.state.es = None
            app.state.autotag_jobs.shutdown()
            await client.close()

    app = FastAPI(
        title="autotag",
        version=API_VERSION,
        summary="Search and review ML predictions about images.",
        lifespan=lifespan,
        # FastAPI's pages load from CDNs; ours serve vendored assets (api/routes/docs.py).
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.es = None
    app.state.images = ImageService.create(
        settings.cache_dir() / "thumbnails", settings.thumbnail_cache_mb * 1024 * 1024
    )
    app.state.clip = ClipService(settings)  # CLIP for similar: texts, loaded on first use
    app.state.autotag_jobs = AutotagJobs(settings)  # autotag scoring in the background
    errors.install(app)
    middleware.install(app, settings)
    # Search's routes are built for these settings: its page-size bound is configuration.
    for router in (
        search.router(settings),
        facets.router,
        evaluate.router,
        items.router,
        images.router,
        review.router,
        review.item_router,
        review_query.router,
        slices.router,
        export.router,
        runs.router(settings),
        autotags.router,
    ):
        app.include_router(router, prefix="/v1")
    app.include_router(health.router, prefix="/v1")
    docs.install(app)
    page.install(app)
    return app
