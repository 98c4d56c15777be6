"""API fixtures: the real app (lifespan and all) in front of a real node, and seeded items."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from elasticsearch import Elasticsearch
from fastapi import FastAPI
from pydantic import SecretStr

from api.app import create_app
from api.settings import Settings
from store.documents import prepare_item

REVIEW_KEY = "alice-secret-key"
OTHER_REVIEW_KEY = "bob-secret-key"
READ_KEY = "reader-secret-key"

BOX = {"x1": 1.0, "y1": 2.0, "x2": 30.0, "y2": 40.0}


def pred(pid: str, label: str, score: float, ts: str = "model_v1", **extra: Any) -> dict[str, Any]:
    return {"id": pid, "label": label, "score": score, "training_set": ts, "model": "m", **extra}


# A small catalogue with known answers (see test_read.py).
ITEMS: list[dict[str, Any]] = [
    {
        "item_id": "i1",
        "dataset": "d1",
        "uploaded_at": "2025-01-01T00:00:00Z",
        "image_predictions": [pred("i1-w", "weather_clear", 0.9)],
        "object_predictions": [
            pred("i1-car", "car", 0.9, bbox=BOX),
            pred("i1-ped", "pedestrian", 0.2, bbox=BOX),
        ],
    },
    {
        "item_id": "i2",
        "dataset": "d1",
        "uploaded_at": "2025-01-03T00:00:00Z",
        "image_predictions": [pred("i2-w", "weather_rain", 0.6, "model_v2")],
        "object_predictions": [pred("i2-suv", "car_suv", 0.3, bbox=BOX)],
    },
    {
        "item_id": "i3",
        "dataset": "d2",
        "uploaded_at": "2025-01-02T00:00:00Z",
        "image_predictions": [pred("i3-w", "weather_clear", 0.4, "model_v2")],
        "object_predictions": [
            pred("i3-ship", "cargo_ship", 0.7, bbox=BOX),
            pred("i3-car", "car", 0.45, "model_v2", bbox=BOX),
        ],
    },
    {
        "item_id": "i4",
        "dataset": "d2",
        "image_predictions": [
            pred("i4-w1", "weather_clear", 0.85),
            pred("i4-w2", "weather_clear", 0.95, "model_v2"),
        ],
        "object_predictions": [pred("i4-car", "car", -0.3, bbox=BOX, status="rejected")],
    },
    {"item_id": "i5", "dataset": "d3", "uploaded_at": "2024-12-31T00:00:00Z"},
]


def seed(es: Elasticsearch, index: str, items: Iterable[Mapping[str, Any]]) -> None:
    """Index items the way every writer does: through ``prepare_item``; then refresh."""
    operations: list[dict[str, Any]] = []
    for item in items:
        operations.append({"index": {"_index": index, "_id": item["item_id"]}})
        operations.append(prepare_item(item))
    response = es.bulk(operations=operations, refresh=True)
    assert not response["errors"], response


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def api_settings(es_url: str, item_index: str) -> Settings:
    return Settings(
        es_url=es_url,
        index=item_index,
        review_api_keys=SecretStr(f"alice:{REVIEW_KEY},bob:{OTHER_REVIEW_KEY}"),
        read_api_keys=SecretStr(f"reader:{READ_KEY}"),
        review_refresh="true",
    )


@pytest.fixture
def seeded(es: Elasticsearch, item_index: str) -> str:
    seed(es, item_index, ITEMS)
    return item_index


@asynccontextmanager
async def client_for(
    app: FastAPI, *, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to ``app`` while its lifespan (which owns the ES client) runs.

    ``raise_app_exceptions=False`` to see the answer to an unexpected error: Starlette sends
    the 500 and then re-raises.
    """
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture
async def client(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the real app, whose lifespan owns a real ES client."""
    async with client_for(create_app(api_settings)) as c:
        yield c


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The envelope's ``error`` object, checking the envelope has exactly its pinned shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    assert isinstance(error["details"], dict)
    return error
