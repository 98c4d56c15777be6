"""503 with ``Retry-After`` is retried (tenacity's policy), honouring the header, against a
real server whose Elasticsearch is not there: nothing listens on its port at first, and in the
recovery case a TCP forwarder to the real node starts listening there while the client waits."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import pytest
from elasticsearch import Elasticsearch

from api.app import create_app
from client import AsyncClient, Client, NotFound, Unavailable
from harness.browser import served
from store.provision import free_port
from tests.api.conftest import ITEMS, seed
from tests.client.conftest import settings_for

pytestmark = pytest.mark.es

RETRY_LOG = "autotag.client"


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with suppress(OSError):
        target.shutdown(socket.SHUT_WR)


@contextmanager
def forwarder(port: int, to: str, *, after_s: float) -> Iterator[None]:
    """From ``after_s`` seconds on, 127.0.0.1:``port`` forwards every connection to ``to``
    (host:port); before that nothing listens there (connections are refused)."""
    host, _, target_port = to.rpartition(":")
    stop = threading.Event()
    opened: list[socket.socket] = []

    def serve() -> None:
        if stop.wait(after_s):
            return
        with socket.create_server(("127.0.0.1", port)) as listener:
            listener.settimeout(0.1)
            while not stop.is_set():
                try:
                    inbound, _ = listener.accept()
                except TimeoutError:
                    continue
                outbound = socket.create_connection((host, int(target_port)))
                opened.extend((inbound, outbound))
                for a, b in ((inbound, outbound), (outbound, inbound)):
                    threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        for sock in opened:
            sock.close()


@pytest.fixture
def unreachable_api(item_index: str) -> Iterator[str]:
    """A server whose Elasticsearch port has nothing listening: every search is 503."""
    with served(create_app(settings_for(f"http://127.0.0.1:{free_port()}", item_index))) as url:
        yield url


def test_a_503_with_retry_after_is_retried_after_at_least_that_long(
    unreachable_api: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, RETRY_LOG)
    started = time.monotonic()
    with Client(unreachable_api, retries=3) as autotag, pytest.raises(Unavailable) as failed:
        autotag.count("object_prefix:car")
    elapsed = time.monotonic() - started
    assert failed.value.attempts == 3
    assert failed.value.retry_after == 1.0
    assert failed.value.code == "search_unavailable"
    # Two waits of at least the 1 s the API asked for; the backoff alone would be < 1.5 s.
    assert elapsed >= 2.0
    waits = [r for r in caplog.records if r.name == RETRY_LOG]
    assert len(waits) == 2
    assert all("503 search_unavailable" in r.getMessage() for r in waits)


def test_the_deadline_from_the_environment_stops_the_retries(
    unreachable_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOTAG_API_RETRIES", "10")
    monkeypatch.setenv("AUTOTAG_API_RETRY_DEADLINE", "1.5")
    with Client(unreachable_api) as autotag, pytest.raises(Unavailable) as failed:
        autotag.count("object_prefix:car")
    # Attempts at 0 s and ~1 s; a third would start after the 1.5 s deadline.
    assert failed.value.attempts == 2


@pytest.mark.anyio
async def test_one_attempt_means_no_retry(
    unreachable_api: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, RETRY_LOG)
    async with AsyncClient(unreachable_api, retries=1) as autotag:
        with pytest.raises(Unavailable) as failed:
            await autotag.count("object_prefix:car")
        ready = await autotag.ready()
    assert failed.value.attempts == 1
    # No wait was logged: every retry logs one warning before it sleeps.
    assert not [r for r in caplog.records if r.name == RETRY_LOG]
    # Readiness answers 503 with its own body, and no Retry-After: an answer, not an error.
    assert (ready.status, ready.cluster_status) == ("unavailable", None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_request_succeeds_once_elasticsearch_is_back(
    es: Elasticsearch, es_url: str, item_index: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, RETRY_LOG)
    seed(es, item_index, ITEMS)
    port = free_port()
    app = create_app(settings_for(f"http://127.0.0.1:{port}", item_index))
    with served(app) as url, forwarder(port, urlsplit(es_url).netloc, after_s=1.5):
        started = time.monotonic()
        with Client(url, retries=6) as autotag:
            answer = autotag.count("object_prefix:car")
            elapsed = time.monotonic() - started
            # Errors that are no 503 are never retried.
            with pytest.raises(NotFound) as missing:
                autotag.item("no-such-item")
    assert answer.count == 3
    assert elapsed >= 1.5
    assert len([r for r in caplog.records if r.name == RETRY_LOG]) >= 1
    assert missing.value.attempts == 1
