"""``AsyncClient``: the API from asyncio, typed with the API's own models; the same calls as
:class:`client.sync.Client`, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx
from tenacity import AsyncRetrying

from api.autotag_models import AutotagList, AutotagOut, Deleted, ExamplesBody
from api.models import (
    BBox,
    CompareRequest,
    CountResponse,
    FacetsResponse,
    ItemResponse,
    LabelsResponse,
    Live,
    Ready,
    ReviewAction,
    ReviewByQueryPreview,
    ReviewByQueryResponse,
    ReviewResponse,
    SaveReviewResponse,
    SearchHit,
    SearchResponse,
    SliceDeleted,
    SliceInfo,
    SliceList,
    SliceRenamed,
    SliceSaved,
    SortKey,
    TranslateResponse,
    Version,
)
from api.run_models import (
    DatasetAutotag,
    ModelsResponse,
    NewItemBody,
    RegisterResponse,
    Run,
    RunList,
)
from client import retry
from client.core import (
    Call,
    Calls,
    Decision,
    Destination,
    Order,
    Sink,
    changed,
    headers,
    settings_for,
    statement,
)
from client.errors import error_from
from client.settings import ClientSettings
from evaluation.report import EvaluationChoices, EvaluationReport

Answer = TypeVar("Answer")


class AsyncClient:
    """A client of one autotag API. Arguments left out come from the environment
    (``AUTOTAG_API_URL``, ``AUTOTAG_API_KEY``...; see :class:`ClientSettings`)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        settings: ClientSettings | None = None,
    ) -> None:
        self.settings = settings_for(url, api_key, timeout, retries, settings)
        self._http = httpx.AsyncClient(
            base_url=self.settings.api_url,
            headers=headers(self.settings),
            timeout=self.settings.api_timeout,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call[Answer]) -> Answer:
        async def once() -> Answer:
            response = await self._http.request(
                call.route.method, call.url, content=call.content(), params=call.params
            )
            return call.answer(response)

        return await AsyncRetrying(**retry.policy(self.settings))(once)

    # --- reading ------------------------------------------------------------------------------

    async def search_page(
        self,
        query: str,
        *,
        size: int | None = None,
        sort: SortKey | str | None = None,
        order: Order | None = None,
        cursor: str | None = None,
        consistent: bool | None = None,
    ) -> SearchResponse:
        """One page of hits and the ``next_cursor`` to the next one (``None`` at the end)."""
        call = Calls.search(
            query, size=size, sort=sort, order=order, cursor=cursor, consistent=consistent
        )
        return await self._send(call)

    async def pages(
        self,
        query: str,
        *,
        size: int | None = None,
        sort: SortKey | str | None = None,
        order: Order | None = None,
        consistent: bool | None = None,
    ) -> AsyncIterator[SearchResponse]:
        """Every page of the query's hits, following the cursors to the end."""
        cursor: str | None = None
        while True:
            page = await self.search_page(
                query, size=size, sort=sort, order=order, cursor=cursor, consistent=consistent
            )
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def search(
        self,
        query: str,
        *,
        size: int | None = None,
        sort: SortKey | str | None = None,
        order: Order | None = None,
        consistent: bool | None = None,
    ) -> AsyncIterator[SearchHit]:
        """Every hit of the query, page after page (``size`` hits a request)."""
        async for page in self.pages(
            query, size=size, sort=sort, order=order, consistent=consistent
        ):
            for hit in page.hits:
                yield hit

    async def count(self, query: str) -> CountResponse:
        return await self._send(Calls.count(query))

    async def translate(self, query: str) -> TranslateResponse:
        return await self._send(Calls.translate(query))

    async def facets(
        self, query: str, *, labels: int | None = None, compare: CompareRequest | None = None
    ) -> FacetsResponse:
        return await self._send(Calls.facets(query, labels=labels, compare=compare))

    async def labels(self) -> LabelsResponse:
        return await self._send(Calls.labels())

    async def evaluate(self, query: str, **options: Any) -> EvaluationReport:
        """``options`` are :class:`evaluation.report.EvaluationOptions`' fields."""
        return await self._send(Calls.evaluate(query, options))

    async def evaluate_plot(self, query: str, **options: Any) -> bytes:
        """The PR curves and reliability diagram of :meth:`evaluate`'s report, as PNG bytes."""
        return await self._send(Calls.evaluate_plot(query, options))

    async def evaluation_choices(self, query: str) -> EvaluationChoices:
        """The training sets and truth sources the slice can be evaluated with, the defaults."""
        return await self._send(Calls.evaluation_choices(query))

    async def item(self, item_id: str) -> ItemResponse:
        return await self._send(Calls.item(item_id))

    async def image(self, item_id: str) -> bytes:
        return await self._send(Calls.image(item_id))

    async def thumbnail(self, item_id: str, *, size: int | None = None) -> bytes:
        return await self._send(Calls.thumbnail(item_id, size))

    async def live(self) -> Live:
        return await self._send(Calls.live())

    async def ready(self) -> Ready:
        """Readiness; ``status`` is ``unavailable`` (not an exception) when it is not ready."""
        return await self._send(Calls.ready())

    # --- reviewing (a review key) -------------------------------------------------------------

    async def accept(
        self,
        item_id: str,
        prediction_id: str,
        *,
        reviewer: str | None = None,
        expected_version: Version | None = None,
    ) -> ReviewResponse:
        return await self._send(
            Calls.review(
                ReviewAction.ACCEPT,
                item_id,
                prediction_id,
                reviewer=reviewer,
                expected_version=expected_version,
            )
        )

    async def reject(
        self,
        item_id: str,
        prediction_id: str,
        *,
        reviewer: str | None = None,
        expected_version: Version | None = None,
    ) -> ReviewResponse:
        return await self._send(
            Calls.review(
                ReviewAction.REJECT,
                item_id,
                prediction_id,
                reviewer=reviewer,
                expected_version=expected_version,
            )
        )

    async def modify(
        self,
        item_id: str,
        prediction_id: str,
        *,
        label: str | None = None,
        bbox: BBox | Mapping[str, float] | None = None,
        reviewer: str | None = None,
        expected_version: Version | None = None,
    ) -> ReviewResponse:
        return await self._send(
            Calls.review(
                ReviewAction.MODIFY,
                item_id,
                prediction_id,
                label=label,
                bbox=bbox,
                reviewer=reviewer,
                expected_version=expected_version,
            )
        )

    async def save_review(
        self,
        item_id: str,
        decisions: Sequence[Decision | Mapping[str, Any]],
        *,
        expected_version: Version | Mapping[str, int],
        reviewer: str | None = None,
    ) -> SaveReviewResponse:
        """Every decision about one item, applied together or not at all (409 when the item
        moved past ``expected_version``)."""
        return await self._send(Calls.save_review(item_id, decisions, expected_version, reviewer))

    async def review_by_query_preview(self, query: str) -> ReviewByQueryPreview:
        """The dry run: how many pending predictions the query matched now."""
        return await self._send(Calls.review_by_query_preview(query))

    async def review_by_query(
        self,
        query: str,
        action: ReviewAction | Literal["accept", "reject"],
        *,
        expected_predictions: int | None = None,
        run_id: str | None = None,
        reviewer: str | None = None,
    ) -> ReviewByQueryResponse:
        """Accept or reject every pending prediction the query matched; with
        ``expected_predictions`` (the preview's count), nothing is applied if it changed."""
        return await self._send(
            Calls.review_by_query(
                query,
                action,
                expected_predictions=expected_predictions,
                run_id=run_id,
                reviewer=reviewer,
            )
        )

    # --- saved slices -------------------------------------------------------------------------

    async def slices(self) -> SliceList:
        """Every saved slice, by name."""
        return await self._send(Calls.slices())

    async def get_slice(self, name: str) -> SliceInfo:
        return await self._send(Calls.get_slice(name))

    async def save_slice(
        self, name: str, query: str, *, description: str | None = None
    ) -> SliceSaved:
        """Save ``query`` as ``name`` (a review key; replaces a slice of that name); other
        queries then say ``slice:name``."""
        return await self._send(Calls.save_slice(name, query, description))

    async def delete_slice(self, name: str, *, force: bool | None = None) -> SliceDeleted:
        """Delete a slice; ``Conflict`` naming the slices that use it, unless ``force``."""
        return await self._send(Calls.delete_slice(name, force))

    async def rename_slice(
        self, name: str, to: str, *, update_dependants: bool | None = None
    ) -> SliceRenamed:
        return await self._send(Calls.rename_slice(name, to, update_dependants))

    # --- export -------------------------------------------------------------------------------

    async def export(
        self, query: str, to: Destination, *, format: str, **options: Any
    ) -> dict[str, Any]:
        """As :meth:`client.sync.Client.export`, awaited."""
        call = Calls.export(query, format, options)

        async def once() -> dict[str, Any]:
            async with self._http.stream(
                call.route.method, call.url, content=call.content()
            ) as response:
                if response.status_code not in call.route.ok:
                    await response.aread()
                    raise error_from(response)
                sink = Sink(to)
                try:
                    async for chunk in response.aiter_bytes():
                        sink.write(chunk)
                except BaseException:
                    sink.failed()
                    raise
                sink.done()
                return statement(response)

        return await AsyncRetrying(**retry.policy(self.settings))(once)

    # --- runs (submitting, cancelling and auto-tagging need a review key) ----------------------

    async def register_items(
        self, items: Sequence[NewItemBody | Mapping[str, Any]], *, dataset: str | None = None
    ) -> RegisterResponse:
        """Register new items (``uri``, optional ``item_id``, ``dataset``, ``metadata``);
        datasets with auto-tagging queue their tagging."""
        return await self._send(Calls.register_items(items, dataset))

    async def submit_run(
        self,
        training_set: str,
        *,
        query: str | None = None,
        dataset: str | None = None,
        uris: Sequence[str] | None = None,
        models: str | None = None,
    ) -> Run:
        """Tag the items a query finds, a dataset, or new ``uris`` (of ``dataset``) with a
        model set of :meth:`models`; workers (``autotag worker``) execute it."""
        call = Calls.submit_run(
            training_set, query=query, dataset=dataset, uris=uris, models=models
        )
        return await self._send(call)

    async def runs(
        self,
        *,
        state: str | Sequence[str] | None = None,
        origin: str | None = None,
        training_set: str | None = None,
        size: int | None = None,
    ) -> RunList:
        """The most recent runs, newest first."""
        states = [state] if isinstance(state, str) else state
        call = Calls.runs(state=states, origin=origin, training_set=training_set, size=size)
        return await self._send(call)

    async def run(self, run_id: str) -> Run:
        return await self._send(Calls.run(run_id))

    async def cancel_run(self, run_id: str) -> Run:
        """Cancel a queued or running run (``Conflict`` when it already finished)."""
        return await self._send(Calls.cancel_run(run_id))

    async def watch_run(self, run_id: str, *, interval: float = 1.0) -> AsyncIterator[Run]:
        """The run now, then each time it moves, until it finished (done, failed, cancelled)."""
        shown: Run | None = None
        while True:
            now = await self.run(run_id)
            if changed(shown, now):
                yield now
                shown = now
            if now.state.finished:
                return
            await asyncio.sleep(interval)

    async def models(self) -> ModelsResponse:
        """The model sets runs may name, and whether their weights are here."""
        return await self._send(Calls.models())

    async def set_dataset_autotag(
        self, dataset: str, *, training_set: str, models: str | None = None
    ) -> DatasetAutotag:
        """Tag the dataset's new items with these models as they are registered."""
        return await self._send(Calls.set_dataset_autotag(dataset, training_set, models))

    async def dataset_autotag(self, dataset: str) -> DatasetAutotag:
        return await self._send(Calls.dataset_autotag(dataset))

    async def stop_dataset_autotag(self, dataset: str) -> None:
        await self._send(Calls.stop_dataset_autotag(dataset))

    # --- autotags: labels fitted from examples on the image embeddings ----------------------

    async def autotags(self) -> AutotagList:
        return await self._send(Calls.autotags())

    async def get_autotag(self, name: str) -> AutotagOut:
        """An autotag, its versions and how far their scoring got."""
        return await self._send(Calls.get_autotag(name))

    async def create_autotag(
        self,
        name: str,
        positives: ExamplesBody | Mapping[str, Any],
        *,
        negatives: ExamplesBody | Mapping[str, Any] | None = None,
        description: str | None = None,
        wait: bool | None = None,
    ) -> AutotagOut:
        """Fit version 1 from examples (``{"item_ids": [...], "query": "..."}``) and score
        every item; with ``wait`` the scoring is done before the answer, else it runs on in
        the server (follow it with :meth:`get_autotag`). A review key."""
        return await self._send(Calls.create_autotag(name, positives, negatives, description, wait))

    async def refine_autotag(self, name: str, *, wait: bool | None = None) -> AutotagOut:
        """Fit the next version from the last one's examples and the reviews since."""
        return await self._send(Calls.refine_autotag(name, wait))

    async def score_autotag(self, name: str, *, wait: bool | None = None) -> AutotagOut:
        """Score the items the latest version has not scored yet (resumes a stopped job)."""
        return await self._send(Calls.score_autotag(name, wait))

    async def delete_autotag(self, name: str, *, wait: bool | None = None) -> Deleted:
        """Take every version's predictions off the items, then the autotag."""
        return await self._send(Calls.delete_autotag(name, wait))
