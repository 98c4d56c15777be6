"""What both clients share: settings, headers, every call (its arguments, docstring and the
request it sends), and how an answer becomes the API's model or an exception. Only the I/O
differs between them: each client makes its methods from :class:`Calls` with :func:`method_of`
and its own way of sending."""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Generic, Literal, TypeVar, cast, get_args

import httpx
from pydantic import BaseModel, SecretStr

from api.autotag_models import (
    AutotagList,
    AutotagOut,
    CreateAutotag,
    Deleted,
    ExamplesBody,
    JobRequest,
)
from api.models import (
    AcceptDecision,
    BBox,
    CompareRequest,
    CountRequest,
    CountResponse,
    EvaluateRequest,
    ExportRequest,
    FacetsRequest,
    FacetsResponse,
    ItemResponse,
    LabelsResponse,
    Live,
    ModifyDecision,
    ModifyRequest,
    QueryBody,
    Ready,
    RejectDecision,
    ReviewAction,
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
    SortKey,
    TranslateRequest,
    TranslateResponse,
    Version,
)
from api.run_models import (
    DatasetAutotag,
    DatasetAutotagRequest,
    ModelsResponse,
    NewItemBody,
    RegisterRequest,
    RegisterResponse,
    Run,
    RunFilter,
    RunList,
    RunRequest,
)
from client import routes
from client.errors import error_from
from client.routes import API_KEY_HEADER, Route
from client.settings import ClientSettings
from evaluation.report import EvaluationChoices, EvaluationReport

Answer = TypeVar("Answer")
Decision = AcceptDecision | RejectDecision | ModifyDecision


@dataclass(frozen=True, slots=True)
class Call(Generic[Answer]):
    """One request, ready to send; ``answer`` reads its response."""

    route: Route[Answer]
    url: str
    body: BaseModel | None = None
    params: Mapping[str, Any] | None = None

    def content(self) -> bytes | None:
        # Only what the caller set: the API's defaults stay the API's.
        return None if self.body is None else self.body.model_dump_json(exclude_unset=True).encode()

    def answer(self, response: httpx.Response) -> Answer:
        if response.status_code not in self.route.ok:
            raise error_from(response)
        if self.route.answer is bytes:
            return cast(Answer, response.content)
        if self.route.answer is type(None):
            return self.route.answer()  # None: the answer has no body
        model = cast(type[BaseModel], self.route.answer)
        return cast(Answer, model.model_validate_json(response.content))


def settings_for(
    url: str | None,
    api_key: str | None,
    timeout: float | None,
    retries: int | None,
    settings: ClientSettings | None,
) -> ClientSettings:
    """The environment's settings, with every argument given winning over its variable."""
    given: dict[str, Any] = {
        name: value
        for name, value in (
            ("api_url", url),
            ("api_key", None if api_key is None else SecretStr(api_key)),
            ("api_timeout", timeout),
            ("api_retries", retries),
        )
        if value is not None
    }
    if settings is not None:  # validated again: an argument is checked like a variable
        return ClientSettings.model_validate({**settings.model_dump(), **given})
    return ClientSettings(**given)


def connection(settings: ClientSettings) -> dict[str, Any]:
    """The arguments of either client's ``httpx`` client: the base URL, headers and timeout."""
    return {
        "base_url": settings.api_url,
        "headers": headers(settings),
        "timeout": settings.api_timeout,
    }


def headers(settings: ClientSettings) -> dict[str, str]:
    found = {"accept": "application/json", "content-type": "application/json"}
    key = settings.key()
    if key is not None:
        found[API_KEY_HEADER] = key
    return found


def _set(**fields: Any) -> dict[str, Any]:
    """Keyword arguments the caller gave (``None``: left to the API's default)."""
    return {name: value for name, value in fields.items() if value is not None}


Order = Literal["asc", "desc"]
_REVIEW_ROUTES = {
    ReviewAction.ACCEPT: routes.ACCEPT,
    ReviewAction.REJECT: routes.REJECT,
    ReviewAction.MODIFY: routes.MODIFY,
}


