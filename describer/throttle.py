"""Client-side throttling of model calls: quotas, a shared 429 gate, adaptive concurrency.

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
import math
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from .errors import ErrorType, ItemFailure
from .prepare import ImageInfo

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

    def close_for(self, seconds: float) -> None:
        """Pause new requests for ``seconds`` from now (never shortens a pause)."""
        self._until = max(self._until, time.monotonic() + seconds)

    async def wait(self) -> None:
        """Return once the gate is open, plus a little jitter so callers do not stampede."""
        waited = False
        while (remaining := self._until - time.monotonic()) > 0:
            await asyncio.sleep(remaining)
            waited = True
        if waited:
            await asyncio.sleep(random.uniform(0, 0.2))


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

    ``rpm``: requests, ``tpm``: input tokens, per ``window`` seconds (``None``: no limit).
    """

    def __init__(
        self,
        concurrency: int,
        rpm: int | None = None,
        tpm: int | None = None,
        window: float = 60.0,
    ) -> None:
        self.gate = Gate()
        self.slots = AdaptiveLimit(concurrency)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        seconds = window + max(window / 60, MIN_MARGIN_S)
        self._rpm = _PerWindow("rpm", rpm, seconds) if rpm else None
        self._tpm = _PerWindow("tpm", max(1, tpm // TOKEN_UNIT), seconds) if tpm else None

    @asynccontextmanager
    async def permit(self, estimated_tokens: int) -> AsyncIterator[Permit]:
        """Hold a slot for one call sent inside the ``async with`` block.

        A rate-limited failure raised from the block closes the gate for its retryDelay and
        halves the concurrency limit; a clean exit counts as a success.
        """
        await self.slots.acquire()
        permit = Permit(time.monotonic(), 0)
        outcome = "other"
        try:
            await self.gate.wait()
            await self._take(self._rpm, 1)
            permit.reserved_tokens = await self._take_tokens(estimated_tokens)
            permit.sent_at = time.monotonic()
            yield permit
            outcome = "ok"
        except ItemFailure as failure:
            if failure.error.type is ErrorType.RATE_LIMITED:
                outcome = "rate_limited"
                self.gate.close_for(max(failure.retry_after or 0.0, 1.0))
            raise
        finally:
            await self.slots.release(outcome, permit.sent_at)

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


#: Tokens per image at each --media-resolution on Gemini 3 models
#: (ai.google.dev/gemini-api/docs/media-resolution, token counts table).
RESOLUTION_IMAGE_TOKENS = {"low": 280, "medium": 560, "high": 1120}


def estimate_tokens(media: ImageInfo, text: str, resolution: str | None = None) -> int:
    """Input tokens of one request before it is sent, for ``--tpm`` pacing (then corrected).

    Images: 258 tokens with both sides at most 384 px, else 258 per 768x768 tile
    (ai.google.dev/gemini-api/docs/tokens), or the ``--media-resolution`` budget. PDFs: 258
    per page (pages counted from ``/Type /Page``). Audio: 32 tokens per second, video about
    300, with the duration guessed from the size (128 kbit/s audio, 2 Mbit/s video). Text:
    about one token per 4 characters.
    """
    return _media_tokens(media, resolution) + math.ceil(len(text) / 4)


def _media_tokens(media: ImageInfo, resolution: str | None) -> int:
    kind = media.mime_type.split("/")[0]
    if media.width is not None and media.height is not None:
        if resolution:
            return RESOLUTION_IMAGE_TOKENS[resolution]
        if media.width <= 384 and media.height <= 384:
            return 258
        return 258 * math.ceil(media.width / 768) * math.ceil(media.height / 768)
    if kind == "audio":
        return math.ceil(media.bytes / 16_000 * 32)
    if kind == "video":
        return math.ceil(media.bytes / 250_000 * 300)
    return 258 * max(1, media.pages)


class ByteBudget:
    """Bytes of media held in flight (downloaded, prepared, being sent), at most ``capacity``.

    Concurrency bounds items; this bounds their bytes, so a run of 12 MP photos holds no more
    memory than a run of thumbnails (google-genai holds about three times an image's size
    while it sends it). An item larger than the whole budget still goes, alone. ``None``:
    no limit.
    """

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity or None  # 0 means no limit too
        self.used = 0
        self._changed = asyncio.Condition()

    def lease(self) -> Lease:
        """A lease for one item, holding nothing yet."""
        return Lease(self)


class Lease:
    """One item's share of a :class:`ByteBudget`."""

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.held = 0

    async def reserve(self, size: int) -> None:
        """Hold ``size`` bytes (replacing what this lease held), waiting until they fit."""
        budget = self._budget
        async with budget._changed:
            budget.used -= self.held
            self.held = 0
            want = size if budget.capacity is None else min(size, budget.capacity)
            await budget._changed.wait_for(
                lambda: (
                    budget.capacity is None
                    or budget.used == 0
                    or budget.used + want <= budget.capacity
                )
            )
            budget.used += want
            self.held = want
            budget._changed.notify_all()

    def grow(self, size: int) -> None:
        """Hold at least ``size`` bytes now, without waiting (a body longer than announced)."""
        if size > self.held:
            self._budget.used += size - self.held
            self.held = size

    async def release(self) -> None:
        """Give everything back."""
        budget = self._budget
        async with budget._changed:
            budget.used -= self.held
            self.held = 0
            budget._changed.notify_all()
