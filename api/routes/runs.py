"""Runs (submit, list, watch, cancel), the model catalogue, and per-dataset auto-tagging.

The router is built per app: the model catalogue is configuration (``AUTOTAG_MODELS_FILE``),
read once when the app is made, so a malformed file stops the service from starting rather
than failing a request. A model choice is checked at submission (a known name, every weights
file present): a run that could never load its models is a 400 now, not a failed run later.
Workers (``autotag worker``) do the tagging; this process only writes the run's document.
(No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.)
"""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import EsDep, ReadDep, ReviewerDep, SettingsDep, refuse_similarity, resolve_query
from api.errors import ApiError, refuse_unstorable
from api.routes import error_responses
from api.run_models import (
    DatasetAutotag,
    DatasetAutotagRequest,
    ModelSetInfo,
    ModelsResponse,
    QuerySelection,
    Run,
    RunFilter,
    RunList,
    RunRequest,
    UrisSelection,
)
from api.settings import Settings
from store.calls import drive_async
from store.model_choice import (
    ModelSet,
    UnknownModelsError,
    choose,
    load_catalogue,
    weight_problems,
)
from store.runs import (
    DatasetAutotag as StoredAutotag,
)
from store.runs import (
    NewItem,
    Selection,
    SelectionKind,
    cancel_run,
    delete_dataset_autotag,
    get_dataset_autotags,
    get_run,
    list_runs,
    new_run,
    put_dataset_autotag,
    register_items,
    run_view,
    submit_run,
)


