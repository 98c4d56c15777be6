"""A real Chromium and a real server for the review page's tests and benchmark.

Chromium is Debian's (``scripts/dev test`` installs it with apt-get): Playwright drives it over
its own protocol with ``executable_path``, never downloading a browser of its own. The flags
keep it from calling anywhere (no background networking, component updates, sync or QUIC), and
Playwright gives every launch a fresh profile (``--user-data-dir`` in a temporary folder).

:func:`served` runs an app under uvicorn in a thread of this process, on a free port, for as
long as the ``with`` block lasts.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import uvicorn

from store.provision import free_port

if TYPE_CHECKING:
    from fastapi import FastAPI
    from playwright.sync_api import Browser

CHROMIUM_FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def chromium_path() -> str | None:
    """Debian's Chromium (or ``AUTOTAG_CHROMIUM``), if installed."""
    configured = os.environ.get("AUTOTAG_CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


class NoBrowser(RuntimeError):
    """No Chromium here: install Debian's ``chromium`` (``scripts/dev test`` does, as root)."""


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise NoBrowser("no chromium on PATH: apt-get install chromium chromium-driver")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path, headless=True, args=list(CHROMIUM_FLAGS)
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def served(app: FastAPI, *, timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``app`` (lifespan and all) on 127.0.0.1; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name=f"uvicorn-{port}")
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
