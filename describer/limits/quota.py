"""Client-side pacing of model calls: quotas given or learned, a shared 429 gate, adaptive
concurrency.

Every call waits, in order, for: a concurrency slot (adaptive: halved after a 429, grown back
by one per window of successes), the shared gate (closed after a 429 so the whole run pauses,
not each worker in turn), and the request and token pacers (:mod:`.pacing`), which space calls
evenly at the lowest of: ``--rpm``/``--tpm``, a quota Gemini named in a 429 (its
``quotaValue``: "learned"), and, for 429s that name no limit, the rate the
:class:`~.pacing.RateProbe` finds. Gemini counts RPM and TPM (input tokens) per minute
(ai.google.dev/gemini-api/docs/rate-limits); pacing over a window a little longer on this side
(62 s for Gemini's minute) keeps a run inside such a quota even when network delays bunch its
requests up a little.
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

from tenacity import AsyncRetrying

from ..config import Config
from ..errors import ItemFailure, QuotaExhausted
from ..model import ErrorType
from ..quotas import UNKNOWN, Quota
from ..retries import model_retrying
from .pacing import Pacer, RateProbe, start_gap

#: The client-side window is longer than the quota's by ``MARGIN`` of it (62 s for a minute),
#: and by at least ``MIN_MARGIN_S`` seconds: slack for requests bunched up by network and
#: encoding delays. Under a token bucket that holds one request (the harsher case the emulator
#: models), calls paced at 60 RPM arrive with 33 ms each of slack; with 1/60 (17 ms) a loaded
#: 2-core machine already bunched two requests 15 ms closer than paced (scripts/bench_quota.py).
MARGIN = 1 / 30
MIN_MARGIN_S = 0.25
#: Shortest pause of the shared gate after a 429 that gives a retryDelay, in seconds.
MIN_PAUSE_S = 1.0
#: After a 429 without a retryDelay the gate pauses 1 s, doubling (with jitter) for each
#: further such 429 until a call succeeds, up to 60 s: exponential backoff with jitter, the
#: usual advice for a Gemini 429 that says nothing more.
BARE_PAUSE_S = 1.0
MAX_BARE_PAUSE_S = 60.0


@dataclass
class Permit:
    """One admitted call: when it was sent and how many tokens were reserved for it."""

    sent_at: float
    reserved_tokens: int


class Gate:
    """A shared pause: after a 429 nobody sends until it is over.

    A 429 with a ``retryDelay`` pauses for that delay (at least ``MIN_PAUSE_S``); one without
    pauses ``BARE_PAUSE_S``, doubling (half to full, at random) for each further one until a
    call succeeds, up to ``MAX_BARE_PAUSE_S``. Refusals of calls sent before the current pause
    began belong to the same burst and do not double it. A spent quota shuts the gate for good.
    """

    def __init__(self) -> None:
        self._until = 0.0
        self._shut = asyncio.Event()
        self._streak = 0  # 429s without a retryDelay since the last success
        self._paused_at = -1.0
        self.spent: Quota | None = None  # the quota that shut the gate
        self.reason = ""  # why it was shut, e.g. "daily quota spent: ..."

    def close_for(self, seconds: float) -> None:
        """Pause new requests for ``seconds`` from now (never shortens a pause)."""
        self._until = max(self._until, time.monotonic() + seconds)

    def refused(self, retry_after: float | None, sent_at: float) -> None:
        """A call sent at ``sent_at`` met a 429 asking for ``retry_after`` seconds (None:
        no delay given): pause as the class docstring says."""
        if retry_after is not None:
            self.close_for(max(retry_after, MIN_PAUSE_S))
            return
        if sent_at > self._paused_at:
            self._streak += 1
            self._paused_at = time.monotonic()
        pause = min(MAX_BARE_PAUSE_S, BARE_PAUSE_S * 2 ** (self._streak - 1))
        self.close_for(pause * random.uniform(0.5, 1.0))

    def succeeded(self) -> None:
        """A call went through: the next 429 without a delay pauses ``BARE_PAUSE_S`` again."""
        self._streak = 0

    def shut(self, quota: Quota, reason: str) -> None:
        """Close for good (``quota`` stops the run, ``reason`` says how); waiters wake and
        raise :class:`QuotaExhausted`."""
        if self.spent is None:
            self.spent, self.reason = quota, reason
        self._shut.set()

    @property
    def is_open(self) -> bool:
        """Whether a call may go now (not shut, no pause under way)."""
        return self.spent is None and time.monotonic() >= self._until

    def check(self) -> None:
        """Raise :class:`QuotaExhausted` once the gate is shut."""
        if self.spent is not None:
            raise QuotaExhausted(self.spent, self.reason)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``; raise :class:`QuotaExhausted` at once if the gate is shut."""
        self.check()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._shut.wait(), seconds)
        self.check()

    async def wait(self) -> None:
        """Return once the gate is open, plus a little jitter so callers do not stampede;
        raise :class:`QuotaExhausted` when it is shut meanwhile."""
        waited = False
        while (remaining := self._until - time.monotonic()) > 0:
            await self.sleep(remaining)
            waited = True
        if waited:
            await self.sleep(random.uniform(0, 0.2))
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

    ``concurrency``: calls at once (at most); ``rpm``: requests, ``tpm``: input tokens, per
    ``window`` seconds given by the user (``None``: none given); ``on_quota`` is called with
    the quota each 429 names. ``learned_rpm``/``learned_tpm`` hold the lowest per-minute
    limits Gemini named.
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
        self.slots = AdaptiveLimit(concurrency)
        self.learned_rpm: float | None = None
        self.learned_tpm: float | None = None
        self._on_quota = on_quota
        self._concurrency = concurrency
        self._rpm, self._tpm = rpm, tpm
        self._paced_over = window + max(window * MARGIN, MIN_MARGIN_S)
        self._probe = RateProbe(window)
        self._requests, self._tokens = Pacer(), Pacer()
        self._sent = 0

    @property
    def rpm(self) -> float | None:
        """Requests per window the calls are paced to now (None: not paced)."""
        return _lowest(self._rpm, self.learned_rpm, self._probe.rpm)

    @property
    def tpm(self) -> float | None:
        """Input tokens per window the calls are paced to now (None: not paced)."""
        return _lowest(self._tpm, self.learned_tpm)

    @asynccontextmanager
    async def permit(self, estimated_tokens: int) -> AsyncIterator[Permit]:
        """Hold a slot for one call sent inside the ``async with`` block.

        A rate-limited failure raised from the block pauses the gate, halves the concurrency
        limit and teaches the pacers what the 429 says; a clean exit counts as a success.
        Raises :class:`QuotaExhausted`, without sending, once a quota stopped the run, and
        in place of a 429 for a per-day quota or a quota of 0.
        """
        await self.slots.acquire()
        permit = Permit(time.monotonic(), estimated_tokens)
        outcome = "other"
        try:
            await self._turn(estimated_tokens)
            permit.sent_at = time.monotonic()
            self._probe.sent()
            yield permit
            outcome = "ok"
            self._probe.succeeded()
            self.gate.succeeded()
        except QuotaExhausted:
            raise
        except ItemFailure as failure:
            if failure.error.type is ErrorType.RATE_LIMITED:
                outcome = "rate_limited"
                self._refused(failure, permit.sent_at)
            raise
        finally:
            await self.slots.release(outcome, permit.sent_at)

    def stop(self, quota: Quota, reason: str) -> None:
        """Stop the run at ``quota``: nothing more is sent; waiting calls raise
        :class:`QuotaExhausted` with ``reason``."""
        self.gate.shut(quota, reason)

    def retrying(self, config: Config) -> AsyncRetrying:
        """The retry policy for one call under this throttle (:func:`model_retrying`): a
        call whose 429s outlast ``config.max_quota_wait`` stops the run (:meth:`give_up`)."""
        wait = config.max_quota_wait
        return model_retrying(config.max_attempts, config.retry_wait, wait,
                              lambda failure: self.give_up(failure, wait))  # fmt: skip

    def give_up(self, failure: ItemFailure, max_quota_wait: float) -> QuotaExhausted:
        """Stop the run at the quota of a call whose 429s outlasted ``max_quota_wait``
        seconds; the stop to raise in place of ``failure``."""
        quota = failure.quota or UNKNOWN
        span = f"{max_quota_wait / 60:g} min" if max_quota_wait >= 60 else f"{max_quota_wait:g} s"
        reason = (
            f"calls were refused for {span} by a quota "
            f"({quota.describe()}; --max-quota-wait {max_quota_wait:g} s)"
        )
        self.stop(quota, reason)
        return QuotaExhausted(quota, reason)

    def correct_tokens(self, permit: Permit, actual_tokens: int) -> None:
        """Charge the token pacer for tokens used beyond the estimate (from usage_metadata)."""
        tpm = self.tpm
        extra = actual_tokens - permit.reserved_tokens
        if tpm is not None and extra > 0:
            self._tokens.defer(extra * self._paced_over / tpm)

    async def admit(self, tokens: int, count: int = 1) -> float:
        """Wait until ``count`` calls of ``tokens`` estimated input tokens each may start,
        and charge the pacers for all of them; the seconds to leave between them (their even
        spacing under the pace now). Raises :class:`QuotaExhausted` once a quota stopped the
        run. The concurrency slots are not taken: :meth:`permit` takes one per call; a
        cluster's quota keeper (:mod:`describer.ray.keeper`) grants ``count`` at once."""
        await self._turn(tokens, count)
        for _ in range(count):
            self._probe.sent()
        return max(self._request_gap(), self._token_gap(tokens))

    async def _turn(self, tokens: int, count: int = 1) -> None:
        """Wait for the gate, then the request and token pacers (held ``count`` calls'
        worth); again if a 429 closed the gate meanwhile (the paced slots are given up)."""
        while True:
            await self.gate.wait()
            await self._requests.take(lambda: count * self._request_gap(), self.gate.sleep)
            await self._tokens.take(lambda: self._token_gap(count * tokens), self.gate.sleep)
            if self.gate.is_open:
                self._sent += count
                return
            self.gate.check()

    def _request_gap(self) -> float:
        rpm = self.rpm
        start = start_gap(self._sent, self._concurrency)
        return max(start, self._paced_over / rpm if rpm else 0.0)

    def _token_gap(self, tokens: int) -> float:
        tpm = self.tpm
        return tokens * self._paced_over / tpm if tpm else 0.0

    def refused(self, failure: ItemFailure, sent_at: float) -> None:
        """A call sent at ``sent_at`` (``time.monotonic``) met the 429 ``failure`` outside
        :meth:`permit` (a cluster worker's call, told to its quota keeper): act on it as on
        one of this throttle's own. Raises :class:`QuotaExhausted` when it stops the run."""
        self._refused(failure, sent_at)

    def _refused(self, failure: ItemFailure, sent_at: float) -> None:
        """After a 429: tell ``on_quota`` of every quota it names; stop at a per-day quota
        or a quota of 0 (raising :class:`QuotaExhausted` from ``failure``); learn each
        per-minute limit, or cut the probed rate when none is given; pause the gate."""
        for quota in failure.quotas:
            if self._on_quota is not None:
                self._on_quota(quota)
        quota = failure.quota
        if quota is not None and (quota.daily or quota.limit == 0):
            spent = "daily quota spent" if quota.daily else "no quota for this model"
            self.stop(quota, f"{spent}: {quota.describe()}")
            self.gate.check()
        learned = [self._learn(quota) for quota in failure.quotas]  # every one, no short cut
        if not any(learned):
            self._probe.refused(sent_at)
        self.gate.refused(failure.retry_after, sent_at)

    def _learn(self, quota: Quota) -> bool:
        """Pace to a per-minute ``quota`` with a limit; whether it had one."""
        if quota.daily or not quota.limit:
            return False
        if quota.kind == "tokens":
            self.learned_tpm = _lowest(self.learned_tpm, quota.limit)
        else:
            self.learned_rpm = _lowest(self.learned_rpm, quota.limit)
        return True


def _lowest(*limits: float | None) -> float | None:
    given = [limit for limit in limits if limit is not None]
    return min(given) if given else None
