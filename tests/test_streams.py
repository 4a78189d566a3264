"""bounded_map: what happens when the function it maps raises instead of returning a result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from describer._streams import bounded_map, closing


async def test_an_exception_from_process_ends_the_stream_with_it_instead_of_losing_the_item(
) -> None:
    async def process(item: int) -> int:
        if item == 3:
            raise RuntimeError("a bug on item 3")
        return item

    got: list[int] = []
    with pytest.raises(RuntimeError, match="a bug on item 3"):
        async with asyncio.timeout(10):  # a bound on a hang, not a measurement
            async for result in bounded_map(iter(range(10)), process, limit=2):
                got.append(result)
    assert 3 not in got and len(got) < 10  # the stream ended there


async def test_failing_items_do_not_leak_their_slots() -> None:
    async def process(item: int) -> int:
        raise RuntimeError(f"a bug on item {item}")

    with pytest.raises(RuntimeError, match="a bug on item"):
        async with asyncio.timeout(10):  # before the fix: every slot leaked, a hang
            async for _ in bounded_map(iter(range(10)), process, limit=2):
                pass


async def test_a_stop_set_after_the_last_item_was_read_still_ends_the_stream() -> None:
    # A quota stop can come while the last items are at the model, after every source was
    # read: the stream must still end once they are done (it used to wait for ever).
    read_all = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def items() -> Iterator[int]:
        yield 1
        loop.call_soon_threadsafe(read_all.set)  # the reader thread found the end

    async def process(item: int) -> int:
        await read_all.wait()
        stop.set()
        for _ in range(5):  # let the stop be seen while this item is still in flight
            await asyncio.sleep(0)
        return item

    async with asyncio.timeout(10):  # a bound on a hang, not a measurement
        got = [result async for result in bounded_map(items(), process, limit=2, stop=stop)]
    assert got == [1]


async def test_closing_a_stage_closes_the_stream_it_wraps_and_its_items_in_flight() -> None:
    # A stage that wraps a stream and is closed at its own yield must close the stream it
    # wraps: else the items in flight run on after the run has closed its HTTP session.
    cancelled, in_flight = asyncio.Event(), asyncio.Event()

    async def process(item: int) -> int:
        if item == 0:
            return 0
        try:
            in_flight.set()
            await asyncio.Event().wait()  # at the model for ever
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return item

    async def stage(stream: AsyncIterator[int]) -> AsyncIterator[int]:
        async with closing(stream):
            async for result in stream:
                yield result

    outer = stage(bounded_map(iter(range(3)), process, limit=3))
    assert await anext(outer) == 0
    await in_flight.wait()
    await outer.aclose()
    assert cancelled.is_set()
