"""Where the cluster is and how to reach or provision it: declared once, read at call time.

Every entry point (the API, ``autotag serve``/``up``/``index``/``import``/``es``, the indexer
and provisioning) builds these settings from the environment when it starts, and hands them
down; nothing reads the environment at import time. The API's own knobs extend this model in
``api/settings.py``.

Variables use the ``AUTOTAG_`` prefix. The connection also accepts the conventional bare names
(``ES_URL``, ``ES_API_KEY``, ...), and ``ES_JAVA_HOME`` / ``MAVEN_REPO`` are read under the
names Elasticsearch and Maven users already know; the prefixed name wins when both are set.
Secrets are ``SecretStr``: they never appear in ``repr``, logs or errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from store.mapping import INDEX_ALIAS, RUNS_INDEX

# The name of the cluster `autotag up`, `serve`, `index` and `es` use unless told otherwise.
DEFAULT_CLUSTER_NAME = "autotag"
DEFAULT_HTTP_PORT = 9200
# The version a local cluster runs; its zip's SHA-512 is pinned in store/provision/distribution.py.
DEFAULT_ES_VERSION = "9.5.0"
DEFAULT_HEAP = "1g"
DEFAULT_SERVICE_USER = "autotag-es"


def env_names(name: str) -> AliasChoices:
    """Accept ``AUTOTAG_<NAME>`` first, then the conventional bare ``<NAME>``."""
    return AliasChoices(f"AUTOTAG_{name}", name)


class StoreSettings(BaseSettings):
    """The cluster: which one, how to authenticate, and how a local one is provisioned."""

    model_config = SettingsConfigDict(
        env_prefix="AUTOTAG_",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    # --- the cluster to use -------------------------------------------------------------
    es_url: str | None = Field(
        None,
        validation_alias=env_names("ES_URL"),
        description="Elasticsearch URL; several nodes separated by commas. "
        "Unset: the local cluster, started when needed.",
    )
    es_api_key: SecretStr | None = Field(
        None,
        validation_alias=env_names("ES_API_KEY"),
        description="Elasticsearch API key (base64).",
    )
    es_username: str | None = Field(
        None, validation_alias=env_names("ES_USERNAME"), description="Basic-auth user name."
    )
    es_password: SecretStr | None = Field(
        None, validation_alias=env_names("ES_PASSWORD"), description="Basic-auth password."
    )
    es_ca_certs: Path | None = Field(
        None, validation_alias=env_names("ES_CA_CERTS"), description="CA bundle for TLS."
    )
    es_verify_certs: bool = Field(
        True, validation_alias=env_names("ES_VERIFY_CERTS"), description="Verify TLS certificates."
    )
    es_request_timeout: Annotated[float, Field(gt=0)] = Field(
        10.0, description="Seconds before a request to Elasticsearch gives up."
    )
    es_bulk_timeout: Annotated[float, Field(gt=0)] = Field(
        60.0, description="Seconds before a bulk write (index, import, the sample) gives up."
    )
    es_max_connections: Annotated[int, Field(ge=1)] = Field(
        64, description="Connections per node in the client's pool."
    )

    index: str = Field(INDEX_ALIAS, description="Index or alias holding items.")
    runs_index: str = Field(
        RUNS_INDEX,
        description="Index holding runs, their batches, training-set locks and the per-dataset "
        "auto-tagging settings.",
    )
    models_file: Path | None = Field(
        None,
        description="TOML model catalogue that runs may name besides the built-in `demo` "
        "(see docs/runs.md).",
    )

    # --- the local cluster --------------------------------------------------------------
    cache: Path | None = Field(
        None,
        description="Folder for the Elasticsearch distribution, local clusters, model "
        "embeddings and the sample (default /var/cache/autotag as root, else "
        "~/.cache/autotag).",
    )
    es_port: Annotated[int, Field(ge=1, le=65435)] = Field(
        DEFAULT_HTTP_PORT,
        description="HTTP port of the local cluster's first node (transport: this + 100).",
    )
    es_heap: str = Field(
        DEFAULT_HEAP,
        pattern=r"^[1-9][0-9]*[kmg]$",
        description="Heap of each local node, e.g. 512m.",
    )
    es_version: str = Field(
        DEFAULT_ES_VERSION, description="Elasticsearch version the local cluster runs."
    )
    es_user: str = Field(
        DEFAULT_SERVICE_USER,
        description="Unprivileged user the local nodes run as when autotag runs as root.",
    )
    es_java_home: Path | None = Field(
        None,
        validation_alias=env_names("ES_JAVA_HOME"),
        description="Java 21+ home for the local nodes (default: the newest one found).",
    )
    maven_repo: Path | None = Field(
        None,
        validation_alias=env_names("MAVEN_REPO"),
        description="Local Maven repository holding the distribution (default ~/.m2/repository).",
    )

    def es_hosts(self) -> list[str] | None:
        """The configured node URLs, or ``None`` when autotag should use its local cluster."""
        if self.es_url is None:
            return None
        hosts = [url.strip() for url in self.es_url.split(",") if url.strip()]
        return hosts or None

    def cache_dir(self) -> Path:
        """Where distributions, local clusters, embeddings and the sample live.

        As root this is under /var/cache, because the unprivileged node user cannot enter /root.
        """
        if self.cache is not None:
            return self.cache
        if os.geteuid() == 0:
            return Path("/var/cache/autotag")
        xdg = os.environ.get("XDG_CACHE_HOME")
        return (Path(xdg) if xdg else Path.home() / ".cache") / "autotag"

    def client_options(self) -> dict[str, Any]:
        """Authentication and TLS options for an Elasticsearch client (sync or async)."""
        options: dict[str, Any] = {"verify_certs": self.es_verify_certs}
        if self.es_api_key is not None:
            options["api_key"] = self.es_api_key.get_secret_value()
        elif self.es_username is not None:
            password = "" if self.es_password is None else self.es_password.get_secret_value()
            options["basic_auth"] = (self.es_username, password)
        if self.es_ca_certs is not None:
            options["ca_certs"] = str(self.es_ca_certs)
        return options
