"""Every API operation the client calls, declared once: method, path, and the API's own models
for the request body and the answer. Both clients call through this table, and a test checks
it against the served OpenAPI schema, so the client cannot drift from the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from api.autotag_models import AutotagList, AutotagOut, CreateAutotag, Deleted, JobRequest
from api.models import (
    CountRequest,
    CountResponse,
    EvaluateRequest,
    ExportRequest,
    FacetsRequest,
    FacetsResponse,
    ItemResponse,
    LabelsResponse,
    Live,
    ModifyRequest,
    QueryBody,
    Ready,
    ReviewByQueryPreview,
    ReviewByQueryPreviewRequest,
    ReviewByQueryRequest,
    ReviewByQueryResponse,
    ReviewRequest,
    ReviewResponse,
    SaveReviewRequest,
    SaveReviewResponse,
    SearchRequest,
    SearchResponse,
    SliceDeleted,
    SliceInfo,
    SliceList,
    SliceRenamed,
    SliceRenameRequest,
    SliceRequest,
    SliceSaved,
    TranslateRequest,
    TranslateResponse,
)
from api.run_models import (
    DatasetAutotag,
    DatasetAutotagRequest,
    ModelsResponse,
    RegisterRequest,
    RegisterResponse,
    Run,
    RunFilter,
    RunList,
    RunRequest,
)
from evaluation.report import EvaluationChoices, EvaluationReport

# The header the API reads keys from (checked against the schema's security scheme).
API_KEY_HEADER = "X-API-Key"
# The header an export's statement comes in (checked against the schema's description).
EXPORT_STATEMENT_HEADER = "X-Autotag-Export"

Answer = TypeVar("Answer")
Method = Literal["GET", "POST", "PUT", "DELETE"]


@dataclass(frozen=True, slots=True)
class Route(Generic[Answer]):
    """One operation. ``answer`` is a model, ``bytes`` for an image or an export, or
    ``NoneType`` for no body; ``ok``
    lists the statuses whose body is the answer (readiness answers 503 with its body too)."""

    method: Method
    path: str
    body: type[BaseModel] | None
    answer: type[Answer]
    query_params: tuple[str, ...] = ()
    ok: frozenset[int] = frozenset({200})

    def url(self, **params: str) -> str:
        """The path with its ``{names}`` filled in, each escaped as one path segment."""
        return self.path.format(**{name: quote(value, safe="") for name, value in params.items()})


SEARCH = Route("POST", "/v1/search", SearchRequest, SearchResponse)
COUNT = Route("POST", "/v1/count", CountRequest, CountResponse)
TRANSLATE = Route("POST", "/v1/translate", TranslateRequest, TranslateResponse)
FACETS = Route("POST", "/v1/facets", FacetsRequest, FacetsResponse)
LABELS = Route("GET", "/v1/labels", None, LabelsResponse)
EVALUATE = Route("POST", "/v1/evaluate", EvaluateRequest, EvaluationReport)
EVALUATE_PLOT = Route("POST", "/v1/evaluate/plot", EvaluateRequest, bytes)  # a PNG
EVALUATE_CHOICES = Route("POST", "/v1/evaluate/choices", QueryBody, EvaluationChoices)
ITEM = Route("GET", "/v1/items/{item_id}", None, ItemResponse)
IMAGE = Route("GET", "/v1/items/{item_id}/image", None, bytes)
THUMBNAIL = Route("GET", "/v1/items/{item_id}/thumbnail", None, bytes, query_params=("size",))
_PREDICTION = "/v1/items/{item_id}/predictions/{prediction_id}"
ACCEPT = Route("POST", f"{_PREDICTION}/accept", ReviewRequest, ReviewResponse)
REJECT = Route("POST", f"{_PREDICTION}/reject", ReviewRequest, ReviewResponse)
MODIFY = Route("POST", f"{_PREDICTION}/modify", ModifyRequest, ReviewResponse)
SAVE_REVIEW = Route("POST", "/v1/items/{item_id}/review", SaveReviewRequest, SaveReviewResponse)
REVIEW_BY_QUERY_PREVIEW = Route(
    "POST", "/v1/review-by-query/preview", ReviewByQueryPreviewRequest, ReviewByQueryPreview
)
REVIEW_BY_QUERY = Route("POST", "/v1/review-by-query", ReviewByQueryRequest, ReviewByQueryResponse)
SLICES = Route("GET", "/v1/slices", None, SliceList)
SLICE = Route("GET", "/v1/slices/{name}", None, SliceInfo)
SAVE_SLICE = Route("PUT", "/v1/slices/{name}", SliceRequest, SliceSaved)
DELETE_SLICE = Route("DELETE", "/v1/slices/{name}", None, SliceDeleted, query_params=("force",))
RENAME_SLICE = Route("POST", "/v1/slices/{name}/rename", SliceRenameRequest, SliceRenamed)
# Streamed to a file: a ZIP (coco, yolo) or JSON lines (jsonl).
EXPORT = Route("POST", "/v1/export", ExportRequest, bytes)
REGISTER_ITEMS = Route("POST", "/v1/items", RegisterRequest, RegisterResponse)
SUBMIT_RUN = Route("POST", "/v1/runs", RunRequest, Run, ok=frozenset({201}))
RUNS = Route("GET", "/v1/runs", None, RunList, query_params=tuple(RunFilter.model_fields))
RUN = Route("GET", "/v1/runs/{run_id}", None, Run)
CANCEL_RUN = Route("POST", "/v1/runs/{run_id}/cancel", None, Run)
MODELS = Route("GET", "/v1/models", None, ModelsResponse)
_DATASET_AUTOTAG = "/v1/datasets/{dataset}/autotag"
SET_DATASET_AUTOTAG = Route("PUT", _DATASET_AUTOTAG, DatasetAutotagRequest, DatasetAutotag)
DATASET_AUTOTAG = Route("GET", _DATASET_AUTOTAG, None, DatasetAutotag)
STOP_DATASET_AUTOTAG = Route("DELETE", _DATASET_AUTOTAG, None, type(None), ok=frozenset({204}))
AUTOTAGS = Route("GET", "/v1/autotags", None, AutotagList)
AUTOTAG = Route("GET", "/v1/autotags/{name}", None, AutotagOut)
# 201/200: done before answering (``wait``); 202: the scoring job runs on in the server.
CREATE_AUTOTAG = Route("POST", "/v1/autotags", CreateAutotag, AutotagOut, ok=frozenset({201, 202}))
REFINE_AUTOTAG = Route(
    "POST", "/v1/autotags/{name}/refine", JobRequest, AutotagOut, ok=frozenset({201, 202})
)
SCORE_AUTOTAG = Route(
    "POST", "/v1/autotags/{name}/score", JobRequest, AutotagOut, ok=frozenset({200, 202})
)
DELETE_AUTOTAG = Route(
    "DELETE", "/v1/autotags/{name}", None, Deleted, query_params=("wait",), ok=frozenset({200, 202})
)
LIVE = Route("GET", "/v1/health/live", None, Live)
READY = Route("GET", "/v1/health/ready", None, Ready, ok=frozenset({200, 503}))

ROUTES: tuple[Route[Any], ...] = (
    SEARCH,
    COUNT,
    TRANSLATE,
    FACETS,
    LABELS,
    EVALUATE,
    EVALUATE_PLOT,
    EVALUATE_CHOICES,
    ITEM,
    IMAGE,
    THUMBNAIL,
    ACCEPT,
    REJECT,
    MODIFY,
    SAVE_REVIEW,
    REVIEW_BY_QUERY_PREVIEW,
    REVIEW_BY_QUERY,
    SLICES,
    SLICE,
    SAVE_SLICE,
    DELETE_SLICE,
    RENAME_SLICE,
    EXPORT,
    REGISTER_ITEMS,
    SUBMIT_RUN,
    RUNS,
    RUN,
    CANCEL_RUN,
    MODELS,
    SET_DATASET_AUTOTAG,
    DATASET_AUTOTAG,
    STOP_DATASET_AUTOTAG,
    AUTOTAGS,
    AUTOTAG,
    CREATE_AUTOTAG,
    REFINE_AUTOTAG,
    SCORE_AUTOTAG,
    DELETE_AUTOTAG,
    LIVE,
    READY,
)
