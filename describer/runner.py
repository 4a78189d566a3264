"""``bounded_map``: a stage function over a lazy stream, bounded, in completion order.

The stream is read in a worker thread (so a slow stdin never blocks the event loop); at most
``window`` items are in flight from the moment they are started until their result has been
taken by the consumer, so memory stays flat however long the input. Setting ``stop`` takes no
new items; those already started still deliver their results.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Generic, TypeVar

from .sources import iterate_in_thread

S = TypeVar("S")
R = TypeVar("R")
_END = object()


async def bounded_map(
    items: Iterator[S],
    process: Callable[[S], Awaitable[R]],
    window: int,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[R]:
    """``await process(item)`` for each item, at most ``window`` at once; results as they
    complete. ``process`` must turn per-item failures into results: an exception it raises
    ends the run (after cancelling the items in flight)."""
    mapper = _BoundedMap(process, window)
    async for result in mapper.run(items, stop):
        yield result


class _BoundedMap(Generic[S, R]):
    def __init__(self, process: Callable[[S], Awaitable[R]], window: int) -> None:
        self._process = process
        self._window = asyncio.Semaphore(window)
        self._results: asyncio.Queue[object] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, items: Iterator[S], stop: asyncio.Event | None) -> AsyncIterator[R]:
        feeder = asyncio.create_task(self._feed(items))
        watcher = asyncio.create_task(_cancel_when_set(stop, feeder)) if stop else None
        try:
            while (result := await self._results.get()) is not _END:
                yield result  # type: ignore[misc]
                self._window.release()  # free once the consumer comes back for more
            await feeder  # re-raise a failure to read the items
        finally:
            for task in (feeder, watcher, *self._tasks):
                if task is not None:
                    task.cancel()
            await asyncio.gather(feeder, *self._tasks, return_exceptions=True)

    async def _feed(self, items: Iterator[S]) -> None:
        try:
            async for item in iterate_in_thread(items):
                await self._window.acquire()
                task = asyncio.create_task(self._one(item))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except asyncio.CancelledError:
            pass  # stopped: no new items; those in flight still finish
        finally:
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            self._results.put_nowait(_END)

    async def _one(self, item: S) -> None:
        self._results.put_nowait(await self._process(item))


async def _cancel_when_set(event: asyncio.Event, task: asyncio.Task[None]) -> None:
    await event.wait()
    task.cancel()
