"""Run the API under uvicorn (``autotag serve``)."""

from __future__ import annotations

import gc

import uvicorn

from api.app import create_app
from api.logs import log_config
from api.settings import Settings


def serve(
    settings: Settings | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve until interrupted; one process, one Elasticsearch client."""
    app = create_app(settings)
    # What is alive now (modules, the app, its routes and models) lives as long as the process.
    # Frozen, it is no longer rescanned by every full collection, each of which would otherwise
    # pause whichever requests are in flight (figures in docs/benchmarks.md).
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # JSON lines with the request id; the access line is the app's (autotag.access).
        log_config=log_config(log_level),
        access_log=access_log,
        # The fast parsers when installed, the pure-Python ones otherwise.
        loop="auto",
        http="auto",
        proxy_headers=False,
    )
