"""Whether a run's shared part goes in a context cache or inline: one rule for a run
(:mod:`.session`) and for ``--dry-run``, from the shared part's tokens and the items."""

from __future__ import annotations

import math
from dataclasses import replace

from ..config import DEFAULT_CACHE_TTL, Config
from ..cost import break_even_calls, cache_min_tokens, context_cache_costs

#: Seconds one model call is assumed to take when a run's length is estimated for its cache's
#: TTL: describer's own assumption for a Flash call at low thinking (Gemini publishes no
#: latency). Too short a guess costs an extension (``caches.update``), too long one storage.
ASSUMED_CALL_S = 3.0
#: Shortest estimated TTL, in seconds: room for the first calls and their retries.
MIN_TTL_S = 300.0
#: The estimate's margin over the run's length: retries, 429 waits, slow answers.
TTL_MARGIN = 1.25


def calls_per_s(config: Config) -> float:
    """Model calls a second the run is assumed to make: ``--concurrency`` calls of
    :data:`ASSUMED_CALL_S` each, or ``--rpm`` when that is slower."""
    rate = config.concurrency / ASSUMED_CALL_S
    return min(rate, config.rpm / 60) if config.rpm else rate


def count_cap(config: Config) -> int:
    """Items worth counting for the TTL: enough to reach :data:`DEFAULT_CACHE_TTL`."""
    return math.ceil(DEFAULT_CACHE_TTL / TTL_MARGIN * calls_per_s(config)) + 1


def run_ttl(config: Config, items: int | None) -> float:
    """The context cache's TTL in seconds: ``--cache-ttl``, else the run's estimated length
    (``items`` / :func:`calls_per_s`, times :data:`TTL_MARGIN`), from :data:`MIN_TTL_S` to
    ``DEFAULT_CACHE_TTL`` (one hour; also when ``items`` is not known)."""
    if config.cache_ttl is not None:
        return config.cache_ttl
    if items is None:
        return DEFAULT_CACHE_TTL
    length = items / calls_per_s(config) * TTL_MARGIN
    return min(DEFAULT_CACHE_TTL, max(MIN_TTL_S, length))


def with_ttl(config: Config, items: int | None) -> Config:
    """``config`` with ``cache_ttl`` set to :func:`run_ttl` (the rest of a run reads it)."""
    return replace(config, cache_ttl=run_ttl(config, items))


def ttl_text(seconds: float) -> str:
    """A TTL for a stderr line: ``5 min``, ``1 h``, ``1.5 h``."""
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:g} h"


def needed_items(config: Config, tokens: int) -> int | None:
    """The fewest items for which a cache of ``tokens`` tokens kept ``cache_ttl`` (set:
    :func:`with_ttl`) saves more than its storage (None: no cache prices for the model)."""
    assert config.cache_ttl is not None, "resolve the TTL first: with_ttl"
    return break_even_calls(config.model, tokens, config.cache_ttl / 3600, config.service_tier)


def inline_reason(config: Config, tokens: int, items: int | None) -> str | None:
    """Why the shared part of ``tokens`` tokens goes inline for ``items`` items (None: not
    known), as the end of a stderr line; None when a context cache is worth making."""
    minimum = cache_min_tokens(config.model)
    need = needed_items(config, tokens)
    assert config.cache_ttl is not None, "resolve the TTL first: with_ttl"
    hours = config.cache_ttl / 3600
    if not config.context_cache:
        return " (--no-context-cache)"
    if tokens < minimum:
        return f": under {config.model}'s minimum of {minimum:,} tokens for a context cache"
    if need is None:
        return f": no context cache prices for {config.model} here"
    if items is not None and items < need:
        costs = context_cache_costs(config.model, tokens, items, hours, config.service_tier)
        assert costs is not None
        return (f": a context cache would cost ${costs.storage:.4f} of storage for "
                f"{ttl_text(config.cache_ttl)}, "
                f"more than the ${costs.saved:.4f} it saves on {items:,} items")
    return None
