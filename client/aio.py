"""``AsyncClient``: the API from asyncio, typed with the API's own models; the same calls as
:class:`client.sync.Client` (:class:`client.core.Calls`' methods of one request), awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx
from tenacity import AsyncRetrying

from api.models import SearchHit, SearchResponse, SortKey
from api.run_models import Run
from client import retry
from client.core import (
    Call,
    Calls,
    Destination,
    Order,
    Sink,
    changed,
    connection,
    method_of,
    settings_for,
    statement,
)
from client.errors import error_from
from client.settings import ClientSettings

Answer = TypeVar("Answer")
Arguments = ParamSpec("Arguments")


def _awaited(
    call: Callable[Arguments, Call[Answer]],
) -> Callable[Concatenate[AsyncClient, Arguments], Coroutine[Any, Any, Answer]]:
    """The coroutine method of :class:`AsyncClient` that sends ``call``'s request and returns
    its answer."""

    async def method(
        self: AsyncClient, /, *args: Arguments.args, **kwargs: Arguments.kwargs
    ) -> Answer:
        return await self._send(call(*args, **kwargs))

    return method_of("AsyncClient", method, call)


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
        self._http = httpx.AsyncClient(**connection(self.settings))

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

    search_page = _awaited(Calls.search_page)

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

    count = _awaited(Calls.count)
    translate = _awaited(Calls.translate)
    facets = _awaited(Calls.facets)
    labels = _awaited(Calls.labels)
    evaluate = _awaited(Calls.evaluate)
    evaluate_plot = _awaited(Calls.evaluate_plot)
    evaluation_choices = _awaited(Calls.evaluation_choices)
    item = _awaited(Calls.item)
    image = _awaited(Calls.image)
    thumbnail = _awaited(Calls.thumbnail)
    live = _awaited(Calls.live)
    ready = _awaited(Calls.ready)

    # --- reviewing (a review key) -------------------------------------------------------------

    accept = _awaited(Calls.accept)
    reject = _awaited(Calls.reject)
    modify = _awaited(Calls.modify)
    save_review = _awaited(Calls.save_review)
    review_by_query_preview = _awaited(Calls.review_by_query_preview)
    review_by_query = _awaited(Calls.review_by_query)

    # --- saved slices -------------------------------------------------------------------------

    slices = _awaited(Calls.slices)
    get_slice = _awaited(Calls.get_slice)
    save_slice = _awaited(Calls.save_slice)
    delete_slice = _awaited(Calls.delete_slice)
    rename_slice = _awaited(Calls.rename_slice)

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
                with Sink(to) as sink:
                    async for chunk in response.aiter_bytes():
                        sink.write(chunk)
                return statement(response)

        return await AsyncRetrying(**retry.policy(self.settings))(once)

    # --- runs (submitting, cancelling and auto-tagging need a review key) ----------------------

    register_items = _awaited(Calls.register_items)
    submit_run = _awaited(Calls.submit_run)
    runs = _awaited(Calls.runs)
    run = _awaited(Calls.run)
    cancel_run = _awaited(Calls.cancel_run)

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

    models = _awaited(Calls.models)
    set_dataset_autotag = _awaited(Calls.set_dataset_autotag)
    dataset_autotag = _awaited(Calls.dataset_autotag)
    stop_dataset_autotag = _awaited(Calls.stop_dataset_autotag)

    # --- autotags: labels fitted from examples on the image embeddings ----------------------

    autotags = _awaited(Calls.autotags)
    get_autotag = _awaited(Calls.get_autotag)
    create_autotag = _awaited(Calls.create_autotag)
    refine_autotag = _awaited(Calls.refine_autotag)
    score_autotag = _awaited(Calls.score_autotag)
    delete_autotag = _awaited(Calls.delete_autotag)
