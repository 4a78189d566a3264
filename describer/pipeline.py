"""The streaming pipeline: sources → download → prepare → describe (→ embed) → results.

At most ``config.in_flight`` items (``concurrency`` + prefetch) are in flight from the start
of their download until their result is taken by the consumer, so memory stays flat however
long the input; at most ``config.concurrency`` of them are inside a model call. Results come
out in completion order, one per distinct source.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TypeVar

import aiohttp

from . import gemini
from ._streams import bounded_map, closing
from .cache import ResultCache, open_cache
from .config import Config
from .context import RunContext, open_context
from .describe import Describer
from .download import MAX_RETRY_AFTER_S, source_bytes
from .embed import Embedder, embed_results
from .errors import ItemFailure, QuotaExhausted, redact
from .limits import ByteBudget, Lease, Throttle
from .limits.spend import Spend
from .limits.watch import QuotaWatch
from .model import ErrorType, ItemError, Prepared, Result, Source, SourceKind
from .prepare import PREPARE_POOL, plan, prepare
from .retries import call_with_retries
from .send import by_url, can_send_urls, fetch_refused
from .sources import SourceReader

log = logging.getLogger("describer")
T = TypeVar("T")


async def describe_stream(
    sources: Iterable[str],
    config: Config,
    *,
    reader: SourceReader | None = None,
    stop: asyncio.Event | None = None,
    connection: gemini.Connection | None = None,
    watch: QuotaWatch | None = None,
    cache: ResultCache | None = None,
    context: RunContext | None = None,
) -> AsyncIterator[Result]:
    """Describe every source; yield one :class:`Result` per distinct source as each completes.

    ``sources`` are strings as on the command line: URLs, image files, folders, list files.
    Setting ``stop`` stops taking new sources; items already started still yield their
    results. ``connection``: an open :func:`describer.gemini.connect` to use (else one is
    opened and closed here); ``cache``: an open :func:`describer.cache.open_cache` likewise
    (the result cache, unless ``config.cache`` is False); ``context``: an open
    :func:`describer.context.open_context` likewise (the examples and documents; a context
    cache made here is deleted when the stream closes). ``watch``: told each quota a 429
    names; at a per-day quota it sets its stop, and the items refused or held back are
    yielded with a ``rate_limited`` error and listed in ``watch.not_done`` (the caller drops
    them: they are not done). Raises :class:`describer.ConfigError` when no credentials are
    configured, or the cache file is not describer's.
    """
    reader = reader or SourceReader.of(config)
    async with contextlib.AsyncExitStack() as opened:
        if connection is None:
            connection = await opened.enter_async_context(gemini.connect(config))
        if context is None:
            count = item_counter(config, sources) if isinstance(sources, Sequence) else None
            context = await opened.enter_async_context(
                open_context(config, connection, lambda line: log.warning("%s", line), count))
        if cache is None:
            cache = await opened.enter_async_context(open_cache(config, context.digest))
        stream = _stream(reader.iter(sources), config, connection, stop, watch, cache, context)
        async with closing(stream) as s:
            async for result in s:
                yield result


def item_counter(
    config: Config, sources: Sequence[str], done: set[bytes] | None = None
) -> Callable[[int], int] | None:
    """``count(limit)``: how many items ``sources`` hold (those in ``done`` left out),
    counted up to ``limit`` by reading them once more (blocking: call it in a worker thread);
    None when they hold stdin (``-``), which is read once."""
    if "-" in sources:
        return None

    def count(limit: int) -> int:
        again = SourceReader.of(config, done=done)
        return sum(1 for _ in itertools.islice(again.iter(sources), limit))

    return count


def _stream(
    sources: Iterator[Source],
    config: Config,
    connection: gemini.Connection,
    stop: asyncio.Event | None,
    watch: QuotaWatch | None,
    cache: ResultCache,
    context: RunContext | None = None,
) -> AsyncIterator[Result]:
    results = Pipeline(config, connection, watch, cache, context).run(sources, stop)
    if config.embed:
        embedder = Embedder(connection, config, watch and watch.learned)
        results = embed_results(results, embedder, config)
    return results


async def load(
    source: Source, session: aiohttp.ClientSession, config: Config, lease: Lease | None = None
) -> Prepared:
    """Download (retrying transient failures) and prepare one source: the bytes to send,
    their size held in ``lease`` until the caller releases it. Preparing runs in
    ``prepare.PREPARE_POOL`` (``PREPARE_WORKERS`` threads), its decoded pixels held in
    ``lease`` while it runs.

    Under ``--send url`` or ``auto`` (:mod:`describer.send`) an http(s) source that can go
    as its URL comes back with ``url`` set, after one ranged GET of its first bytes; others
    are downloaded. ``media.sent_as`` says which: ``url``, ``bytes``, or ``file`` (over
    ``config.inline_limit``: a Files API upload).

    Raises :class:`ItemFailure` with the download and prepare stages' error types.
    """
    if source.kind is SourceKind.URL and can_send_urls(config):
        sent = await _retried(lambda: by_url(source.location, session, config), config)
        if sent is not None:
            return sent
    return await load_bytes(source, session, config, lease)


async def load_bytes(
    source: Source, session: aiohttp.ClientSession, config: Config, lease: Lease | None = None
) -> Prepared:
    """:func:`load` as ``--send bytes`` does it: downloaded (or read) and prepared."""
    data = await _retried(lambda: source_bytes(source, session, config, lease), config)
    prepared = await _prepare(data, config, lease)
    way = "file" if gemini.by_files_api(prepared.media, config) else "bytes"
    return replace(prepared, media=replace(prepared.media, sent_as=way))


async def _retried(fetch: Callable[[], Awaitable[T]], config: Config) -> T:
    """``fetch`` of an image host, retried as downloads are (a ``Retry-After`` honoured
    up to ``MAX_RETRY_AFTER_S``)."""
    return await call_with_retries(
        fetch, config.max_attempts, config.retry_wait, max_asked=MAX_RETRY_AFTER_S
    )


async def _prepare(data: bytes, config: Config, lease: Lease | None) -> Prepared:
    """Prepare ``data`` in the prepare pool, its decoded pixels charged to ``lease`` first.

    The header is read first (no decode): media that go as they are come back from that
    one step. Otherwise ``lease`` grows by the decoded size (``plan.decoded_bytes``),
    waiting for room, and shrinks to the bytes sent once done.
    """
    loop = asyncio.get_running_loop()
    if lease is None:
        return await loop.run_in_executor(
            PREPARE_POOL, prepare, data, config.max_side, config.media
        )
    found = await loop.run_in_executor(PREPARE_POOL, plan, data, config.max_side, config.media)
    if found.ready is not None:
        return found.ready
    await lease.reserve(lease.held + found.decoded_bytes)
    prepared = await loop.run_in_executor(
        PREPARE_POOL, prepare, data, config.max_side, config.media
    )
    # The original bytes go with the caller's frame as this returns: from here on the item
    # holds only what it sends (a 4 MB photo shrunk under --max-side holds ~0.3 MB through
    # its model call, not 4 MB: holding the original starved the next decode's reservation,
    # and a 100-photo run took 5.7x the wall of one without --max-side).
    await lease.shrink(len(prepared.data))
    return prepared


class Pipeline:
    """Runs items through the stages under the run's concurrency and byte bounds; with a
    ``cache``, an answer already paid for (in the cache file, or being made for an item of
    this run with the same bytes) is taken instead of a model call. ``limits``: a throttle
    and a spend shared beyond this pipeline (a cluster's), else its own."""

    def __init__(
        self,
        config: Config,
        connection: gemini.Connection,
        watch: QuotaWatch | None = None,
        cache: ResultCache | None = None,
        context: RunContext | None = None,
        limits: tuple[Throttle, Spend] | None = None,
    ) -> None:
        self._config = config
        self._connection = connection
        self._watch = watch
        throttle, spend = limits or (None, None)
        self._describer = Describer(connection.client, config, watch and watch.learned,
                                    context, throttle, spend)
        self._budget = ByteBudget(config.byte_budget)
        self._cache = cache or ResultCache(None)

    def run(
        self, sources: Iterator[Source], stop: asyncio.Event | None = None
    ) -> AsyncIterator[Result]:
        """Results in completion order, at most ``config.in_flight`` in flight; see
        :func:`describe_stream`."""
        return bounded_map(sources, self.process, self._config.in_flight, stop)

    async def process(self, source: Source) -> Result:
        """One source's record: described, or failed with a typed, redacted error; with a
        schema, every record carries ``data``. A bug costs this item an ``internal_error``
        record (logged with its traceback), not the run."""
        config = self._config
        prepared: Prepared | None = None
        lease = self._budget.lease()
        try:
            prepared = await load(source, self._connection.session, config, lease)
            call = functools.partial(self._describe, source, prepared, lease)
            result = await self._cache.result(source.ref, prepared, call)
        except QuotaExhausted as spent:
            if self._watch is not None:
                self._watch.exhausted(spent, source.ref)
            result = failed(source.ref, config, spent.error, prepared)
        except ItemFailure as failure:
            result = failed(source.ref, config, failure.error, prepared)
        except Exception as exc:
            result = failed(source.ref, config, internal_error(exc, source.ref), prepared)
        finally:
            await lease.release()
        if config.schema is not None:
            result = replace(result, structured=True)
        return _redacted(with_row(result, source), self._connection.hidden)

    async def _describe(self, source: Source, prepared: Prepared, lease: Lease) -> Result:
        """The model's answer about ``prepared`` as ``source``'s record; a URL Gemini would
        not fetch is sent again as bytes under ``--send auto`` (the calls of both counted in
        ``attempts``). Raises what :meth:`Describer.answer` and :func:`load_bytes` raise."""
        config = self._config
        answer = await self._describer.answer(prepared)
        if fetch_refused(answer, prepared, config):
            log.info("Gemini did not fetch %s (%s); sending its bytes", source.ref,
                     answer.error and answer.error.message)  # fmt: skip
            prepared = await load_bytes(source, self._connection.session, config, lease)
            again = await self._describer.answer(prepared)
            answer = replace(again, attempts=again.attempts + answer.attempts)
        result = Result.described(
            source.ref, config.model, config.prompt, answer, prepared.media, prepared.original
        )
        # structured before the cache keeps it: a hit then brings back ``data`` too
        return replace(result, structured=config.schema is not None)


def internal_error(exc: Exception, source: str) -> ItemError:
    """A bug met on one item, as that item's ``internal_error`` (the run goes on); its
    traceback is logged on stderr. Call it from the ``except`` block that caught ``exc``."""
    log.exception("internal error on %s", source)
    return ItemError(ErrorType.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")


def failed(
    source: str, config: Config, error: ItemError, prepared: Prepared | None = None
) -> Result:
    """The record of a source that failed before any model call (``attempts`` 0)."""
    return Result(
        source, config.model, config.prompt, error=error,
        media=prepared.media if prepared else None,
        original=prepared.original if prepared else None,
    )  # fmt: skip


def with_row(result: Result, source: Source) -> Result:
    """``result`` carrying its table row's ``id`` and ``meta`` (when ``source`` is a row)."""
    if source.id is None and source.meta is None:
        return result
    return replace(result, id=source.id, meta=source.meta)


def _redacted(result: Result, hidden: tuple[str, ...]) -> Result:
    if result.error is None or not hidden:
        return result
    error = redact(result.error, hidden)
    return result if error is result.error else replace(result, error=error)