class Calls:
    """Every call of one request, declared once: its arguments (both clients' methods take
    exactly these, see :func:`method_of`), its docstring, and the API request model they are
    checked by. Each returns the :class:`Call` to send; its answer is the method's."""

    # --- reading ------------------------------------------------------------------------------

    @staticmethod
    def search_page(
        query: str,
        *,
        size: int | None = None,
        sort: SortKey | str | None = None,
        order: Order | None = None,
        cursor: str | None = None,
        consistent: bool | None = None,
    ) -> Call[SearchResponse]:
        """One page of hits and the ``next_cursor`` to the next one (``None`` at the end)."""
        body = SearchRequest(
            **_set(
                query=query, size=size, sort=sort, order=order, cursor=cursor, consistent=consistent
            )
        )
        return Call(routes.SEARCH, routes.SEARCH.path, body)

    @staticmethod
    def count(query: str) -> Call[CountResponse]:
        return Call(routes.COUNT, routes.COUNT.path, CountRequest(query=query))

    @staticmethod
    def translate(query: str) -> Call[TranslateResponse]:
        return Call(routes.TRANSLATE, routes.TRANSLATE.path, TranslateRequest(query=query))

    @staticmethod
    def facets(
        query: str, *, labels: int | None = None, compare: CompareRequest | None = None
    ) -> Call[FacetsResponse]:
        body = FacetsRequest(**_set(query=query, labels=labels, compare=compare))
        return Call(routes.FACETS, routes.FACETS.path, body)

    @staticmethod
    def labels() -> Call[LabelsResponse]:
        return Call(routes.LABELS, routes.LABELS.path)

    @staticmethod
    def evaluate(query: str, **options: Any) -> Call[EvaluationReport]:
        """``options`` are :class:`evaluation.report.EvaluationOptions`' fields."""
        body = EvaluateRequest.model_validate({"query": query, **options})
        return Call(routes.EVALUATE, routes.EVALUATE.path, body)

    @staticmethod
    def evaluate_plot(query: str, **options: Any) -> Call[bytes]:
        """The PR curves and reliability diagram of :meth:`evaluate`'s report, as PNG bytes."""
        body = EvaluateRequest.model_validate({"query": query, **options})
        return Call(routes.EVALUATE_PLOT, routes.EVALUATE_PLOT.path, body)

    @staticmethod
    def evaluation_choices(query: str) -> Call[EvaluationChoices]:
        """The training sets and truth sources the slice can be evaluated with, the defaults."""
        return Call(routes.EVALUATE_CHOICES, routes.EVALUATE_CHOICES.path, QueryBody(query=query))

    @staticmethod
    def item(item_id: str) -> Call[ItemResponse]:
        return Call(routes.ITEM, routes.ITEM.url(item_id=item_id))

    @staticmethod
    def image(item_id: str) -> Call[bytes]:
        return Call(routes.IMAGE, routes.IMAGE.url(item_id=item_id))

    @staticmethod
    def thumbnail(item_id: str, *, size: int | None = None) -> Call[bytes]:
        params = _set(size=size)
        return Call(routes.THUMBNAIL, routes.THUMBNAIL.url(item_id=item_id), params=params)

    @staticmethod
    def live() -> Call[Live]:
        return Call(routes.LIVE, routes.LIVE.path)

    @staticmethod
    def ready() -> Call[Ready]:
        """Readiness; ``status`` is ``unavailable`` (not an exception) when it is not ready."""
        return Call(routes.READY, routes.READY.path)

    # --- reviewing (a review key) -------------------------------------------------------------

    @staticmethod
    def accept(
        item_id: str,
        prediction_id: str,
        *,
        reviewer: str | None = None,
        expected_version: Version | None = None,
    ) -> Call[ReviewResponse]:
        body = ReviewRequest(**_set(reviewer=reviewer, expected_version=expected_version))
        return _review(ReviewAction.ACCEPT, item_id, prediction_id, body)

    @staticmethod
    def reject(
        item_id: str,
        prediction_id: str,
        *,
        reviewer: str | None = None,
        expected_version: Version | None = None,
    ) -> Call[ReviewResponse]:
        body = ReviewRequest(**_set(reviewer=reviewer, expected_version=expected_version))
        return _review(ReviewAction.REJECT, item_id, prediction_id, body)

    @staticmethod
    def modify(
        item_id: str,
        prediction_id: str,
        *,
        label: str | None = None,
        bbox: BBox | Mapping[str, float] | None = None,
        reviewer: str | None = None,
        expected_version: Version | None = None,
    ) -> Call[ReviewResponse]:
        body = ModifyRequest(
            **_set(reviewer=reviewer, expected_version=expected_version, label=label, bbox=bbox)
        )
        return _review(ReviewAction.MODIFY, item_id, prediction_id, body)

    @staticmethod
    def save_review(
        item_id: str,
        decisions: Sequence[Decision | Mapping[str, Any]],
        *,
        expected_version: Version | Mapping[str, int],
        reviewer: str | None = None,
    ) -> Call[SaveReviewResponse]:
        """Every decision about one item, applied together or not at all (409 when the item
        moved past ``expected_version``)."""
        body = SaveReviewRequest.model_validate(
            {
                "decisions": list(decisions),
                "expected_version": expected_version,
                **_set(reviewer=reviewer),
            }
        )
        return Call(routes.SAVE_REVIEW, routes.SAVE_REVIEW.url(item_id=item_id), body)

    @staticmethod
    def review_by_query_preview(query: str) -> Call[ReviewByQueryPreview]:
        """The dry run: how many pending predictions the query matched now."""
        body = ReviewByQueryPreviewRequest(query=query)
        return Call(routes.REVIEW_BY_QUERY_PREVIEW, routes.REVIEW_BY_QUERY_PREVIEW.path, body)

    @staticmethod
    def review_by_query(
        query: str,
        action: ReviewAction | Literal["accept", "reject"],
        *,
        expected_predictions: int | None = None,
        run_id: str | None = None,
        reviewer: str | None = None,
    ) -> Call[ReviewByQueryResponse]:
        """Accept or reject every pending prediction the query matched; with
        ``expected_predictions`` (the preview's count), nothing is applied if it changed."""
        body = ReviewByQueryRequest(
            **_set(
                query=query,
                action=action,
                expected_predictions=expected_predictions,
                run_id=run_id,
                reviewer=reviewer,
            )
        )
        return Call(routes.REVIEW_BY_QUERY, routes.REVIEW_BY_QUERY.path, body)

    # --- saved slices -------------------------------------------------------------------------

    @staticmethod
    def slices() -> Call[SliceList]:
        """Every saved slice, by name."""
        return Call(routes.SLICES, routes.SLICES.path)

    @staticmethod
    def get_slice(name: str) -> Call[SliceInfo]:
        return Call(routes.SLICE, routes.SLICE.url(name=name))

    @staticmethod
    def save_slice(name: str, query: str, *, description: str | None = None) -> Call[SliceSaved]:
        """Save ``query`` as ``name`` (a review key; replaces a slice of that name); other
        queries then say ``slice:name``."""
        body = SliceRequest(**_set(query=query, description=description))
        return Call(routes.SAVE_SLICE, routes.SAVE_SLICE.url(name=name), body)

    @staticmethod
    def delete_slice(name: str, *, force: bool | None = None) -> Call[SliceDeleted]:
        """Delete a slice; ``Conflict`` naming the slices that use it, unless ``force``."""
        params = {"force": "true"} if force else None
        return Call(routes.DELETE_SLICE, routes.DELETE_SLICE.url(name=name), params=params)

    @staticmethod
    def rename_slice(
        name: str, to: str, *, update_dependants: bool | None = None
    ) -> Call[SliceRenamed]:
        body = SliceRenameRequest(**_set(to=to, update_dependants=update_dependants))
        return Call(routes.RENAME_SLICE, routes.RENAME_SLICE.url(name=name), body)

    # --- export (streamed: each client's ``export`` sends it) ---------------------------------

    @staticmethod
    def export(query: str, format: str, options: Mapping[str, Any]) -> Call[bytes]:
        body = ExportRequest.model_validate({"query": query, "format": format, **options})
        return Call(routes.EXPORT, routes.EXPORT.path, body)

    # --- runs (submitting, cancelling and auto-tagging need a review key) ----------------------

    @staticmethod
    def register_items(
        items: Sequence[NewItemBody | Mapping[str, Any]], *, dataset: str | None = None
    ) -> Call[RegisterResponse]:
        """Register new items (``uri``, optional ``item_id``, ``dataset``, ``metadata``);
        datasets with auto-tagging queue their tagging."""
        body = RegisterRequest.model_validate({"items": list(items), **_set(dataset=dataset)})
        return Call(routes.REGISTER_ITEMS, routes.REGISTER_ITEMS.path, body)

    @staticmethod
    def submit_run(
        training_set: str,
        *,
        query: str | None = None,
        dataset: str | None = None,
        uris: Sequence[str] | None = None,
        models: str | None = None,
    ) -> Call[Run]:
        """Tag the items a query finds, a dataset, or new ``uris`` (of ``dataset``) with a
        model set of :meth:`models`; workers (``autotag worker``) execute it."""
        if sum(x is not None for x in (query, uris)) + (dataset is not None and uris is None) != 1:
            raise ValueError("select the items with one of query, dataset or uris")
        select: dict[str, Any]
        if query is not None:
            select = {"query": query}
        elif uris is not None:
            select = {"uris": list(uris), **_set(dataset=dataset)}
        else:
            select = {"dataset": dataset}
        body = RunRequest.model_validate(
            {"select": select, "training_set": training_set, **_set(models=models)}
        )
        return Call(routes.SUBMIT_RUN, routes.SUBMIT_RUN.path, body)

    @staticmethod
    def runs(
        *,
        state: str | Sequence[str] | None = None,
        origin: str | None = None,
        training_set: str | None = None,
        size: int | None = None,
    ) -> Call[RunList]:
        """The most recent runs, newest first."""
        states = [state] if isinstance(state, str) else state
        filters = _set(state=states, origin=origin, training_set=training_set, size=size)
        params = RunFilter.model_validate(filters).model_dump(mode="json", exclude_unset=True)
        return Call(routes.RUNS, routes.RUNS.path, params=params or None)

    @staticmethod
    def run(run_id: str) -> Call[Run]:
        return Call(routes.RUN, routes.RUN.url(run_id=run_id))

    @staticmethod
    def cancel_run(run_id: str) -> Call[Run]:
        """Cancel a queued or running run (``Conflict`` when it already finished)."""
        return Call(routes.CANCEL_RUN, routes.CANCEL_RUN.url(run_id=run_id))

    @staticmethod
    def models() -> Call[ModelsResponse]:
        """The model sets runs may name, and whether their weights are here."""
        return Call(routes.MODELS, routes.MODELS.path)

    @staticmethod
    def set_dataset_autotag(
        dataset: str, *, training_set: str, models: str | None = None
    ) -> Call[DatasetAutotag]:
        """Tag the dataset's new items with these models as they are registered."""
        body = DatasetAutotagRequest(**_set(training_set=training_set, models=models))
        route = routes.SET_DATASET_AUTOTAG
        return Call(route, route.url(dataset=dataset), body)

    @staticmethod
    def dataset_autotag(dataset: str) -> Call[DatasetAutotag]:
        return Call(routes.DATASET_AUTOTAG, routes.DATASET_AUTOTAG.url(dataset=dataset))

    @staticmethod
    def stop_dataset_autotag(dataset: str) -> Call[None]:
        route = routes.STOP_DATASET_AUTOTAG
        return Call(route, route.url(dataset=dataset))

    # --- autotags: labels fitted from examples on the image embeddings ----------------------

    @staticmethod
    def autotags() -> Call[AutotagList]:
        return Call(routes.AUTOTAGS, routes.AUTOTAGS.path)

    @staticmethod
    def get_autotag(name: str) -> Call[AutotagOut]:
        """An autotag, its versions and how far their scoring got."""
        return Call(routes.AUTOTAG, routes.AUTOTAG.url(name=name))

    @staticmethod
    def create_autotag(
        name: str,
        positives: ExamplesBody | Mapping[str, Any],
        *,
        negatives: ExamplesBody | Mapping[str, Any] | None = None,
        description: str | None = None,
        wait: bool | None = None,
    ) -> Call[AutotagOut]:
        """Fit version 1 from examples (``{"item_ids": [...], "query": "..."}``) and score
        every item; with ``wait`` the scoring is done before the answer, else it runs on in
        the server (follow it with :meth:`get_autotag`). A review key."""
        fields = _set(
            name=name, positives=positives, negatives=negatives, description=description, wait=wait
        )
        body = CreateAutotag.model_validate(fields)
        return Call(routes.CREATE_AUTOTAG, routes.CREATE_AUTOTAG.path, body)

    @staticmethod
    def refine_autotag(name: str, *, wait: bool | None = None) -> Call[AutotagOut]:
        """Fit the next version from the last one's examples and the reviews since."""
        body = JobRequest(**_set(wait=wait))
        return Call(routes.REFINE_AUTOTAG, routes.REFINE_AUTOTAG.url(name=name), body)

    @staticmethod
    def score_autotag(name: str, *, wait: bool | None = None) -> Call[AutotagOut]:
        """Score the items the latest version has not scored yet (resumes a stopped job)."""
        body = JobRequest(**_set(wait=wait))
        return Call(routes.SCORE_AUTOTAG, routes.SCORE_AUTOTAG.url(name=name), body)

    @staticmethod
    def delete_autotag(name: str, *, wait: bool | None = None) -> Call[Deleted]:
        """Take every version's predictions off the items, then the autotag."""
        params = {"wait": "true"} if wait else None
        return Call(routes.DELETE_AUTOTAG, routes.DELETE_AUTOTAG.url(name=name), params=params)


