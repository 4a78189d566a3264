"""Embed stage: descriptions → vectors with ``embed_content``, batched by size and time.

Four coroutines joined by channels: a reader (items whose text needs no vector go straight
out), the :class:`~describer._streams.Batcher` (``batch_size`` texts or ``timeout`` seconds),
the embedding calls (up to ``--concurrency`` batches in flight, retried like model calls,
under their own rate limit) and the consumer of :func:`embed_stream`, which gets every item
back exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from . import gemini
from ._streams import Batcher, Channel, closing
from .config import Config
from .errors import ItemFailure, QuotaExhausted, redact
from .limits import Throttle
from .model import ItemError, Result
from .quotas import Quota
from .schema import field_text

T = TypeVar("T")
Vector = list[float]


@dataclass(frozen=True, slots=True)
class EmbedOutcome:
    """A vector, or the error that kept an item from having one; neither when a per-day
    quota was spent before it was embedded (not done: a rerun does it)."""

    vector: Vector | None
    error: ItemError | None

    @property
    def done(self) -> bool:
        """False when a spent per-day quota left the item without a vector or an error."""
        return self.vector is not None or self.error is not None


class Embedder:
    """Calls ``embed_content`` for lists of texts, with the run's retry policy and limits;
    ``on_quota`` hears of the quota every 429 names. ``throttle``: the limits to keep
    instead of this process's own (``config.embed_rpm`` and ``config.concurrency``): on
    Ray, a worker's share of the cluster's embedding quota."""

    def __init__(
        self,
        connection: gemini.Connection,
        config: Config,
        on_quota: Callable[[Quota], None] | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self.model = config.embed_model
        self.concurrency = config.concurrency  # embedding calls in flight at once
        self._connection = connection
        self._config = config
        self._throttle = throttle or Throttle(
            config.concurrency, config.embed_rpm, None, config.quota_window, on_quota
        )

    @property
    def spent(self) -> Quota | None:
        """The quota that stopped the embedding calls, if one did."""
        return self._throttle.gate.spent

    @property
    def stop_reason(self) -> str:
        """Why that quota stopped them (``"daily quota spent: ..."``), or ``""``."""
        return self._throttle.gate.reason

    async def embed(
        self, texts: list[str], task_type: str = "RETRIEVAL_DOCUMENT", dim: int | None = None
    ) -> list[Vector]:
        """One vector per text, in order (``dim`` floats, default ``config.embed_dim`` or the
        model's). At most 100 texts (Gemini's batchEmbedContents limit). Raises
        :class:`ItemFailure` once retries are spent."""
        config = self._config
        async for attempt in self._throttle.retrying(config):
            with attempt:
                async with self._throttle.permit(0):
                    return await gemini.embed(
                        self._connection.client, self.model, texts, task_type,
                        dim or config.embed_dim,
                    )  # fmt: skip
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    async def outcomes(self, texts: list[str]) -> list[EmbedOutcome]:
        """Like :meth:`embed`, but a failed batch gives each text the (redacted) error, and
        a batch held back by a spent per-day quota gives each text an outcome not done."""
        try:
            vectors = await self.embed(texts)
        except QuotaExhausted:
            return [EmbedOutcome(None, None) for _ in texts]
        except ItemFailure as failure:
            error = redact(failure.error, self._connection.hidden)
            return [EmbedOutcome(None, error) for _ in texts]
        return [EmbedOutcome(vector, None) for vector in vectors]


def embed_results(
    results: AsyncIterator[Result], embedder: Embedder, config: Config
) -> AsyncIterator[Result]:
    """``results`` with an embedding of each description, or of the ``--embed-field`` of
    its data (:func:`embed_text`); failures pass straight through; every record carries
    the embedding keys."""

    def attach(result: Result, outcome: EmbedOutcome) -> Result:
        return replace(result, embedding=outcome.vector, embedding_error=outcome.error)

    async def marked() -> AsyncIterator[Result]:
        async with closing(results):
            async for result in results:
                yield replace(result, embedding_model=embedder.model)

    return embed_stream(
        marked(), embedder, lambda r: embed_text(r.description, r.data, config.embed_field)
        if r.ok else None, attach, config.embed_batch_size, config.embed_timeout,
    )  # fmt: skip


def embed_text(description: object, data: object, field: str | None) -> str | None:
    """What is embedded for a described record: its ``data[field]`` (as text, by
    :func:`describer.schema.field_text`) when ``field`` is given, else its description;
    None when there is none (the record then gets no vector)."""
    if field is not None:
        return field_text(data, field)
    return description if isinstance(description, str) else None


async def embed_stream(
    items: AsyncIterable[T],
    embedder: Embedder,
    text_of: Callable[[T], str | None],
    attach: Callable[[T, EmbedOutcome], T],
    batch_size: int,
    timeout: float,
) -> AsyncIterator[T]:
    """Every item of ``items`` once: those whose ``text_of`` is None at once, the others with
    ``attach(item, outcome)`` once their batch is embedded. Order is completion order. A
    failure of ``items`` is re-raised after the items before it."""
    out: Channel[T] = Channel()
    batcher: Batcher[T] = Batcher(batch_size, timeout)
    work = asyncio.create_task(_run(items, embedder, text_of, attach, batcher, out))
    try:
        async for item in out:
            yield item
    finally:
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)


async def _run(
    items: AsyncIterable[T],
    embedder: Embedder,
    text_of: Callable[[T], str | None],
    attach: Callable[[T, EmbedOutcome], T],
    batcher: Batcher[T],
    out: Channel[T],
) -> None:
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_read(items, text_of, batcher, out))
            group.create_task(_embed_batches(batcher, embedder, text_of, attach, out))
    except BaseExceptionGroup as group_error:
        out.close_nowait(group_error.exceptions[0])
        raise
    out.close_nowait()


async def _read(
    items: AsyncIterable[T],
    text_of: Callable[[T], str | None],
    batcher: Batcher[T],
    out: Channel[T],
) -> None:
    try:
        async with closing(items):
            async for item in items:
                if text_of(item) is None:
                    out.put_nowait(item)
                else:
                    await batcher.put(item)
    finally:
        await batcher.close()


async def _embed_batches(
    batcher: Batcher[T],
    embedder: Embedder,
    text_of: Callable[[T], str | None],
    attach: Callable[[T, EmbedOutcome], T],
    out: Channel[T],
) -> None:
    slots = asyncio.Semaphore(embedder.concurrency)

    async def one(batch: list[T]) -> None:
        try:
            outcomes = await embedder.outcomes([text_of(item) or "" for item in batch])
            for item, outcome in zip(batch, outcomes, strict=True):
                out.put_nowait(attach(item, outcome))
        finally:
            slots.release()

    async with asyncio.TaskGroup() as group:
        async for batch in batcher:
            await slots.acquire()
            group.create_task(one(batch))
