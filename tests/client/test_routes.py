"""The client cannot drift from the API: every route it calls is an operation of the served
OpenAPI schema, with the same request and answer models, and every operation under ``/v1`` is
one the client calls."""

from __future__ import annotations

import re
from typing import Any

import pytest

from api.app import create_app
from api.settings import Settings
from client.routes import API_KEY_HEADER, EXPORT, EXPORT_STATEMENT_HEADER, ROUTES, Route

# No node is needed for the schema: nothing listens here.
SCHEMA: dict[str, Any] = create_app(Settings(es_url="http://127.0.0.1:9", index="x")).openapi()
_REF = "#/components/schemas/"


def _refs(schema: Any) -> set[str]:
    """The component names a schema fragment refers to (at any depth)."""
    if isinstance(schema, dict):
        found = {schema["$ref"].removeprefix(_REF)} if "$ref" in schema else set()
        return found.union(*(_refs(v) for k, v in schema.items() if k != "$ref"))
    if isinstance(schema, list):
        return set().union(*(_refs(v) for v in schema))
    return set()


def _operation(route: Route[Any]) -> dict[str, Any]:
    operations = SCHEMA["paths"].get(route.path)
    assert operations is not None, f"the API serves no {route.path}"
    operation: dict[str, Any] | None = operations.get(route.method.lower())
    assert operation is not None, f"the API serves no {route.method} {route.path}"
    return operation


@pytest.mark.parametrize("route", ROUTES, ids=[f"{r.method} {r.path}" for r in ROUTES])
def test_the_route_is_the_apis_operation(route: Route[Any]) -> None:
    operation = _operation(route)

    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if route.body is None:
        assert body is None, "the API takes a body the client never sends"
    else:
        assert body is not None, "the API takes no body"
        assert _refs(body["schema"]) == {route.body.__name__}
        served = SCHEMA["components"]["schemas"][route.body.__name__]
        assert set(served.get("properties", {})) == set(route.body.model_fields)

    responses = operation["responses"]
    # The client takes every success the API declares as the answer, and nothing else.
    declared = {int(status) for status in responses if status.startswith("2")}
    assert declared <= route.ok
    for status in route.ok:
        content = responses[str(status)].get("content", {})
        if route.answer is type(None):
            assert not content
        elif route.answer is bytes:
            assert content
            assert "application/json" not in content
        else:
            assert _refs(content["application/json"]["schema"]) == {route.answer.__name__}

    parameters = {(p["in"], p["name"]) for p in operation.get("parameters", [])}
    path_names = set(re.findall(r"{(\w+)}", route.path))
    assert {name for where, name in parameters if where == "path"} == path_names
    assert {name for where, name in parameters if where == "query"} == set(route.query_params)


def test_every_operation_of_the_api_is_a_client_route() -> None:
    served = {
        (method.upper(), path)
        for path, operations in SCHEMA["paths"].items()
        if path.startswith("/v1/")
        for method in operations
    }
    assert served == {(r.method, r.path) for r in ROUTES}


def test_the_key_goes_in_the_header_the_api_reads() -> None:
    schemes = SCHEMA["components"]["securitySchemes"].values()
    assert {(s["type"], s["in"], s["name"]) for s in schemes} == {
        ("apiKey", "header", API_KEY_HEADER)
    }


def test_errors_are_read_with_the_apis_envelope() -> None:
    # The client parses every error answer with api.models.ErrorEnvelope: the schema says so.
    for route in ROUTES:
        for status, answer in _operation(route)["responses"].items():
            if status.startswith(("4", "5")) and "application/json" in answer.get("content", {}):
                refs = _refs(answer["content"]["application/json"]["schema"])
                assert refs <= {"ErrorEnvelope", "Ready"}, (route.path, status, refs)


def test_an_exports_statement_comes_in_the_header_the_api_names() -> None:
    answer = _operation(EXPORT)["responses"]["200"]
    assert f"`{EXPORT_STATEMENT_HEADER}`" in answer["description"]
