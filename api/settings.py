"""Every knob of the API service, declared once, read from the environment.

Service settings use the ``AUTOTAG_`` prefix (``AUTOTAG_INDEX``, ``AUTOTAG_MAX_PAGE_SIZE``...).
The cluster connection also accepts the conventional unprefixed names (``ES_URL``,
``ES_API_KEY``, ``ES_USERNAME``, ``ES_PASSWORD``, ``ES_CA_CERTS``); the prefixed name wins when
both are set. Secrets are ``SecretStr``: they never appear in ``repr``, logs or errors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from store.mapping import INDEX_ALIAS

# The largest page any configuration may allow; keeps ``size + 1`` far below ES's window.
PAGE_SIZE_CEILING: Final = 1000


def _env(name: str) -> AliasChoices:
    """Accept ``AUTOTAG_<NAME>`` first, then the conventional bare ``<NAME>``."""
    return AliasChoices(f"AUTOTAG_{name}", name)


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


class Settings(BaseSettings):
    """Configuration of one API process."""

    model_config = SettingsConfigDict(
        env_prefix="AUTOTAG_",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    # --- the cluster -----------------------------------------------------------------------
    es_url: str = Field(
        "http://127.0.0.1:9200",
        validation_alias=_env("ES_URL"),
        description="Elasticsearch URL; several nodes separated by commas.",
    )
    es_api_key: SecretStr | None = Field(
        None, validation_alias=_env("ES_API_KEY"), description="Elasticsearch API key (base64)."
    )
    es_username: str | None = Field(
        None, validation_alias=_env("ES_USERNAME"), description="Basic-auth user name."
    )
    es_password: SecretStr | None = Field(
        None, validation_alias=_env("ES_PASSWORD"), description="Basic-auth password."
    )
    es_ca_certs: Path | None = Field(
        None, validation_alias=_env("ES_CA_CERTS"), description="CA bundle for TLS."
    )
    es_verify_certs: bool = Field(
        True, validation_alias=_env("ES_VERIFY_CERTS"), description="Verify TLS certificates."
    )
    es_request_timeout: Annotated[float, Field(gt=0)] = Field(
        10.0, description="Seconds before a request to Elasticsearch gives up."
    )
    es_max_connections: Annotated[int, Field(ge=1)] = Field(
        64, description="Connections per node in the client's pool."
    )

    # --- what the API serves ----------------------------------------------------------------
    index: str = Field(INDEX_ALIAS, description="Index or alias holding items.")
    default_page_size: Annotated[int, Field(ge=1, le=PAGE_SIZE_CEILING)] = Field(
        20, description="Hits per page when a search names no size."
    )
    max_page_size: Annotated[int, Field(ge=1, le=PAGE_SIZE_CEILING)] = Field(
        200, description="Largest page a search may ask for."
    )
    query_max_length: Annotated[int, Field(ge=1)] = Field(
        4096, description="Longest query text accepted, in characters."
    )
    pit_keep_alive: str = Field(
        "2m", pattern=r"^[1-9][0-9]{0,4}(ms|s|m|h)$", description="Point-in-time keep-alive."
    )

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

    @model_validator(mode="after")
    def _page_sizes_agree(self) -> Settings:
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size must not exceed max_page_size")
        return self

    def es_hosts(self) -> list[str]:
        return [url.strip() for url in self.es_url.split(",") if url.strip()]

    def review_keys(self) -> tuple[ApiKey, ...]:
        return parse_api_keys(self.review_api_keys)

    def read_keys(self) -> tuple[ApiKey, ...]:
        return parse_api_keys(self.read_api_keys)