def _review(
    action: ReviewAction, item_id: str, prediction_id: str, body: BaseModel
) -> Call[ReviewResponse]:
    route = _REVIEW_ROUTES[action]
    return Call(route, route.url(item_id=item_id, prediction_id=prediction_id), body)


Method = TypeVar("Method", bound=Callable[..., Any])


def method_of(owner: str, method: Method, call: Callable[..., Call[Any]]) -> Method:
    """``method`` (``self``, then ``call``'s arguments) named, documented and signed as
    ``call`` is, with its answer as the return: what ``help()`` and an editor show of a
    client's method. (The type checker reads the same from the ``ParamSpec`` it is typed by.)"""
    signature = inspect.signature(call, eval_str=True)
    answer = get_args(signature.return_annotation)[0]
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__name__ = call.__name__
    method.__qualname__ = f"{owner}.{call.__name__}"
    method.__doc__ = call.__doc__
    method.__annotations__ = {
        **{name: found.annotation for name, found in signature.parameters.items()},
        "return": answer,
    }
    vars(method)["__signature__"] = signature.replace(
        parameters=[self, *signature.parameters.values()], return_annotation=answer
    )
    return method


def changed(previous: Run | None, now: Run) -> bool:
    """Whether a watched run moved since the last snapshot shown."""
    return previous is None or previous.model_dump() != now.model_dump()


Destination = str | os.PathLike[str] | BinaryIO


class Sink:
    """Where an export's bytes go: a file object as given, or a path written through a
    ``.part`` file renamed into place once the whole export arrived (a failed export leaves
    nothing behind under the name). As a context manager: done at the end, failed on an
    exception (which goes on)."""

    def __init__(self, to: Destination) -> None:
        self.path = None if hasattr(to, "write") else Path(cast(str, to))
        self.part = None if self.path is None else self.path.with_name(self.path.name + ".part")
        self.file: BinaryIO = cast(BinaryIO, to) if self.path is None else self._open()

    def _open(self) -> BinaryIO:
        assert self.part is not None
        return self.part.open("wb")

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)

    def done(self) -> None:
        if self.path is not None and self.part is not None:
            self.file.close()
            self.part.replace(self.path)

    def failed(self) -> None:
        if self.part is not None:
            self.file.close()
            self.part.unlink(missing_ok=True)

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is None:
            self.done()
        else:
            self.failed()


def statement(response: httpx.Response) -> dict[str, Any]:
    """What an export holds, as its header states it."""
    found: dict[str, Any] = json.loads(response.headers[routes.EXPORT_STATEMENT_HEADER])
    return found
