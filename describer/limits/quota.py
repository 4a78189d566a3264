"""Client-side pacing of model calls: quotas, a shared 429 gate, adaptive concurrency.

Every call waits, in order, for: a concurrency slot (adaptive: halved after a 429, grown
back by one per window of successes), the shared gate (closed for a 429's ``retryDelay``
so the whole run pauses, not each worker in turn), and the ``--rpm``/``--tpm`` moving
windows. Gemini counts RPM and TPM (input tokens) per minute: "if your RPM limit is 20,
sending 21 requests within a minute" fails (ai.google.dev/gemini-api/docs/rate-limits). A
moving window a little longer on this side (61 s for Gemini's minute) keeps a run inside such
a quota even when network delays bunch its requests up a little.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

# ``limits`` here is the third-party library (alisaifee/limits), not this package.
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from ..errors import ItemFailure, QuotaExhausted
from ..model import ErrorType
from ..quotas import Quota

#: The client-side window is longer than the quota's by 1/60 of it (61 s for a minute), and by
#: at least this many seconds: margin for requests bunched up by network and encoding delays.
MIN_MARGIN_S = 0.25
#: TPM is counted in units of this many tokens, so the moving window stays small.
TOKEN_UNIT = 100


@dataclass
class Permit:
    """One admitted call: when it was sent and how many tokens were reserved for it."""

    sent_at: float
    reserved_tokens: int


class Gate:
    """A shared pause: after a 429 nobody sends until ``retryDelay`` has passed."""

    def __init__(self) -> None:
        self._until = 0.0
        self._shut = asyncio.Event()
        self.spent: Quota | None = None  # the per-day quota that shut the gate

    def close_for(self, seconds: float) -> None:
        """Pause new requests for ``seconds`` from now (never shortens a pause)."""
        self._until = max(self._until, time.monotonic() + seconds)

    def shut(self, quota: Quota) -> None:
        """Close for good (a per-day ``quota`` is spent); waiters wake and fail."""
        self.spent = self.spent or quota
        self._shut.set()

    def check(self) -> None:
        """Raise :class:`QuotaExhausted` once the gate is shut."""
        if self.spent is not None:
            raise QuotaExhausted(self.spent, f"daily quota spent: {self.spent.describe()}")

    async def wait(self) -> None:
        """Return once the gate is open, plus a little jitter so callers do not stampede;
        raise :class:`QuotaExhausted` when it is shut meanwhile."""
        waited = False
        while (remaining := self._until - time.monotonic()) > 0:
            self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._shut.wait(), remaining)
            waited = True
        if waited:
            await asyncio.sleep(random.uniform(0, 0.2))
        self.check()


class AdaptiveLimit:
    """A concurrency limit that halves on a 429 and grows by ~1 per ``limit`` successes.

    Additive increase, multiplicative decrease, between 1 and ``maximum`` calls at once; one
    decrease per burst of 429s (only calls sent after the last decrease can cause another).
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = float(maximum)
        self._in_use = 0
        self._changed = asyncio.Condition()
        self._last_decrease = -math.inf

    async def acquire(self) -> None:
        """Wait for a free slot under the current limit."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._in_use < max(1, int(self.limit)))
            self._in_use += 1

    async def release(self, outcome: str, sent_at: float) -> None:
        """Free a slot; ``outcome`` is ``"ok"``, ``"rate_limited"`` or ``"other"``."""
        async with self._changed:
            self._in_use -= 1
            if outcome == "rate_limited" and sent_at > self._last_decrease:
                self.limit = max(1.0, self.limit / 2)
                self._last_decrease = time.monotonic()
            elif outcome == "ok":
                self.limit = min(float(self.maximum), self.limit + 1 / self.limit)
            self._changed.notify_all()


class Throttle:
    """All that a model call waits for before it is sent (see the module docstring).

    ``rpm``: requests, ``tpm``: input tokens, per ``window`` seconds (``None``: no limit);
    ``on_quota`` is called with the quota each 429 names.
    """

    def __init__(
        self,
        concurrency: int,
        rpm: int | None = None,
        tpm: int | None = None,
        window: float = 60.0,
        on_quota: Callable[[Quota], None] | None = None,
    ) -> None:
        self.gate = Gate()
        self._on_quota = on_quota
        self.slots = AdaptiveLimit(concurrency)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        seconds = window + max(window / 60, MIN_MARGIN_S)
        self._rpm = _PerWindow("rpm", rpm, seconds) if rpm else None
        self._tpm = _PerWindow("tpm", max(1, tpm // TOKEN_UNIT), seconds) if tpm else None

    @asynccontextmanager
    async def permit(self, estimated_tokens: int) -> AsyncIterator[Permit]:
        """Hold a slot for one call sent inside the ``async with`` block.

        A rate-limited failure raised from the block closes the gate for its retryDelay and
        halves the concurrency limit; a clean exit counts as a success. Raises
        :class:`QuotaExhausted`, without sending, once a per-day quota is spent, and in place
        of the 429 that says so.
        """
        await self.slots.acquire()
        permit = Permit(time.monotonic(), 0)
        outcome = "other"
        try:
            await self.gate.wait()
            await self._take(self._rpm, 1)
            permit.reserved_tokens = await self._take_tokens(estimated_tokens)
            self.gate.check()  # a per-day 429 may have come while this call waited
            permit.sent_at = time.monotonic()
            yield permit
            outcome = "ok"
        except QuotaExhausted:
            raise
        except ItemFailure as failure:
            if failure.error.type is ErrorType.RATE_LIMITED:
                outcome = "rate_limited"
                self._refused(failure)
            raise
        finally:
            await self.slots.release(outcome, permit.sent_at)

    def _refused(self, failure: ItemFailure) -> None:
        """After a 429: tell ``on_quota``; shut the gate for a per-day quota (raising
        :class:`QuotaExhausted` from ``failure``), else close it for the retryDelay."""
        quota = failure.quota
        if quota is not None and self._on_quota is not None:
            self._on_quota(quota)
        if quota is not None and quota.daily:
            self.gate.shut(quota)
            self.gate.check()
        self.gate.close_for(max(failure.retry_after or 0.0, 1.0))

    async def correct_tokens(self, permit: Permit, actual_tokens: int) -> None:
        """Charge the TPM window for tokens used beyond the estimate (from usage_metadata)."""
        extra = actual_tokens - permit.reserved_tokens
        if self._tpm is not None and extra >= TOKEN_UNIT:
            await self._take(self._tpm, min(extra // TOKEN_UNIT, self._tpm.amount))

    async def _take_tokens(self, tokens: int) -> int:
        if self._tpm is None:
            return tokens
        units = min(max(1, math.ceil(tokens / TOKEN_UNIT)), self._tpm.amount)
        await self._take(self._tpm, units)
        return units * TOKEN_UNIT

    async def _take(self, item: _PerWindow | None, cost: int) -> None:
        """Wait until ``cost`` more fits in ``item``'s moving window."""
        if item is None:
            return
        while not await self._limiter.hit(item, item.name, cost=cost):
            stats = await self._limiter.get_window_stats(item, item.name)
            await asyncio.sleep(max(0.01, stats.reset_time - time.time()))


class _PerWindow(RateLimitItemPerSecond):
    """``amount`` per ``seconds`` (fractional), for the ``limits`` moving window; ``name``
    keeps each window's entries apart in the shared storage (which keys by amount alone).

    Inherits ``GRANULARITY`` rather than declaring it, so ``limits``' registry of
    granularities is left alone.
    """

    __slots__ = ("_seconds", "name")

    def __init__(self, name: str, amount: int, seconds: float) -> None:
        super().__init__(amount, 1)
        self.name = name
        self._seconds = seconds

    def get_expiry(self) -> int:
        return self._seconds  # type: ignore[return-value]
