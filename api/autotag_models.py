"""Request and response bodies of autotags (``/v1/autotags``): the OpenAPI schema is generated
from these, and the Python client speaks in them. Models only, as in :mod:`api.models`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from autotags.registry import NAME_HELP, NAME_PATTERN


class ExamplesBody(BaseModel):
    """Items given by id, by a query of the language, or both."""

    model_config = ConfigDict(extra="forbid")

    item_ids: list[Annotated[str, Field(min_length=1, max_length=512)]] = Field(
        default_factory=list, max_length=5000
    )
    query: str | None = Field(None, max_length=4096, description="e.g. `image_prefix:glare`")


class CreateAutotag(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The name's pattern is checked by the job (a 400 saying what a name looks like): a JSON
    # Schema regex and Python's do not read `$` alike.
    name: str = Field(
        min_length=1,
        max_length=100,
        description=f"The label: {NAME_HELP} ({NAME_PATTERN.pattern}).",
    )
    description: str | None = Field(None, max_length=1000)
    positives: ExamplesBody
    negatives: ExamplesBody | None = Field(
        None, description="Default: random items with an embedding (not among the positives)."
    )
    wait: bool = Field(False, description="Score every item before answering (else 202).")


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait: bool = Field(False, description="Run the job before answering (else 202).")


class ScoringState(BaseModel):
    state: str = Field(description="pending, running, done or failed")
    total: int
    scored: int
    failed: int
    started_at: str | None
    finished_at: str | None
    error: str | None
    seconds: dict[str, float] = Field(description="Time per stage: read, score, write.")


class VersionOut(BaseModel):
    version: int
    training_set: str = Field(description="Its predictions' training set, `autotag:<name>@<n>`.")
    created_at: str
    positives: int
    negatives: int
    random_negatives: int
    embedding_model: dict[str, Any]
    fit: dict[str, Any]
    scoring: ScoringState


class AutotagOut(BaseModel):
    name: str
    description: str | None
    created_at: str
    versions: list[VersionOut]


class AutotagList(BaseModel):
    autotags: list[AutotagOut]


class Deleted(BaseModel):
    name: str
    state: str = Field(description="running or done")
    items_changed: int | None = None