def router(settings: Settings) -> APIRouter:
    """The routes for an app with these settings (and their model catalogue)."""
    catalogue = load_catalogue(settings.models_file)
    routes = APIRouter()

    def checked(name: str) -> ModelSet:
        try:
            models = choose(catalogue, name)
        except UnknownModelsError as error:
            details = {"models": name, "known": error.known, "closest": error.closest}
            raise ApiError(400, "unknown_models", str(error), details) from None
        problems = weight_problems(models)
        if problems:
            raise ApiError(
                400,
                "models_unavailable",
                f"The weights of models {name!r} cannot be had here",
                {"models": name, "problems": problems},
            )
        return models

    @routes.post(
        "/runs",
        status_code=201,
        response_model=Run,
        responses=error_responses(400, 401, 403),
        tags=["runs"],
        summary="Start tagging a query's items, a dataset, or new uris",
    )
    async def submit(body: RunRequest, key: ReviewerDep, es: EsDep, settings: SettingsDep) -> Run:
        refuse_unstorable(body.model_dump())
        models = checked(body.models)
        select = body.select
        if isinstance(select, QuerySelection):
            parsed = await resolve_query(es, settings, select.query)
            refuse_similarity(parsed, "a run", select.query)
            selection = Selection(SelectionKind.QUERY, query=parsed.canonical, dsl=parsed.query)
        elif isinstance(select, UrisSelection):
            uris = list(dict.fromkeys(select.uris))
            new = [NewItem(item_id=uri, uri=uri, dataset=select.dataset) for uri in uris]
            registered = await drive_async(
                es, register_items(settings.index, settings.runs_index, new, autotag=False)
            )
            if registered.failed:
                raise ApiError(
                    400,
                    "items_not_registered",
                    "Some uris could not be registered as items",
                    {"failed": [{"item_id": i, "reason": why} for i, why in registered.failed]},
                )
            selection = Selection(SelectionKind.ITEMS, dataset=select.dataset, item_ids=tuple(uris))
        else:
            selection = Selection(SelectionKind.DATASET, dataset=select.dataset)
        run = new_run(
            selection=selection,
            models=models,
            training_set=body.training_set,
            items_index=settings.index,
        )
        await drive_async(es, submit_run(settings.runs_index, run))
        return Run.model_validate(run_view(run, None))

    @routes.get(
        "/runs",
        response_model=RunList,
        responses=error_responses(401),
        tags=["runs"],
        summary="The most recent runs, newest first, with their progress",
    )
    async def runs(read: ReadDep, filters: Annotated[RunFilter, Query()]) -> RunList:
        refuse_unstorable(filters.model_dump(mode="json"), ("query",))
        views = await drive_async(
            read.es,
            list_runs(
                read.settings.runs_index,
                states=filters.state,
                origin=filters.origin,
                training_set=filters.training_set,
                size=filters.size,
            ),
        )
        return RunList(runs=[Run.model_validate(view) for view in views])

    @routes.get(
        "/runs/{run_id}",
        response_model=Run,
        responses=error_responses(401, 404),
        tags=["runs"],
        summary="One run: state, items done of total, skipped, failed with reasons, rate, ETA",
    )
    async def one_run(run_id: str, read: ReadDep) -> Run:
        view = await drive_async(read.es, get_run(read.settings.runs_index, run_id))
        if view is None:
            raise _no_run(run_id)
        return Run.model_validate(view)

    @routes.post(
        "/runs/{run_id}/cancel",
        response_model=Run,
        responses=error_responses(401, 403, 404, 409),
        tags=["runs"],
        summary="Cancel a queued or running run (409 when it already finished)",
    )
    async def cancel(run_id: str, key: ReviewerDep, es: EsDep, settings: SettingsDep) -> Run:
        outcome = await drive_async(es, cancel_run(settings.runs_index, run_id))
        if outcome is None:
            raise _no_run(run_id)
        if not outcome.changed:
            raise ApiError(
                409,
                "run_finished",
                f"The run already finished: it is {outcome.state.value}",
                {"run_id": run_id, "state": outcome.state.value},
            )
        view = await drive_async(es, get_run(settings.runs_index, run_id))
        if view is None:
            raise _no_run(run_id)
        return Run.model_validate(view)

    @routes.get(
        "/models",
        response_model=ModelsResponse,
        responses=error_responses(401),
        tags=["runs"],
        summary="The model sets runs may name, and whether their weights are here",
    )
    async def models(read: ReadDep) -> ModelsResponse:
        listed = []
        for name in sorted(catalogue):
            entry = catalogue[name]
            problems = weight_problems(entry)
            listed.append(
                ModelSetInfo(
                    name=name,
                    description=entry.describe(),
                    demo=entry.demo,
                    clip_model=entry.clip_model,
                    clip_weights=entry.clip_weights,
                    detector_weights=entry.detector_weights,
                    score_threshold=entry.score_threshold,
                    available=not problems,
                    problems=problems,
                )
            )
        models_file = read.settings.models_file
        return ModelsResponse(
            models=listed, models_file=None if models_file is None else str(models_file)
        )

    @routes.put(
        "/datasets/{dataset}/autotag",
        response_model=DatasetAutotag,
        responses=error_responses(401, 403),
        tags=["runs"],
        summary="Tag the dataset's new items with these models as they are registered",
    )
    async def set_autotag(
        dataset: str,
        body: DatasetAutotagRequest,
        key: ReviewerDep,
        es: EsDep,
        settings: SettingsDep,
    ) -> DatasetAutotag:
        refuse_unstorable({"dataset": dataset, **body.model_dump()})
        setting = StoredAutotag(dataset, checked(body.models), body.training_set)
        stored = await drive_async(es, put_dataset_autotag(settings.runs_index, setting))
        return _autotag(stored)

    @routes.get(
        "/datasets/{dataset}/autotag",
        response_model=DatasetAutotag,
        responses=error_responses(401, 404),
        tags=["runs"],
        summary="The models that tag the dataset's new items, if any",
    )
    async def get_autotag(dataset: str, read: ReadDep) -> DatasetAutotag:
        found = await drive_async(
            read.es, get_dataset_autotags(read.settings.runs_index, [dataset])
        )
        if dataset not in found:
            raise _no_autotag(dataset)
        return _autotag(found[dataset])

    @routes.delete(
        "/datasets/{dataset}/autotag",
        status_code=204,
        responses=error_responses(401, 403, 404),
        tags=["runs"],
        summary="Stop tagging the dataset's new items",
    )
    async def stop_autotag(
        dataset: str, key: ReviewerDep, es: EsDep, settings: SettingsDep
    ) -> Response:
        if not await drive_async(es, delete_dataset_autotag(settings.runs_index, dataset)):
            raise _no_autotag(dataset)
        return Response(status_code=204)

    return routes


def _no_run(run_id: str) -> ApiError:
    return ApiError(404, "run_not_found", "No such run", {"run_id": run_id})


def _no_autotag(dataset: str) -> ApiError:
    return ApiError(
        404, "autotag_not_set", "The dataset has no auto-tagging setting", {"dataset": dataset}
    )


def _autotag(setting: StoredAutotag) -> DatasetAutotag:
    return DatasetAutotag(
        dataset=setting.dataset,
        models=setting.models.name,
        training_set=setting.training_set,
        updated_at=setting.updated_at,
    )
