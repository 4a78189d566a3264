"""Retry policies (tenacity): one for downloads, one for model calls.

Transient failures (an :class:`ItemFailure` with ``retryable``: 408, 429, 5xx, timeouts,
connection errors) are retried with exponential backoff and full jitter, never sooner than
the server asked (``retry_after``), up to ``max_attempts`` tries in all. For model calls
(:func:`model_retrying`) a 429 is not a failure of the call but a quota still moving: it
uses up no attempt, and the throttle does the waiting; only ``max_quota_wait`` bounds it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_random_exponential

from .errors import ItemFailure, QuotaExhausted
from .model import ErrorType

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


def model_retrying(
    max_attempts: int,
    first_wait: float,
    max_quota_wait: float,
    give_up: Callable[[ItemFailure], BaseException],
    clock: Callable[[], float] = time.monotonic,
) -> AsyncRetrying:
    """The policy for one model call: ``async for attempt in model_retrying(...)``.

    A 429 (``rate_limited``) uses up none of the ``max_attempts`` and is retried at once:
    the throttle's gate and pacers do the waiting. When ``max_quota_wait`` seconds have
    passed since this call's first 429, or would pass in the delay it asks for, what
    ``give_up(failure)`` returns is raised in its place (the stop of the run:
    :meth:`~describer.limits.Throttle.give_up`). Other retryable failures count against
    ``max_attempts`` and back off as in :func:`retrying`, by the number of them so far; the
    last one is re-raised. ``clock``: seconds.
    """
    failures = 0
    first_refusal: float | None = None

    def stop(state: RetryCallState) -> bool:
        nonlocal failures, first_refusal
        failure = state.outcome.exception() if state.outcome else None
        if not _refused(failure):
            failures += 1
            return failures >= max_attempts
        assert isinstance(failure, ItemFailure)
        now = clock()
        first_refusal = now if first_refusal is None else first_refusal
        return now - first_refusal + (failure.retry_after or 0.0) >= max_quota_wait

    def wait(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        if _refused(failure):
            return 0.0
        asked = failure.retry_after if isinstance(failure, ItemFailure) else None
        backoff = random.uniform(0, min(MAX_BACKOFF, first_wait * 2 ** max(failures - 1, 0)))
        return max(backoff, asked or 0.0)

    def spent(state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        assert failure is not None  # only failures are retried, so only they are stopped
        if isinstance(failure, ItemFailure) and _refused(failure):
            raise give_up(failure) from None
        raise failure

    return AsyncRetrying(
        stop=stop,
        wait=wait,
        retry=retry_if_exception(lambda exc: isinstance(exc, ItemFailure) and exc.retryable),
        retry_error_callback=spent,
    )


def _refused(failure: BaseException | None) -> bool:
    """A 429 (not a stop at a spent quota)."""
    return (
        isinstance(failure, ItemFailure)
        and not isinstance(failure, QuotaExhausted)
        and failure.error.type is ErrorType.RATE_LIMITED
    )
