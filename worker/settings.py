"""The knobs of ``autotag worker``, on top of the cluster's (``store.settings.StoreSettings``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from store.settings import StoreSettings


class WorkerSettings(StoreSettings):
    """Configuration of one worker process."""

    run_batch_size: Annotated[int, Field(ge=1, le=10_000)] = Field(
        256, description="Items per batch of a run: what one worker claims at a time."
    )
    run_lease_s: Annotated[float, Field(ge=1)] = Field(
        30.0,
        description="Seconds a claimed batch stays a worker's without renewal; a killed "
        "worker's batch is taken over after this.",
    )
    worker_write_batch: Annotated[int, Field(ge=1, le=10_000)] = Field(
        64,
        description="Items per bulk write of a worker; its lease and its run's state are checked "
        "before each.",
    )
    worker_poll_s: Annotated[float, Field(gt=0)] = Field(
        0.5, description="Seconds an idle worker waits before looking for work again."
    )
    worker_device: str = Field(
        "auto", description="Where a worker runs the models: cpu, cuda, cuda:N or auto."
    )
