"""The context cache's life beyond a plain run: Ctrl-C (once and twice), kill -9 and the next
run's clean-up, a failed deletion named in the summary, the TTL extended when the run
outlives it (on a fake clock), the Batch API given the shared part inline, and --dry-run."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_KEY, cli, cli_process, describe_run, wait_until
from imaging import jpeg, sha256
from test_emulator_quota import FakeClock

from describer import Config, gemini
from describer.batch import MAX_FILE_BYTES, MAX_REQUESTS
from describer.batch import submit as describer_submit
from describer.context import ledger, open_context
from describer.emulator import EmulatorSettings, GeminiEmulator

GUIDE = "Write captions in the catalogue's voice: plain, concrete, present tense. " * 270


@pytest.fixture
def served() -> Iterator[tuple[GeminiEmulator, dict[str, str]]]:
    """An emulator on its own thread (for describe-images processes) and their environment."""
    emu = GeminiEmulator(EmulatorSettings())
    with emu.in_thread() as url:
        yield emu, {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": url}


@pytest.fixture
def guide(tmp_path: Path) -> Path:
    path = tmp_path / "guide.md"
    path.write_text(GUIDE)
    return path


def _slow_photos(write_files, emu: GeminiEmulator, count: int = 8, seconds: float = 30) -> Path:
    """A folder of ``count`` photos: the first answered at once, the others after
    ``seconds`` (long enough to stay in flight while a test signals the run)."""
    files = {"a.jpg": jpeg(seed=0)}
    for i in range(1, count):
        body = jpeg(seed=i)
        emu.script(sha256(body), f"slow:{seconds}")
        files[f"s{i}.jpg"] = body
    return write_files(files)


def _run(folder: Path, guide: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    args = [str(folder), "--context", str(guide), "-c", "2", "--prefetch", "0",
            "--no-cache", "--no-progress"]
    return cli_process(args, env)


@pytest.mark.parametrize("signals", [1, 2])
def test_ctrl_c_deletes_the_cache(served, write_files, guide: Path, signals: int) -> None:
    emu, env = served
    seconds = 2 if signals == 1 else 60  # once: the items in flight finish; twice: cancelled
    proc = _run(_slow_photos(write_files, emu, seconds=seconds), guide, env)
    proc.stdout.readline()  # the fast item is written: the cache exists and is read
    wait_until(lambda: emu.stats.in_flight >= 1)
    proc.send_signal(signal.SIGINT)
    if signals == 2:  # the first must be heard before the second is sent
        while "stopping" not in (line := proc.stderr.readline()):
            assert line, "the run ended before it heard the first Ctrl-C"
        proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert (emu.contexts.stats.created, emu.contexts.stats.deleted) == (1, 1)
    assert not emu.contexts.caches and not ledger.entries()


@pytest.mark.parametrize("then", ["describe", "cache prune"])
def test_kill_9_leaves_the_cache_and_the_next_run_or_prune_deletes_it(
    served, write_files, guide: Path, then: str
) -> None:
    emu, env = served
    folder = _slow_photos(write_files, emu, seconds=60)
    proc = _run(folder, guide, env)
    proc.stdout.readline()
    proc.kill()
    proc.communicate(timeout=30)
    [left] = list(emu.contexts.caches)
    assert [e.name for e in ledger.entries()] == [left]
    emu.clear_scripts()
    args = ["cache", "prune"] if then == "cache prune" else \
        [str(folder), "--context", str(guide), "--no-cache", "--no-progress"]
    done = cli(args, env)
    assert done.returncode == 0, done.stderr
    assert f"deleted context cache {left}, left by an earlier run" in done.stderr
    made = 1 if then == "cache prune" else 2
    assert (emu.contexts.stats.created, emu.contexts.stats.deleted) == (made, made)
    assert not emu.contexts.caches and not ledger.entries()


async def test_a_cache_that_cannot_be_deleted_is_named(
    gemini_env: GeminiEmulator, capsys, write_files, guide: Path
) -> None:
    gemini_env.contexts.fail_deletes = True
    folder = write_files({f"p{i}.jpg": jpeg(seed=i) for i in range(4)})
    out = await describe_run(capsys, [str(folder)], context=(str(guide),), cache=False,
                             retry_wait=0, max_attempts=2)
    [name] = list(gemini_env.contexts.caches)
    assert f"context cache {name}: 4 calls read its" in out.stderr
    assert "NOT deleted (503 UNAVAILABLE: The service is currently unavailable.)" \
           in out.stderr and f"delete {name}" in out.stderr
    assert [e.name for e in ledger.entries()] == [name]  # the next run deletes it


async def test_the_ttl_is_extended_when_the_run_outlives_it(
    monkeypatch: pytest.MonkeyPatch, write_files, guide: Path
) -> None:
    clock = FakeClock()
    async with GeminiEmulator(EmulatorSettings(), clock=clock) as emu:
        monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
        config = Config(context=(str(guide),), cache_ttl=600, base_url=emu.base_url)
        async with gemini.connect(config) as connection, \
                open_context(config, connection, print, lambda limit: limit, clock) as context:
            assert context.cache is not None
            clock.now += 539  # 61 s left: more than the margin (a tenth of the TTL)
            await context.ensure_alive()
            assert emu.contexts.stats.updated == 0
            clock.now += 2  # 59 s left: the next call extends it by the TTL
            await context.ensure_alive()
            clock.now += 300  # past the first expiry
            await context.ensure_alive()
            stats = emu.contexts.stats
            assert stats.updated == 1 and context.cache.extensions == 1
            assert context.storage_hours == pytest.approx((541 + 600) / 3600)
            assert list(emu.contexts.caches) == [context.cache.name]  # still alive
        assert emu.contexts.stats.deleted == 1


async def test_batch_requests_carry_the_shared_part_inline(
    gemini_env: GeminiEmulator, write_files, guide: Path
) -> None:
    examples = write_files({"e.jpg": jpeg(seed=50)}, "examples")
    folder = write_files({f"p{i}.jpg": jpeg(seed=i) for i in range(3)})
    config = Config(context=(str(guide),), examples=((str(examples / "e.jpg"), "A mug."),))
    async with gemini.connect(config) as connection:
        await describer_submit((str(folder),), config, connection, MAX_FILE_BYTES, MAX_REQUESTS)
    [stored] = [f for f in gemini_env.files.files.values() if f.mime_type == "jsonl"]
    lines = [json.loads(line) for line in stored.data.decode().splitlines()]
    assert len(lines) == 3
    for line in lines:
        request = line["request"]
        assert "cachedContent" not in request
        roles = [c["role"] for c in request["contents"]]
        assert roles == ["user", "model", "user"]
        assert GUIDE in request["contents"][0]["parts"][0]["text"]
        assert request["contents"][1]["parts"] == [{"text": "A mug."}]
    assert gemini_env.contexts.stats.created == 0


def test_dry_run_shows_the_caches_arithmetic(write_files, guide: Path) -> None:
    folder = write_files({f"p{i}.jpg": jpeg(seed=i) for i in range(40)})
    done = cli([str(folder), "--context", str(guide), "--dry-run", "--cache-ttl", "3600"], {})
    assert done.returncode == 0, done.stderr
    assert "examples and --context: ~4,928 tokens with each of 40 items (197,120 in all), " \
           "from one context cache: saves $0.1331 of input against inline for $0.0049 of " \
           "storage (4,928 tokens x 1 h)" in done.stderr
    inline = cli([str(folder), "--context", str(guide), "--dry-run", "--no-context-cache"], {})
    standard = [line for line in done.stderr.splitlines() if "standard (this" in line]
    plain = [line for line in inline.stderr.splitlines() if "standard (this" in line]
    assert "with $0.0049 of context cache storage" in standard[0]
    assert "sent inline (--no-context-cache)" in inline.stderr
    assert "storage" not in plain[0] and standard != plain


@pytest.mark.parametrize(("options", "ttl"), [
    ([], "5 min"),  # 40 items at -c 16, ~3 s a call: seconds of work, so the 5-minute floor
    (["--rpm", "2"], "25 min"),  # 40 items at 2 a minute: 20 min, and a quarter more
    (["--rpm", "2", "--cache-ttl", "7200"], "2 h"),  # as asked
])
def test_the_caches_ttl_follows_the_runs_estimated_length(
    write_files, guide: Path, options: list[str], ttl: str
) -> None:
    folder = write_files({f"p{i}.jpg": jpeg(seed=i) for i in range(40)})
    done = cli([str(folder), "--context", str(guide), "--dry-run", *options], {})
    assert done.returncode == 0, done.stderr
    assert f"storage (4,928 tokens x {ttl})" in done.stderr
