"""``/v1/evaluate``: which model version is better, against review decisions or ground truth.

``/v1/evaluate/plot`` draws the same report as ``autotag evaluate --plot`` (PR curves and the
reliability diagram, :mod:`evaluation.plot`) as a PNG, and ``/v1/evaluate/choices`` says what
a slice can be evaluated with: the review page's Evaluate panel uses all three. The page asks
for the report and its picture at once; identical evaluations in flight at the same time are
computed once and shared (:func:`_shared_report`), so the picture costs no second evaluation.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends
from starlette.responses import Response

from api.deps import QueryRead, read_query
from api.errors import ApiError
from api.es_transport import make_client
from api.models import EvaluateRequest, QueryBody
from api.routes import error_responses
from evaluation.plot import plot_png
from evaluation.report import EvaluationChoices, EvaluationOptions, EvaluationReport
from evaluation.run import EvaluationError, Workers, choices, evaluate

router = APIRouter(tags=["evaluation"])
RANKED: Final = "an evaluation"
EvaluateQuery = Annotated[
    QueryRead[EvaluateRequest], Depends(read_query(EvaluateRequest, ranked=RANKED))
]
ChoicesQuery = Annotated[QueryRead[QueryBody], Depends(read_query(QueryBody, ranked=RANKED))]

# Evaluations running now, by what they compute: a second identical request awaits the first.
_running: dict[tuple[Any, ...], asyncio.Future[EvaluationReport]] = {}


def _settled(key: tuple[Any, ...], task: asyncio.Future[EvaluationReport]) -> None:
    _running.pop(key, None)
    if not task.cancelled():
        task.exception()  # retrieved: every waiter may have gone (clients disconnected)


async def _shared_report(q: QueryRead[EvaluateRequest]) -> EvaluationReport:
    """The report for ``q``; one computation for identical requests that overlap in time (the
    same cluster client, index, translated query and options). Nothing is kept afterwards: a
    later request evaluates the index as it is then."""
    options = EvaluationOptions.model_validate(q.body.model_dump(exclude={"query"}))
    key = (
        id(q.es),
        q.settings.index,
        json.dumps(q.parsed.query, sort_keys=True, default=str),
        options.model_dump_json(),
    )
    task = _running.get(key)
    if task is None:
        task = asyncio.ensure_future(
            evaluate(
                q.es,
                q.settings.index,
                q.parsed.query,
                q.parsed.canonical,
                options,
                keep_alive=q.settings.pit_keep_alive,
                workers=Workers(q.settings.evaluate_workers, partial(make_client, q.settings)),
            )
        )
        _running[key] = task
        task.add_done_callback(lambda done: _settled(key, done))
    try:
        # shielded: a client that goes away does not cancel the others' evaluation
        return await asyncio.shield(task)
    except EvaluationError as error:
        raise ApiError(422, error.code, error.message, error.details) from error


@router.post(
    "/evaluate",
    response_model=EvaluationReport,
    responses=error_responses(400, 401),
    summary="Precision, recall, AP, PR curves, calibration and model comparison for a slice",
)
async def evaluate_slice(q: EvaluateQuery) -> EvaluationReport:
    """With `"truth": "reviews"` the answer says what reviews can tell (precision,
    calibration, confusions) and what they cannot (recall, AP); with an imported
    ground-truth source, every figure. Two or more training sets are compared pairwise on
    the items both tagged, with bootstrap 95% intervals and a verdict sentence."""
    return await _shared_report(q)


@router.post(
    "/evaluate/plot",
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "PR curves (object labels first, at most 8) and the reliability"
            " diagram, as `autotag evaluate --plot` draws them",
        },
        **error_responses(400, 401),
    },
    summary="The evaluation's PR curves and reliability diagram, as a PNG",
)
async def evaluate_plot(q: EvaluateQuery) -> Response:
    """The same request as `/v1/evaluate`, and the same errors; the answer is the picture of
    its report. With `"truth": "reviews"` there is no PR curve: the reliability diagram only."""
    report = await _shared_report(q)
    png = await asyncio.to_thread(plot_png, report)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post(
    "/evaluate/choices",
    response_model=EvaluationChoices,
    responses=error_responses(400, 401),
    summary="What a slice can be evaluated with: training sets, truth sources, defaults",
)
async def evaluate_choices(q: ChoicesQuery) -> EvaluationChoices:
    """The training sets that tagged items of the slice and the truth sources that annotated
    them (`reviews` first, with the items holding a reviewed prediction), with item counts;
    the IoU thresholds one may ask for and the defaults of `/v1/evaluate`'s options."""
    return await choices(q.es, q.settings.index, q.parsed.query, q.parsed.canonical)
