"""Request and response bodies of runs, item registration, dataset auto-tagging and models.

The shapes of runs are those :func:`store.runs.run_view` builds; the API validates every
answer against these models, so the OpenAPI schema is the truth.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.models import TRIMMED_PATTERN
from store.model_choice import DEMO
from store.runs import Origin, RunState, SelectionKind

MAX_RUN_URIS = 10_000
MAX_REGISTER_ITEMS = 1_000

ItemId = Annotated[
    str,
    Field(min_length=1, description="Up to 512 bytes (UTF-8), as Elasticsearch's ids."),
]
Uri = Annotated[
    str,
    Field(
        min_length=1,
        max_length=4096,
        # An absolute path, or a scheme (file:, s3:, ...): never relative to who knows what.
        pattern=r"^(/|[A-Za-z][A-Za-z0-9+.-]*:)",
        description="Where the image is: an absolute path or a `file://` URI for workers to "
        "read (other schemes are registered, and listed as failures when tagged).",
        examples=["file:///data/drives/0001.jpg"],
    ),
]
TrainingSetName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=256,
        pattern=TRIMMED_PATTERN,
        description="The model-version name recorded on every prediction the run writes.",
        examples=["demo_v1"],
    ),
]
ModelsName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        description="A model set of the catalogue (`GET /v1/models`): `demo`, the shipped tiny "
        "models, or an entry of the models file.",
    ),
]
DatasetName = Annotated[str, Field(min_length=1, max_length=256)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- runs ------------------------------------------------------------------------------------


class QuerySelection(_Body):
    query: str = Field(
        description="Tag the stored items this query matches (resolved at submission).",
        examples=['dataset = "drives" AND NOT tagged_by = "demo_v1"'],
    )


class DatasetSelection(_Body):
    dataset: DatasetName = Field(description="Tag every item of this dataset.")


class UrisSelection(_Body):
    uris: list[Uri] = Field(
        max_length=MAX_RUN_URIS,
        description="New images to register (item id = the uri) and tag; an empty list is "
        "a run over nothing.",
    )
    dataset: DatasetName | None = Field(None, description="The dataset of the new items.")


class RunRequest(_Body):
    """What to tag, with which models, and under which training set."""

    select: QuerySelection | DatasetSelection | UrisSelection = Field(
        description="A query over stored items, a dataset, or new uris.",
        examples=[{"dataset": "drives"}],
    )
    models: ModelsName = DEMO
    training_set: TrainingSetName


class RunSelection(BaseModel):
    kind: SelectionKind
    query: str | None = Field(None, description="The canonical form of the query.")
    dataset: str | None = None
    items: int | None = Field(None, description="How many items were listed.")


class RunItems(BaseModel):
    total: int | None = Field(description="Items selected; null until a worker planned the run.")
    done: int = Field(description="skipped + tagged + failed, in finished batches.")
    tagged: int
    skipped: int = Field(description="Already tagged by this training set before the run.")
    failed: int = Field(description="Unreadable or missing images: see `failures`.")
    in_progress: int = Field(description="Written by batches still being tagged.")
    predictions: int = Field(description="Predictions written.")


class RunBatches(BaseModel):
    total: int | None
    pending: int
    claimed: int
    done: int


class RunFailure(BaseModel):
    item_id: str | None
    uri: str | None
    stage: str = Field(description="source, decode, predict or write.")
    reason: str


class Run(BaseModel):
    """A run: what it tags and how far it got."""

    run_id: str
    state: RunState
    origin: Origin = Field(description="`submitted` (POST /v1/runs) or `incremental`.")
    training_set: str
    models: str
    items_index: str
    selection: RunSelection
    created_at: str
    started_at: str | None
    finished_at: str | None
    items: RunItems
    rate: float | None = Field(description="Items tagged or failed per second of work.")
    eta_seconds: float | None
    batches: RunBatches
    workers: list[str] = Field(description="Workers holding a batch of the run now.")
    failures: list[RunFailure] = Field(description="The first 100 failed items, with reasons.")
    error: str | None = Field(description="Why a failed run failed.")


class RunFilter(_Body):
    """Which runs ``GET /v1/runs`` lists (query parameters; unknown ones are refused)."""

    state: list[RunState] = Field(default_factory=list, description="Repeatable.")
    origin: Origin | None = None
    training_set: str | None = Field(None, max_length=256)
    size: int = Field(20, ge=1, le=200)


class RunList(BaseModel):
    runs: list[Run]


# --- registering items -------------------------------------------------------------------------


class NewItemBody(_Body):
    uri: Uri
    item_id: ItemId | None = Field(None, description="Default: the uri.")
    dataset: DatasetName | None = Field(None, description="Default: the request's `dataset`.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    uploaded_at: datetime | None = Field(None, description="Default: now.")

    @model_validator(mode="after")
    def _zoned(self) -> NewItemBody:
        if self.uploaded_at is not None and self.uploaded_at.tzinfo is None:
            raise ValueError("uploaded_at needs a time zone (e.g. 2025-01-15T10:00:00Z)")
        return self


class RegisterRequest(_Body):
    items: list[NewItemBody] = Field(min_length=1, max_length=MAX_REGISTER_ITEMS)
    dataset: DatasetName | None = Field(None, description="Dataset of items that name none.")


class RegisterFailure(BaseModel):
    item_id: str
    reason: str


class RegisterResponse(BaseModel):
    created: list[str] = Field(description="Items stored now.")
    existing: list[str] = Field(description="Items already there, left as they were.")
    failed: list[RegisterFailure]
    runs: list[str] = Field(
        description="Incremental runs that will tag the new items (datasets with auto-tagging)."
    )


# --- dataset auto-tagging ------------------------------------------------------------------


class DatasetAutotagRequest(_Body):
    models: ModelsName = DEMO
    training_set: TrainingSetName


class DatasetAutotag(BaseModel):
    dataset: str
    models: str
    training_set: str
    updated_at: str | None


# --- models ------------------------------------------------------------------------------------


class ModelSetInfo(BaseModel):
    name: str
    description: str
    demo: bool
    clip_model: str | None
    clip_weights: str | None
    detector_weights: str | None
    score_threshold: float
    available: bool = Field(description="Every file the set names is there.")
    problems: list[str]


class ModelsResponse(BaseModel):
    models: list[ModelSetInfo]
    models_file: str | None
