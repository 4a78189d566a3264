"""Quotas, retries, resume and secrets, against the emulator's quota and fault injection."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import cli, cli_process, describe_run
from imaging import jpeg, sha256

from describer.emulator import GeminiEmulator, ImageServer
from describer.errors import ItemFailure
from describer.limits import AdaptiveLimit, Throttle
from describer.model import ErrorType

FAST_RETRY = {"retry_wait": 0.01}


def _serve(images: ImageServer, count: int, size: int = 48) -> list[str]:
    for i in range(count):
        images.add(f"/{i}.jpg", jpeg(size, size, seed=i))
    return [images.url(f"/{i}.jpg") for i in range(count)]


async def test_told_its_quota_a_run_gets_no_429(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # A 30-requests-per-window quota, with a 2 s window standing in for Gemini's minute.
    gemini_env.configure(rpm=30, quota_window=2.0, latency=(0.01, 0.02))
    urls = _serve(images, 70)
    out = await describe_run(capsys, urls, rpm=30, quota_window=2.0)
    assert out.code == 0 and len(out.by_source()) == 70
    assert gemini_env.stats.rate_limited == 0
    assert gemini_env.stats.generate_requests == 70
    times = sorted(gemini_env.stats.request_times)
    span = times[-1] - times[0]
    assert span >= 4.0  # 30 + 30 + 10: two windows had to pass, so pacing happened


async def test_a_quota_the_user_did_not_give_costs_few_429s_and_no_item(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # 20 requests per 2 s window standing in for Gemini's minute (on both sides), no --rpm.
    gemini_env.configure(rpm=20, quota_window=2.0, latency=(0.05, 0.1))
    urls = _serve(images, 80)
    out = await describe_run(capsys, urls, quota_window=2.0, max_attempts=1, **FAST_RETRY)
    stats = gemini_env.stats
    assert out.code == 0 and all(r["error"] is None for r in out.records)  # 429s: no attempt
    assert stats.rate_limited <= 0.1 * 80  # the target: at most 10 % of N
    assert stats.generate_requests == 80 + stats.rate_limited  # each 429 retried once, no storm


async def test_bare_429s_are_waited_out_without_using_up_attempts(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same quota, but its 429s say nothing (no limit, no retryDelay): the rate is probed.
    gemini_env.configure(rpm=10, quota_window=1.0, bare_429=True)
    urls = _serve(images, 30)
    out = await describe_run(capsys, urls, quota_window=1.0, max_attempts=1, **FAST_RETRY)
    stats = gemini_env.stats
    assert out.code == 0 and all(r["error"] is None for r in out.records)
    assert "learned quota" not in out.stderr  # nothing to learn from a bare 429
    assert stats.generate_requests == 30 + stats.rate_limited
    assert max(r["attempts"] for r in out.records) > 1  # some were refused, none gave up


async def test_429_pauses_the_whole_run_for_retry_delay(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # One request per 1 s window, one model call at a time (so each request is sent after the
    # answer to the one before it) and all three items in flight. A refusal says "retryDelay":
    # "1s"; the refused item waits that long anyway, but without a shared pause the next item
    # would be sent (and refused) at once, and so on down the queue.
    gemini_env.configure(rpm=1, quota_window=1.0)
    urls = _serve(images, 3)
    out = await describe_run(
        capsys, urls, concurrency=1, prefetch=2, quota_window=1.0, **FAST_RETRY
    )
    assert out.code == 0 and all(r["error"] is None for r in out.records)
    stats = gemini_env.stats
    times = stats.request_times
    # sent, refused, (pause) sent, (paced to the quota the 429 named) sent: one 429 in all
    assert (stats.generate_requests, stats.rate_limited) == (4, 1)
    assert times[2] - times[1] >= 1.0 and times[3] - times[2] >= 1.0  # nobody sent in the pause
    assert sum(r["attempts"] for r in out.records) == 4


async def test_a_429_in_one_permit_holds_back_every_other_call_until_the_gate_reopens() -> None:
    throttle = Throttle(concurrency=1)  # B queues for the slot while A is at the model
    inside = asyncio.Event()
    refused_at: list[float] = []
    sent_at: dict[str, float] = {}

    async def a_refused_call() -> None:
        async with throttle.permit(258):
            inside.set()
            refused_at.append(time.monotonic())
            raise ItemFailure(ErrorType.RATE_LIMITED, "429 RESOURCE_EXHAUSTED", retry_after=1.0)

    async def call(name: str) -> None:
        async with throttle.permit(258):
            sent_at[name] = time.monotonic()

    refused = asyncio.create_task(a_refused_call())
    await inside.wait()
    queued = asyncio.create_task(call("B"))  # waiting for the slot A holds
    with pytest.raises(ItemFailure):
        await refused
    await asyncio.gather(queued, call("C"))  # C comes after the 429
    # Neither went before the retry delay was over, though the slot was free at once.
    assert min(sent_at.values()) - refused_at[0] >= 1.0


async def test_transient_503s_are_retried_and_described(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    flaky = jpeg(seed=1)
    gemini_env.script(sha256(flaky), "fail:503:2")
    images.add("/gemini-flaky.jpg", flaky)
    images.add_flaky("/host-flaky.jpg", jpeg(seed=2), failures=2, status=503)
    images.add("/gone.jpg", b"gone", status=404, content_type="text/plain")
    images.add("/broken.jpg", b"oops", status=500, content_type="text/plain")
    sources = [images.url(p) for p in ("/gemini-flaky.jpg", "/host-flaky.jpg", "/gone.jpg",
                                        "/broken.jpg")]
    out = await describe_run(capsys, sources, max_attempts=3, **FAST_RETRY)
    got = out.by_source()
    assert got[sources[0]]["error"] is None and got[sources[0]]["attempts"] == 3
    assert got[sources[1]]["error"] is None and images.hits["/host-flaky.jpg"] == 3
    assert got[sources[2]]["error"]["type"] == "http_error" and images.hits["/gone.jpg"] == 1
    assert got[sources[3]]["error"]["message"] == "HTTP 500 Internal Server Error"
    assert images.hits["/broken.jpg"] == 3  # 5xx retried up to --max-attempts


async def test_invalid_argument_and_permission_errors_are_not_retried(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    bad, denied = jpeg(seed=3), jpeg(seed=4)
    gemini_env.script(sha256(bad), "fail:400")
    gemini_env.script(sha256(denied), "fail:403")
    images.add("/bad.jpg", bad)
    images.add("/denied.jpg", denied)
    out = await describe_run(capsys, [images.url("/bad.jpg"), images.url("/denied.jpg")],
                             **FAST_RETRY)
    assert [r["attempts"] for r in out.records] == [1, 1]
    assert gemini_env.stats.generate_requests == 2


async def test_resume_skips_described_sources_and_retries_failed_ones(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    urls = _serve(images, 5)
    failing = jpeg(48, 48, seed=4)
    gemini_env.script(sha256(failing), "fail:400")
    out_file = tmp_path / "out.jsonl"
    first = await describe_run(capsys, urls, output=out_file)
    assert first.code == 1 and gemini_env.stats.generate_requests == 5
    gemini_env.script(sha256(failing), None)  # the fault is gone
    gemini_env.reset_stats()
    second = await describe_run(capsys, urls, output=out_file)
    assert second.code == 0
    assert gemini_env.stats.generate_requests == 1  # only the failed one is sent again
    assert "4 already described (resumed)" in second.stderr
    records = [json.loads(line) for line in out_file.read_text().splitlines()]
    successes = Counter(r["source"] for r in records if r["error"] is None)
    assert successes == Counter(urls)  # exactly one successful record per source
    third = await describe_run(capsys, urls, output=out_file, overwrite=True)
    assert third.code == 0 and len(out_file.read_text().splitlines()) == 5


async def test_a_torn_last_line_is_dropped_and_redone(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    urls = _serve(images, 3)
    out_file = tmp_path / "out.jsonl"
    await describe_run(capsys, urls, output=out_file)
    lines = out_file.read_text().splitlines(keepends=True)
    torn_source = json.loads(lines[-1])["source"]
    out_file.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    gemini_env.reset_stats()
    again = await describe_run(capsys, urls, output=out_file)
    assert "dropped a torn last line" in again.stderr
    assert gemini_env.stats.generate_requests == 0  # its answer is in the result cache
    records = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert sorted(r["source"] for r in records) == sorted(urls)
    assert records[-1]["source"] == torn_source and records[-1]["cached"] is True
    await describe_run(capsys, urls, output=out_file, overwrite=True, cache=False)
    assert gemini_env.stats.generate_requests == 3  # without the cache, each is asked again


async def test_a_foreign_file_is_not_resumed_into(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, write_files
) -> None:
    folder = write_files({"a.jpg": jpeg()})
    out_file = tmp_path / "notes.txt"
    out_file.write_text("my precious notes\n")
    with pytest.raises(Exception, match="line 1 is not a describer record"):
        await describe_run(capsys, [str(folder)], output=out_file)
    assert out_file.read_text() == "my precious notes\n"


def _env(emulator: GeminiEmulator, key: str) -> dict[str, str]:
    return {"GEMINI_API_KEY": key, "GOOGLE_GEMINI_BASE_URL": emulator.base_url}


def _wait_for_lines(path: Path, count: int, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {count} lines")


def test_kill_9_then_resume_gives_one_success_per_source_and_no_repeat_calls(
    write_files, tmp_path: Path
) -> None:
    emulator = GeminiEmulator()
    files = {f"{i:02}.jpg": jpeg(48, 48, seed=i) for i in range(12)}
    folder = write_files(files)
    out_file = tmp_path / "out.jsonl"
    with emulator.in_thread():
        emulator.configure(latency=(0.2, 0.4))
        env = _env(emulator, "any-key-value")
        args = [str(folder), "-o", str(out_file), "-c", "2"]
        proc = cli_process(args, env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_lines(out_file, 3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        sent_before = Counter(r.sha256 for r in emulator.stats.images)
        left = out_file.read_bytes().split(b"\n")[:-1]  # whole lines only
        written_first = {json.loads(line)["source"] for line in left}
        done = cli(args, env)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert Counter(r["source"] for r in records if r["error"] is None) == Counter(
        str(folder / name) for name in files
    )
    assert len(written_first) >= 3
    calls = Counter(r.sha256 for r in emulator.stats.images)
    for name, body in files.items():
        if str(folder / name) in written_first:
            assert calls[sha256(body)] == sent_before[sha256(body)]  # not paid for again
        else:
            assert calls[sha256(body)] >= 1


def test_the_api_key_never_appears_in_any_output(
    write_files, tmp_path: Path
) -> None:
    key = "describer-test-secret-0042-do-not-print"
    denied, flaky = jpeg(seed=1), jpeg(seed=2)
    folder = write_files({"ok.jpg": jpeg(seed=0), "denied.jpg": denied, "flaky.jpg": flaky,
                          "broken.jpg": b"\xff\xd8\xff"})
    out_file = tmp_path / "out.jsonl"
    emulator = GeminiEmulator()
    # Gemini quotes the key in a suspended key's 403 (the emulator's "suspended" behaviour),
    # for a model call and for an embedding call alike: both messages reach the records.
    emulator.script(sha256(denied), "suspended")
    emulator.script_embed("suspended")
    emulator.script(sha256(flaky), "fail:503:9")
    with emulator.in_thread():
        env = {**_env(emulator, key), "GOOGLE_API_KEY": key}
        done = cli([str(folder), "-o", str(out_file), "--max-attempts", "2", "--retry-wait", "0",
                    "--progress", "--embed", "--embed-timeout", "0"], env)
    assert done.returncode == 1
    for text in (done.stdout, done.stderr, out_file.read_text()):
        assert key not in text
    lines = out_file.read_text().splitlines()
    records = {Path(r["source"]).name: r for r in map(json.loads, lines)}
    suspended = "Consumer 'api_key:[redacted]' has been suspended"
    assert suspended in records["denied.jpg"]["error"]["message"]
    assert suspended in records["ok.jpg"]["embedding_error"]["message"]


async def _try_acquire(slots: AdaptiveLimit) -> asyncio.Task[None]:
    """Start ``slots.acquire()`` in a task; return once it holds a slot or waits for one."""
    trying = asyncio.Event()

    async def acquire() -> None:
        trying.set()
        await slots.acquire()

    task = asyncio.create_task(acquire())
    await trying.wait()  # this task resumes only when that one yields: waiting, or done
    return task


async def test_a_429_halves_the_concurrency_limit_once_per_burst_and_successes_grow_it_back(
) -> None:
    slots = AdaptiveLimit(4)
    for _ in range(4):
        await slots.acquire()
    sent = time.monotonic()  # the burst: four calls sent before any answer came back
    await slots.release("rate_limited", sent)
    await slots.release("rate_limited", sent)  # the same burst: no second decrease
    await slots.release("other", sent)
    await slots.release("other", sent)
    first, second, third = [await _try_acquire(slots) for _ in range(3)]
    assert first.done() and second.done() and not third.done()  # 4 halved to 2, not to 1

    await slots.release("rate_limited", time.monotonic())  # sent after the decrease: halves
    assert not third.done()  # one in use, and the limit is 1
    await slots.release("ok", time.monotonic())  # a success: 1 + 1/1
    await third
    await slots.release("ok", time.monotonic())
    held_at_once = [int(slots.limit)]
    for _ in range(7):  # additive increase: about one slot more per `limit` successes
        await slots.acquire()
        await slots.release("ok", time.monotonic())
        held_at_once.append(int(slots.limit))
    assert held_at_once == [2, 2, 3, 3, 3, 4, 4, 4]  # back to the maximum, never above it
