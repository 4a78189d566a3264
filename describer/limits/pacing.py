"""Even pacing of model calls under a per-minute quota, and the rate probe for a quota whose
limit Gemini does not say.

Why even pacing, not a moving window: Google does not document whether its per-minute limits
are a token bucket or a 60 s window (ai.google.dev/gemini-api/docs/rate-limits says only "21
requests within a minute fail for an RPM of 20"). A client that sends its R requests at once
and then waits out the minute keeps inside a window, but a bucket holding less than a minute's
worth refuses most of that burst (OpenAI documents that its per-minute limits "may be
quantized", enforced over shorter periods). Calls spaced one per ``window / R`` seconds keep
inside both: no span of one window holds more than R, and a bucket refilled at R per window
has a token back for each call, whatever its size. The price is a slower start for a run
shorter than a window.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

#: Slow start: the first ``concurrency`` calls of a run go at least this many seconds apart
#: (less at high concurrency: the first wave is spread over at most ``START_SPREAD_S``), the
#: next ``concurrency`` half as far, and so on (see :func:`start_gap`), so that a quota which
#: refuses a call answers before many more are out: a few 429s, not a wave of them. Calls
#: never wait on it once answers come back slower than it lets calls go. Measured cost
#: (scripts/benchmark.py, 100 URLs, latency 0.5-1.5 s): none visible at -c 16 (8.5 s).
START_SPACING_S = 0.05
START_SPREAD_S = 0.8
#: Waves of ``concurrency`` calls after which the slow start ends (the gap is then ~1 ms).
START_WAVES = 6

Sleep = Callable[[float], Awaitable[None]]


def start_gap(sent: int, concurrency: int) -> float:
    """Seconds between calls during the slow start, after ``sent`` calls: ``START_SPACING_S``
    (at most ``START_SPREAD_S / concurrency``) halved for each wave of ``concurrency`` calls
    sent, 0 after ``START_WAVES`` waves. A
    quota's first 429 thus meets a send rate that doubles per wave, not one that jumps from
    nothing to ``concurrency`` calls at once (which, once waiting calls are let go, is a burst
    the quota refuses all of)."""
    concurrency = max(concurrency, 1)
    wave = sent // concurrency
    first = min(START_SPACING_S, START_SPREAD_S / concurrency)
    return first / 2**wave if wave < START_WAVES else 0.0


class Pacer:
    """Spaces sends: each one may go ``cost`` seconds after the one before it.

    ``take(cost, sleep)`` waits until the pacer is free, then marks it busy for ``cost``
    seconds from the moment of release (the actual time, so a late wake-up never bunches the
    next two sends). Waiters are served in arrival order (an ``asyncio.Lock`` is FIFO);
    ``sleep`` is how a waiter sleeps (it may raise, e.g. when a per-day quota stops the run).
    ``clock`` gives seconds (monotonic).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._free_at = -math.inf
        self._lock = asyncio.Lock()

    async def take(self, cost: Callable[[], float], sleep: Sleep) -> None:
        """Wait for the pacer, then hold it ``cost()`` seconds (read at release time, so a
        rate learned while this call waited applies to it)."""
        async with self._lock:
            while (delay := self._free_at - self._clock()) > 0:
                await sleep(delay)
            self._free_at = self._clock() + cost()

    def defer(self, seconds: float) -> None:
        """Push the next release ``seconds`` later (tokens used beyond an estimate)."""
        self._free_at = max(self._free_at, self._clock()) + seconds


class RateProbe:
    """The request rate for a per-minute quota whose limit is not known (429s without
    ``QuotaFailure``): additive increase, multiplicative decrease on the rate itself.

    - Before any such 429 the rate is unbounded (``rpm`` is None).
    - A 429 for a call sent after the last cut sets ``rpm`` to ``BETA`` times the lower of
      ``rpm`` and the send rate measured over the last window (its span at least a 60th of
      the window: a second of Gemini's minute), but never below ``MIN_RPM``. One cut per
      burst: calls sent before the cut were sent at the old rate and say nothing about the
      new one.
    - Each success adds ``INCREASE_RPM / rpm``, so a window of successes at rate r adds
      ``INCREASE_RPM`` requests per window. The rate stays within twice the rate measured
      (a rate never tried is not a rate known to work).

    Why it converges (Chiu and Jain, 1989, for one sender against a fixed capacity C): below
    C the rate climbs by a constant per minute, so it reaches C in finite time; at C+ it is
    cut to at most ``BETA`` times what was sent, which is at most about C. It then oscillates
    between about ``BETA * C`` and C, a mean of ``(1 + BETA) / 2 * C`` (75 %), with one
    burst of 429s per cycle of ``(1 - BETA) * C / INCREASE_RPM`` windows. It never grows
    without bound and never falls below ``MIN_RPM``. A learned ``quotaValue`` paces at C
    itself, so this only serves quotas that never say their limit.

    Rates are in calls per ``window`` seconds (per minute at Gemini's 60 s); ``clock`` gives
    seconds (monotonic).
    """

    BETA = 0.5
    INCREASE_RPM = 10.0
    MIN_RPM = 1.0

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rpm: float | None = None
        self._window = window
        self._clock = clock
        self._sends: deque[float] = deque()
        self._last_cut = -math.inf

    def sent(self) -> None:
        """Count a call sent now."""
        now = self._clock()
        self._sends.append(now)
        while self._sends and now - self._sends[0] > self._window:
            self._sends.popleft()

    def refused(self, sent_at: float) -> None:
        """A call sent at ``sent_at`` met a 429 of unknown limit: cut the rate, once per burst."""
        if sent_at <= self._last_cut:
            return
        measured = self.measured_rpm()
        base = measured if self.rpm is None else min(self.rpm, measured)
        self.rpm = max(self.MIN_RPM, base * self.BETA)
        self._last_cut = self._clock()

    def succeeded(self) -> None:
        """A call went through: raise the rate a little (see the class docstring)."""
        if self.rpm is not None:
            grown = self.rpm + self.INCREASE_RPM / self.rpm
            self.rpm = min(grown, max(self.rpm, 2 * self.measured_rpm()))

    def measured_rpm(self) -> float:
        """Calls sent per window, measured over the last window (its span at least a 60th
        of the window)."""
        if not self._sends:
            return self.MIN_RPM
        span = max(self._clock() - self._sends[0], self._window / 60)
        return len(self._sends) / span * self._window
