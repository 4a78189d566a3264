"""Async stream plumbing shared by every stage: one queue-and-sentinel :class:`Channel`, and
what is built on it: :func:`iterate_in_thread`, :func:`bounded_map`, :class:`Batcher` and
:func:`batched`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

T = TypeVar("T")
S = TypeVar("S")
R = TypeVar("R")
_END = object()

#: batchEmbedContents takes at most 100 requests per call (Gemini API limit; the SDK does not
#: split longer lists).
MAX_BATCH_SIZE = 100


class Closed(Exception):
    """Raised by :meth:`Channel.get` once the channel was closed without an error."""


class Channel(Generic[T]):
    """A queue with an end: producers ``put`` items and then ``close`` it, optionally with the
    exception that ended them; the consumer gets the items in order, then :class:`Closed` (or
    that exception). ``maxsize`` bounds the items waiting (0: unbounded)."""

    def __init__(self, maxsize: int = 0) -> None:
        self._queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue(maxsize)

    async def put(self, item: T) -> None:
        """Add an item; waits while ``maxsize`` are already waiting."""
        await self._queue.put((item, None))

    def put_nowait(self, item: T) -> None:
        """Add an item now (raises ``asyncio.QueueFull`` on a full bounded channel)."""
        self._queue.put_nowait((item, None))

    async def close(self, error: BaseException | None = None) -> None:
        """End the stream after the items already put; ``error`` is raised to the consumer."""
        await self._queue.put((_END, error))

    def close_nowait(self, error: BaseException | None = None) -> None:
        """:meth:`close` without waiting (for unbounded channels and thread callbacks)."""
        self._queue.put_nowait((_END, error))

    async def get(self) -> T:
        """The next item. Raises :class:`Closed` at the end, or the error given to close."""
        item, error = await self._queue.get()
        if item is _END:
            self._queue.put_nowait((_END, error))  # a later get sees the end too
            if error is not None:
                raise error
            raise Closed
        return item  # type: ignore[no-any-return]

    async def __aiter__(self) -> AsyncIterator[T]:
        """The items until the end (re-raising the error the channel was closed with)."""
        while True:
            try:
                item = await self.get()
            except Closed:
                return
            yield item


async def iterate_in_thread(items: Iterator[T], buffer: int = 256) -> AsyncIterator[T]:
    """Drive a blocking iterator in a worker thread; yield its items here, in order.

    At most ``buffer`` items wait between the two sides (back-pressure). Exceptions raised by
    the iterator are re-raised here. Closing this generator stops the thread at its next item.
    """
    loop = asyncio.get_running_loop()
    channel: Channel[T] = Channel()
    slots = threading.Semaphore(buffer)
    stop = threading.Event()

    def pump() -> None:
        try:
            for item in items:
                while not slots.acquire(timeout=0.2):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                loop.call_soon_threadsafe(channel.put_nowait, item)
            loop.call_soon_threadsafe(channel.close_nowait)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            if not stop.is_set():
                loop.call_soon_threadsafe(channel.close_nowait, exc)

    threading.Thread(target=pump, name="describer-sources", daemon=True).start()
    try:
        async for item in channel:
            slots.release()
            yield item
    finally:
        stop.set()


@asynccontextmanager
async def closing(stream: AsyncIterable[T]) -> AsyncIterator[AsyncIterable[T]]:
    """``stream``, closed (``aclose``, when it has one) when the block ends however it ends.

    A generator that iterates another and is closed while suspended at its own ``yield``
    does not close the one it iterates: that one (and the items it has in flight) would run
    on until the event loop finalizes it, after the run's HTTP session is closed. Each
    stage that wraps a stream iterates it inside ``async with closing(stream)``.
    """
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def bounded_map(
    items: Iterator[S],
    process: Callable[[S], Awaitable[R]],
    limit: int,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[R]:
    """``await process(item)`` for each item, results as they complete.

    ``items`` is read in a worker thread (a slow stdin never blocks the event loop). At most
    ``limit`` items are in flight from the moment they are started until their result has
    been taken by the consumer, so memory stays flat however long the input. Setting ``stop``
    takes no new items; those already started still deliver their results. ``process`` must
    turn per-item failures into results: an exception it raises ends the run (after
    cancelling the items in flight).
    """
    return _BoundedMap(process, limit).run(items, stop)  # closing it cancels those in flight


class _BoundedMap(Generic[S, R]):
    def __init__(self, process: Callable[[S], Awaitable[R]], limit: int) -> None:
        self._process = process
        self._slots = asyncio.Semaphore(limit)
        self._results: Channel[R] = Channel()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading = True  # the feeder is still reading items (not yet waiting for them)

    async def run(self, items: Iterator[S], stop: asyncio.Event | None) -> AsyncIterator[R]:
        feeder = asyncio.create_task(self._feed(items))
        watcher = asyncio.create_task(self._stop_reading(stop, feeder)) if stop else None
        try:
            async for result in self._results:
                yield result
                self._slots.release()  # free once the consumer comes back for more
            await feeder  # re-raise a failure to read the items
        finally:
            for task in (feeder, watcher, *self._tasks):
                if task is not None:
                    task.cancel()
            await asyncio.gather(feeder, *self._tasks, return_exceptions=True)

    async def _feed(self, items: Iterator[S]) -> None:
        try:
            async for item in iterate_in_thread(items):
                await self._slots.acquire()
                task = asyncio.create_task(self._one(item))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except asyncio.CancelledError:
            pass  # stopped: no new items; those in flight still finish
        finally:
            self._reading = False
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            self._results.close_nowait()

    async def _one(self, item: S) -> None:
        try:
            result = await self._process(item)
        except Exception as exc:  # a bug in process: the consumer re-raises it (ends the run)
            self._results.close_nowait(exc)
            return
        self._results.put_nowait(result)


    async def _stop_reading(self, stop: asyncio.Event, feeder: asyncio.Task[None]) -> None:
        """Once ``stop`` is set, cancel ``feeder`` if it is still reading items. Once it
        waits for the items in flight it is left alone: cancelled there, it would never
        end the results, and the consumer would wait for ever."""
        await stop.wait()
        if self._reading:
            feeder.cancel()


class Batcher(Generic[T]):
    """Groups a stream of items into batches by size and by time.

    Items go in with :meth:`put` (waiting while ``max_pending`` are queued: back-pressure)
    and come out, as the same objects in arrival order, in lists of at most ``batch_size``: a
    list is emitted as soon as it is full, or ``timeout`` seconds after its first item
    arrived, whichever comes first; :meth:`close` flushes the last partial list. Raises
    ``ValueError`` for ``batch_size`` outside 1..``max_size`` (default 100, Gemini's
    batchEmbedContents limit) or a negative timeout.
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
        self._channel: Channel[T] = Channel(max_pending or 2 * batch_size)

    async def put(self, item: T) -> None:
        """Add one item; waits while ``max_pending`` items are already queued."""
        await self._channel.put(item)

    async def close(self, error: BaseException | None = None) -> None:
        """End of stream: the partial batch is flushed, then iteration stops (raising
        ``error``, when given, after the last batch)."""
        await self._channel.close(error)

    async def __aiter__(self) -> AsyncIterator[list[T]]:
        """Yield batches until :meth:`close` was called and everything was emitted."""
        while True:
            try:
                first = await self._channel.get()
            except Closed:
                return
            yield await self._fill([first])

    async def _fill(self, batch: list[T]) -> list[T]:
        """Add items to ``batch`` until it is full, ``timeout`` after its first, or the end."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        while len(batch) < self.batch_size:
            try:
                async with asyncio.timeout_at(deadline):
                    item = await self._channel.get()
            except Exception:  # the deadline passed, or the end (the next get sees it again)
                return batch
            batch.append(item)
        return batch


async def batched(
    items: AsyncIterable[T], batch_size: int, timeout: float, max_pending: int | None = None
) -> AsyncIterator[list[T]]:
    """Batches of ``items`` (see :class:`Batcher`), read by a task of its own so that the
    timeout runs while the source is slow to produce its next item. A failure of ``items`` is
    re-raised after the batches before it."""
    batcher: Batcher[T] = Batcher(batch_size, timeout, max_pending)

    async def pump() -> None:
        try:
            async for item in items:
                await batcher.put(item)
        except Exception as exc:
            await batcher.close(exc)
        else:
            await batcher.close()

    reader = asyncio.create_task(pump())
    try:
        async for batch in batcher:
            yield batch
    finally:
        reader.cancel()
