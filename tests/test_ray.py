"""describer on a local Ray (``ray.init(num_cpus=2)``, no dashboard, once for the module)
against the emulator, run on a thread of its own (the actors are other processes)."""

from __future__ import annotations

import os
import re
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_KEY, wait_until
from imaging import jpeg

from describer import Config
from describer.emulator import EmulatorSettings, GeminiEmulator
from describer.ray.rows import NOT_DONE

ray = pytest.importorskip("ray")

from describer.ray.cluster import describe_dataset, keeper_stop, start_keeper  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    # "local": a Ray of its own, even when another runs on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)  # fmt: skip
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture
def images(tmp_path: Path) -> list[str]:
    """60 small distinct JPEG files."""
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for index in range(60):
        path = folder / f"{index:03d}.jpg"
        path.write_bytes(jpeg(24, 16, seed=index))
        paths.append(str(path))
    return paths


def emulator_config(url: str, **changes: Any) -> Config:
    return Config(base_url=url, api_key=TEST_KEY, cache=False, concurrency=2, **changes)


def dataset(paths: list[str], blocks: int = 6) -> Any:
    rows = [{"url": path, "name": f"n{index}"} for index, path in enumerate(paths)]
    return ray.data.from_items(rows, override_num_blocks=blocks)


def test_two_actors_under_one_rpm_get_no_429s(images: list[str]) -> None:
    # 20 requests per 2 s window (Gemini's "21 requests within a minute fail for an RPM of
    # 20"): the two actors together keep it; each pacing to it alone would send twice that
    settings = EmulatorSettings(rpm=20, quota_window=2.0, latency=(0.005, 0.01))
    emulator = GeminiEmulator(settings)
    with emulator.in_thread() as url:
        config = emulator_config(url, rpm=20, quota_window=2.0)
        rows = describe_dataset(dataset(images[:36]), config, workers=2, batch_size=3).take_all()
    assert emulator.stats.rate_limited == 0
    assert Counter(row["error_type"] for row in rows) == {None: 36}
    assert sorted(row["name"] for row in rows) == sorted(f"n{i}" for i in range(36))


def test_two_actors_embedding_under_one_embed_rpm_get_no_429s(images: list[str]) -> None:
    # one embedding call per description, 6 calls per 2 s window: each actor pacing its
    # embeddings alone would send up to twice that
    settings = EmulatorSettings(embed_rpm=6, quota_window=2.0, latency=(0.005, 0.01))
    emulator = GeminiEmulator(settings)
    with emulator.in_thread() as url:
        config = emulator_config(url, embed=True, embed_rpm=6, embed_batch_size=1,
                                 embed_dim=8, quota_window=2.0)  # fmt: skip
        rows = describe_dataset(dataset(images[:18]), config, workers=2, batch_size=3).take_all()
    assert (emulator.stats.embed_requests, emulator.stats.rate_limited) == (18, 0)
    assert all(row["error_type"] is None and len(row["embedding"]) == 8 for row in rows)


def test_a_daily_quota_stops_every_actor(images: list[str], tmp_path: Path) -> None:
    emulator = GeminiEmulator(EmulatorSettings(rpd=12, latency=(0.005, 0.01)))
    journals = tmp_path / "journal"
    with emulator.in_thread() as url:
        config = emulator_config(url)
        keeper = start_keeper(config, 2)
        ds = describe_dataset(dataset(images[:48]), config, workers=2, batch_size=4,
                              keeper=keeper, journal_dir=journals, permit_batch=1)  # fmt: skip
        rows = ds.take_all()
        stop = keeper_stop(keeper)
    outcomes = Counter(row["error_type"] for row in rows)
    assert outcomes[None] == 12 and outcomes[None] + outcomes[NOT_DONE] == 48
    assert stop is not None and stop.quota.daily
    # after the first daily 429 only calls already under way went out: at most one per
    # actor slot (2 actors x concurrency 2), not one per remaining row
    assert emulator.stats.generate_requests <= 12 + 4
    assert {r["error_message"] for r in rows if r["error_type"] == NOT_DONE} == {stop.reason}
    journaled = sum(len(path.read_text().splitlines()) for path in journals.glob("*.jsonl"))
    assert journaled == 12  # rows not done have no record: a rerun does them


