"""Quotas the emulator enforces: requests and input tokens per minute, requests per day.

``Quotas`` (``emu.behaviour.quotas``) answers each generate request with Google's quota 429
(wire.quota_error) or lets it through. Its per-minute limits come in two styles, because
Google does not say how it counts them and a client must behave well under either:

* ``window`` (default): a sliding window of ``quota_window`` seconds holding at most
  ``rpm`` requests (``tpm`` tokens). Gemini documents only that "if your RPM limit is 20,
  making 21 requests within a minute will result in an error" (ai.google.dev/gemini-api/
  docs/rate-limits). retryDelay: seconds until enough of the window has left it.
* ``bucket``: a token bucket refilling ``rpm`` (``tpm``) per ``quota_window``
  continuously and holding at most ``burst`` (``tpm_burst``). Its default capacity is one
  second's worth, ``max(1, rpm // 60)``: OpenAI documents that its per-minute limits "can
  be quantized, meaning they are enforced over shorter periods of time (e.g. 60,000
  requests/minute may be enforced as 1,000 requests/second)" (developers.openai.com/api/
  docs/guides/rate-limits, quoted in community.openai.com/t/611241; help.openai.com
  article 5955604: "1 request per second for a 60 RPM limit"). Google says nothing either
  way, so this is a harsher-case model: a burst a window admits is refused here.
  retryDelay: seconds until the bucket holds enough again (one request: 60/rpm s).

Both answer with the same body: QuotaFailure (quotaId
``GenerateRequestsPerMinutePerProjectPerModel-FreeTier`` or, for tokens,
``GenerateContentInputTokensPerModelPerMinute-FreeTier`` with quotaMetric
``generativelanguage.googleapis.com/generate_content_free_tier_input_token_count``, as in
the body quoted in cline/cline#6058), quotaValue = the limit, RetryInfo.

Figures and rules, and where they come from:

* tpm counts each generate request's promptTokenCount as the emulator computes it
  (answers.py). A request larger than ``tpm`` (window) or than the bucket's capacity can
  never be admitted: it is answered 429 every time, with retryDelay one whole window;
  google-gemini/gemini-cli#8431 reports a single request over the tokens-per-minute quota
  refused again and again for minutes ("the bucket never reset").
* A refused request is not counted. A request refused for tokens gives its request slot
  (rpm, rpd) back, since it was refused as a whole. Requests answered 400 after admission
  stay counted, as google-gemini/gemini-cli#15184 reports of Gemini (a 400 for an
  oversized input still used TPM and RPM).
* rpd, embed_rpd: plain counters until ``reset_day`` (Google's day ends at midnight
  Pacific). Past them every request gets the per-day 429 (quotaId
  ``GenerateRequestsPerDayPerProjectPerModel-FreeTier`` /
  ``EmbedContentRequestsPerDayPerProjectPerModel-FreeTier``) whose retryDelay is short
  (``DAY_RETRY_S``), as Google's is: it says nothing about when the day ends.
* ``bare_fraction`` of quota 429s (all of them with ``bare_429``) come without details or
  quota lines, as some do (googleapis/python-genai#2065), drawn from an RNG of their own.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Protocol

from .settings import EmulatorSettings
from .wire import ApiError, quota_error

Clock = Callable[[], float]  # seconds, monotonic (time.monotonic or a test's fake clock)
DAY_RETRY_S = 1.5  # seconds; the per-day 429's "Please retry in" (short, as at Google).
MIN_WAIT_S = 0.001  # seconds; the shortest retryDelay a refusal carries.
_EPS = 1e-9  # float slack when a bucket refilled to exactly what is asked


class Limiter(Protocol):
    """A per-minute quota: ``take`` an amount (requests or tokens) at a time ``now`` (s)."""

    limit: float
    window: float

    def take(self, now: float, amount: float) -> float:
        """0.0 when ``amount`` was taken; else seconds until it could be (taking nothing)."""
        ...

    def give_back(self, taken_at: float, amount: float) -> None:
        """Undo a ``take`` of ``amount`` made at ``taken_at``."""
        ...

    def retune(self, limit: float, window: float, capacity: float) -> None:
        """New limit (per ``window`` seconds) and capacity, keeping what was counted."""
        ...


class SlidingWindow:
    """At most ``limit`` units within any ``window`` seconds (entries: (time, amount))."""

    def __init__(self, limit: float, window: float) -> None:
        self.limit, self.window = limit, window
        self._entries: deque[tuple[float, float]] = deque()
        self._used = 0.0

    def take(self, now: float, amount: float) -> float:
        while self._entries and now - self._entries[0][0] >= self.window:
            self._used -= self._entries.popleft()[1]
        if amount > self.limit:
            return self.window  # never fits (module docstring)
        if self._used + amount <= self.limit:
            self._entries.append((now, amount))
            self._used += amount
            return 0.0
        needed, freed = self._used + amount - self.limit, 0.0
        for moment, taken in self._entries:
            freed += taken
            if freed >= needed:
                return max(MIN_WAIT_S, moment + self.window - now)
        return self.window  # not reached: the entries hold all of _used

    def give_back(self, taken_at: float, amount: float) -> None:
        for i in range(len(self._entries) - 1, -1, -1):
            if self._entries[i] == (taken_at, amount):
                del self._entries[i]
                self._used -= amount
                return

    def retune(self, limit: float, window: float, capacity: float) -> None:
        self.limit, self.window = limit, window


class TokenBucket:
    """Holds at most ``capacity`` units, refilled at ``limit / window`` units per second;
    starts full at ``now``."""

    def __init__(self, limit: float, window: float, capacity: float, now: float) -> None:
        self.limit, self.window, self.capacity = limit, window, capacity
        self.tokens, self._last = capacity, now

    def _refill(self, now: float) -> None:
        if now > self._last:
            rate = self.limit / self.window
            self.tokens = min(self.capacity, self.tokens + (now - self._last) * rate)
            self._last = now

    def take(self, now: float, amount: float) -> float:
        self._refill(now)
        if amount > self.capacity:
            return self.window  # never fits (module docstring)
        if self.tokens + _EPS >= amount:
            self.tokens = max(0.0, self.tokens - amount)
            return 0.0
        return max(MIN_WAIT_S, (amount - self.tokens) * self.window / self.limit)

    def give_back(self, taken_at: float, amount: float) -> None:
        self.tokens = min(self.capacity, self.tokens + amount)

    def retune(self, limit: float, window: float, capacity: float) -> None:
        self.limit, self.window, self.capacity = limit, window, capacity
        self.tokens = min(self.tokens, capacity)


class Quotas:
    """The quotas of one emulator under ``settings`` (see the module docstring).

    ``clock`` gives the time in seconds (time.monotonic unless a test passes a fake one).
    ``day_count`` / ``embed_day_count``: requests counted against rpd / embed_rpd since
    start or ``reset_day``.
    """

    def __init__(self, settings: EmulatorSettings, clock: Clock) -> None:
        self._clock = clock
        self._rpm: Limiter | None = None
        self._tpm: Limiter | None = None
        self._embed_rpm: Limiter | None = None
        self.day_count = 0
        self.embed_day_count = 0
        self.settings = settings
        self.configure(settings, reseed=True)

    def configure(self, settings: EmulatorSettings, reseed: bool = False) -> None:
        """Apply new settings: limits are retuned in place (what was counted stays), a new
        style starts afresh; ``reseed`` re-seeds the bare-429 RNG from ``settings.seed``."""
        restyled = settings.rpm_style != self.settings.rpm_style
        self.settings = settings
        bucket = settings.rpm_style == "bucket"
        self._rpm = self._tune(None if restyled else self._rpm, settings.rpm,
                               settings.rpm_capacity, bucket)
        self._tpm = self._tune(None if restyled else self._tpm, settings.tpm,
                               settings.tpm_capacity, bucket)
        # the embedding quota is always a window, whatever rpm_style (settings.py)
        self._embed_rpm = self._tune(self._embed_rpm, settings.embed_rpm, settings.embed_rpm,
                                     bucket=False)
        if reseed:
            self._bare_rng = random.Random(f"{settings.seed}:bare")

    def _tune(self, limiter: Limiter | None, limit: int | None,
              capacity: int | None, bucket: bool) -> Limiter | None:
        window = self.settings.quota_window
        if limit is None or capacity is None:
            return None
        if limiter is not None:
            limiter.retune(limit, window, capacity)
            return limiter
        if bucket:
            return TokenBucket(limit, window, capacity, self._clock())
        return SlidingWindow(limit, window)

    def reset_window(self) -> None:
        """Forget what the per-minute quotas counted (windows empty, buckets full)."""
        self._rpm = self._tpm = self._embed_rpm = None
        self.configure(self.settings)

    def reset_day(self) -> None:
        """A new day: the rpd and embed_rpd counts start from zero again."""
        self.day_count = self.embed_day_count = 0

    # ----- per request -----------------------------------------------------------------
    def admit_request(self, model: str) -> float:
        """Count one generate request for ``model`` against rpd and rpm; returns the time
        it was counted at (for :meth:`admit_tokens`). ApiError 429 if either is spent: the
        per-day one first."""
        settings = self.settings
        if settings.rpd is not None and self.day_count >= settings.rpd:
            raise self._refusal(DAY_RETRY_S, "rpd", settings.rpd, model)
        now = self._clock()
        wait = self._rpm.take(now, 1) if self._rpm is not None else 0.0
        if wait:
            raise self._refusal(wait, "rpm", settings.rpm, model)
        self.day_count += 1
        return now

    def admit_tokens(self, model: str, tokens: int, counted_at: float) -> None:
        """Count ``tokens`` input tokens of a request admitted at ``counted_at`` against
        tpm; if they do not fit, give the request's rpm/rpd slot back and raise the token
        429."""
        if self._tpm is None:
            return
        wait = self._tpm.take(self._clock(), tokens)
        if wait:
            if self._rpm is not None:
                self._rpm.give_back(counted_at, 1)
            self.day_count = max(0, self.day_count - 1)
            raise self._refusal(wait, "tpm", self.settings.tpm, model)

    def admit_embed(self, model: str) -> None:
        """Count one embedding call against ``embed_rpd`` and ``embed_rpm``; the 429 of the
        one spent (the per-day one first)."""
        limit = self.settings.embed_rpd
        if limit is not None and self.embed_day_count >= limit:
            raise self._refusal(DAY_RETRY_S, "embed_rpd", limit, model)
        wait = self._embed_rpm.take(self._clock(), 1) if self._embed_rpm is not None else 0.0
        if wait:
            raise self._refusal(wait, "embed_rpm", self.settings.embed_rpm, model)
        self.embed_day_count += 1

    def _refusal(self, wait: float, quota: str, limit: int | None, model: str) -> ApiError:
        """The 429 for ``quota``: bare for a ``bare_share`` of refusals (own RNG)."""
        share = self.settings.bare_share
        bare = share >= 1.0 or (share > 0.0 and self._bare_rng.random() < share)
        return quota_error(wait, quota, limit, model, bare)
