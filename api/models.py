"""Request and response bodies of the HTTP API: the OpenAPI schema is generated from these.

Item and prediction models mirror ``store.mapping``; they allow extra keys so a field added
to the mapping never turns a stored document into a schema violation.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from api.settings import PAGE_SIZE_CEILING
from evaluation.report import EvaluationOptions
from export.spec import Content, ExportFormat, ScoreScale, Strategy
from search import SLICE_NAME_RE
from search.fields import BAND_RANGES
from store.schema import PredictionKind, PredictionStatus

# A name or label: no whitespace at either end. Spelled out so that Python (pydantic) and JSON
# Schema (ECMAScript) regexes agree: their `\s` differ on U+0085 and U+FEFF, their `.` on line
# breaks.
TRIMMED_PATTERN = r"^[^\s\u0085\ufeff]([\s\S]*[^\s\u0085\ufeff])?$"

QueryText = Annotated[
    str,
    Field(
        description="A query in the autotag language, e.g. `object_prefix:car AND score < 0.5`.",
        examples=["image_prefix:weather_clear AND score >= 0.8"],
    ),
]
# Scalars Elasticsearch may hand back for a date or keyword field, as the writer gave them.
DateValue = str | int | float


class LabelHint(BaseModel):
    """A label term of the query that names no label in the index, and existing look-alikes."""

    kind: PredictionKind
    typed: str = Field(description="The label as the query gave it, without a trailing `*`.")
    prefix: bool = Field(description="The term ended in `*` (labels starting with `typed`).")
    closest: list[str] = Field(
        description="Existing labels (or their `_`-prefixes) that look alike, closest first."
    )


Hints = Annotated[
    list[LabelHint],
    Field(
        default_factory=list,
        description="Only on an empty answer: label terms that name no label in the index.",
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueryBody(_Body):
    """A request body that carries a query: what :func:`api.deps.read_query` reads."""

    query: QueryText


# --- documents ---------------------------------------------------------------------------------


class BBox(BaseModel):
    """A box in pixel coordinates; corners given in either order are stored ordered."""

    model_config = ConfigDict(extra="forbid")

    x1: float
    y1: float
    x2: float
    y2: float

    @model_validator(mode="after")
    def _ordered(self) -> BBox:
        self.x1, self.x2 = sorted((self.x1, self.x2))
        self.y1, self.y2 = sorted((self.y1, self.y2))
        return self


class Prediction(BaseModel):
    """One model suggestion (image-level, or an object with a box)."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    label: str
    label_prefixes: list[str] = []
    score: float | None = None
    training_set: str | None = None
    status: PredictionStatus = PredictionStatus.PENDING
    model: str | None = None
    created_at: DateValue | None = None
    original_label: str | None = None
    bbox: BBox | None = None


class ReviewEvent(BaseModel):
    """One entry of an item's review history."""

    model_config = ConfigDict(extra="allow")

    at: str
    who: str
    api_key: str
    action: ReviewAction
    kind: PredictionKind
    prediction_id: str
    before: dict[str, Any]
    after: dict[str, Any]
    run_id: str | None = Field(None, description="The review-by-query run that made it.")


class Item(BaseModel):
    """An item (image) with its predictions, as stored."""

    model_config = ConfigDict(extra="allow")

    item_id: str
    dataset: str | None = None
    uri: str | None = None
    width: int | None = None
    height: int | None = None
    uploaded_at: DateValue | None = None
    updated_at: DateValue | None = None
    metadata: dict[str, Any] | None = None
    autotag_status: list[str] = []
    image_predictions: list[Prediction] = []
    object_predictions: list[Prediction] = []
    review_history: list[ReviewEvent] | None = None


class Version(BaseModel):
    """The stored revision of an item, for optimistic concurrency on review."""

    model_config = ConfigDict(extra="forbid")

    seq_no: int = Field(ge=0)
    primary_term: int = Field(ge=1)


class ItemResponse(BaseModel):
    item: Item
    version: Version


# --- search ------------------------------------------------------------------------------------


class SortKey(StrEnum):
    SCORE = "score"
    UPLOADED_AT = "uploaded_at"
    ITEM_ID = "item_id"


_SIZE_HELP = "Hits per page (bounded by the server's max_page_size)."


