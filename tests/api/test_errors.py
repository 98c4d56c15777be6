"""The one error envelope, pinned: every failure mode answers with exactly this shape."""

from __future__ import annotations

from typing import Any

import elastic_transport
import elasticsearch
import httpx
import pytest
from elasticsearch import Elasticsearch
from pydantic import SecretStr

from api.app import create_app
from api.deps import get_es
from api.settings import Settings
from search import QueryError, parse
from tests.api.conftest import REVIEW_KEY, client_for, error_of, seed

pytestmark = pytest.mark.anyio


@pytest.mark.es
async def test_query_error_envelope(client: httpx.AsyncClient) -> None:
    text = "object_prefix:car AND"
    response = await client.post("/v1/search", json={"query": text})
    assert response.status_code == 400
    with pytest.raises(QueryError) as raised:
        parse(text)
    error = raised.value
    assert response.json() == {
        "error": {
            "code": "invalid_query",
            "message": error.message,
            "details": {
                "reason": error.code,
                "query": text,
                "start": error.start,
                "end": error.end,
                "hint": error.hint,
                "rendered": error.render(),
            },
        }
    }


@pytest.mark.es
@pytest.mark.parametrize("path", ["/v1/search", "/v1/count", "/v1/translate", "/v1/facets"])
async def test_every_query_endpoint_reports_query_errors_alike(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.post(path, json={"query": ""})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_query"
    long = await client.post(path, json={"query": "object_prefix:car " * 300})
    assert long.status_code == 400
    assert error_of(long)["code"] == "invalid_query"


@pytest.mark.es
@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("post", "/v1/search", {"query": "x", "size": 0}, 422, "validation_error"),
        ("post", "/v1/search", {"query": "x", "size": 201}, 422, "validation_error"),
        ("post", "/v1/search", {"query": "x", "extra": 1}, 422, "validation_error"),
        ("post", "/v1/search", {"query": 5}, 422, "validation_error"),
        ("post", "/v1/search", None, 422, "validation_error"),
        (
            "post",
            "/v1/search",
            {"query": "object_prefix:car", "cursor": "!!"},
            400,
            "invalid_cursor",
        ),
        ("get", "/v1/items/nope", None, 404, "item_not_found"),
        ("get", "/v1/nowhere", None, 404, "not_found"),
        ("delete", "/v1/search", None, 405, "method_not_allowed"),
        ("post", "/v1/items/i1/predictions/p/accept", None, 401, "unauthorized"),
    ],
)
async def test_error_statuses_and_codes(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: Any,
    status: int,
    code: str,
) -> None:
    response = await client.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert error_of(response)["code"] == code


class _EmptyClient:
    """Stands in for AsyncElasticsearch; every search finds nothing."""

    async def search(self, **_: Any) -> Any:
        hits = {"total": {"value": 0, "relation": "eq"}, "hits": []}
        return {"_shards": {"total": 1, "failed": 0}, "hits": hits}


async def test_the_configured_page_size_bounds_validation_and_schema_alike() -> None:
    app = create_app(Settings(es_url="http://127.0.0.1:9", max_page_size=50))
    app.dependency_overrides[get_es] = lambda: _EmptyClient()
    async with client_for(app) as client:
        too_big = await client.post("/v1/search", json={"query": "object_prefix:car", "size": 51})
        largest = await client.post("/v1/search", json={"query": "object_prefix:car", "size": 50})
        schema = (await client.get("/openapi.json")).json()
    assert too_big.status_code == 422
    error = error_of(too_big)
    # The envelope of every invalid body, with pydantic's own account of the field.
    assert (error["code"], error["message"]) == ("validation_error", "The request is not valid")
    [entry] = error["details"]["errors"]
    assert (entry["loc"], entry["type"]) == (["body", "size"], "less_than_equal")
    assert "50" in entry["msg"]
    assert largest.status_code == 200, largest.text
    size = schema["components"]["schemas"]["SearchRequest"]["properties"]["size"]
    assert [option.get("maximum") for option in size["anyOf"]] == [50, None]


