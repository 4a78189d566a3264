"""Quotas, retries, resume and secrets, against the emulator's quota and fault injection."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import describe_run
from imaging import jpeg, sha256

from describer.emulator import GeminiEmulator, ImageServer

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


async def test_unknown_quota_backs_off_and_finishes(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    gemini_env.configure(rpm=20, quota_window=2.0, latency=(0.05, 0.1))
    urls = _serve(images, 80)
    out = await describe_run(capsys, urls, max_attempts=8, **FAST_RETRY)
    stats = gemini_env.stats
    assert out.code == 0 and all(r["error"] is None for r in out.records)
    assert stats.rate_limited < 0.2 * stats.generate_requests  # measured: 8 of 88
    assert stats.generate_requests == 80 + stats.rate_limited  # each 429 retried once, no storm


async def test_429_pauses_the_whole_run_for_retry_delay(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    gemini_env.configure(rpm=2, quota_window=2.0)
    urls = _serve(images, 4)
    out = await describe_run(capsys, urls, concurrency=4, **FAST_RETRY)
    assert out.code == 0
    times = sorted(gemini_env.stats.request_times)
    first_refused = times[2]  # the third request in the window is refused, "retryDelay": "2s"
    later = [t for t in times if t > first_refused + 0.5]
    assert later and min(later) - times[0] >= 1.9  # nobody came back before the delay


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
    assert gemini_env.stats.generate_requests == 1
    records = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert sorted(r["source"] for r in records) == sorted(urls)
    assert records[-1]["source"] == torn_source


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
    base = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    return {**base, "GEMINI_API_KEY": key, "GOOGLE_GEMINI_BASE_URL": emulator.base_url}


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-c", "from describer.cli import main; main()", *args]


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
        args = _cli([str(folder), "-o", str(out_file), "-c", "2"])
        proc = subprocess.Popen(args, env=env, stderr=subprocess.DEVNULL)
        _wait_for_lines(out_file, 3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        sent_before = Counter(r.sha256 for r in emulator.stats.images)
        left = out_file.read_bytes().split(b"\n")[:-1]  # whole lines only
        written_first = {json.loads(line)["source"] for line in left}
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
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
    emulator.script(sha256(denied), "fail:403")
    emulator.script(sha256(flaky), "fail:503:9")
    with emulator.in_thread():
        env = {**_env(emulator, key), "GOOGLE_API_KEY": key}
        done = subprocess.run(
            _cli([str(folder), "-o", str(out_file), "--max-attempts", "2", "--retry-wait", "0",
                  "--progress"]),
            env=env, capture_output=True, text=True, check=False,
        )
    assert done.returncode == 1
    for text in (done.stdout, done.stderr, out_file.read_text()):
        assert key not in text
    assert "403 PERMISSION_DENIED" in out_file.read_text()


async def test_rpm_and_tpm_windows_are_counted_apart() -> None:
    """--rpm 100 and --tpm 10000 (100 units of 100 tokens) must not share one window."""
    from describer.limits import Throttle, estimate_tokens
    from describer.model import Media

    throttle = Throttle(concurrency=200, rpm=100, tpm=10_000, window=60.0)
    small = estimate_tokens(Media("image/jpeg", 64, 64, 1000), "")  # 258 tokens: 3 units
    async with asyncio.timeout(2):  # a shared window would fill at 100 entries and wait 61 s
        for _ in range(30):  # 30 requests, 90 token units: within both quotas
            async with throttle.permit(small):
                pass
