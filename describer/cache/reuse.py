"""Never pay twice: a run's answers looked up before the model call and kept after it.

:class:`ResultCache` stands between prepare and describe. For each prepared item it finds
the key (:mod:`.keys`), then

1. if an item of this run with the same key is being answered, waits for that answer and
   takes it; if that item fails (an error record, or an exception), the waiter goes on to
   step 2 itself;
2. else looks the key up in the cache file (:mod:`.store`): a hit is the answer;
3. else calls the model, and stores the answer when it is a description (``error`` null).

An answer taken in 1 or 2 comes back as the record that call made, with this item's
``source`` and ``image``, and ``cached: true``. Errors are never stored: ``max_tokens`` and
``blocked`` answers are errors too (a rerun asks again, as resume does for them, and their
text is partial or absent).

A cache file that fails while the run goes on (disk full, locked longer than the busy
timeout) costs the cache, not the item: one warning on stderr, and the item is answered or
kept as if there were no cache. SQLite work runs on one thread of its own, never on the
event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from ..config import Config
from ..model import Prepared, Result
from .keys import content_key, item_key, request_fingerprint
from .store import CacheStore, CacheUnavailable

log = logging.getLogger("describer")
T = TypeVar("T")
#: Media larger than this (bytes) are hashed on a worker thread (hashlib then releases the
#: GIL); smaller ones on the event loop, where a thread hop would cost more than the hash.
HASH_IN_THREAD = 1 << 20
#: Record keys not stored: the source's (set per item) and the run's (``model`` and
#: ``prompt``, which the key holds; set from the run's config). Every other key of a
#: described record is the answer's, and is kept (``data`` of a schema run included).
ITEM_KEYS = frozenset({"source", "source_bytes", "id", "meta", "image", "cached", "embedding",
                       "embedding_model", "embedding_error", "model", "prompt"})  # fmt: skip


@dataclass
class _Flight:
    """An item being answered: ``result`` is set, then ``done``, when it is a description."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    result: Result | None = None


class ResultCache:
    """One run's cache: the file (``store``; None with ``--no-cache``, and then every item
    is simply answered) and the items being answered, by key. ``request``: the run's
    :func:`~.keys.request_fingerprint`; ``asked``: its ``model`` and ``prompt``, which the
    records taken from the file are given."""

    def __init__(
        self, store: CacheStore | None, request: str = "", asked: dict[str, str] | None = None
    ) -> None:
        self._store = store
        self._request = request
        self._asked = asked or {}
        self._flights: dict[str, _Flight] = {}
        self._pool = ThreadPoolExecutor(1, "describer-cache") if store else None
        self._failed = False

    async def result(
        self, source: str, prepared: Prepared, call: Callable[[], Awaitable[Result]]
    ) -> Result:
        """``source``'s record: an answer already paid for (``cached``), or ``call()``'s.
        Raises what ``call`` raises (``ItemFailure``, ``QuotaExhausted``)."""
        if self._store is None:
            return await call()
        key = await self._key(prepared)
        while (flight := self._flights.get(key)) is not None:
            await flight.done.wait()
            if flight.result is not None:
                return reused(flight.result, source, prepared)
        return await self._lead(key, source, prepared, call)

    async def _lead(
        self, key: str, source: str, prepared: Prepared, call: Callable[[], Awaitable[Result]]
    ) -> Result:
        """Answer ``key`` for this run: from the file, else by ``call`` (then stored). Items
        with the same key wait meanwhile; the flight stays listed until the answer is
        stored, so none of them reads the file before it holds the answer."""
        flight = self._flights[key] = _Flight()
        try:
            found = await self._lookup(key)
            if found is not None and found.ok:
                flight.result = reused(found, source, prepared)
                return flight.result
            result = await call()
            if result.ok:
                flight.result = result
                flight.done.set()
                await self._save(key, result)
            return result
        finally:
            flight.done.set()
            if self._flights.get(key) is flight:
                del self._flights[key]

    async def _key(self, prepared: Prepared) -> str:
        data = prepared.data
        if prepared.content is not None:  # a URL sent for Gemini to fetch (describer.send)
            return item_key(prepared.content, prepared.media.mime_type, self._request)
        digest = (await asyncio.to_thread(content_key, data) if len(data) > HASH_IN_THREAD
                  else content_key(data))  # fmt: skip
        return item_key(digest, prepared.media.mime_type, self._request)

    async def _lookup(self, key: str) -> Result | None:
        """The record stored under ``key``, or None (also when the file fails, or the entry
        does not read as a record)."""
        assert self._store is not None
        text = await self._in_pool(self._store.get, key)
        if text is None:
            return None
        try:
            return Result.from_json({**json.loads(text), **self._asked, "source": ""})
        except (ValueError, KeyError, TypeError):
            return None

    async def _save(self, key: str, result: Result) -> None:
        assert self._store is not None
        answer = {k: v for k, v in result.to_json().items() if k not in ITEM_KEYS}
        await self._in_pool(self._store.put, key, json.dumps(answer))  # ASCII: any prompt

    async def _in_pool(self, work: Callable[..., T], *args: Any) -> T | None:
        """``work(*args)`` on the cache's thread; None (and one warning a run) when the
        file fails."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)
        except sqlite3.Error as exc:
            if not self._failed:
                self._failed = True
                path = self._store.path if self._store else ""
                log.warning("the result cache %s failed (%s); items go on without it", path, exc)
            return None

    async def close(self) -> None:
        """Close the file, after any work still queued on the cache's thread."""
        if self._store is None or self._pool is None:
            return
        await asyncio.get_running_loop().run_in_executor(self._pool, self._store.close)
        self._pool.shutdown()


def reused(result: Result, source: str, prepared: Prepared) -> Result:
    """``result``, an answer already paid for, as ``source``'s record: its own ``image``
    and ``original``, and ``cached: true``."""
    return replace(result, source=source, media=prepared.media, original=prepared.original,
                   cached=True)  # fmt: skip


@asynccontextmanager
async def open_cache(config: Config, shared: str | None = None) -> AsyncIterator[ResultCache]:
    """The run's :class:`ResultCache`: the cache file opened (created when there is none)
    unless ``config.cache`` is False, closed when the block ends. ``shared``: the digest of
    the run's examples and documents (``context.SharedContext.digest``), part of the key.
    A run whose cache cannot be made or opened (a read-only home, a full disk), or whose
    settings cannot be keyed (:func:`~.keys.request_fingerprint`), goes without it, after
    one warning on stderr. Raises :class:`~describer.errors.ConfigError` when the file is
    not describer's cache (it is left untouched)."""
    store = None
    request = ""
    if config.cache:
        try:
            request = request_fingerprint(config, shared)
            store = await asyncio.to_thread(CacheStore.open)
        except (TypeError, CacheUnavailable) as exc:
            log.warning("the result cache is off for this run: %s", exc)
    cache = ResultCache(store, request, {"model": config.model, "prompt": config.prompt})
    try:
        yield cache
    finally:
        await cache.close()