class SearchRequest(QueryBody):
    size: Annotated[int | None, Field(ge=1, le=PAGE_SIZE_CEILING)] = Field(
        None, description=_SIZE_HELP
    )
    sort: SortKey = Field(
        SortKey.SCORE,
        description="`score`: the best score among the predictions the query matched; for a "
        "similarity query, the similarity.",
    )
    order: Literal["asc", "desc"] | None = Field(
        None, description="Default: `desc` for score and uploaded_at, `asc` for item_id."
    )
    cursor: str | None = Field(
        None, max_length=8192, description="`next_cursor` of the previous page, opaque."
    )
    consistent: bool = Field(
        False,
        description="Page through a point-in-time snapshot (the cursor carries it along).",
    )


def search_request(max_page_size: int) -> type[SearchRequest]:
    """``SearchRequest`` with one app's page-size bound: validation and schema both say it."""
    return create_model(
        "SearchRequest",
        __base__=SearchRequest,
        __module__=__name__,
        size=(
            Annotated[int | None, Field(ge=1, le=max_page_size)],
            Field(None, description=_SIZE_HELP),
        ),
    )


class MatchedPrediction(BaseModel):
    """A prediction that satisfied the query's conditions (for highlighting)."""

    kind: PredictionKind
    offset: int = Field(description="Position in the item's list of predictions of this kind.")
    id: str | None


_SKIPPED_HELP = (
    "Similarity queries only: items the rest of the query selects that have no embedding, "
    "so were not ranked (imported predictions without images, items not yet embedded)."
)


class SearchHit(BaseModel):
    item: Item
    matched_predictions: list[MatchedPrediction]
    similarity: float | None = Field(
        None,
        description="Similarity queries only: cosine similarity of the item's image embedding "
        "with the query's (-1..1), as the index computed it.",
    )


class SearchResponse(BaseModel):
    query: str = Field(description="The canonical form of the query.")
    total: int
    total_relation: Literal["eq", "gte"]
    hits: list[SearchHit]
    next_cursor: str | None = Field(description="Pass back for the next page; null at the end.")
    hints: Hints
    skipped_without_embedding: int | None = Field(None, description=_SKIPPED_HELP)


class CountRequest(QueryBody):
    pass


class CountResponse(BaseModel):
    query: str
    count: int
    hints: Hints
    skipped_without_embedding: int | None = Field(None, description=_SKIPPED_HELP)


class TranslateRequest(QueryBody):
    pass


class TranslateResponse(BaseModel):
    query: str = Field(description="The canonical form of the query (saved slices written out).")
    dsl: dict[str, Any] = Field(description="The Elasticsearch `query` clause it becomes.")
    slices: dict[str, str] = Field(
        default_factory=dict,
        description="The saved slices the query used (directly or through others): name ->"
        " saved query.",
    )


# --- facets ------------------------------------------------------------------------------------


class CompareRequest(_Body):
    training_set_a: str = Field(min_length=1, max_length=512)
    training_set_b: str = Field(min_length=1, max_length=512)
    threshold: float = Field(0.5, ge=-1.0, le=1.0)


class FacetsRequest(QueryBody):
    labels: int = Field(20, ge=1, le=200, description="Most frequent labels per kind.")
    compare: CompareRequest | None = None


def _score_bands() -> type[BaseModel]:
    """One count per band of ``search.fields.BAND_RANGES``, the table queries use too."""
    fields: dict[str, Any] = {
        band.value: (int, Field(description=f"{low} to {high}"))
        for band, (low, high, _) in BAND_RANGES.items()
    }
    return create_model(
        "ScoreBands",
        __doc__="Non-rejected predictions per score band of the product page.",
        __module__=__name__,
        **fields,
    )


if TYPE_CHECKING:  # its fields are the bands, known only once the table is read
    ScoreBands = BaseModel
else:
    ScoreBands = _score_bands()


class LabelFacet(BaseModel):
    label: str
    items: int = Field(description="Matching items with at least one such prediction.")
    predictions: int
    scores: ScoreBands


class ValueCount(BaseModel):
    value: str
    items: int
    predictions: int


class HistogramBin(BaseModel):
    low: float = Field(description="Scores from this...")
    high: float = Field(description="...up to this (excluded, but for the top bin's 1.0).")
    predictions: int


class KindFacets(BaseModel):
    kind: PredictionKind
    labels: list[LabelFacet]
    training_sets: list[ValueCount]
    statuses: list[ValueCount] = Field(description="Review states of the predictions.")
    histogram: list[HistogramBin] = Field(
        description="Non-rejected predictions per score bin (tenths of the -1..1 scale)."
    )


class ComparisonRow(BaseModel):
    kind: PredictionKind
    label: str
    items_a: int = Field(description="Items where A predicts the label at or above threshold.")
    items_b: int
    items_both: int
    mean_score_a: float | None
    mean_score_b: float | None
    mean_score_difference: float | None = Field(description="mean_score_b - mean_score_a")


