"""Client fixtures: the real app served by uvicorn on a free port, in front of the real node
with the API tests' seeded catalogue (``tests.api.conftest.ITEMS``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch
from pydantic import SecretStr

from api.app import create_app
from api.settings import Settings
from client import Client
from harness.browser import served
from store.slices import slices_index
from tests.api.conftest import ITEMS, OTHER_REVIEW_KEY, READ_KEY, REVIEW_KEY, seed

__all__ = ["OTHER_REVIEW_KEY", "READ_KEY", "REVIEW_KEY"]


def settings_for(es_url: str, index: str, **extra: object) -> Settings:
    return Settings(
        es_url=es_url,
        index=index,
        review_api_keys=SecretStr(f"alice:{REVIEW_KEY},bob:{OTHER_REVIEW_KEY}"),
        read_api_keys=SecretStr(f"reader:{READ_KEY}"),
        review_refresh="true",
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def api_url(es: Elasticsearch, es_url: str, item_index: str, runs_index: str) -> Iterator[str]:
    """The base URL of a real server whose index holds ``ITEMS``."""
    seed(es, item_index, ITEMS)
    try:
        with served(create_app(settings_for(es_url, item_index, runs_index=runs_index))) as url:
            yield url
    finally:  # what saving a slice made beside the items
        es.indices.delete(index=slices_index(item_index), ignore_unavailable=True)


@pytest.fixture
def autotag(api_url: str) -> Iterator[Client]:
    """A client with a review key (which may read too)."""
    with Client(api_url, api_key=REVIEW_KEY) as client:
        yield client
