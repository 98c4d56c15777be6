"""``/v1/evaluate`` on small catalogues with known answers: review decisions (aggregations,
and the streamed comparison agreeing with them) and an imported ground-truth source."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import pytest
from elasticsearch import Elasticsearch
from PIL import Image

from api.models import EvaluateRequest
from evaluation.plot import DPI, plot_png
from evaluation.report import EvaluationOptions, EvaluationReport
from tests.api.conftest import error_of, seed

pytestmark = [pytest.mark.es, pytest.mark.anyio]

A = {"x1": 0.0, "y1": 0.0, "x2": 10.0, "y2": 10.0}
B = {"x1": 20.0, "y1": 20.0, "x2": 30.0, "y2": 30.0}
B_OFF = {"x1": 25.0, "y1": 25.0, "x2": 35.0, "y2": 35.0}  # IoU with B: 25/175
CROWD = {"x1": 50.0, "y1": 50.0, "x2": 90.0, "y2": 90.0}
INSIDE = {"x1": 55.0, "y1": 55.0, "x2": 65.0, "y2": 65.0}


def _p(label: str, score: float, ts: str, status: str = "pending", **extra: Any) -> dict[str, Any]:
    return {"label": label, "score": score, "training_set": ts, "status": status, **extra}


def _car(score: float, ts: str, status: str, **extra: Any) -> dict[str, Any]:
    return _p("car", score, ts, status, bbox=A, **extra)


REVIEWED = [
    {"item_id": "e1", "tagged_by": ["v1", "v2"], "object_predictions": [
        _car(0.9, "v1", "accepted"), _car(0.95, "v2", "accepted"),
        _p("pedestrian", 0.7, "v1", bbox=B)]},
    {"item_id": "e2", "tagged_by": ["v1", "v2"], "object_predictions": [
        _car(0.85, "v1", "rejected"), _car(0.7, "v2", "accepted")]},
    {"item_id": "e3", "tagged_by": ["v1", "v2"], "object_predictions": [
        _p("truck", 0.6, "v1", "modified", bbox=A, original_label="car"),
        _car(0.9, "v2", "accepted")]},
    {"item_id": "e4", "tagged_by": ["v1", "v2"], "object_predictions": [
        _car(0.3, "v1", "accepted"), _car(0.55, "v2", "rejected")]},
]  # fmt: skip


def _label(report: dict[str, Any], training_set: str, label: str) -> dict[str, Any]:
    found = next(r for r in report["training_sets"] if r["training_set"] == training_set)
    row: dict[str, Any] = next(m for m in found["labels"] if m["label"] == label)
    return row


async def test_reviews_tell_precision_and_calibration_not_recall(
    client: httpx.AsyncClient, es: Elasticsearch, item_index: str
) -> None:
    seed(es, item_index, REVIEWED)
    response = await client.post(
        "/v1/evaluate",
        json={"query": "tagged_by = v1", "training_sets": ["v1", "v2"], "bootstrap": 200},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["truth"] == "reviews"
    assert any("recall" in line for line in report["unknown"])
    assert any("precision" in line for line in report["known"])

    car = _label(report, "v1", "car")
    # >= 0.5: e1 accepted; e2 rejected and e3 modified away (wrong for the model's `car`)
    assert (car["tp"], car["fp"], car["precision"]) == (1, 2, pytest.approx(1 / 3))
    assert (car["recall"], car["ap"], car["fn"], car["pr_curve"]) == (None, None, None, [])
    assert car["reviews"] == {
        "accepted": 2, "rejected": 1, "modified_away": 1, "corrected_to": 0, "pending": 0
    }  # fmt: skip
    bands = {row["band"]: (row["predictions"], row["correct"]) for row in car["calibration"]}
    assert bands == {"high": (2, 1), "medium": (1, 0), "low": (1, 1), "negative": (0, 0)}
    truck = _label(report, "v1", "truck")
    assert truck["reviews"]["corrected_to"] == 1
    assert truck["predictions"] == 0
    v1 = next(r for r in report["training_sets"] if r["training_set"] == "v1")
    assert [(c["original_label"], c["label"], c["count"]) for c in v1["confusions"]] == [
        ("car", "truck", 1)
    ]
    assert _label(report, "v2", "car")["precision"] == pytest.approx(3 / 4)

    (pair,) = report["comparisons"]
    assert (pair["training_set_a"], pair["training_set_b"], pair["items"]) == ("v1", "v2", 4)
    (row,) = [r for r in pair["labels"] if r["label"] == "car"]
    (precision,) = row["differences"]
    # The streamed comparison reads the same reviews as the aggregations.
    assert precision["a"] == pytest.approx(car["precision"])
    assert precision["b"] == pytest.approx(3 / 4)
    assert precision["difference"] == pytest.approx(3 / 4 - 1 / 3)
    assert precision["ci_low"] <= precision["difference"] <= precision["ci_high"]
    assert "car" in pair["verdict"]


TRUTH = [
    {"item_id": "t1", "dataset": "d1", "tagged_by": ["v1", "v2"], "truth_source": ["gt"],
     "truth_objects": [{"label": "car", "bbox": A, "source": "gt"},
                       {"label": "pedestrian", "bbox": B, "source": "gt"},
                       {"label": "car", "bbox": B, "source": "other"}],
     "object_predictions": [
         _car(0.9, "v1", "pending"), _p("pedestrian", 0.8, "v1", bbox=B_OFF),
         _car(0.7, "v2", "rejected"), _p("pedestrian", 0.6, "v2", bbox=B)]},
    # an empty image of the truth: every detection on it is wrong; the modified prediction is
    # judged as the model made it (a pedestrian), not as the reviewer left it
    {"item_id": "t2", "dataset": "d1", "tagged_by": ["v1", "v2"], "truth_source": ["gt"],
     "object_predictions": [
         _car(0.6, "v1", "pending"),
         _p("car", 0.4, "v1", "modified", bbox=A, original_label="pedestrian",
            original_bbox=B)]},
    # a detection inside a crowd region is ignored
    {"item_id": "t3", "dataset": "d1", "tagged_by": ["v1", "v2"], "truth_source": ["gt"],
     "truth_objects": [{"label": "car", "bbox": CROWD, "source": "gt", "iscrowd": True}],
     "object_predictions": [_p("car", 0.95, "v1", bbox=INSIDE)]},
    # tagged by v1 only: in v1's figures, not in the comparison
    {"item_id": "t6", "dataset": "d1", "tagged_by": ["v1"], "truth_source": ["gt"],
     "truth_objects": [{"label": "car", "bbox": A, "source": "gt"}],
     "object_predictions": [_car(0.8, "v1", "pending")]},
    # not annotated by gt: left out
    {"item_id": "t4", "dataset": "d1", "tagged_by": ["v1"],
     "object_predictions": [_car(0.99, "v1", "pending")]},
    # outside the slice
    {"item_id": "t5", "dataset": "d2", "tagged_by": ["v1"], "truth_source": ["gt"],
     "object_predictions": [_car(0.99, "v1", "pending")]},
]  # fmt: skip


async def test_imported_truth_gives_every_figure(
    client: httpx.AsyncClient, es: Elasticsearch, item_index: str
) -> None:
    seed(es, item_index, TRUTH)
    response = await client.post(
        "/v1/evaluate",
        json={
            "query": "dataset = d1",
            "training_sets": ["v1", "v2"],
            "truth": "gt",
            "bootstrap": 200,
        },
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["unknown"] == []
    v1 = next(r for r in report["training_sets"] if r["training_set"] == "v1")
    assert v1["items"] == 4
    car = _label(report, "v1", "car")
    # t1 right at 0.9, t6 right at 0.8, t2 wrong at 0.6, t3 ignored (crowd); two cars count
    assert (car["truth"], car["tp"], car["fp"], car["fn"]) == (2, 2, 1, 0)
    assert (car["precision"], car["recall"]) == (pytest.approx(2 / 3), 1.0)
    assert car["f1"] == pytest.approx(0.8)
    assert (car["ap"], car["ap_50"]) == (pytest.approx(1.0), pytest.approx(1.0))
    assert len(car["pr_curve"]) == 101
    ped = _label(report, "v1", "pedestrian")
    # t1 misses B (IoU 1/7); the modified prediction on t2 was the model's pedestrian: wrong
    assert (ped["truth"], ped["tp"], ped["fp"], ped["fn"], ped["ap"]) == (1, 0, 1, 1, 0.0)
    assert ped["predictions"] == 2  # 0.4 is below the threshold but judged for the curve
    v2car, v2ped = _label(report, "v2", "car"), _label(report, "v2", "pedestrian")
    # rejected or not, the model found them
    assert (v2car["ap"], v2ped["ap"]) == (pytest.approx(1.0), pytest.approx(1.0))
    assert v1["mean_ap"] == pytest.approx(0.5)
    (pair,) = report["comparisons"]
    assert pair["items"] == 3  # t6 was not tagged by v2
    assert "pedestrian" in pair["verdict"]
    (car_row,) = [r for r in pair["labels"] if r["label"] == "car"]
    recall = next(d for d in car_row["differences"] if d["metric"] == "recall")
    assert (recall["a"], recall["b"]) == (1.0, 1.0)  # on t1-t3 only: one car, both found it
    (ped_row,) = [r for r in pair["labels"] if r["label"] == "pedestrian"]
    ap = next(d for d in ped_row["differences"] if d["metric"] == "ap")
    assert ap["difference"] == pytest.approx(1.0)


async def test_an_unknown_truth_source_is_a_clear_error(
    client: httpx.AsyncClient, es: Elasticsearch, item_index: str
) -> None:
    seed(es, item_index, TRUTH)
    response = await client.post(
        "/v1/evaluate", json={"query": "dataset = d1", "training_sets": ["v1"], "truth": "gtt"}
    )
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "unknown_truth_source"
    assert error["details"]["known_sources"] == ["reviews", "gt"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"training_sets": []}, "training_sets"),
        ({"training_sets": ["a", "a"]}, "training_sets"),
        ({"training_sets": ["a"], "iou_threshold": 0.52}, "iou_threshold"),
        ({"training_sets": ["a"], "score_threshold": 2}, "score_threshold"),
    ],
)
async def test_bad_options_are_422(
    client: httpx.AsyncClient, seeded: str, body: dict[str, Any], where: str
) -> None:
    response = await client.post("/v1/evaluate", json={"query": "dataset = d1", **body})
    assert response.status_code == 422
    assert where in response.text


async def test_a_bad_query_is_the_usual_400(client: httpx.AsyncClient, seeded: str) -> None:
    response = await client.post("/v1/evaluate", json={"query": "scor > 1", "training_sets": ["a"]})
    assert response.status_code == 400
    assert error_of(response)["details"]["hint"] == "did you mean `score`?"


# --- the picture and the choices ---------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    """The PNG decoded (not just its header read): width and height."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.format == "PNG"
        return image.size


