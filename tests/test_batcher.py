"""The generic batcher: by size, by time, end of stream, back-pressure, identity."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import pytest

from describer._streams import Batcher, batched

T = TypeVar("T")


async def _stream(items: list[int]) -> AsyncIterator[int]:
    for item in items:
        yield item


async def test_full_batches_then_the_rest_at_end_of_stream() -> None:
    got = [b async for b in batched(_stream(list(range(250))), batch_size=100, timeout=10)]
    assert [len(b) for b in got] == [100, 100, 50]
    assert [x for b in got for x in b] == list(range(250))  # same items, same order


async def test_empty_stream_gives_no_batch() -> None:
    assert [b async for b in batched(_stream([]), batch_size=10, timeout=0.01)] == []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock stands still while anything is ready to run, and jumps to the
    next timer when every task waits for one: timeouts in seconds take no time, and
    ``loop.time()`` reads exactly when each thing happened."""

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0
        select = self._selector.select

        def select_without_sleeping(timeout: float | None = None) -> Any:
            if timeout is None:  # nothing ready and no timer: nothing could ever wake us
                raise RuntimeError("deadlock: every task waits, and not for a timer")
            self._now += timeout  # the time the loop would have slept
            return select(0)

        self._selector.select = select_without_sleeping  # type: ignore[method-assign]

    def time(self) -> float:
        return self._now


def on_virtual_clock(scenario: Coroutine[Any, Any, T]) -> T:
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(scenario)
    finally:
        loop.close()


def test_a_partial_batch_goes_out_timeout_after_its_first_item_not_its_last() -> None:
    async def scenario() -> list[tuple[float, list[str]]]:
        loop = asyncio.get_running_loop()
        batcher: Batcher[str] = Batcher(batch_size=10, timeout=5.0)
        batches: list[tuple[float, list[str]]] = []

        async def consume() -> None:
            async for batch in batcher:
                batches.append((loop.time(), batch))

        consumer = asyncio.create_task(consume())
        await batcher.put("a")  # at 0
        await asyncio.sleep(3)  # the stimulus: items 3 s apart on the virtual clock
        await batcher.put("b")  # at 3
        await asyncio.sleep(3)
        await batcher.put("c")  # at 6
        await batcher.close()  # at 6
        await consumer
        return batches

    # Nothing but the timeout can have sent ["a", "b"] at 5: the batch was not full, the
    # stream not closed, and no item came at 5. Counted from "b", it would have gone at 8,
    # after "c" had joined it.
    assert on_virtual_clock(scenario()) == [(5.0, ["a", "b"]), (6.0, ["c"])]


async def test_put_waits_when_the_consumer_falls_behind() -> None:
    batcher: Batcher[int] = Batcher(batch_size=2, timeout=1, max_pending=3)
    put: list[int] = []
    last_put = asyncio.Event()

    async def produce() -> None:
        for item in range(4):
            if item == 3:
                last_put.set()
            await batcher.put(item)
            put.append(item)
        await batcher.close()

    producer = asyncio.create_task(produce())
    await last_put.wait()  # resumes once the producer yields: waiting inside put(3), or done
    assert put == [0, 1, 2]  # back-pressure: three are queued, the fourth waits
    assert [b async for b in batcher] == [[0, 1], [2, 3]]
    await producer
    assert put == [0, 1, 2, 3]


async def _failing_source(count: int) -> AsyncIterator[int]:
    for item in range(count):
        yield item
    raise ValueError(f"the source broke after {count} items")


async def test_a_failing_source_delivers_the_batches_before_it_then_its_error() -> None:
    delivered: list[list[int]] = []
    with pytest.raises(ValueError, match="the source broke after 7 items"):
        async for batch in batched(_failing_source(7), batch_size=3, timeout=60):
            delivered.append(batch)
    assert delivered == [[0, 1, 2], [3, 4, 5], [6]]  # the partial batch too, before the error


def test_batch_size_is_capped_at_the_api_limit() -> None:
    with pytest.raises(ValueError, match=r"1\.\.100"):
        Batcher(batch_size=101, timeout=1)
