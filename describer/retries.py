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


def retrying(
    max_attempts: int, first_wait: float = 1.0, max_asked: float | None = None
) -> AsyncRetrying:
    """A tenacity policy: ``async for attempt in retrying(5): with attempt: ...``.

    Waits ``random(0, first_wait * 2**n)`` seconds (capped at 60) after the n-th failure, or
    the server's ``retry_after`` when that is longer. A failure whose ``retry_after`` exceeds
    ``max_asked`` seconds (None: no bound, as for Gemini's ``retryDelay``) is not retried:
    it is re-raised at once rather than slept on. Re-raises the last failure.
    """
    backoff = wait_random_exponential(multiplier=first_wait, max=MAX_BACKOFF)

    def wait(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        asked = failure.retry_after if isinstance(failure, ItemFailure) else None
        return max(backoff(state), asked or 0.0)

    def worth_retrying(exc: BaseException) -> bool:
        if not isinstance(exc, ItemFailure) or not exc.retryable:
            return False
        return max_asked is None or (exc.retry_after or 0.0) <= max_asked

    return AsyncRetrying(
        stop=stop_after_attempt(max_attempts),
        wait=wait,
        retry=retry_if_exception(worth_retrying),
        reraise=True,
    )


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    max_attempts: int,
    first_wait: float = 1.0,
    max_asked: float | None = None,
) -> T:
    """``await call()``, retried by :func:`retrying` (``max_asked``: the longest server-asked
    delay in seconds that is slept on; None: no bound); re-raises the last failure."""
    async for attempt in retrying(max_attempts, first_wait, max_asked):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last failure")
