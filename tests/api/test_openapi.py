"""Every operation in the OpenAPI schema declares its error answers, with the one envelope.

Rules read off each operation itself: every one may fail with a bug (500); one that takes a key
declares 401; one that takes parameters or a body declares 400 and 422; one that needs the
cluster declares 503. Every declared 4xx/5xx is the envelope (readiness's 503 excepted: its
body says what is missing). test_schema.py checks the answers really are what is declared.
"""

from __future__ import annotations

from typing import Any

import pytest

from api.app import create_app
from api.settings import Settings

ENVELOPE = "#/components/schemas/ErrorEnvelope"
# (path, method, status) -> the schema declared instead of the envelope.
NOT_ENVELOPES = {("/v1/health/ready", "get", "503"): "#/components/schemas/Ready"}
# Operations that never touch the cluster.
NO_CLUSTER = {("/v1/health/live", "get")}

SCHEMA = create_app(Settings(es_url="http://127.0.0.1:9")).openapi()
OPERATIONS = [
    (path, method, operation)
    for path, methods in SCHEMA["paths"].items()
    for method, operation in methods.items()
]


def test_the_schema_lists_every_operation() -> None:
    assert len(OPERATIONS) == 40


def test_the_envelope_is_pinned() -> None:
    components = SCHEMA["components"]["schemas"]
    envelope = components["ErrorEnvelope"]
    assert envelope["required"] == ["error"]
    assert envelope["properties"]["error"] == {"$ref": "#/components/schemas/ErrorBody"}
    body = components["ErrorBody"]
    assert set(body["properties"]) == {"code", "message", "details"}
    assert set(body["required"]) == {"code", "message"}


@pytest.mark.parametrize(
    ("path", "method", "operation"), OPERATIONS, ids=[f"{m} {p}" for p, m, _ in OPERATIONS]
)
def test_every_operation_declares_its_errors(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    responses: dict[str, Any] = operation["responses"]
    errors = {status for status in responses if status[0] in "45"}
    expected = {"500"}
    if operation.get("security"):
        expected.add("401")
    if operation.get("parameters") or operation.get("requestBody"):
        expected |= {"400", "422"}
    if (path, method) not in NO_CLUSTER:
        expected.add("503")
    assert expected <= errors, f"{method} {path} lacks {sorted(expected - errors)}"
    for status in errors:
        schema = responses[status]["content"]["application/json"]["schema"]
        wanted = NOT_ENVELOPES.get((path, method, status), ENVELOPE)
        assert schema == {"$ref": wanted}, f"{method} {path} {status}: {schema}"
        assert responses[status]["description"]
