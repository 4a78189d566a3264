"""Retry policy shared by downloads and model calls (tenacity).

Transient failures (an :class:`ItemFailure` with ``retryable``: 408, 429, 5xx, timeouts,
connection errors) are retried with exponential backoff and full jitter, never sooner than
the server asked (``retry_after``), up to ``max_attempts`` tries in all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_random_exponential

from .errors import ItemFailure

T = TypeVar("T")
#: Longest backoff between two attempts, in seconds (a server's retry_after may exceed it).
MAX_BACKOFF = 60.0


def retrying(max_attempts: int, first_wait: float = 1.0) -> AsyncRetrying:
    """A tenacity policy: ``async for attempt in retrying(5): with attempt: ...``.

    Waits ``random(0, first_wait * 2**n)`` seconds (capped at 60) after the n-th failure, or
    the server's ``retry_after`` when that is longer. Re-raises the last failure.
    """
    backoff = wait_random_exponential(multiplier=first_wait, max=MAX_BACKOFF)

    def wait(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        asked = failure.retry_after if isinstance(failure, ItemFailure) else None
        return max(backoff(state), asked or 0.0)

    return AsyncRetrying(
        stop=stop_after_attempt(max_attempts),
        wait=wait,
        retry=retry_if_exception(lambda exc: isinstance(exc, ItemFailure) and exc.retryable),
        reraise=True,
    )


async def call_with_retries(
    call: Callable[[], Awaitable[T]], max_attempts: int, first_wait: float = 1.0
) -> T:
    """``await call()``, retried by :func:`retrying`; re-raises the last failure."""
    async for attempt in retrying(max_attempts, first_wait):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last failure")
