"""The emulator's settings: one frozen ``EmulatorSettings``, checked when built.

Read by ``behaviour.Behaviour`` (latency, faults, flex), ``quota.Quotas`` (per-minute and
per-day quotas) and ``caching.ImplicitCache``; changed at run time with
``GeminiEmulator.configure`` or ``POST /_emulator/config`` (a new instance each time, so a
bad value never half-applies). Where each default comes from is said field by field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

RPM_WINDOW_S = 60.0  # seconds; Gemini's quotas are per minute (ai.google.dev "Rate limits").
QUOTA_STYLES = ("window", "bucket")
SHED_STATUSES = (429, 503)
#: Seconds an implicit-cache entry lives: the emulator's assumption (Google documents no
#: lifetime for implicit caches, only "send requests with similar prefix in a short amount
#: of time"; explicit caches default to one hour).
IMPLICIT_CACHE_TTL_S = 300.0
_RANGES = ("latency", "embed_latency", "flex_latency")
_FRACTIONS = ("fault_rate", "bare_fraction", "flex_shed_rate")
_COUNTS = ("rpm", "rpd", "embed_rpd", "embed_rpm", "tpm", "burst", "tpm_burst")


@dataclass(frozen=True)
class EmulatorSettings:
    """How the emulator behaves.

    latency: (low, high) seconds; each admitted generate request sleeps uniform(low, high),
        from an RNG seeded by ``seed``, after its body is read and its images decoded.
    rpm: generate requests accepted per ``quota_window``; None = no quota. Gemini documents
        RPM as "21 requests within a minute fail for an RPM of 20", not how it counts them.
    quota_window: seconds of a "minute" for rpm and tpm: 60 as at Gemini, shorter to make
        tests fast (a bucket then refills in proportion).
    rpm_style: how rpm and tpm are enforced, as Google does not say (quota.py):
        "window" (default): a sliding window of ``quota_window`` seconds;
        "bucket": a token bucket refilling ``rpm`` (``tpm``) per ``quota_window``
        continuously, holding at most ``burst`` (``tpm_burst``).
    burst: the rpm bucket's capacity in requests; None = ``max(1, rpm // 60)``, one
        second's worth, the harsher case (quota.py says why).
    tpm: input tokens (promptTokenCount) accepted per ``quota_window`` for generate
        requests; None = no quota.
    tpm_burst: the tpm bucket's capacity in tokens; None = ``max(1, tpm // 60)``. A request
        larger than it (bucket) or than ``tpm`` (window) can never be admitted.
    fault_rate: fraction (0..1) of admitted generate requests answered with an injected 503
        UNAVAILABLE "The model is overloaded. Please try again later." (seeded RNG).
    seed: seeds the RNGs (generate latency, faults, embed latency, bare 429s, flex latency,
        flex sheds) apart, so changing one setting does not shift the others' sequences.
    require_key: answer 403 PERMISSION_DENIED when no ``x-goog-api-key`` header, ``?key=``
        or Bearer token is sent.
    embed_latency: (low, high) seconds slept per successful batchEmbedContents call.
    rpd: generate requests accepted per day (a counter until ``reset_day``); None = no quota.
    embed_rpd: batchEmbedContents calls accepted per day (until ``reset_day``); None = no
        quota. Past it every embedding call gets the per-day 429.
    embed_rpm: batchEmbedContents calls accepted per ``quota_window`` (always a sliding
        window, whatever ``rpm_style``); None = no quota.
    bare_429: every quota 429 comes bare, without details (the same as bare_fraction=1).
    bare_fraction: fraction (0..1) of quota 429s that come bare, drawn from an RNG of its
        own (googleapis/python-genai#2065 shows such 429s).
    flex_latency: (low, high) seconds added to a request sent with ``serviceTier: flex``
        (uniform, seeded RNG); (0, 0) keeps tests fast. Google's target is 1-15 minutes.
    flex_shed_rate: fraction (0..1) of flex requests shed (seeded RNG), after their wait.
    flex_shed_status: what a shed answers: 429 (default, RESOURCE_EXHAUSTED without quota
        details) or 503 (UNAVAILABLE); behaviour.py says why 429 is the default.
    implicit_cache: report ``cachedContentTokenCount`` for a repeated leading text prefix,
        as Gemini's implicit caching does (caching.py).
    cache_ttl: seconds an implicit-cache entry lives (IMPLICIT_CACHE_TTL_S by default).
    upload_bytes_per_s: the most bytes per second the emulator reads from any POST body
        (uplink.py), standing in for the client's uplink; None (default) = no cap.

    ValueError from the constructor if a range is reversed or negative, a count is < 1,
    a fraction is outside [0, 1], quota_window <= 0, cache_ttl < 0,
    upload_bytes_per_s <= 0,
    rpm_style is not "window" or "bucket", or flex_shed_status is not 429 or 503.
    """

    latency: tuple[float, float] = (0.0, 0.0)
    rpm: int | None = None
    quota_window: float = RPM_WINDOW_S
    fault_rate: float = 0.0
    seed: int = 0
    require_key: bool = True
    embed_latency: tuple[float, float] = (0.0, 0.0)
    rpd: int | None = None
    embed_rpd: int | None = None
    embed_rpm: int | None = None
    bare_429: bool = False
    rpm_style: str = "window"
    burst: int | None = None
    tpm: int | None = None
    tpm_burst: int | None = None
    bare_fraction: float = 0.0
    flex_latency: tuple[float, float] = (0.0, 0.0)
    flex_shed_rate: float = 0.0
    flex_shed_status: int = 429
    implicit_cache: bool = True
    cache_ttl: float = IMPLICIT_CACHE_TTL_S
    upload_bytes_per_s: float | None = None

    def __post_init__(self) -> None:
        for name in _RANGES:
            low, high = (float(x) for x in getattr(self, name))
            if not 0.0 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high")
            object.__setattr__(self, name, (low, high))
        for name in _COUNTS:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be None or >= 1")
        for name in _FRACTIONS:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.rpm_style not in QUOTA_STYLES:
            raise ValueError(f"rpm_style must be one of {QUOTA_STYLES}")
        if self.flex_shed_status not in SHED_STATUSES:
            raise ValueError(f"flex_shed_status must be one of {SHED_STATUSES}")
        if not self.quota_window > 0:
            raise ValueError("quota_window must be > 0")
        if self.cache_ttl < 0:
            raise ValueError("cache_ttl must be >= 0")
        if self.upload_bytes_per_s is not None and not self.upload_bytes_per_s > 0:
            raise ValueError("upload_bytes_per_s must be None or > 0")

    @property
    def rpm_capacity(self) -> int | None:
        """The rpm bucket's capacity in requests (``burst`` or one second's worth)."""
        return None if self.rpm is None else self.burst or max(1, self.rpm // 60)

    @property
    def tpm_capacity(self) -> int | None:
        """The tpm bucket's capacity in tokens (``tpm_burst`` or one second's worth)."""
        return None if self.tpm is None else self.tpm_burst or max(1, self.tpm // 60)

    @property
    def bare_share(self) -> float:
        """The fraction of quota 429s that come bare: 1 with ``bare_429``."""
        return 1.0 if self.bare_429 else self.bare_fraction

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the settings (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @staticmethod
    def range_names() -> tuple[str, ...]:
        """The names of the (low, high) settings (the control endpoint accepts one number)."""
        return _RANGES
