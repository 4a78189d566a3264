"""A generic async request batcher: ``batch_size`` items, or ``timeout`` after the first.

Items go in with :meth:`Batcher.put` (waiting while ``max_pending`` are queued: back-pressure)
and come out, as the same objects in arrival order, in lists of at most ``batch_size``: a
list is emitted as soon as it is full, or ``timeout`` seconds after its first item arrived,
whichever comes first; :meth:`Batcher.close` flushes the last partial list.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")

#: batchEmbedContents takes at most 100 requests per call (Gemini API limit; the SDK does not
#: split longer lists).
MAX_BATCH_SIZE = 100
_CLOSED = object()


class Batcher(Generic[T]):
    """Groups a stream of items into batches by size and by time.

    Raises ``ValueError`` for ``batch_size`` outside 1..``max_size`` or a negative timeout.
    """

    def __init__(
        self,
        batch_size: int,
        timeout: float,
        max_pending: int | None = None,
        max_size: int = MAX_BATCH_SIZE,
    ) -> None:
        if not 1 <= batch_size <= max_size:
            raise ValueError(f"batch_size must be 1..{max_size}, not {batch_size}")
        if timeout < 0:
            raise ValueError("timeout must be 0 or more seconds")
        self.batch_size = batch_size
        self.timeout = timeout
        self._queue: asyncio.Queue[object] = asyncio.Queue(max_pending or 2 * batch_size)

    async def put(self, item: T) -> None:
        """Add one item; waits while ``max_pending`` items are already queued."""
        await self._queue.put(item)

    async def close(self) -> None:
        """End of stream: the partial batch is flushed, then iteration stops."""
        await self._queue.put(_CLOSED)

    async def __aiter__(self) -> AsyncIterator[list[T]]:
        """Yield batches until :meth:`close` was called and everything was emitted."""
        while (first := await self._queue.get()) is not _CLOSED:
            batch, closed = await self._fill([first])  # type: ignore[list-item]
            yield batch
            if closed:
                return

    async def _fill(self, batch: list[T]) -> tuple[list[T], bool]:
        """Add items to ``batch`` until full or ``timeout`` after its first; (batch, closed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while len(batch) < self.batch_size:
            try:
                async with asyncio.timeout_at(deadline):
                    item = await self._queue.get()
            except TimeoutError:
                return batch, False
            if item is _CLOSED:
                return batch, True
            batch.append(item)  # type: ignore[arg-type]
        return batch, False


async def batched(
    items: AsyncIterable[T], batch_size: int, timeout: float, max_pending: int | None = None
) -> AsyncIterator[list[T]]:
    """Batches of ``items`` (see :class:`Batcher`), read by a task of its own so that the
    timeout runs while the source is slow to produce its next item."""
    batcher: Batcher[T] = Batcher(batch_size, timeout, max_pending)

    async def pump() -> None:
        async for item in items:
            await batcher.put(item)
        await batcher.close()

    reader = asyncio.create_task(pump())
    try:
        async for batch in batcher:
            yield batch
        await reader  # re-raise a failure of the source
    finally:
        reader.cancel()
