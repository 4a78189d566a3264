"""End to end: describer.run → real google-genai client → HTTP → the Gemini emulator."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from aioresponses import aioresponses
from conftest import Outcome, describe_run
from imaging import SAMPLES, jpeg, sha256

from describer import Config, RunReport, describe_stream, run
from describer.emulator import GeminiEmulator, ImageServer

RECORD_KEYS = {
    "source", "description", "error", "model", "prompt", "usage", "image", "finish_reason",
    "latency_ms", "attempts", "cached",
}


async def test_folder_records_follow_the_schema(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(SAMPLES, folder)  # 10 photos, CREDITS.md and urls.txt
    out = await describe_run(capsys, [str(folder)], prompt="3 words", model="gemini-test")
    assert out.code == 0
    assert len(out.records) == 10
    for record in out.records:
        assert set(record) == RECORD_KEYS
        assert record["error"] is None
        assert record["model"] == "gemini-test" and record["prompt"] == "3 words"
        assert record["finish_reason"] == "STOP"
        assert record["description"].startswith("A ")
        assert record["usage"]["input_tokens"] > 258 and record["usage"]["output_tokens"] > 0
        assert isinstance(record["latency_ms"], int) and record["attempts"] == 1
        assert record["cached"] is False
    hubble = out.by_source()[str(folder / "hubble_deep_field.jpg")]
    assert hubble["image"] == {
        "mime_type": "image/jpeg", "width": 1000, "height": 872, "bytes": 527940,
        "sent_as": "bytes", "original": None,
    }
    assert hubble["usage"]["input_tokens"] == 258 * 4 + 2  # 2x2 tiles of 768 px + "3 words"
    assert "2 skipped (not images)" in out.stderr and "10 described, 0 failed" in out.stderr


async def test_url_list_with_comments_and_repeats(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    for i in range(3):
        images.add(f"/img{i}.jpg", jpeg(seed=i))
    urls = [images.url(f"/img{i}.jpg") for i in range(3)]
    listing = tmp_path / "urls.txt"
    listing.write_text(f"# my photos\n\n{urls[0]}\n  {urls[1]}  \n{urls[0]}\n{urls[2]}\n")
    out = await describe_run(capsys, [str(listing), urls[2]])
    assert out.code == 0
    assert sorted(out.by_source()) == sorted(urls)
    assert gemini_env.stats.generate_requests == 3  # each repeat described once
    assert "2 duplicates" in out.stderr


async def test_mixed_sources_file_folder_url(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str],
    write_files,
) -> None:
    folder = write_files({"a.jpg": jpeg(seed=1), "sub/b.jpg": jpeg(seed=2)})
    single = write_files({"c.jpg": jpeg(seed=3)}, folder="single") / "c.jpg"
    images.add("/d.jpg", jpeg(seed=4))
    out = await describe_run(capsys, [str(folder), str(single), images.url("/d.jpg")])
    assert out.code == 0
    assert set(out.by_source()) == {
        str(folder / "a.jpg"), str(folder / "sub" / "b.jpg"), str(single), images.url("/d.jpg")
    }


async def test_original_bytes_and_mime_reach_gemini_image_first(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = (SAMPLES / "grace_hopper.jpg").read_bytes()
    png = (SAMPLES / "horse.png").read_bytes()
    images.add("/hopper", photo, content_type="application/octet-stream")  # name/type lie
    images.add("/horse.jpg", png, content_type="image/jpeg")
    out = await describe_run(capsys, [images.url("/hopper"), images.url("/horse.jpg")])
    assert out.code == 0
    seen = {r.sha256: r for r in gemini_env.stats.images}
    assert seen[sha256(photo)].mime_type == "image/jpeg"
    assert seen[sha256(png)].mime_type == "image/png"  # sniffed from bytes, not the name
    assert all(r.first_part_kind == "image" for r in seen.values())
    assert gemini_env.stats.image_bytes == len(photo) + len(png)


async def test_concurrency_cap_is_what_gemini_sees(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    gemini_env.configure(latency=(0.1, 0.1))
    for i in range(16):
        images.add(f"/{i}.jpg", jpeg(64, 48, seed=i) + bytes([i]))  # distinct bytes
    out = await describe_run(capsys, [images.url(f"/{i}.jpg") for i in range(16)], concurrency=3)
    assert out.code == 0 and len(out.records) == 16
    assert gemini_env.stats.max_in_flight == 3


async def test_results_stream_in_completion_order(
    gemini_env: GeminiEmulator, images: ImageServer
) -> None:
    slow = jpeg(seed=9)
    gemini_env.script(sha256(slow), "slow:1.5")
    images.add("/slow.jpg", slow)
    fast = [f"/fast{i}.jpg" for i in range(5)]
    for i, path in enumerate(fast):
        images.add(path, jpeg(seed=i))
    sources = [images.url("/slow.jpg"), *(images.url(p) for p in fast)]
    order = [r.source async for r in describe_stream(sources, Config(concurrency=8))]
    assert order[-1] == images.url("/slow.jpg")  # first in, last out: nothing waits for it
    assert len(order) == 6


async def test_run_returns_a_report_and_leaves_the_summary_line_to_the_command(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files
) -> None:
    folder = write_files({"a.jpg": jpeg(seed=1), "b.jpg": jpeg(seed=2)[:1000], "c.txt": b"x"})
    report = await run(Config(progress=False), [str(folder)])
    printed = capsys.readouterr()
    assert isinstance(report, RunReport)
    assert (report.tally.described, report.tally.failed, report.sources.skipped) == (1, 1, 1)
    assert not report.all_ok and not report.interrupted
    assert len(printed.out.splitlines()) == 2  # the two records
    assert printed.err == ""  # no summary line from the library call
    assert report.summary().startswith(
        "describer: 1 described, 1 failed (1 corrupt_image), 1 skipped (not images)"
    )
    out = await describe_run(capsys, [str(folder)])  # the describe command's body
    assert out.code == 1
    [line] = out.stderr.splitlines()  # the summary line, printed once
    assert line.startswith(  # a.jpg's answer was paid for by the run above
        "describer: 1 described (1 from cache), 1 failed (1 corrupt_image), 1 skipped (not "
        "images), tokens 0 in / 0 out"
    )


async def test_library_stop_event_finishes_started_items_only(
    gemini_env: GeminiEmulator, images: ImageServer
) -> None:
    for i in range(50):
        images.add(f"/{i}.jpg", jpeg(32, 32, seed=i) + bytes([i]))
    stop = asyncio.Event()
    results = []
    async for result in describe_stream(
        [images.url(f"/{i}.jpg") for i in range(50)], Config(concurrency=2, prefetch=0), stop=stop
    ):
        results.append(result)
        stop.set()
    assert 1 <= len(results) <= 3  # those in flight when stop was set, no more
    assert all(r.ok for r in results)


async def test_cookbook_urls_with_aioresponses(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], aioresponses_compat: None
) -> None:
    """samples/urls.txt (Google-hosted) read and fetched; the hosts are mocked, Gemini is not."""
    urls = [line for line in (SAMPLES / "urls.txt").read_text().splitlines()
            if line.startswith("https://")]
    bodies = {url: jpeg(seed=i) for i, url in enumerate(urls)}
    with aioresponses(passthrough=[gemini_env.base_url]) as mocked:
        for url, body in bodies.items():
            mocked.get(url, body=body, content_type="image/jpeg")
        out: Outcome = await describe_run(capsys, [str(SAMPLES / "urls.txt")])
    assert out.code == 0
    assert set(out.by_source()) == set(urls)
    assert {r.sha256 for r in gemini_env.stats.images} == {sha256(b) for b in bodies.values()}


async def test_safety_block_max_tokens_and_empty_answers_are_reported(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {"block": "blocked", "safety": "blocked", "empty": "empty_response",
             "max_tokens": "max_tokens"}
    for i, behaviour in enumerate(cases):
        body = jpeg(seed=i)
        gemini_env.script(sha256(body), behaviour)
        images.add(f"/{behaviour}.jpg", body)
    images.add("/fine.jpg", jpeg(seed=7))
    sources = [images.url(f"/{b}.jpg") for b in [*cases, "fine"]]
    out = await describe_run(capsys, sources)
    assert out.code == 1
    got = out.by_source()
    for behaviour, error_type in cases.items():
        record = got[images.url(f"/{behaviour}.jpg")]
        assert record["error"]["type"] == error_type, behaviour
        assert record["usage"] is not None
    assert got[images.url("/block.jpg")]["finish_reason"] == "SAFETY"
    assert got[images.url("/safety.jpg")]["finish_reason"] == "SAFETY"
    assert got[images.url("/max_tokens.jpg")]["finish_reason"] == "MAX_TOKENS"
    assert got[images.url("/max_tokens.jpg")]["description"]  # the partial text is kept
    assert got[images.url("/empty.jpg")]["description"] is None
    assert got[images.url("/fine.jpg")]["error"] is None
    assert "4 failed" in out.stderr


async def test_generation_options_reach_the_request(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    images.add("/a.jpg", jpeg())
    out = await describe_run(
        capsys, [images.url("/a.jpg")], system_instruction="You write alt text.",
        temperature=0.3, max_output_tokens=200, model="gemini-other",
    )
    assert out.code == 0
    record = gemini_env.stats.images[0]
    assert record.model == "gemini-other"
    assert record.system_instruction == "You write alt text."
    assert record.generation_config == {  # --thinking low by default, as a level on Gemini 3+
        "temperature": 0.3, "maxOutputTokens": 200, "thinkingConfig": {"thinking_level": "LOW"},
    }


async def test_api_errors_become_records(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = jpeg(seed=5)
    gemini_env.script(sha256(bad), "fail:400")
    images.add("/bad.jpg", bad)
    images.add("/good.jpg", jpeg(seed=6))
    out = await describe_run(capsys, [images.url("/bad.jpg"), images.url("/good.jpg")])
    assert out.code == 1
    error = out.by_source()[images.url("/bad.jpg")]["error"]
    assert error["type"] == "api_error" and error["message"].startswith("400 INVALID_ARGUMENT")
    assert out.by_source()[images.url("/good.jpg")]["error"] is None


async def test_memory_budget_bounds_the_bytes_in_flight_not_just_the_items(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    gemini_env.configure(latency=(0.2, 0.2))
    base = jpeg(900, 700)
    for i in range(6):
        images.add(f"/big{i}.jpg", base + bytes([i]))  # same size, distinct bytes
    images.add("/huge.jpg", jpeg(1600, 1200, seed=9))  # larger than the whole budget
    budget = 2 * (len(base) + 1) + 1  # room for two at a time
    sources = [images.url(f"/big{i}.jpg") for i in range(6)] + [images.url("/huge.jpg")]
    out = await describe_run(capsys, sources, concurrency=8, memory_budget=budget)
    assert out.code == 0 and len(out.records) == 7  # nothing waits for ever
    assert gemini_env.stats.max_in_flight == 2