class Comparison(BaseModel):
    training_set_a: str
    training_set_b: str
    threshold: float
    labels: list[ComparisonRow]


class StatusCount(BaseModel):
    status: str
    items: int


class LabelsResponse(BaseModel):
    """The labels in use, per kind, most frequent first (rejected predictions left out)."""

    image: list[str]
    object: list[str]


class FacetsResponse(BaseModel):
    query: str
    total: int
    autotag_status: list[StatusCount]
    kinds: list[KindFacets]
    comparison: Comparison | None = None
    hints: Hints


# --- evaluation --------------------------------------------------------------------------------


class EvaluateRequest(QueryBody, EvaluationOptions):
    """The slice (a query), the training sets, the truth and the thresholds. The answer is
    :class:`evaluation.report.EvaluationReport`."""


# --- review ------------------------------------------------------------------------------------


class ReviewAction(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    MODIFY = "modify"


class ReviewRequest(_Body):
    reviewer: str | None = Field(
        None, min_length=1, max_length=256, description="Who reviews; default: the key's name."
    )
    expected_version: Version | None = Field(
        None, description="Fail with 409 at once unless the item is still at this revision."
    )


class ModifyRequest(ReviewRequest):
    # At least one change, not null: stated in the schema too, so clients can see it.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["label"], "properties": {"label": {"type": "string"}}},
                {"required": ["bbox"], "properties": {"bbox": {"type": "object"}}},
            ]
        }
    )

    label: str | None = Field(
        None, min_length=1, max_length=256, pattern=TRIMMED_PATTERN, description="New label."
    )
    bbox: BBox | None = Field(None, description="New box (object predictions only).")

    @model_validator(mode="after")
    def _changes_something(self) -> ModifyRequest:
        if self.label is None and self.bbox is None:
            raise ValueError("give a new label, a new bbox, or both")
        return self


class _Decision(_Body):
    prediction_id: str = Field(min_length=1, max_length=512)


class AcceptDecision(_Decision):
    """Confirm the prediction (a modified one stays modified)."""

    action: Literal[ReviewAction.ACCEPT]


class RejectDecision(_Decision):
    """Reject the prediction: queries no longer see it unless they ask for rejected ones."""

    action: Literal[ReviewAction.REJECT]


class ModifyDecision(_Decision):
    """A new label and/or box; the model's label is kept as ``original_label``."""

    model_config = ConfigDict(json_schema_extra=ModifyRequest.model_config["json_schema_extra"])

    action: Literal[ReviewAction.MODIFY]
    label: str | None = Field(
        None, min_length=1, max_length=256, pattern=TRIMMED_PATTERN, description="New label."
    )
    bbox: BBox | None = Field(None, description="New box (object predictions only).")

    @model_validator(mode="after")
    def _changes_something(self) -> ModifyDecision:
        if self.label is None and self.bbox is None:
            raise ValueError("give a new label, a new bbox, or both")
        return self


Decision = Annotated[
    AcceptDecision | RejectDecision | ModifyDecision, Field(discriminator="action")
]


class SaveReviewRequest(_Body):
    """Every staged decision about one item (one per prediction), applied together or not at
    all."""

    decisions: list[Decision] = Field(min_length=1, max_length=1000)
    expected_version: Version = Field(
        description="The revision the reviewer saw; a 409 (with the item as it is now) "
        "when it moved on."
    )
    reviewer: str | None = Field(
        None, min_length=1, max_length=256, description="Who reviews; default: the key's name."
    )


class SaveReviewResponse(BaseModel):
    item: Item
    version: Version
    events: list[ReviewEvent] = Field(description="The history entries added, one per decision.")


class ReviewResponse(BaseModel):
    item: Item
    version: Version
    event: ReviewEvent
    attempts: int = Field(description="Writes tried; more than 1 means concurrent reviews.")


# --- review by query ---------------------------------------------------------------------------


class ReviewByQueryPreviewRequest(QueryBody):
    pass


class ReviewByQueryPreview(BaseModel):
    """What a review by query would change now: pending predictions the query matched."""

    query: str = Field(description="The canonical form of the query.")
    items: int = Field(description="Items holding at least one such prediction.")
    predictions: int = Field(description="Pending predictions the query matched, all kinds.")
    image_predictions: int
    object_predictions: int
    hints: Hints


