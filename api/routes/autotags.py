"""Autotags: create from examples, refine from reviews, list, show, score (resume), delete.

Reading needs what any read needs; creating, refining, scoring and deleting write predictions,
so they need a review key. (No ``from __future__ import annotations`` here: FastAPI reads the
endpoints' annotations.)
"""

from collections.abc import Callable
from typing import Annotated, Any

from elasticsearch import Elasticsearch
from fastapi import APIRouter, Depends, Request, Response

from api.autotag_models import AutotagList, AutotagOut, CreateAutotag, Deleted, JobRequest
from api.autotags import AutotagJobs, autotag_out
from api.deps import ReadDep, ReviewerDep
from api.errors import ApiError
from api.routes import error_responses
from autotags import jobs
from autotags.registry import Registry
from autotags.training import Examples

router = APIRouter(prefix="/autotags", tags=["autotags"])
_WAITED = {"model": AutotagOut, "description": "Done before answering (`wait`)"}


def get_jobs(request: Request) -> AutotagJobs:
    runner: AutotagJobs = request.app.state.autotag_jobs
    return runner


JobsDep = Annotated[AutotagJobs, Depends(get_jobs)]


def _examples(body: Any) -> Examples | None:
    if body is None:
        return None
    return Examples(tuple(body.item_ids), body.query)


@router.get("", response_model=AutotagList, responses=error_responses(401), summary="All autotags")
async def list_autotags(read: ReadDep, runner: JobsDep) -> AutotagList:
    index = read.settings.index
    found = await runner.call(lambda client: list(Registry(client, index).all()))
    return AutotagList(autotags=[autotag_out(a) for a in found])


@router.get(
    "/{name}",
    response_model=AutotagOut,
    responses=error_responses(401, 404),
    summary="An autotag, its versions and how far their scoring got",
)
async def show(name: str, read: ReadDep, runner: JobsDep) -> AutotagOut:
    index = read.settings.index
    return autotag_out(await runner.call(lambda client: Registry(client, index).require(name)))


@router.post(
    "",
    response_model=AutotagOut,
    status_code=202,
    responses={
        **error_responses(401, 403, 409),
        201: {"model": AutotagOut, "description": "Fitted and scored (`wait`)"},
    },
    summary="Fit an autotag from examples (version 1) and score every item",
)
async def create(
    body: CreateAutotag, key: ReviewerDep, runner: JobsDep, request: Request, response: Response
) -> AutotagOut:
    index = request.app.state.settings.index
    positives = _examples(body.positives)
    assert positives is not None

    def fit(client: Elasticsearch) -> Any:
        return jobs.create(
            client,
            index,
            body.name,
            positives,
            _examples(body.negatives),
            description=body.description,
            run_scoring=False,
        )

    autotag = await runner.call(fit)
    return await _scoring(runner, index, autotag.name, body.wait, response, created=True)


@router.post(
    "/{name}/refine",
    response_model=AutotagOut,
    status_code=202,
    responses={**error_responses(401, 403, 404, 409), 201: _WAITED},
    summary="Fit the next version from the last one's examples and the reviews since",
)
async def refine(
    name: str,
    body: JobRequest,
    key: ReviewerDep,
    runner: JobsDep,
    request: Request,
    response: Response,
) -> AutotagOut:
    index = request.app.state.settings.index
    await _not_busy(runner, name)
    await runner.call(lambda client: jobs.refine(client, index, name, run_scoring=False))
    return await _scoring(runner, index, name, body.wait, response, created=True)


@router.post(
    "/{name}/score",
    response_model=AutotagOut,
    status_code=202,
    responses={**error_responses(401, 403, 404, 409), 200: _WAITED},
    summary="Score the items the latest version has not scored yet (resumes a stopped job)",
)
async def score(
    name: str,
    body: JobRequest,
    key: ReviewerDep,
    runner: JobsDep,
    request: Request,
    response: Response,
) -> AutotagOut:
    index = request.app.state.settings.index
    await runner.call(lambda client: Registry(client, index).require(name))
    return await _scoring(runner, index, name, body.wait, response, created=False)


async def _not_busy(runner: AutotagJobs, name: str) -> None:
    if not await runner.settle(name):
        raise ApiError(409, "conflict", f"a job of autotag `{name}` is running")


async def _job(
    runner: AutotagJobs,
    name: str,
    job: Callable[[Elasticsearch], Any],
    *,
    wait: bool,
    response: Response,
    waited: int,
) -> Any:
    """``job`` on the autotag ``name`` (409 while another runs): done before answering with
    ``wait`` (the answer's status becomes ``waited``; the job's result is returned), else
    started in the background (the route's 202; ``None``)."""
    await _not_busy(runner, name)
    if not wait:
        runner.start(name, job)
        return None
    result = await runner.call(job)
    response.status_code = waited
    return result


async def _scoring(
    runner: AutotagJobs, index: str, name: str, wait: bool, response: Response, *, created: bool
) -> AutotagOut:
    def scoring(client: Elasticsearch) -> Any:
        return jobs.score(client, index, name)

    await _job(runner, name, scoring, wait=wait, response=response, waited=201 if created else 200)
    return autotag_out(await runner.call(lambda client: Registry(client, index).require(name)))


@router.delete(
    "/{name}",
    response_model=Deleted,
    status_code=202,
    responses={
        **error_responses(401, 403, 404, 409),
        200: {"model": Deleted, "description": "Done before answering (`wait`)"},
    },
    summary="Take every version's predictions off the items, then the autotag",
)
async def delete(
    name: str,
    key: ReviewerDep,
    runner: JobsDep,
    request: Request,
    response: Response,
    wait: bool = False,
) -> Deleted:
    index = request.app.state.settings.index
    await runner.call(lambda client: Registry(client, index).require(name))

    def deleting(client: Elasticsearch) -> int:
        return jobs.delete(client, index, name)

    changed = await _job(runner, name, deleting, wait=wait, response=response, waited=200)
    if not wait:
        return Deleted(name=name, state="running")
    return Deleted(name=name, state="done", items_changed=changed)
