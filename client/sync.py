"""``Client``: the API from synchronous Python, typed with the API's own models. Its methods of
one request are :class:`client.core.Calls`', sent and answered here."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx
from tenacity import Retrying

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


def _sent(
    call: Callable[Arguments, Call[Answer]],
) -> Callable[Concatenate[Client, Arguments], Answer]:
    """The method of :class:`Client` that sends ``call``'s request and returns its answer."""

    def method(self: Client, /, *args: Arguments.args, **kwargs: Arguments.kwargs) -> Answer:
        return self._send(call(*args, **kwargs))

    return method_of("Client", method, call)


class Client:
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
        self._http = httpx.Client(**connection(self.settings))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: Call[Answer]) -> Answer:
        def once() -> Answer:
            response = self._http.request(
                call.route.method, call.url, content=call.content(), params=call.params
            )
            return call.answer(response)

        return Retrying(**retry.policy(self.settings))(once)

    # --- reading ------------------------------------------------------------------------------

    search_page = _sent(Calls.search_page)

    def pages(
        self,
        query: str,
        *,
        size: int | None = None,
        sort: SortKey | str | None = None,
        order: Order | None = None,
        consistent: bool | None = None,
    ) -> Iterator[SearchResponse]:
        """Every page of the query's hits, following the cursors to the end."""
        cursor: str | None = None
        while True:
            page = self.search_page(
                query, size=size, sort=sort, order=order, cursor=cursor, consistent=consistent
            )
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def search(
        self,
        query: str,
        *,
        size: int | None = None,
        sort: SortKey | str | None = None,
        order: Order | None = None,
        consistent: bool | None = None,
    ) -> Iterator[SearchHit]:
        """Every hit of the query, page after page (``size`` hits a request)."""
        for page in self.pages(query, size=size, sort=sort, order=order, consistent=consistent):
            yield from page.hits

    count = _sent(Calls.count)
    translate = _sent(Calls.translate)
    facets = _sent(Calls.facets)
    labels = _sent(Calls.labels)
    evaluate = _sent(Calls.evaluate)
    evaluate_plot = _sent(Calls.evaluate_plot)
    evaluation_choices = _sent(Calls.evaluation_choices)
    item = _sent(Calls.item)
    image = _sent(Calls.image)
    thumbnail = _sent(Calls.thumbnail)
    live = _sent(Calls.live)
    ready = _sent(Calls.ready)

    # --- reviewing (a review key) -------------------------------------------------------------

    accept = _sent(Calls.accept)
    reject = _sent(Calls.reject)
    modify = _sent(Calls.modify)
    save_review = _sent(Calls.save_review)
    review_by_query_preview = _sent(Calls.review_by_query_preview)
    review_by_query = _sent(Calls.review_by_query)

    # --- saved slices -------------------------------------------------------------------------

    slices = _sent(Calls.slices)
    get_slice = _sent(Calls.get_slice)
    save_slice = _sent(Calls.save_slice)
    delete_slice = _sent(Calls.delete_slice)
    rename_slice = _sent(Calls.rename_slice)

    # --- export -------------------------------------------------------------------------------

    def export(self, query: str, to: Destination, *, format: str, **options: Any) -> dict[str, Any]:
        """Stream the query's items to ``to`` (a path, or a binary file) as ``format``
        (``jsonl``, ``coco``, ``yolo``); ``options`` are the API's ``ExportRequest`` fields
        (``content``, ``training_set``, ``sample``, ``score_scale``). Returns the export's
        statement of what it holds. A path is written whole or not at all."""
        call = Calls.export(query, format, options)

        def once() -> dict[str, Any]:
            with self._http.stream(call.route.method, call.url, content=call.content()) as response:
                if response.status_code not in call.route.ok:
                    response.read()
                    raise error_from(response)
                with Sink(to) as sink:
                    for chunk in response.iter_bytes():
                        sink.write(chunk)
                return statement(response)

        return Retrying(**retry.policy(self.settings))(once)

    # --- runs (submitting, cancelling and auto-tagging need a review key) ----------------------

    register_items = _sent(Calls.register_items)
    submit_run = _sent(Calls.submit_run)
    runs = _sent(Calls.runs)
    run = _sent(Calls.run)
    cancel_run = _sent(Calls.cancel_run)

    def watch_run(self, run_id: str, *, interval: float = 1.0) -> Iterator[Run]:
        """The run now, then each time it moves, until it finished (done, failed, cancelled)."""
        shown: Run | None = None
        while True:
            now = self.run(run_id)
            if changed(shown, now):
                yield now
                shown = now
            if now.state.finished:
                return
            time.sleep(interval)

    models = _sent(Calls.models)
    set_dataset_autotag = _sent(Calls.set_dataset_autotag)
    dataset_autotag = _sent(Calls.dataset_autotag)
    stop_dataset_autotag = _sent(Calls.stop_dataset_autotag)

    # --- autotags: labels fitted from examples on the image embeddings ----------------------

    autotags = _sent(Calls.autotags)
    get_autotag = _sent(Calls.get_autotag)
    create_autotag = _sent(Calls.create_autotag)
    refine_autotag = _sent(Calls.refine_autotag)
    score_autotag = _sent(Calls.score_autotag)
    delete_autotag = _sent(Calls.delete_autotag)