async def test_the_plot_is_the_picture_of_the_report(
    client: httpx.AsyncClient, es: Elasticsearch, item_index: str
) -> None:
    seed(es, item_index, TRUTH)
    body = {"query": "dataset = d1", "training_sets": ["v1", "v2"], "truth": "gt", "bootstrap": 200}
    response = await client.post("/v1/evaluate/plot", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)
    # Two PR panels (car, pedestrian) and the reliability diagram: three 4.2 x 3.6 in panels.
    assert _png_size(response.content) == (round(3 * 4.2 * DPI), round(3.6 * DPI))
    # Exactly what `autotag evaluate --plot` draws for the report /v1/evaluate answers.
    report = (await client.post("/v1/evaluate", json=body)).json()
    assert response.content == plot_png(EvaluationReport.model_validate(report))

    # Another report, another picture: one training set (same panels, other curves)...
    one = await client.post("/v1/evaluate/plot", json={**body, "training_sets": ["v1"]})
    assert _png_size(one.content) == _png_size(response.content)
    assert one.content != response.content
    # ...and reviews: no PR curve, the reliability diagram alone.
    reviews = await client.post("/v1/evaluate/plot", json={**body, "truth": "reviews"})
    assert _png_size(reviews.content) == (round(4.2 * DPI), round(3.6 * DPI))


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"query": "scor > 1", "training_sets": ["v1"]}, 400, "invalid_query"),
        ({"query": 'similar:"a car" AND dataset = d1', "training_sets": ["v1"]}, 400,
         "invalid_query"),
        ({"query": "dataset = d1", "training_sets": ["v1"], "truth": "gtt"}, 422,
         "unknown_truth_source"),
        ({"query": "dataset = d1", "training_sets": ["v1"], "iou_threshold": 0.52}, 422,
         "validation_error"),
    ],
)  # fmt: skip
async def test_the_plot_answers_the_errors_of_evaluate(
    client: httpx.AsyncClient,
    es: Elasticsearch,
    item_index: str,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    seed(es, item_index, TRUTH)
    report = await client.post("/v1/evaluate", json=body)
    plot = await client.post("/v1/evaluate/plot", json=body)
    assert (report.status_code, plot.status_code) == (status, status)
    assert plot.headers["content-type"] == "application/json"
    assert error_of(plot) == error_of(report)
    assert error_of(plot)["code"] == code


async def test_identical_evaluations_at_the_same_time_are_computed_once(
    client: httpx.AsyncClient, es: Elasticsearch, item_index: str
) -> None:
    seed(es, item_index, TRUTH)
    body = {"query": "dataset = d1", "training_sets": ["v1", "v2"], "truth": "gt"}
    first, second = await asyncio.gather(
        client.post("/v1/evaluate", json=body), client.post("/v1/evaluate", json=body)
    )
    # One computation: the same report, down to the time it took.
    assert first.json() == second.json()
    assert first.json()["seconds"] > 0


async def test_choices_list_what_the_slice_can_be_evaluated_with(
    client: httpx.AsyncClient, es: Elasticsearch, item_index: str
) -> None:
    seed(es, item_index, TRUTH)
    response = await client.post("/v1/evaluate/choices", json={"query": "dataset = d1"})
    assert response.status_code == 200, response.text
    choices = response.json()
    assert choices["query"] == "dataset = d1"
    # t1 t2 t3 t4 t6 tagged by v1, t1-t3 by v2; t5 is outside the slice
    assert choices["training_sets"] == [{"name": "v1", "items": 5}, {"name": "v2", "items": 3}]
    # reviewed: t1 (a rejected car), t2 (a modified pedestrian); gt annotated t1 t2 t3 t6
    assert choices["truth_sources"] == [
        {"name": "reviews", "items": 2}, {"name": "gt", "items": 4}
    ]  # fmt: skip
    schema = EvaluateRequest.model_json_schema()["properties"]
    assert choices["iou_thresholds"] == schema["iou_threshold"]["enum"]
    defaults = EvaluationOptions(training_sets=["x"]).model_dump(exclude={"training_sets"})
    assert choices["defaults"] == defaults
    # The same query errors as the evaluation: a similarity clause is refused at the clause,
    # the query shown with the carets under it.
    text = 'dataset = d1 AND similar:"a car"'
    refused = await client.post("/v1/evaluate/choices", json={"query": text})
    assert refused.status_code == 400
    rendered = error_of(refused)["details"]["rendered"].splitlines()
    assert rendered[1:3] == [f"  {text}", "  " + " " * text.index("similar") + "^" * 15]
