"""Embed stage: descriptions → vectors with ``client.aio.models.embed_content``, batched.

Four coroutines joined by queues: a reader (items whose text needs no vector go straight out),
the :class:`~describer.batcher.Batcher` (``batch_size`` texts or ``timeout`` seconds), the
embedding calls (up to ``--concurrency`` batches in flight, retried like model calls, under
their own rate limit) and the consumer of :func:`embed_stream`, which gets every item back
exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

from google import genai
from google.genai import types

from .batcher import Batcher
from .config import Config
from .describe import gemini_errors
from .errors import ErrorType, ItemError, ItemFailure, redact, secrets
from .retries import retrying
from .throttle import Throttle

T = TypeVar("T")
Vector = list[float]
_END = object()


@dataclass(frozen=True, slots=True)
class EmbedOutcome:
    """A vector, or the error that kept an item from having one."""

    vector: Vector | None
    error: ItemError | None


class Embedder:
    """Calls ``embed_content`` for lists of texts, with the run's retry policy and limits."""

    def __init__(self, client: genai.Client, config: Config) -> None:
        self.model = config.embed_model
        self._client = client
        self._config = config
        self.concurrency = config.concurrency  # embedding calls in flight at once
        self._throttle = Throttle(config.concurrency, config.embed_rpm, None, config.quota_window)
        self._secrets = secrets(config.api_key)

    async def embed(
        self, texts: list[str], task_type: str = "RETRIEVAL_DOCUMENT", dim: int | None = None
    ) -> list[Vector]:
        """One vector per text, in order (``dim`` floats, default ``config.embed_dim`` or the
        model's). At most 100 texts (Gemini's batchEmbedContents limit). Raises
        :class:`ItemFailure` once retries are spent."""
        settings = types.EmbedContentConfig(
            task_type=task_type, output_dimensionality=dim or self._config.embed_dim
        )
        async for attempt in retrying(self._config.max_attempts, self._config.retry_wait):
            with attempt:
                async with self._throttle.permit(0):
                    return await self._call(texts, settings)
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    async def _call(self, texts: list[str], settings: types.EmbedContentConfig) -> list[Vector]:
        with gemini_errors("the embedding call timed out"):
            response = await self._client.aio.models.embed_content(
                model=self.model, contents=texts, config=settings
            )
        vectors = [list(e.values or []) for e in response.embeddings or []]
        if len(vectors) != len(texts) or not all(vectors):
            raise ItemFailure(ErrorType.API_ERROR, f"{len(vectors)} vectors for {len(texts)} texts")
        return vectors

    async def outcomes(self, texts: list[str]) -> list[EmbedOutcome]:
        """Like :meth:`embed`, but a failed batch gives each text the error instead."""
        try:
            vectors = await self.embed(texts)
        except ItemFailure as failure:
            error = redact(failure.error, self._secrets)
            return [EmbedOutcome(None, error) for _ in texts]
        return [EmbedOutcome(vector, None) for vector in vectors]


async def embed_stream(
    items: AsyncIterable[T],
    embedder: Embedder,
    text_of: Callable[[T], str | None],
    attach: Callable[[T, EmbedOutcome], T],
    batch_size: int,
    timeout: float,
) -> AsyncIterator[T]:
    """Every item of ``items`` once: those whose ``text_of`` is None at once, the others with
    ``attach(item, outcome)`` once their batch is embedded. Order is completion order."""
    out: asyncio.Queue[object] = asyncio.Queue()
    batcher: Batcher[T] = Batcher(batch_size, timeout)
    work = asyncio.create_task(_run(items, embedder, text_of, attach, batcher, out))
    try:
        while (item := await out.get()) is not _END:
            yield item  # type: ignore[misc]
        await work  # re-raise a failure of the source
    finally:
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)


async def _run(
    items: AsyncIterable[T],
    embedder: Embedder,
    text_of: Callable[[T], str | None],
    attach: Callable[[T, EmbedOutcome], T],
    batcher: Batcher[T],
    out: asyncio.Queue[object],
) -> None:
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_read(items, text_of, batcher, out))
            group.create_task(_embed_batches(batcher, embedder, text_of, attach, out))
    finally:
        out.put_nowait(_END)


async def _read(
    items: AsyncIterable[T],
    text_of: Callable[[T], str | None],
    batcher: Batcher[T],
    out: asyncio.Queue[object],
) -> None:
    try:
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
    out: asyncio.Queue[object],
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