class ReviewByQueryRequest(QueryBody):
    action: Literal[ReviewAction.ACCEPT, ReviewAction.REJECT]
    run_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Id written into every history entry; pass the id of a run that was cut "
        "short to finish it under the same id. Default: a new one.",
    )
    expected_predictions: int | None = Field(
        None,
        ge=0,
        description="The dry run's count: refuse (409, nothing applied) if it changed since.",
    )
    reviewer: str | None = Field(
        None, min_length=1, max_length=256, description="Who reviews; default: the key's name."
    )


class ReviewByQueryError(BaseModel):
    item_id: str | None
    status: int
    reason: str


class ReviewByQueryResponse(BaseModel):
    """What this call changed (a rerun reports only what it added)."""

    query: str
    action: ReviewAction
    run_id: str
    items: int = Field(description="Items written.")
    predictions: int = Field(description="Predictions accepted or rejected.")
    conflicts: int = Field(description="Writes that lost a race to another writer; re-read.")
    failed: int = Field(description="Writes Elasticsearch refused for another reason.")
    errors: list[ReviewByQueryError] = Field(description="The first few refusals.")
    remaining: int = Field(description="Pending matched predictions left when it gave up.")
    sweeps: int
    seconds: float


# --- health ------------------------------------------------------------------------------------


class Live(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ok", "unavailable"]
    cluster_status: str | None
    index: str
    index_exists: bool


# --- errors ------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `invalid_query`.")
    message: str
    details: dict[str, Any] = {}


class ErrorEnvelope(BaseModel):
    """The one shape of every error response."""

    error: ErrorBody


ReviewEvent.model_rebuild()


# --- saved slices ------------------------------------------------------------------------------

SLICE_NAME_PATTERN = f"^{SLICE_NAME_RE.pattern}$"
SliceName = Annotated[
    str,
    Field(
        pattern=SLICE_NAME_PATTERN,
        description="Letters, digits, `_`, `.`, `-` (up to 100), not starting with `.` or `-`.",
        examples=["night_highway"],
    ),
]


class SliceRequest(_Body):
    query: QueryText
    description: str | None = Field(None, max_length=2000, description="What the slice is for.")


class SliceInfo(BaseModel):
    """A saved slice, what it uses and what uses it."""

    name: str
    query: str = Field(description="The query as saved.")
    description: str | None
    references: list[str] = Field(description="Slices its query names directly.")
    used_by: list[str] = Field(description="Saved slices that use it, directly or through others.")
    expansion: str | None = Field(
        description="Its canonical query with every slice written out; null if it no longer"
        " parses (see `error`)."
    )
    error: str | None = Field(
        None,
        description="Why it no longer parses (a slice it uses was"
        " deleted with `force`...), rendered with a caret.",
    )
    created_at: str
    updated_at: str


class SliceSaved(BaseModel):
    slice: SliceInfo
    created: bool = Field(description="False when an existing slice was replaced.")


class SliceList(BaseModel):
    slices: list[SliceInfo]


class SliceDeleted(BaseModel):
    deleted: str
    broken: list[str] = Field(
        description="Slices that used it and no longer resolve (only with `force`)."
    )


class SliceRenameRequest(_Body):
    to: SliceName
    update_dependants: bool = Field(
        False,
        description="Rewrite the slices that use it to the new name; without this, a slice in"
        " use is not renamed (409 naming its dependants).",
    )


class SliceRenamed(BaseModel):
    previous: str
    slice: SliceInfo
    updated: list[str] = Field(description="Slices whose query was rewritten to the new name.")


# --- export ------------------------------------------------------------------------------------


class SampleRequest(_Body):
    strategy: Strategy = Field(
        description="`uncertain`: the n items whose matched prediction is nearest the decision"
        " boundary (|score| smallest); `random`: n items drawn with the seed; `stratified`: n"
        " items per label of the matched predictions, drawn with the seed."
    )
    n: int = Field(ge=1, le=10_000_000, description="Items (per label for `stratified`).")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="For `random` and `stratified`.")


class ExportRequest(QueryBody):
    format: ExportFormat = Field(
        description="`jsonl` (autotag's import format, one item per line), `coco` or `yolo`"
        " (ZIP bundles)."
    )
    content: Content = Field(
        Content.PREDICTIONS,
        description="`predictions`: every prediction but rejected ones; `reviewed`: accepted"
        " and modified predictions only (the training signal).",
    )
    training_set: str | None = Field(
        None, min_length=1, max_length=512, description="Only this training set's predictions."
    )
    sample: SampleRequest | None = Field(None, description="Default: every matching item.")
    score_scale: ScoreScale = Field(
        ScoreScale.PROBABILITY,
        description="COCO scores: `probability` p = (score + 1) / 2 (what `autotag import`"
        " reads back by default), or `signed` as stored.",
    )
