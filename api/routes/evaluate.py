"""``/v1/evaluate``: which model version is better, against review decisions or ground truth."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import QueryRead, read_query
from api.errors import ApiError
from api.es_transport import make_client
from api.models import EvaluateRequest
from api.routes import error_responses
from evaluation.report import EvaluationOptions, EvaluationReport
from evaluation.run import EvaluationError, Workers, evaluate

router = APIRouter(tags=["evaluation"])
EvaluateQuery = Annotated[
    QueryRead[EvaluateRequest], Depends(read_query(EvaluateRequest, ranked="an evaluation"))
]


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
    options = EvaluationOptions.model_validate(q.body.model_dump(exclude={"query"}))
    try:
        return await evaluate(
            q.es,
            q.settings.index,
            q.parsed.query,
            q.parsed.canonical,
            options,
            keep_alive=q.settings.pit_keep_alive,
            workers=Workers(q.settings.evaluate_workers, partial(make_client, q.settings)),
        )
    except EvaluationError as error:
        raise ApiError(422, error.code, error.message, error.details) from error
