"""Property-based checks of the app against its own OpenAPI schema (schemathesis).

A real uvicorn server runs the real app in front of a real node with seeded items; every
generated request must get a non-5xx answer that conforms to the schema.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from elasticsearch import Elasticsearch
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
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


@pytest.fixture(scope="module")
def server_url(es: Elasticsearch, es_url: str) -> Iterator[str]:
    index = f"test-api-schema-{uuid.uuid4().hex[:12]}"
    runs_index = f"test-api-schema-runs-{uuid.uuid4().hex[:12]}"
    es.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
    seed(es, index, ITEMS)
    app = create_app(
        Settings(
            es_url=es_url,
            index=index,
            runs_index=runs_index,
            review_api_keys=SecretStr(f"alice:{REVIEW_KEY}"),
            # Keyed reads, so every operation that declares the key also enforces it.
            open_reads=False,
            review_refresh="false",
        )
    )
    port = _free_port()
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
        es.indices.delete(index=index, ignore_unavailable=True)
        es.indices.delete(index=slices_index(index), ignore_unavailable=True)
        es.indices.delete(index=runs_index, ignore_unavailable=True)


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


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_schema(server_url: str, mode: GenerationMode) -> None:
    # Cases are drawn per operation with plain hypothesis: schemathesis's lazy pytest fixture
    # loader does not run under pytest 9.
    schema = schemathesis.openapi.from_url(f"{server_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == 38

    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.path.startswith("/v1/health"):
            continue  # no inputs to get wrong

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(
                headers={"X-API-Key": REVIEW_KEY},
                excluded_checks=[positive_data_acceptance],
                additional_checks=[schema_valid_rejected_only_for_meaning],
            )

        check()
