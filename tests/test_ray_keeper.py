"""The cluster's quota keeper and its workers' throttles, without Ray: the keeper is called
in-process through a handle shaped like a Ray actor handle (``handle.method.remote(...)``)."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import pytest

from describer import Config
from describer.errors import ItemFailure, QuotaExhausted
from describer.model import ErrorType, ItemError, Result, Usage
from describer.quotas import Quota
from describer.ray.keeper import MAX_COST, QuotaKeeper, Report
from describer.ray.permits import ClusterSpend, ClusterThrottle
from describer.ray.shards import done_keys, write_shards


class _Method:
    def __init__(self, method: Any) -> None:
        self._method = method

    def remote(self, *args: Any) -> Any:
        """Run as Ray runs an actor call: at once, whether or not the caller awaits it."""
        if inspect.iscoroutinefunction(self._method):
            return asyncio.ensure_future(self._method(*args))
        future = asyncio.get_running_loop().create_future()
        future.set_result(self._method(*args))
        return future


class LocalHandle:
    """A Ray-actor-like handle on an object in this process."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self.target, name))


DAILY = Quota("requests", "day", 100, "gemini-3.8-flash")


def daily_429() -> ItemFailure:
    return ItemFailure(ErrorType.RATE_LIMITED, "429 daily", retryable=True, quota=DAILY)


async def test_grants_are_spaced_to_the_clusters_rpm_whoever_asks() -> None:
    keeper = QuotaKeeper(Config(rpm=120, quota_window=6.0), workers=2)
    first = await keeper.grant(3, 100)
    second = await keeper.grant(2, 100)
    assert (first.count, second.count) == (3, 2)
    # 120 per 6 s window, paced over 6.25 s (the margin): 52 ms apart (above the slow start)
    assert first.spacing == second.spacing == pytest.approx(6.25 / 120)
    assert keeper.granted == 5 and keeper.grants == 2


async def test_a_daily_429_on_one_worker_stops_the_other_before_it_sends() -> None:
    keeper = LocalHandle(QuotaKeeper(Config(rpm=6000), workers=2))
    config = Config(concurrency=2)
    a, b = ClusterThrottle(keeper, config, batch=1), ClusterThrottle(keeper, config, batch=1)
    with pytest.raises(QuotaExhausted):
        async with a.permit(10):
            raise daily_429()
    await asyncio.sleep(0)  # the fire-and-forget report runs, as a Ray actor call would
    sent = False
    with pytest.raises(QuotaExhausted, match="daily quota spent"):
        async with b.permit(10):
            sent = True
    assert not sent
    assert (await b.stopped()) is not None


async def test_a_429_pauses_the_keeper_so_every_worker_waits() -> None:
    keeper = QuotaKeeper(Config(), workers=2)
    refused = ItemFailure(ErrorType.RATE_LIMITED, "429", retryable=True, retry_after=30.0,
                          quota=Quota("requests", "minute", 10))  # fmt: skip
    b = ClusterThrottle(LocalHandle(keeper), Config())
    a = ClusterThrottle(LocalHandle(keeper), Config())
    with pytest.raises(ItemFailure):
        async with a.permit(10):
            raise refused
    await asyncio.sleep(0)
    assert keeper.pace()["rpm"] == 10  # learned for the cluster
    asking = asyncio.ensure_future(b._permit(10))
    for _ in range(50):  # event-loop turns, far more than a grant takes when the gate is open
        await asyncio.sleep(0)
    assert not asking.done()  # b's grant waits out the keeper's 30 s pause
    asking.cancel()


async def test_max_cost_is_kept_for_the_cluster_from_the_workers_reports() -> None:
    config = Config(max_cost=0.01)
    keeper = QuotaKeeper(config, workers=2)
    throttle = ClusterThrottle(LocalHandle(keeper), config, batch=4)
    spend = ClusterSpend(config, throttle)
    price = spend.price(1000, None) or 0.0
    calls = int(0.01 // price)
    grants = [await keeper.grant(1, 1000) for _ in range(calls + 2)]
    assert sum(grant.count for grant in grants) == calls
    stop = grants[-1].stopped
    assert stop is not None and stop.quota == MAX_COST and "--max-cost" in stop.reason
    report = Report()
    for _ in range(calls):
        report.settle(price, spend.spent_on(Usage(1000, 10)))
    keeper.report(report)
    assert keeper.stopped() is not None  # a stop at --max-cost is for good, as in one process


def _journal(path: Path, records: list[dict[str, Any]]) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _record(source: str, id: str, error: ItemError | None = None) -> dict[str, Any]:
    text = None if error else f"about {id}"
    return Result(source, "m", "p", text, error, id=id).to_json()


def test_shards_hold_each_key_once_over_all_journals(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    failed = ItemError(ErrorType.DOWNLOAD_ERROR, "404")
    journals = tmp_path / "journal"
    _journal(journals / "a.jsonl", [_record("x.jpg", "1"), _record("y.jpg", "2", failed)])
    _journal(journals / "b.jsonl", [_record("y.jpg", "2"), _record("z.jpg", "3")])
    assert len(done_keys(tmp_path)) == 3
    report = write_shards(tmp_path, rows_per_shard=2)
    assert (report.rows, report.shards, report.described, report.superseded) == (3, 2, 3, 1)
    shards = sorted(tmp_path.glob("part-*.parquet"))
    rows = [row for shard in shards for row in pq.read_table(shard).to_pylist()]
    assert sorted(r["id"] for r in rows) == ["1", "2", "3"]
    assert all(r["error"] is None for r in rows)
    _journal(journals / "b.jsonl", [])
    assert write_shards(tmp_path).shards == 1 and not (tmp_path / "part-00001.parquet").exists()


def test_describe_dataset_refuses_examples_it_would_not_send(tmp_path) -> None:
    from describer import Config
    from describer.errors import ConfigError
    from describer.ray.cluster import describe_dataset

    guide = tmp_path / "guide.md"
    guide.write_text("Write in the house style.")
    with pytest.raises(ConfigError, match="not sent by describer on Ray yet"):
        describe_dataset(None, Config(context=(str(guide),)))
