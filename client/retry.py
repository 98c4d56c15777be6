"""The retry policy, tenacity's: a request the API answers with 503 (or 429) and a
``Retry-After`` is tried again, after at least that long and after an exponential backoff with
jitter, until the attempts or the deadline run out. Nothing else is retried: another 503 means
the API cannot tell whether trying again helps."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from tenacity import (
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)
from tenacity.wait import wait_base

from client.errors import ApiError, TooManyRequests, Unavailable
from client.settings import ClientSettings


def retryable(error: BaseException) -> bool:
    """The API asked to be asked again later."""
    return isinstance(error, Unavailable | TooManyRequests) and error.retry_after is not None


class wait_retry_after(wait_base):  # named like tenacity's own waits
    """At least what ``Retry-After`` asked for, and at least the backoff."""

    def __init__(self, backoff: wait_base) -> None:
        self.backoff = backoff

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = None if outcome is None else outcome.exception()
        asked = error.retry_after if isinstance(error, ApiError) else None
        return max(asked or 0.0, self.backoff(retry_state))


log = logging.getLogger("autotag.client")


def _say_why(retry_state: RetryCallState) -> None:
    """One warning per retry: what the API answered and how long until the next attempt."""
    outcome = retry_state.outcome
    error = None if outcome is None else outcome.exception()
    log.warning(
        "autotag API answered %s; attempt %d failed, retrying in %.2f s",
        error,
        retry_state.attempt_number,
        retry_state.upcoming_sleep,
    )


def _give_up(retry_state: RetryCallState) -> NoReturn:
    """Raise the last answer's error, saying how many attempts were made."""
    assert retry_state.outcome is not None
    error = retry_state.outcome.exception()
    assert error is not None
    if isinstance(error, ApiError):
        error.attempts = retry_state.attempt_number
    raise error


def policy(settings: ClientSettings) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` or ``AsyncRetrying``."""
    return {
        "retry": retry_if_exception(retryable),
        "stop": stop_after_attempt(settings.api_retries)
        | stop_before_delay(settings.api_retry_deadline),
        "wait": wait_retry_after(wait_exponential_jitter(multiplier=0.25, max=10.0, jitter=0.25)),
        "before_sleep": _say_why,
        "retry_error_callback": _give_up,
    }