@pytest.mark.es
async def test_validation_details_name_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/search", json={"query": "x", "size": "many"})
    errors = error_of(response)["details"]["errors"]
    assert errors[0]["loc"] == ["body", "size"]
    malformed = await client.post(
        "/v1/search", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code in (400, 422)
    error_of(malformed)


async def test_unreachable_cluster_is_503() -> None:
    settings = Settings(es_url="http://127.0.0.1:9", review_api_keys=SecretStr(REVIEW_KEY))
    async with client_for(create_app(settings)) as client:
        for method, path, body in [
            ("post", "/v1/search", {"query": "object_prefix:car"}),
            ("post", "/v1/count", {"query": "object_prefix:car"}),
            ("post", "/v1/facets", {"query": "object_prefix:car"}),
            ("get", "/v1/items/i1", None),
        ]:
            response = await client.request(method, path, json=body)
            assert response.status_code == 503
            assert error_of(response)["code"] == "search_unavailable"
            assert response.headers["Retry-After"] == "1"
        review = await client.post(
            "/v1/items/i1/predictions/p/accept", headers={"X-API-Key": REVIEW_KEY}
        )
        assert review.status_code == 503
        ready = await client.get("/v1/health/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable"
        # Translation needs the cluster only for queries that compare metadata.
        translated = await client.post("/v1/translate", json={"query": "object_prefix:car"})
        assert translated.status_code == 200


class _FailingClient:
    """Stands in for AsyncElasticsearch; every search fails the given way."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def search(self, **_: Any) -> Any:
        raise self.error


def _api_error(cls: type[elasticsearch.ApiError], status: int) -> elasticsearch.ApiError:
    meta = elastic_transport.ApiResponseMeta(
        status=status,
        http_version="1.1",
        headers=elastic_transport.HttpHeaders(),
        duration=0.0,
        node=elastic_transport.NodeConfig("http", "localhost", 9200),
    )
    body = {"error": {"root_cause": [{"type": "too_many_clauses", "reason": "too many"}]}}
    return cls("too_many_clauses", meta, body)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (_api_error(elasticsearch.BadRequestError, 400), 400, "search_rejected"),
        (_api_error(elasticsearch.ApiError, 429), 503, "search_unavailable"),
        (_api_error(elasticsearch.ApiError, 500), 503, "search_unavailable"),
        (elastic_transport.ConnectionTimeout("timed out"), 503, "search_unavailable"),
        (RuntimeError("a bug"), 500, "internal_error"),
    ],
)
async def test_elasticsearch_failures_map_to_the_envelope(
    error: Exception, status: int, code: str
) -> None:
    app = create_app(Settings(es_url="http://127.0.0.1:9"))
    app.dependency_overrides[get_es] = lambda: _FailingClient(error)
    async with client_for(app, raise_app_exceptions=False) as client:
        response = await client.post("/v1/search", json={"query": "object_prefix:car"})
    assert response.status_code == status
    error_body = error_of(response)
    assert error_body["code"] == code
    assert "Traceback" not in response.text
    if code == "search_rejected":
        assert error_body["details"]["es_type"] == "too_many_clauses"


@pytest.mark.es
@pytest.mark.parametrize("path", ["/v1/search", "/v1/count", "/v1/translate", "/v1/facets"])
async def test_text_against_numeric_metadata_is_a_query_error_with_a_position(
    client: httpx.AsyncClient, es: Elasticsearch, item_index: str, path: str
) -> None:
    seed(es, item_index, [{"item_id": "m1", "metadata": {"camera": 3}}])
    text = "object_prefix:car AND metadata.camera = front"
    response = await client.post(path, json={"query": text})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_query"
    assert error["details"]["reason"] == "type_mismatch"
    start, end = error["details"]["start"], error["details"]["end"]
    assert text[start:end] == "metadata.camera = front"
    fine = await client.post(path, json={"query": "metadata.camera = 3"})
    assert fine.status_code == 200


@pytest.mark.es
@pytest.mark.parametrize("path", ["/v1/search", "/v1/count", "/v1/facets"])
async def test_an_answer_missing_shards_is_503_not_a_partial_result(
    api_settings: Settings, es: Elasticsearch, item_index: str, path: str
) -> None:
    # Behind one alias, a second index where ``dataset`` is a number: the term query fails on
    # that index's shard and Elasticsearch answers 200 with only the other shard's hits, as it
    # does while a node is lost.
    seed(es, item_index, [{"item_id": "p1", "dataset": "d1"}])
    other, alias = f"{item_index}-numeric", f"{item_index}-both"
    es.indices.create(index=other, mappings={"properties": {"dataset": {"type": "long"}}})
    try:
        es.index(index=other, id="n1", document={"dataset": 7}, refresh=True)
        es.indices.update_aliases(
            actions=[{"add": {"index": index, "alias": alias}} for index in (item_index, other)]
        )
        partial = es.count(index=alias, query={"term": {"dataset": "d1"}})
        assert partial["_shards"]["failed"] == 1  # the situation under test, straight from ES
        app = create_app(api_settings.model_copy(update={"index": alias}))
        async with client_for(app) as client:
            response = await client.post(path, json={"query": 'dataset = "d1"'})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        error = error_of(response)
        assert error["code"] == "search_unavailable"
        assert error["details"] == {"shards_failed": 1, "shards_total": 2}
    finally:
        es.indices.delete(index=other, ignore_unavailable=True)
