"""Every knob of the API service, declared once, read from the environment.

The cluster's settings (``AUTOTAG_ES_URL`` or ``ES_URL``, credentials, the local cluster) are
:class:`store.settings.StoreSettings`, which this model extends with the service's own
(``AUTOTAG_INDEX``, ``AUTOTAG_MAX_PAGE_SIZE``...). Secrets are ``SecretStr``: they never appear
in ``repr``, logs or errors.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Annotated, Final, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from evaluation.report import WORKERS_FROM_ITEMS
from store.settings import StoreSettings

# The largest page any configuration may allow; keeps ``size + 1`` far below ES's window.
PAGE_SIZE_CEILING: Final = 1000
# Where a first page in descending score order is looked for first (``score_page_probe``;
# on the signed scale, a probability of at least 0.995; 0.99 measured faster than 0.9 on all
# five product-page queries at 1M items, docs/benchmarks.md).
SCORE_PROBE_THRESHOLD: Final = 0.99


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured API key: a display name for audit trails and the secret's bytes."""

    name: str
    secret: bytes = field(repr=False)


def parse_api_keys(raw: SecretStr | None) -> tuple[ApiKey, ...]:
    """``"alice:s3cret,bob:other"`` or ``"s3cret,other"`` -> keys.

    A key without a ``name:`` part is named by a short hash of itself, so the audit trail
    identifies it without revealing it.
    """
    if raw is None:
        return ()
    keys: list[ApiKey] = []
    for part in raw.get_secret_value().split(","):
        entry = part.strip()
        if not entry:
            continue
        name, sep, secret = entry.partition(":")
        if not sep:
            secret = entry
            name = "key-" + hashlib.sha256(entry.encode()).hexdigest()[:8]
        keys.append(ApiKey(name=name.strip(), secret=secret.strip().encode()))
    return tuple(keys)


DEFAULT_EVALUATE_WORKERS_CAP: Final = 4


class Settings(StoreSettings):
    """Configuration of one API process: the cluster (:class:`StoreSettings`) and the service."""

    # --- what the API serves ----------------------------------------------------------------
    default_page_size: Annotated[int, Field(ge=1, le=PAGE_SIZE_CEILING)] = Field(
        20, description="Hits per page when a search names no size."
    )
    max_page_size: Annotated[int, Field(ge=1, le=PAGE_SIZE_CEILING)] = Field(
        200, description="Largest page a search may ask for."
    )
    query_max_length: Annotated[int, Field(ge=1)] = Field(
        4096, description="Longest query text accepted, in characters."
    )
    track_total_hits: Annotated[int, Field(ge=1)] = Field(
        10_000,
        description="Hits a search page counts exactly; past it `total` is a lower bound "
        "(`total_relation` `gte`). Lower is faster on large indexes; /v1/count is always exact.",
    )
    score_page_probe: bool = Field(
        True,
        description="Look for a first page in descending score order among the items whose "
        f"best matched score is at least {SCORE_PROBE_THRESHOLD} first: the same page, found "
        "without scoring every match when enough items pass; otherwise the plain search runs.",
    )
    pit_keep_alive: str = Field(
        "2m", pattern=r"^[1-9][0-9]{0,4}(ms|s|m|h)$", description="Point-in-time keep-alive."
    )
    evaluate_workers: Annotated[int, Field(ge=1, le=64)] = Field(
        default_factory=lambda: min(DEFAULT_EVALUATE_WORKERS_CAP, os.cpu_count() or 1),
        description="Processes that read and judge a large evaluation (from "
        f"{WORKERS_FROM_ITEMS:,} items in the slice), a slice of the point in time each; "
        "1 judges in the API process. Default: the cores, at most "
        f"{DEFAULT_EVALUATE_WORKERS_CAP}.",
    )

    # --- similarity -----------------------------------------------------------------------
    clip_weights: str | None = Field(
        None,
        description="CLIP weights that embed `similar:` texts: the index's embedding model "
        "(a checkpoint file, `local-dir:FOLDER` or a pretrained tag). Unset: no text "
        "similarity (`similar_to:` still works).",
    )
    clip_model: str | None = Field(
        None,
        description="open_clip architecture of `AUTOTAG_CLIP_WEIGHTS`, e.g. ViT-B-32 "
        "(not needed with `local-dir:`).",
    )
    clip_device: str = Field("cpu", description="Where the API runs CLIP: cpu, cuda, cuda:N.")

    # --- review ---------------------------------------------------------------------------
    review_api_keys: SecretStr | None = Field(
        None,
        description="Comma-separated keys allowed to review, each `name:secret` or `secret`.",
    )
    read_api_keys: SecretStr | None = Field(
        None, description="Comma-separated keys allowed to read (review keys may read too)."
    )
    open_reads: bool = Field(True, description="Serve reads without an API key.")
    review_max_attempts: Annotated[int, Field(ge=1, le=50)] = Field(
        8, description="Tries of one review against concurrent writers before answering 409."
    )
    review_refresh: Literal["false", "true", "wait_for"] = Field(
        "wait_for", description="Refresh after a review so searches see it at once."
    )

    # --- images and the review page ----------------------------------------------------------
    image_roots: str | None = Field(
        None,
        description="Folders whose images the API serves, separated by `:`, besides those "
        "`autotag index` recorded for the index.",
    )
    thumbnail_cache_mb: Annotated[int, Field(ge=0)] = Field(
        256, description="Most disk space for cached thumbnails (`<cache>/thumbnails`), in MiB."
    )

    # --- operations -------------------------------------------------------------------------
    metrics: bool = Field(True, description="Serve Prometheus metrics at `/metrics`.")
    cors_origins: str | None = Field(
        None,
        description="Comma-separated origins (e.g. `https://dash.example.com`) whose pages may "
        "call the API from a browser (CORS); unset: none, CORS is off.",
    )

    @model_validator(mode="after")
    def _page_sizes_agree(self) -> Settings:
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size must not exceed max_page_size")
        return self

    def review_keys(self) -> tuple[ApiKey, ...]:
        return parse_api_keys(self.review_api_keys)

    def read_keys(self) -> tuple[ApiKey, ...]:
        return parse_api_keys(self.read_api_keys)

    def cors_origin_list(self) -> list[str]:
        """The origins of ``AUTOTAG_CORS_ORIGINS``, without trailing slashes."""
        if not self.cors_origins:
            return []
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    def secret_values(self) -> list[str]:
        """Every configured secret, as text: what the logs must never show."""
        values = [
            key.secret.decode(errors="replace") for key in self.review_keys() + self.read_keys()
        ]
        for secret in (self.es_api_key, self.es_password):
            if secret is not None:
                values.append(secret.get_secret_value())
        for url in self.es_hosts() or ():
            password = urlsplit(url).password
            if password:
                values.append(password)
        return values

    def configured_image_roots(self) -> list[str]:
        """The folders of ``AUTOTAG_IMAGE_ROOTS``, as given (resolved where they are used)."""
        if not self.image_roots:
            return []
        return [part.strip() for part in self.image_roots.split(":") if part.strip()]
