"""Structured logs and request ids, from a real ``autotag serve`` run and from the app itself.

The served run uses every kind of secret (review and read keys, a wrong key, a bearer token,
the cluster's password in its URL and an ES API key); its whole log is then read back: every
line is JSON, there is one access line per request with its id, and no secret appears.
The id also reaches Elasticsearch: the node's own search slow log (threshold 0 on the test's
index) names it.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import pytest
from elasticsearch import Elasticsearch
from fastapi import FastAPI

from api import logs
from api.app import create_app
from api.settings import Settings
from store.mapping import index_settings, item_mapping
from tests.api.conftest import ITEMS, client_for, seed

pytestmark = pytest.mark.es

REVIEW_SECRET = "rev-" + uuid.uuid4().hex
READ_SECRET = "read-" + uuid.uuid4().hex
WRONG_SECRET = "wrong-" + uuid.uuid4().hex
BEARER = "bearer-" + uuid.uuid4().hex
ES_PASSWORD = "espw-" + uuid.uuid4().hex
ES_API_KEY = "esapikey" + uuid.uuid4().hex
SECRETS = (REVIEW_SECRET, READ_SECRET, WRONG_SECRET, BEARER, ES_PASSWORD, ES_API_KEY)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _with_password(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"autotag:{ES_PASSWORD}@{parts.netloc}"))


@dataclass
class Served:
    """What the run answered, request by request, and the log it wrote."""

    answers: list[httpx.Response]
    log: str
    es_url: str

    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.log.splitlines()]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["logger"] == logs.ACCESS_LOGGER]


@pytest.fixture(scope="module")
def served(es: Elasticsearch, es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Served:
    index = f"test-api-logs-{uuid.uuid4().hex[:12]}"
    es.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
    seed(es, index, ITEMS)
    folder = tmp_path_factory.mktemp("served")
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AUTOTAG_", "ES_"))},
        "AUTOTAG_ES_URL": _with_password(es_url),
        "AUTOTAG_ES_API_KEY": ES_API_KEY,
        "AUTOTAG_INDEX": index,
        "AUTOTAG_REVIEW_API_KEYS": f"alice:{REVIEW_SECRET}",
        "AUTOTAG_READ_API_KEYS": READ_SECRET,
        "AUTOTAG_OPEN_READS": "false",
        "AUTOTAG_CACHE": str(folder / "cache"),
    }
    log_path = folder / "serve.log"
    base = f"http://127.0.0.1:{port}"
    answers: list[httpx.Response] = []
    try:
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[2],
            )
            try:
                _wait_ready(base, process)
                answers = _requests(base)
            finally:
                process.terminate()
                process.wait(30)
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)
    return Served(answers, log_path.read_text(), es_url)


def _wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "autotag serve exited"
        try:
            # A bare connection: no request, so no access line to account for.
            with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), 0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("autotag serve did not start")


def _requests(base: str) -> list[httpx.Response]:
    review = {"X-API-Key": REVIEW_SECRET}
    read = {"X-API-Key": READ_SECRET}
    with httpx.Client(base_url=base, timeout=30) as http:
        return [
            http.get("/v1/health/ready", headers={"X-Request-ID": "ops-check-0001"}),
            http.post("/v1/count", json={"query": "object_prefix:car"}, headers=read),
            http.post(
                "/v1/count",
                json={"query": "object_prefix:car"},
                headers={**read, "X-Request-ID": "not a sane id; " + "x" * 200},
            ),
            http.post("/v1/count", json={"query": "car"}, headers={"X-API-Key": WRONG_SECRET}),
            http.post(
                "/v1/items/i1/predictions/i1-car/accept",
                headers={**review, "Authorization": f"Bearer {BEARER}"},
            ),
            http.get(f"/v1/items/i2?api_key={REVIEW_SECRET}", headers=read),
            http.get("/v1/items/nope", headers={"Authorization": f"Basic {BEARER}", **read}),
        ]


def test_every_line_is_json_with_one_access_line_per_request(served: Served) -> None:
    lines = served.lines()
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = served.access()
    assert [(a["method"], a["route"], a["status"]) for a in access] == [
        ("GET", "/v1/health/ready", 200),
        ("POST", "/v1/count", 200),
        ("POST", "/v1/count", 200),
        ("POST", "/v1/count", 401),
        ("POST", "/v1/items/{item_id}/predictions/{prediction_id}/accept", 200),
        ("GET", "/v1/items/{item_id}", 200),
        ("GET", "/v1/items/{item_id}", 404),
    ]
    assert [a.status_code for a in served.answers] == [a["status"] for a in access]
    assert all(a["duration_ms"] > 0 for a in access)


def test_the_request_id_is_taken_or_made_and_returned(served: Served) -> None:
    access = served.access()
    ids = [answer.headers["X-Request-ID"] for answer in served.answers]
    assert [a["request_id"] for a in access] == ids
    assert ids[0] == "ops-check-0001"  # taken from the request
    assert len(set(ids)) == len(ids)
    made = ids[1:]  # no id, then an insane one: both replaced by fresh ones
    assert all(len(rid) == 32 and int(rid, 16) >= 0 for rid in made)


def test_no_secret_reaches_the_log(served: Served) -> None:
    assert served.log  # the run logged: the check below has something to look at
    started = [line for line in served.lines() if line["message"] == "serving"]
    assert len(started) == 1
    # The node URL is logged, its password masked.
    masked = _with_password(served.es_url).replace(ES_PASSWORD, logs.MASK)
    assert started[0]["elasticsearch"] == [masked]
    for secret in SECRETS:
        assert secret not in served.log


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("GET http://elastic:pw12345@es:9200/_search", "GET http://elastic:***@es:9200/_search"),
        ("Authorization: Basic ZWxhc3RpYzpwdw==", "Authorization: ***"),
        ("headers={'authorization': 'ApiKey abcdef123'}", "headers={'authorization': '***'}"),
        ('{"x-api-key": "k-123456"}', '{"x-api-key": "***"}'),
        ("/v1/items/i2?api_key=k-123456&x=1", "/v1/items/i2?api_key=***&x=1"),
        ("token Bearer eyJhbGciOi.x.y end", "token Bearer *** end"),
        (
            "nothing secret here: http://es:9200/_doc/7",
            "nothing secret here: http://es:9200/_doc/7",
        ),
    ],
)
def test_credential_shapes_are_masked(text: str, scrubbed: str) -> None:
    assert logs.scrub(text) == scrubbed


def test_configured_secrets_are_masked_wherever_they_appear() -> None:
    secret = "cfg-" + uuid.uuid4().hex
    assert logs.scrub(f"an error mentioning {secret}!") == f"an error mentioning {secret}!"
    logs.register_secrets(secret)
    assert logs.scrub(f"an error mentioning {secret}!") == "an error mentioning ***!"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The app's log lines (logger ``autotag``), formatted as ``autotag serve`` formats them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("autotag")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.anyio
async def test_a_bug_is_answered_and_logged_with_the_request_id(
    api_settings: Settings, captured: io.StringIO
) -> None:
    app: FastAPI = create_app(api_settings)

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)
    async with client_for(app) as client:
        response = await client.get("/broken", headers={"X-Request-ID": "bug-0001"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.headers["X-Request-ID"] == "bug-0001"
    lines = [orjson.loads(line) for line in captured.getvalue().splitlines()]
    error = next(line for line in lines if line["message"] == "unhandled error")
    assert error["request_id"] == "bug-0001"
    assert "RuntimeError: a bug" in error["traceback"]
    assert [(a["route"], a["status"]) for a in lines if a["logger"] == logs.ACCESS_LOGGER] == [
        ("/broken", 500)
    ]


def _slowlog_lines(es: Elasticsearch) -> list[dict[str, Any]]:
    info = es.nodes.info(
        metric="settings", filter_path="nodes.*.settings.path.logs,nodes.*.settings.cluster.name"
    )
    found: list[dict[str, Any]] = []
    for node in info["nodes"].values():
        folder = Path(node["settings"]["path"]["logs"])
        name = node["settings"]["cluster"]["name"]
        path = folder / f"{name}_index_search_slowlog.json"
        if not folder.is_dir():
            # A node in a container: its slow log is out of reach (CI provisions a local one).
            message = f"the node's logs ({folder}) are not on this machine"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        if path.exists():
            found.extend(orjson.loads(line) for line in path.read_bytes().splitlines() if line)
    return found


@pytest.mark.anyio
async def test_the_request_id_reaches_elasticsearch_slow_log(
    client: httpx.AsyncClient, seeded: str, es: Elasticsearch
) -> None:
    es.indices.put_settings(
        index=seeded,
        settings={
            "index.search.slowlog.threshold.query.warn": "0ms",
            "index.search.slowlog.threshold.fetch.warn": "0ms",
        },
    )
    rid = "trace-" + uuid.uuid4().hex
    answer = await client.post(
        "/v1/search", json={"query": "object_prefix:car"}, headers={"X-Request-ID": rid}
    )
    assert answer.status_code == 200
    assert answer.headers["X-Request-ID"] == rid
    deadline = time.monotonic() + 10
    while True:
        mine = [line for line in _slowlog_lines(es) if line.get("elasticsearch.slowlog.id") == rid]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert mine, f"no slow log line of {seeded} names {rid}"
    assert all(f"[{seeded}]" in line["elasticsearch.slowlog.message"] for line in mine)
