"""One context cache per run: whether one is worth making, making it, keeping it alive while
the run needs it, and deleting it when the run ends, however it ends.

:func:`open_context` loads the shared part (:mod:`.shared`) and decides:

- nothing shared (no ``--context``, no example): nothing changes, no line;
- ``--no-context-cache``, the shared part under the model's minimum for a cache
  (``cost.cache_min_tokens``), a model without cache prices, or too few items to pay for
  the storage (``cost.break_even_calls``, counting the items only as far as needed): the
  shared turns go inline in every request, and one stderr line says why;
- else one cache is made (``caches.create``), named by every call (``cached_content``),
  extended by ``--cache-ttl`` (``caches.update``) when a call is about to be sent within
  ``EXTEND_MARGIN`` of its expiry, and deleted when the block ends: normally, on Ctrl-C, on
  an error or at a quota stop. A cache that could not be deleted is named in
  :meth:`RunContext.report`; one left by a killed run is deleted by the next
  (:mod:`.ledger`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import gemini
from ..config import DEFAULT_CACHE_TTL, Config
from ..cost import context_cache_costs, price_of
from ..errors import ItemFailure
from ..gemini.connection import endpoint
from ..retries import call_with_retries
from . import ledger
from .plan import count_cap, inline_reason, ttl_text, with_ttl
from .shared import SharedContext, load_shared

if TYPE_CHECKING:
    from google import genai

log = logging.getLogger("describer")
#: Seconds before its expiry at which the next call extends the cache: long enough for the
#: call (and a few retries) to be answered before the cache would go.
EXTEND_MARGIN_S = 300.0
Clock = Callable[[], float]


@dataclass
class CacheState:
    """The run's context cache: ``name``, its ``tokens`` (as Gemini counted them), and on
    the run's clock (seconds) when it was ``created`` and when it ``expires``; ``deleted``
    once deleted, else ``problem`` says why it could not be."""

    name: str
    tokens: int
    created: float
    expires: float
    extensions: int = 0
    deleted: bool = False
    problem: str | None = None


class RunContext:
    """The shared part of a run's requests as they are sent: ``prefix`` (the turns sent
    inline; empty under a cache or without a shared part), ``settings`` (the run's
    ``GenerateContentConfig``, naming the cache when there is one), ``tokens`` (estimated
    tokens of the shared part), ``digest`` (of its content, for the result cache's key;
    None without one), ``cache`` (a :class:`CacheState` or None) and ``decision`` (the
    stderr line that said what was done, or None)."""

    def __init__(self, config: Config, client: genai.Client, shared: SharedContext,
                 clock: Clock = time.monotonic) -> None:  # fmt: skip
        self.config = config
        self.shared = shared
        self.tokens = shared.tokens(config)
        self.digest = None if shared.empty else shared.digest()
        self.cache: CacheState | None = None
        self.decision: str | None = None
        self.prefix = [] if shared.empty else gemini.shared_contents(shared, config.prompt)
        self.settings = gemini.generation_config(config)
        self._client = client
        self.clock = clock  # seconds: when the cache was made, when it expires
        self._lock = asyncio.Lock()

    @property
    def ttl(self) -> float:
        """Seconds the cache is set to live, and each extension (``cache_ttl``, set by the
        decision: :func:`.plan.with_ttl`)."""
        return self.config.cache_ttl or DEFAULT_CACHE_TTL

    def use_cache(self, name: str, tokens: int) -> None:
        """Send the shared part by the cache ``name`` from now on."""
        now = self.clock()
        self.cache = CacheState(name, tokens, now, now + self.ttl)
        self.prefix = []
        self.settings = gemini.generation_config(self.config, name)

    async def ensure_alive(self) -> None:
        """Before a call: extend the cache by ``--cache-ttl`` when it expires within
        ``EXTEND_MARGIN_S`` (or a tenth of the TTL, if less). A failed extension is logged,
        not raised: the call then meets the cache's own answer."""
        cache = self.cache
        if cache is None or cache.deleted:
            return
        margin = min(EXTEND_MARGIN_S, self.ttl / 10)
        if self.clock() < cache.expires - margin:
            return
        async with self._lock:
            if self.clock() < cache.expires - margin:
                return
            try:
                await gemini.extend_cache(self._client, cache.name, self.ttl)
            except ItemFailure as failure:
                log.warning("could not extend context cache %s: %s", cache.name,
                            failure.error.message)
                return
            cache.expires = self.clock() + self.ttl
            cache.extensions += 1
            ledger.remember(_entry(self.config, cache, self.clock))

    async def close(self) -> None:
        """Delete the cache (when there is one; retried as model calls are); a failure is
        kept in ``cache.problem``. A cache already gone (403, 404) counts as deleted. This
        runs after a second Ctrl-C too (the cancellation has been taken by then); a third,
        during the deletion itself, stops it, and the next run deletes the cache
        (:mod:`.ledger`)."""
        cache, config = self.cache, self.config
        if cache is None or cache.deleted:
            return
        try:
            await call_with_retries(lambda: gemini.delete_cache(self._client, cache.name),
                                    config.max_attempts, config.retry_wait)
        except ItemFailure as failure:
            if not failure.error.message.startswith(("403", "404")):
                cache.problem = failure.error.message
                return
        cache.deleted = True
        ledger.forget(cache.name)

    @property
    def storage_hours(self) -> float:
        """Hours the cache was set to live (billed whether or not it was deleted sooner)."""
        cache = self.cache
        return 0.0 if cache is None else (cache.expires - cache.created) / 3600

    def storage_usd(self) -> float:
        """USD of the cache's storage (0 without a cache or a storage price)."""
        price = price_of(self.config.model)
        if self.cache is None or price is None or price.storage is None:
            return 0.0
        return price.storage * self.cache.tokens * self.storage_hours / 1_000_000

    def report(self, calls: int) -> str | None:
        """The summary's line about the cache (None without one): the calls that read it,
        what it saved against sending the shared part inline, its storage, and whether it
        was deleted (else its name, so it can be deleted by hand)."""
        cache = self.cache
        if cache is None:
            return None
        costs = context_cache_costs(self.config.model, cache.tokens, calls, self.storage_hours,
                                    self.config.service_tier)  # fmt: skip
        saved = f"saved ${costs.saved:.4f} of input for ${costs.storage:.4f} of storage " \
            f"(net ${costs.net:.4f})" if costs else "no price to compare"
        end = "deleted" if cache.deleted else \
            f"NOT deleted ({cache.problem}): it costs storage until it expires; delete " \
            f"{cache.name} (describer deletes it at its next run)"
        return (f"describer: context cache {cache.name}: {calls:,} calls read its "
                f"{cache.tokens:,} tokens; {saved}; {end}")


