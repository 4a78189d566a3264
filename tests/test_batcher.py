"""The generic batcher: by size, by time, end of stream, back-pressure, identity."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from describer._streams import Batcher, batched


async def _stream(items: list[int], gap: asyncio.Event | None = None) -> AsyncIterator[int]:
    for item in items:
        yield item


async def test_full_batches_then_the_rest_at_end_of_stream() -> None:
    got = [b async for b in batched(_stream(list(range(250))), batch_size=100, timeout=10)]
    assert [len(b) for b in got] == [100, 100, 50]
    assert [x for b in got for x in b] == list(range(250))  # same items, same order


async def test_empty_stream_gives_no_batch() -> None:
    assert [b async for b in batched(_stream([]), batch_size=10, timeout=0.01)] == []


async def test_partial_batch_is_flushed_after_timeout_from_its_first_item() -> None:
    batcher: Batcher[str] = Batcher(batch_size=10, timeout=0.2)
    loop = asyncio.get_running_loop()
    batches: list[tuple[list[str], float]] = []

    async def consume() -> None:
        async for batch in batcher:
            batches.append((batch, loop.time()))

    consumer = asyncio.create_task(consume())
    first_put = loop.time()
    await batcher.put("a")
    await batcher.put("b")
    while not batches:  # a trickle: nothing more comes until the first batch is out
        await asyncio.sleep(0.01)
    await batcher.put("c")
    await batcher.close()
    await consumer
    assert [b for b, _ in batches] == [["a", "b"], ["c"]]
    waited = batches[0][1] - first_put
    assert 0.2 <= waited < 0.2 + 0.15  # the timeout, plus a small margin


async def test_put_waits_when_the_consumer_falls_behind() -> None:
    batcher: Batcher[int] = Batcher(batch_size=2, timeout=1, max_pending=3)
    for i in range(3):
        await batcher.put(i)
    blocked = asyncio.create_task(batcher.put(3))
    await asyncio.sleep(0)
    assert not blocked.done()  # back-pressure: the queue is full
    iterator = aiter(batcher)
    assert await anext(iterator) == [0, 1]
    await blocked
    await batcher.close()
    assert [b async for b in iterator] == [[2, 3]]


async def test_a_failing_consumer_of_one_batch_does_not_lose_the_others() -> None:
    done: list[list[int]] = []
    failed: list[list[int]] = []
    async for batch in batched(_stream(list(range(7))), batch_size=3, timeout=1):
        try:
            if 3 in batch:
                raise RuntimeError("this batch's call failed")
            done.append(batch)
        except RuntimeError:
            failed.append(batch)
    assert done == [[0, 1, 2], [6]] and failed == [[3, 4, 5]]


def test_batch_size_is_capped_at_the_api_limit() -> None:
    with pytest.raises(ValueError, match=r"1\.\.100"):
        Batcher(batch_size=101, timeout=1)