def _lock_holders(paths: list[Path]) -> dict[int, int]:
    """pid of the process holding describer's flock on each of ``paths`` (by inode)."""
    inodes = {path.stat().st_ino: path for path in paths if path.exists()}
    holders = {}
    with open("/proc/locks") as locks:
        for line in locks:
            fields = line.split()
            if fields[1:2] == ["FLOCK"]:  # held, not waited for ("1: -> FLOCK ...")
                pid, where = int(fields[4]), fields[5]
                inode = int(where.rsplit(":", 1)[1])
                if inode in inodes:
                    holders[inode] = pid
    return holders


def test_an_actor_killed_mid_batch_loses_and_duplicates_nothing(
    images: list[str], tmp_path: Path
) -> None:
    emulator = GeminiEmulator(EmulatorSettings(latency=(0.04, 0.06)))
    journals = tmp_path / "journal"
    killed: list[int] = []

    def kill_a_writer() -> None:
        def busy_journal() -> bool:
            for path in journals.glob("*.jsonl"):
                if len(path.read_bytes().splitlines()) >= 6:
                    holders = _lock_holders([path])
                    if holders:  # the batch is still being written: kill its actor
                        pid = next(iter(holders.values()))
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                        return True
            return False

        wait_until(busy_journal, deadline=60)

    with emulator.in_thread() as url:
        config = emulator_config(url)
        ds = describe_dataset(dataset(images, blocks=3), config, workers=2, batch_size=20,
                              journal_dir=journals)  # fmt: skip
        killer = threading.Thread(target=kill_a_writer)
        killer.start()
        rows = ds.take_all()
        killer.join()
    assert killed
    keys = Counter(row["key"] for row in rows)
    assert len(rows) == 60 and set(keys.values()) == {1}
    assert Counter(row["error_type"] for row in rows) == {None: 60}
    # calls the killed actor had in flight (2) may be made again; none that it had written
    assert 60 <= emulator.stats.generate_requests <= 62


def test_cli_stops_at_a_daily_quota_then_resumes_each_key_once(
    images: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import pyarrow.parquet as pq

    from describer.cli.ray import RaySettings, ray_main

    table = tmp_path / "table.csv"
    lines = ["id,url,caption"] + [f"{i},{path},c{i}" for i, path in enumerate(images[:30])]
    lines.append(f"29,{images[29]},c29")  # a repeated key is described once
    table.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    settings = RaySettings(None, 2, 4, 2)
    emulator = GeminiEmulator(EmulatorSettings(rpd=10))
    with emulator.in_thread() as url:
        monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", url)
        config = Config(id_col="id", keep_cols="caption", cache=False, concurrency=2)
        first = _run(ray_main(str(table), out, config, settings))
        emulator.configure(rpd=None)
        second = _run(ray_main(str(table), out, config, settings))
    err = capsys.readouterr().err
    assert (first, second) == (3, 0), err
    assert "daily quota spent" in err
    assert re.search(r"\b10 skipped \(done before\)", err), err
    shards = sorted(out.glob("part-*.parquet"))
    rows = [row for shard in shards for row in pq.read_table(shard).to_pylist()]
    assert sorted(int(r["id"]) for r in rows) == list(range(30))
    assert all(r["error"] is None and r["meta"]["caption"] == f"c{r['id']}" for r in rows)
    assert emulator.stats.generate_requests - emulator.stats.rate_limited == 30


def _run(coroutine: Any) -> int:
    import asyncio

    return asyncio.run(coroutine)