@asynccontextmanager
async def open_context(
    config: Config,
    connection: gemini.Connection,
    say: Callable[[str], None],
    count: Callable[[int], int] | None = None,
    clock: Clock = time.monotonic,
) -> AsyncIterator[RunContext]:
    """The run's :class:`RunContext` (module docstring), its cache deleted when the block
    ends. ``say`` shows the decision's line; ``count(limit)`` counts the items to describe
    up to ``limit`` (None: not known, as for stdin). Raises :class:`ConfigError` for an
    example or document that cannot be read."""
    await delete_orphans(config, connection, say)
    shared = await load_shared(config, connection.session)
    context = RunContext(config, connection.client, shared, clock)
    if not shared.empty:
        await _decide(context, connection, count)
        if context.decision:
            say(context.decision)
    try:
        yield context
    finally:
        await context.close()


async def _decide(context: RunContext, connection: gemini.Connection,
                  count: Callable[[int], int] | None) -> None:  # fmt: skip
    """Make the cache, or say why the shared part goes inline (:mod:`.plan`). The items
    are counted only when a cache could be made at all (not under the model's minimum, nor
    without cache prices, nor under ``--no-context-cache``)."""
    config, tokens = context.config, context.tokens
    items = None
    reason = inline_reason(with_ttl(config, None), tokens, None)
    if reason is None and count is not None:
        items = await asyncio.to_thread(count, count_cap(config))
    config = context.config = with_ttl(config, items)  # the TTL from the run's length
    inline = f"describer: shared context of ~{tokens:,} tokens sent inline with every request"
    reason = reason or inline_reason(config, tokens, items)
    if reason is not None:
        context.decision = inline + reason
    else:
        await _create(context, connection, inline)


async def _create(context: RunContext, connection: gemini.Connection, inline: str) -> None:
    config = context.config
    settings = gemini.cache_config(context.shared, config, context.ttl, "describer")
    try:
        made = await call_with_retries(
            lambda: gemini.create_cache(connection.client, config.model, settings),
            config.max_attempts, config.retry_wait)
    except ItemFailure as failure:
        context.decision = f"{inline}: no context cache could be made ({failure.error.message})"
        return
    usage = made.usage_metadata
    tokens = (usage.total_token_count if usage else None) or context.tokens
    context.use_cache(made.name or "", tokens)
    assert context.cache is not None
    ledger.remember(_entry(config, context.cache, context.clock))
    price = price_of(config.model)
    assert price is not None and price.cached is not None
    context.decision = (
        f"describer: context cache {made.name}: {tokens:,} tokens for "
        f"{ttl_text(context.ttl)}, read by every call at ${price.cached:g} instead of "
        f"${price.input:g} per 1M "
        f"(storage ${context.storage_usd():.4f})")


def _entry(config: Config, cache: CacheState, clock: Clock) -> ledger.Entry:
    """The ledger's entry for ``cache`` (its expiry moved from ``clock`` to Unix time)."""
    return ledger.Entry(cache.name, endpoint(config), os.getpid(),
                        time.time() + (cache.expires - clock()))


async def delete_orphans(config: Config, connection: gemini.Connection,
                         say: Callable[[str], None]) -> int:  # fmt: skip
    """Delete the caches runs that are no longer running left behind (:mod:`.ledger`), a
    line on each; how many were deleted (or found gone already)."""
    deleted = 0
    for entry in await asyncio.to_thread(ledger.orphans, endpoint(config)):
        try:
            await gemini.delete_cache(connection.client, entry.name)
        except ItemFailure as failure:
            if not failure.error.message.startswith(("403", "404")):
                continue
        await asyncio.to_thread(ledger.forget, entry.name)
        deleted += 1
        say(f"describer: deleted context cache {entry.name}, left by an earlier run "
            f"(pid {entry.pid})")
    return deleted
