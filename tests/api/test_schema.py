"""Property-based checks of the app against its own OpenAPI schema (schemathesis).

A real uvicorn server runs the real app in front of a real node with seeded items; every
generated request must get a non-5xx answer that conforms to the schema. Error answers are
checked as hard as the others: schemathesis's own checks validate each against the response
the operation declares for its status (an undeclared status fails), and the runs are made to
meet the errors: without a key (401 everywhere a key is needed) and, on a second server whose
node is down, 503s (the envelope, ``Retry-After``). Each run asserts it met the errors it
exists for. tests/api/test_openapi.py checks statically that every operation declares them.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
import uvicorn
from elasticsearch import Elasticsearch
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from api.settings import Settings
from store.mapping import index_settings, item_mapping
from store.slices import slices_index
from tests.api.conftest import ITEMS, REVIEW_KEY, seed

pytestmark = pytest.mark.es

EXAMPLES = 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _settings(es_url: str, index: str, runs_index: str = "autotag-runs") -> Settings:
    return Settings(
        es_url=es_url,
        index=index,
        runs_index=runs_index,
        review_api_keys=SecretStr(f"alice:{REVIEW_KEY}"),
        # Keyed reads, so every operation that declares the key also enforces it.
        open_reads=False,
        review_refresh="false",
    )


@contextmanager
def _served(settings: Settings) -> Iterator[str]:
    port = _free_port()
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server_url(es: Elasticsearch, es_url: str) -> Iterator[str]:
    index = f"test-api-schema-{uuid.uuid4().hex[:12]}"
    runs_index = f"test-api-schema-runs-{uuid.uuid4().hex[:12]}"
    es.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
    seed(es, index, ITEMS)
    try:
        with _served(_settings(es_url, index, runs_index)) as url:
            yield url
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)
        es.indices.delete(index=slices_index(index), ignore_unavailable=True)
        es.indices.delete(index=runs_index, ignore_unavailable=True)


@pytest.fixture(scope="module")
def down_url() -> Iterator[str]:
    """The app in front of a node that is not there (a port nothing listens on)."""
    with _served(_settings(f"http://127.0.0.1:{_free_port()}", "autotag-items")) as url:
        yield url


# JSON Schema cannot say which strings are valid queries or cursors, that a box belongs to
# object predictions only, which ground-truth sources exist, that a saved review decides each
# prediction once, which model sets the catalogue holds, that free-form integers (metadata)
# must fit in 64 bits, that an autotag's examples exist (with an embedding), nor that the index
# has embeddings for a similarity query: schema-valid requests may be refused for exactly those
# reasons.
MEANING_ERRORS = {
    "invalid_query",
    "invalid_cursor",
    "bbox_not_allowed",
    "unknown_truth_source",
    "duplicate_decision",
    "unknown_models",
    "invalid_value",
    "invalid_autotag",
    "similarity_unavailable",
}


def schema_valid_rejected_only_for_meaning(
    ctx: Any, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> None:
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    if response.status_code in (400, 422):
        code = response.json()["error"]["code"]
        assert code in MEANING_ERRORS, f"schema-valid request refused: {response.text}"


@dataclass(frozen=True)
class Run:
    """One way of calling every operation, and the error statuses it must meet."""

    mode: GenerationMode
    headers: dict[str, str]
    examples: int
    must_meet: frozenset[int]
    node_down: bool = False


RUNS = {
    # Schema-valid inputs meet meaning errors (400) and unknown items and predictions (404).
    "positive": Run(
        GenerationMode.POSITIVE, {"X-API-Key": REVIEW_KEY}, EXAMPLES, frozenset({400, 404})
    ),
    "negative": Run(GenerationMode.NEGATIVE, {"X-API-Key": REVIEW_KEY}, EXAMPLES, frozenset({422})),
    "no key": Run(GenerationMode.POSITIVE, {}, 5, frozenset({401})),
    "node down": Run(
        GenerationMode.POSITIVE, {"X-API-Key": REVIEW_KEY}, 5, frozenset({503}), node_down=True
    ),
}


def _array_parameters(case: schemathesis.Case[Any]) -> set[str]:
    raw: list[dict[str, Any]] = case.operation.definition.raw.get("parameters", [])
    return {
        p["name"]
        for p in raw
        if p.get("in") == "query"
        and any(s.get("type") == "array" for s in [p["schema"], *p["schema"].get("anyOf", [])])
    }


def reaches_the_server_invalid(case: schemathesis.Case[Any]) -> bool:
    """A negative case whose violation survives being sent. Not one that only broke the API-key
    header (every run sends its own key, and no operation declares another header), and none
    with an object or a list in a scalar query parameter: form-encoded, ``{"training_set":
    "x"}`` and ``["x"]`` are both sent as ``training_set=x``, a valid value (seeds drew both and
    failed `/v1/runs` for accepting them; e.g. 222689328347477758663529396076872259970). A
    scalar parameter given twice is answered with the last value, as FastAPI does."""
    components = case.meta.components if case.meta is not None else {}
    negative = {where for where, info in components.items() if info.mode is GenerationMode.NEGATIVE}
    if negative <= {ParameterLocation.HEADER}:
        return False
    arrays = _array_parameters(case)
    return not any(
        isinstance(value, dict) or (isinstance(value, list) and name not in arrays)
        for name, value in (case.query or {}).items()
    )


def _declared(case: schemathesis.Case[Any], status: int) -> dict[str, Any]:
    responses: dict[str, Any] = case.operation.definition.raw["responses"]
    declared: dict[str, Any] = responses.get(str(status)) or {}
    return declared


def error_answers_are_declared_envelopes(
    ctx: Any, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> None:
    """Every 4xx/5xx is declared for the operation with the envelope (readiness's 503 says
    what is missing in its own body), and carries the request id."""
    status = response.status_code
    assert response.headers.get("x-request-id"), "no X-Request-ID"
    if status < 400:
        return
    declared = _declared(case, status)
    ref = declared.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
    expected = (
        "Ready" if (case.operation.path, status) == ("/v1/health/ready", 503) else ("ErrorEnvelope")
    )
    assert ref == f"#/components/schemas/{expected}", f"{status} declared as {declared}"
    if expected == "ErrorEnvelope":
        assert set(response.json()) == {"error"}


def only_unavailable(
    ctx: Any, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> None:
    """With the node down, a server error is a 503 with ``Retry-After`` (a 500 is a bug)."""
    if response.status_code >= 500:
        assert response.status_code == 503, response.text
        if case.operation.path != "/v1/health/ready":
            assert response.headers.get("retry-after") == ["1"]


@pytest.mark.parametrize("name", list(RUNS))
def test_api_conforms_to_its_schema(request: pytest.FixtureRequest, name: str) -> None:
    run = RUNS[name]
    url = request.getfixturevalue("down_url" if run.node_down else "server_url")
    # Cases are drawn per operation with plain hypothesis: schemathesis's lazy pytest fixture
    # loader does not run under pytest 9.
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == 40
    met: set[int] = set()

    def record(ctx: Any, response: schemathesis.Response, case: schemathesis.Case[Any]) -> None:
        met.add(response.status_code)

    excluded: list[schemathesis.CheckFunction] = [positive_data_acceptance]
    additional: list[schemathesis.CheckFunction] = [record, error_answers_are_declared_envelopes]
    if run.node_down:
        excluded.append(not_a_server_error)
        additional.append(only_unavailable)
    else:
        additional.append(schema_valid_rejected_only_for_meaning)
    for operation in operations:
        if run.mode is GenerationMode.NEGATIVE and operation.path.startswith("/v1/health"):
            continue  # no inputs to get wrong

        @given(case=operation.as_strategy(generation_mode=run.mode))
        @settings(
            max_examples=run.examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case[Any]) -> None:
            if run.mode is GenerationMode.NEGATIVE and not reaches_the_server_invalid(case):
                return  # (some operations have nothing else to get wrong)
            case.call_and_validate(
                headers=run.headers,
                excluded_checks=excluded,
                additional_checks=additional,
            )

        check()
    assert run.must_meet <= met, f"met {sorted(met)}"
