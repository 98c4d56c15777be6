"""The sync and async clients against a real server and node: every page of a search, the
reads, reviews (one prediction, one item, by query), keys from the environment, and query
errors that render exactly like the language's own."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pydantic
import pytest

import search
from api.models import ReviewAction, Version
from client import (
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    QueryError,
    Unauthorized,
)
from evaluation.report import EvaluationChoices, EvaluationReport, NameCount
from store.documents import prepare_item
from tests.api.conftest import ITEMS, READ_KEY, REVIEW_KEY

pytestmark = pytest.mark.es

QUERIES = [
    "object_prefix:car",
    "image_prefix:weather_clear AND score >= 0.5",
    'dataset = "d1" OR dataset = "d2" OR dataset = "d3"',
    "object_prefix:pedestrian AND score > 0.9",
]


def matching(query: str) -> list[str]:
    """The ids the reference evaluator accepts, in item_id order."""
    tree = search.parse(query)
    return sorted(item["item_id"] for item in ITEMS if search.evaluate(tree, prepare_item(item)))


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("size", [1, 2])
def test_search_follows_every_cursor(autotag: Client, query: str, size: int) -> None:
    expected = matching(query)
    pages = list(autotag.pages(query, size=size, sort="item_id"))
    assert len(pages) == max(1, math.ceil(len(expected) / size))
    assert [hit.item.item_id for page in pages for hit in page.hits] == expected
    hits = list(autotag.search(query, size=size, sort="item_id", consistent=True))
    assert [hit.item.item_id for hit in hits] == expected
    assert autotag.count(query).count == len(expected)


@pytest.mark.anyio
async def test_the_async_client_follows_every_cursor(api_url: str) -> None:
    query = QUERIES[2]
    async with AsyncClient(api_url) as autotag:
        ids = [hit.item.item_id async for hit in autotag.search(query, size=2, sort="item_id")]
        assert ids == matching(query)
        assert (await autotag.count(query)).count == len(ids)
        assert (await autotag.item("i3")).item.dataset == "d2"


def test_reads_answer_with_the_apis_models(autotag: Client) -> None:
    query = "object_prefix:car"
    translated = autotag.translate("object_prefix:car and score<0.5")
    assert translated.query == "object_prefix:car AND score < 0.5"
    assert translated.dsl == search.translate(search.parse(translated.query))

    facets = autotag.facets(query, labels=5)
    assert facets.total == len(matching(query))
    objects = next(kind for kind in facets.kinds if kind.kind == "object")
    # i4's car is rejected: invisible to the facets as to the query.
    assert {f.label: f.items for f in objects.labels}["car"] == 2

    assert "car_suv" in autotag.labels().object
    found = autotag.item("i1")
    assert [p.id for p in found.item.object_predictions] == ["i1-car", "i1-ped"]
    assert found.version.seq_no >= 0
    assert autotag.live().status == "ok"
    assert autotag.ready().status == "ok"


def test_an_empty_answer_carries_the_label_hints(autotag: Client) -> None:
    answer = autotag.count("object_prefix:pedestrain")
    assert answer.count == 0
    assert [(h.typed, h.closest[0]) for h in answer.hints] == [("pedestrain", "pedestrian")]


def test_evaluate_is_the_apis_report(autotag: Client, api_url: str) -> None:
    options: dict[str, Any] = {"training_sets": ["model_v1", "model_v2"], "bootstrap": 50}
    report = autotag.evaluate("dataset = d1 OR dataset = d2", **options, seed=7)
    raw = httpx.post(
        f"{api_url}/v1/evaluate",
        json={"query": "dataset = d1 OR dataset = d2", **options, "seed": 7},
    )
    assert raw.status_code == 200, raw.text
    served = EvaluationReport.model_validate(raw.json())
    # The same report but for how long each run took.
    assert report.model_dump(exclude={"seconds"}) == served.model_dump(exclude={"seconds"})
    assert [r.training_set for r in report.training_sets] == ["model_v1", "model_v2"]


@pytest.mark.anyio
async def test_the_evaluation_picture_and_choices_are_the_apis(
    autotag: Client, api_url: str
) -> None:
    query = "dataset = d1 OR dataset = d2"
    options: dict[str, Any] = {"training_sets": ["model_v1", "model_v2"], "bootstrap": 50}
    raw = httpx.post(f"{api_url}/v1/evaluate/plot", json={"query": query, **options})
    assert raw.status_code == 200, raw.text
    assert raw.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert autotag.evaluate_plot(query, **options) == raw.content
    served = httpx.post(f"{api_url}/v1/evaluate/choices", json={"query": query})
    choices = EvaluationChoices.model_validate(served.json())
    # this catalogue names no tagged_by; i4 (d2) holds the one reviewed (rejected) prediction
    assert (choices.training_sets, choices.truth_sources) == (
        [],
        [NameCount(name="reviews", items=1)],
    )
    assert autotag.evaluation_choices(query) == choices
    async with AsyncClient(api_url) as client:
        assert await client.evaluate_plot(query, **options) == raw.content
        assert await client.evaluation_choices(query) == choices


BAD_QUERIES = [
    "object_prefix:car AND scor < 0.5",
    "object_prefix:car AND score <",
    "(object_prefix:car",
    'autotag_status = "maybe"',
    "object_prefix:*car",
    "image_prefix:weather_clear AND box_area > 10",
]


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_query_errors_render_exactly_like_the_language(autotag: Client, query: str) -> None:
    with pytest.raises(search.QueryError) as local:
        search.parse(query)
    with pytest.raises(QueryError) as remote:
        autotag.count(query)
    assert remote.value.render() == local.value.render()
    assert str(remote.value) == local.value.render()
    assert remote.value.code == local.value.code
    assert (remote.value.start, remote.value.end, remote.value.hint) == (
        local.value.start,
        local.value.end,
        local.value.hint,
    )
    assert remote.value.http_status == 400


@pytest.mark.anyio
async def test_the_async_client_raises_the_same_query_error(api_url: str) -> None:
    query = BAD_QUERIES[0]
    with pytest.raises(search.QueryError) as local:
        search.parse(query)
    async with AsyncClient(api_url) as autotag:
        with pytest.raises(QueryError) as remote:
            [hit async for hit in autotag.search(query)]
    assert remote.value.render() == local.value.render()


def test_single_reviews(autotag: Client) -> None:
    accepted = autotag.accept("i1", "i1-car", reviewer="carol")
    assert accepted.event.action == ReviewAction.ACCEPT
    assert accepted.event.who == "carol"
    assert accepted.event.api_key == "alice"
    rejected = autotag.reject("i1", "i1-ped", expected_version=accepted.version)
    assert rejected.item.object_predictions[1].status == "rejected"
    modified = autotag.modify(
        "i2", "i2-suv", label="car_van", bbox={"x1": 5, "y1": 5, "x2": 1, "y2": 1}
    )
    changed = modified.item.object_predictions[0]
    assert (changed.label, changed.original_label, changed.status) == (
        "car_van",
        "car_suv",
        "modified",
    )
    assert changed.bbox is not None
    assert (changed.bbox.x1, changed.bbox.x2) == (1, 5)

    stored = autotag.item("i1").item
    assert [p.status for p in stored.object_predictions] == ["accepted", "rejected"]
    with pytest.raises(Conflict):
        autotag.accept("i1", "i1-car", expected_version=accepted.version)
    with pytest.raises(NotFound) as missing:
        autotag.accept("i1", "no-such-prediction")
    assert missing.value.http_status == 404
    # The API's own request models check arguments before anything is sent.
    with pytest.raises(pydantic.ValidationError):
        autotag.modify("i2", "i2-suv", label=" padded ")


def test_what_only_the_server_knows_it_checks(autotag: Client) -> None:
    # 500 is within the models' ceiling but above this server's max_page_size (200).
    with pytest.raises(InvalidRequest) as refused:
        autotag.search_page("object_prefix:car", size=500)
    assert [e["loc"] for e in refused.value.details["errors"]] == [["body", "size"]]


def test_save_review_applies_every_decision_of_an_item_or_none(autotag: Client) -> None:
    seen = autotag.item("i3")
    saved = autotag.save_review(
        "i3",
        [
            {"action": "accept", "prediction_id": "i3-ship"},
            {"action": "modify", "prediction_id": "i3-car", "label": "car_suv"},
        ],
        expected_version=seen.version,
    )
    assert [e.action for e in saved.events] == [ReviewAction.ACCEPT, ReviewAction.MODIFY]
    assert [p.status for p in saved.item.object_predictions] == ["accepted", "modified"]
    with pytest.raises(Conflict) as stale:
        autotag.save_review(
            "i3", [{"action": "reject", "prediction_id": "i3-ship"}], expected_version=seen.version
        )
    assert stale.value.details["current_version"] == saved.version.model_dump()
    assert autotag.item("i3").version == saved.version


def test_review_by_query_previews_then_applies(autotag: Client) -> None:
    query = "object_prefix:car AND score < 0.5"
    preview = autotag.review_by_query_preview(query)
    # Pending cars below 0.5: i2's suv (0.3), i3's car (0.45); i4's is rejected.
    assert (preview.items, preview.object_predictions) == (2, 2)
    with pytest.raises(Conflict) as changed:
        autotag.review_by_query(query, "reject", expected_predictions=preview.predictions + 1)
    assert changed.value.code == "matched_set_changed"
    done = autotag.review_by_query(
        query, ReviewAction.REJECT, expected_predictions=preview.predictions, run_id="client-1"
    )
    assert (done.items, done.predictions, done.run_id) == (2, 2, "client-1")
    assert autotag.review_by_query_preview(query).predictions == 0
    history = autotag.item("i2").item.review_history or []
    assert [e.run_id for e in history] == ["client-1"]


def test_keys_come_from_the_environment_and_arguments_win(
    api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOTAG_API_URL", api_url)
    monkeypatch.setenv("AUTOTAG_API_KEY", REVIEW_KEY)
    with Client() as from_env:
        assert from_env.accept("i1", "i1-car").event.api_key == "alice"
        assert "alice-secret" not in repr(from_env.settings)
    with Client(api_key=READ_KEY) as reader, pytest.raises(Forbidden):
        reader.accept("i1", "i1-car")
    monkeypatch.setenv("AUTOTAG_API_KEY", "")
    with Client() as nobody, pytest.raises(Unauthorized) as refused:
        nobody.accept("i1", "i1-car")
    assert refused.value.code == "unauthorized"


def test_an_item_without_an_image_is_not_found(autotag: Client) -> None:
    with pytest.raises(NotFound):
        autotag.thumbnail("i1", size=128)
    with pytest.raises(NotFound):
        autotag.item("no/such item")


def test_an_expected_version_is_the_apis_model(autotag: Client) -> None:
    version = Version(seq_no=0, primary_term=1)
    with pytest.raises(Conflict):
        autotag.accept("i5", "nothing", expected_version=version)
