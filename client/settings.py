"""Where the API is and how the client talks to it, read from the environment when a client is
made: ``AUTOTAG_API_URL``, ``AUTOTAG_API_KEY``... An argument given to the client wins over its
variable. The key is a ``SecretStr``: it never appears in ``repr`` or errors."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClientSettings(BaseSettings):
    """One client's configuration; every field is ``AUTOTAG_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="AUTOTAG_", extra="ignore", frozen=True)

    api_url: str = Field("http://127.0.0.1:8000", description="Base URL of the autotag API.")
    api_key: SecretStr | None = Field(
        None,
        description="Sent as `X-API-Key`: a read key, or a review key to review. Empty: no key.",
    )
    api_timeout: Annotated[float, Field(gt=0)] = Field(
        30.0, description="Seconds before one HTTP request gives up."
    )
    api_retries: Annotated[int, Field(ge=1)] = Field(
        5,
        description="Attempts of a request the API answers with 503 and `Retry-After` "
        "(1: never retry).",
    )
    api_retry_deadline: Annotated[float, Field(gt=0)] = Field(
        60.0, description="Seconds after which no retry starts."
    )

    def key(self) -> str | None:
        """The key to send, if any."""
        if self.api_key is None or not self.api_key.get_secret_value():
            return None
        return self.api_key.get_secret_value()
