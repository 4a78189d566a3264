"""Whether a run's shared part goes in a context cache or inline: one rule for a run
(:mod:`.session`) and for ``--dry-run``, from the shared part's tokens and the items."""

from __future__ import annotations

from ..config import Config
from ..cost import break_even_calls, cache_min_tokens, context_cache_costs


def needed_items(config: Config, tokens: int) -> int | None:
    """The fewest items for which a cache of ``tokens`` tokens kept ``--cache-ttl`` saves
    more than its storage (None: no cache prices for the model)."""
    return break_even_calls(config.model, tokens, config.cache_ttl / 3600, config.service_tier)


def inline_reason(config: Config, tokens: int, items: int | None) -> str | None:
    """Why the shared part of ``tokens`` tokens goes inline for ``items`` items (None: not
    known), as the end of a stderr line; None when a context cache is worth making."""
    minimum = cache_min_tokens(config.model)
    need = needed_items(config, tokens)
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
        return (f": a context cache would cost ${costs.storage:.4f} of storage for {hours:g} h, "
                f"more than the ${costs.saved:.4f} it saves on {items:,} items")
    return None
