"""The result cache, end to end: describe_run → the cache → google-genai → the emulator.
Each test has a fresh DESCRIBER_HOME (conftest), so a fresh cache."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import Outcome, describe_run
from imaging import jpeg, sha256

from describer import Config
from describer.cache import CacheStore, cache_path, canonical, request_fingerprint, stats
from describer.emulator import EmulatorSettings, GeminiEmulator, ImageServer
from describer.gemini import encoding


def _serve(images: ImageServer, distinct: int, urls: int) -> list[str]:
    """``urls`` URLs of ``distinct`` images (URL i shows image i % distinct)."""
    bodies = [jpeg(64, 48, seed=i) for i in range(distinct)]
    for i in range(urls):
        images.add(f"/u{i}.jpg", bodies[i % distinct])
    return [images.url(f"/u{i}.jpg") for i in range(urls)]


def _billed(out: Outcome) -> tuple[int, int]:
    """Input and output tokens of the records that were not cached."""
    paid = [r["usage"] for r in out.records if not r["cached"]]
    return sum(u["input_tokens"] for u in paid), sum(u["output_tokens"] for u in paid)


async def test_100_urls_of_30_images_make_30_calls_and_a_rerun_makes_none(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    gemini_env.configure(latency=(0.05, 0.05))  # items overlap: repeats wait for the first
    urls = _serve(images, distinct=30, urls=100)
    first = await describe_run(capsys, urls, output=tmp_path / "a.jsonl")
    assert first.code == 0 and len(first.records) == 0  # records went to the file
    first.records = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert gemini_env.stats.generate_requests == 30
    assert len({r.sha256 for r in gemini_env.stats.images}) == 30  # each image sent once
    assert sum(r["cached"] for r in first.records) == 70
    by_image: dict[int, str] = {}
    for i, url in enumerate(urls):
        record = first.by_source()[url]
        assert record["error"] is None and record["usage"]["input_tokens"] > 0
        assert by_image.setdefault(i % 30, record["description"]) == record["description"]
    tokens_in, tokens_out = _billed(first)
    assert "100 described (70 from cache), 0 failed" in first.stderr
    assert f"tokens {tokens_in:,} in / {tokens_out:,} out" in first.stderr  # 30 calls' worth

    gemini_env.reset_stats()
    again = await describe_run(capsys, urls, output=tmp_path / "b.jsonl")
    again.records = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert again.code == 0 and gemini_env.stats.generate_requests == 0
    assert len(again.records) == 100 and all(r["cached"] is True for r in again.records)
    for url, record in again.by_source().items():
        kept = first.by_source()[url]
        assert {k: v for k, v in record.items() if k != "cached"} == {
            k: v for k, v in kept.items() if k != "cached"
        }  # the record as paid for, apart from "cached"
    assert "100 described (100 from cache), 0 failed" in again.stderr
    assert "tokens 0 in / 0 out, est. $0.0000" in again.stderr  # a hit costs nothing


async def test_an_identical_image_waits_for_the_first_answer_instead_of_a_second_call(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    body = jpeg(seed=3)
    gemini_env.script(sha256(body), "slow:0.5")  # the second arrives while the first is asked
    images.add("/a.jpg", body)
    images.add("/copy-of-a.jpg", body)
    out = await describe_run(capsys, [images.url("/a.jpg"), images.url("/copy-of-a.jpg")],
                             concurrency=2)  # fmt: skip
    assert out.code == 0 and gemini_env.stats.generate_requests == 1
    assert sorted(r["cached"] for r in out.records) == [False, True]
    assert len({r["description"] for r in out.records}) == 1


async def test_when_the_first_fails_the_waiting_copy_makes_its_own_call(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    gemini_env.configure(latency=(0.3, 0.3))
    body = jpeg(seed=4)
    gemini_env.script(sha256(body), "fail:400:1")  # the first request fails, later ones answer
    images.add("/a.jpg", body)
    images.add("/b.jpg", body)
    sources = [images.url("/a.jpg"), images.url("/b.jpg")]
    out = await describe_run(capsys, sources, concurrency=2)
    assert out.code == 1 and gemini_env.stats.generate_requests == 2
    outcomes = sorted((r["error"] or {}).get("type", "ok") for r in out.records)
    assert outcomes == ["api_error", "ok"]
    assert not any(r["cached"] for r in out.records)  # neither took the other's outcome
    gemini_env.reset_stats()
    again = await describe_run(capsys, sources, output=tmp_path / "again.jsonl")
    assert again.code == 0 and gemini_env.stats.generate_requests == 0  # the answer was kept


@pytest.mark.parametrize("behaviour", ["fail:400", "block", "max_tokens", "empty"])
async def test_errors_are_never_cached(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str],
    behaviour: str,
) -> None:
    body = jpeg(seed=5)
    gemini_env.script(sha256(body), behaviour)
    images.add("/a.jpg", body)
    for _ in range(2):
        out = await describe_run(capsys, [images.url("/a.jpg")])
        [record] = out.records
        assert record["error"] is not None and record["cached"] is False
    assert gemini_env.stats.generate_requests == 2  # asked again: nothing was kept
    assert stats().entries == 0


#: One change each to the request; ``None``: a change that must not miss the cache.
VARIANTS: list[tuple[dict[str, Any], bool]] = [
    ({"prompt": "3 words"}, True),
    ({"model": "gemini-other"}, True),
    ({"system_instruction": "You write alt text."}, True),
    ({"temperature": 0.2}, True),
    ({"max_output_tokens": 4000}, True),
    ({"media_resolution": "low"}, True),
    ({"thinking": "high"}, True),
    ({"max_side": 100}, True),  # other bytes sent
    ({"service_tier": "flex"}, False),  # price and latency, not the answer
    ({"model": "models/gemini-3.8-flash"}, False),  # the same model
    ({"concurrency": 1, "inline_limit": 1000}, False),  # how, not what (Files API upload)
]


async def test_every_setting_that_changes_the_answer_is_in_the_key(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    images.add("/a.jpg", jpeg(seed=6))
    await describe_run(capsys, [images.url("/a.jpg")])
    for change, misses in VARIANTS:
        gemini_env.reset_stats()
        [record] = (await describe_run(capsys, [images.url("/a.jpg")], **change)).records
        assert gemini_env.stats.generate_requests == int(misses), change
        assert record["cached"] is not misses and record["error"] is None, change


async def test_answers_of_another_endpoint_are_not_taken_for_geminis(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The emulator (or a gateway) at --base-url answers otherwise than Gemini: a demo run
    against it must not fill the cache a real run then reads."""
    images.add("/a.jpg", jpeg(seed=8))
    await describe_run(capsys, [images.url("/a.jpg")])  # GOOGLE_GEMINI_BASE_URL: the emulator
    async with GeminiEmulator(EmulatorSettings()) as other:
        [record] = (await describe_run(capsys, [images.url("/a.jpg")],
                                       base_url=other.base_url)).records  # fmt: skip
        assert other.stats.generate_requests == 1 and record["cached"] is False
        [record] = (await describe_run(capsys, [images.url("/a.jpg")],
                                       base_url=other.base_url + "/")).records  # fmt: skip
        assert other.stats.generate_requests == 1 and record["cached"] is True  # same server
    assert gemini_env.stats.generate_requests == 1


def test_a_setting_added_to_requests_later_is_in_the_key_without_a_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A --schema (issue 11) adds its settings to encoding.generation_settings: the key
    reads them from there, as it reads every request setting."""
    config = Config()
    before = request_fingerprint(config)
    plain = encoding.generation_settings
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    monkeypatch.setattr(encoding, "generation_settings", lambda c: {
        **plain(c), "response_mime_type": "application/json", "response_json_schema": schema,
    })  # fmt: skip
    assert request_fingerprint(config) != before
    assert request_fingerprint(config) == request_fingerprint(Config())  # canonical: stable


def test_a_pydantic_schema_is_keyed_by_its_json_schema() -> None:
    from pydantic import BaseModel

    class Alt(BaseModel):
        alt_text: str

    class Tags(BaseModel):
        tags: list[str]

    assert canonical({"s": Alt}) != canonical({"s": Tags})
    assert canonical({"s": Alt}) == canonical({"s": Alt.model_json_schema()})
    with pytest.raises(TypeError, match="cannot be part of a cache key"):
        canonical({"s": object()})


async def test_no_cache_neither_reads_nor_writes(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = _serve(images, distinct=1, urls=2)  # one image under two URLs
    for _ in range(2):
        out = await describe_run(capsys, urls, cache=False)
        assert not any(r["cached"] for r in out.records)
    assert gemini_env.stats.generate_requests == 4  # every item its own call
    assert not cache_path().exists()  # nothing made
    await describe_run(capsys, urls)  # fills the cache
    gemini_env.reset_stats()
    out = await describe_run(capsys, urls, cache=False)
    assert gemini_env.stats.generate_requests == 2 and not any(r["cached"] for r in out.records)


async def test_a_cache_that_fails_mid_run_costs_the_cache_not_the_items(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    def full(self: CacheStore, key: str, record: str) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(CacheStore, "put", full)
    urls = _serve(images, distinct=3, urls=3)
    with caplog.at_level(logging.WARNING, logger="describer"):
        out = await describe_run(capsys, urls)
    assert out.code == 0 and all(r["error"] is None for r in out.records)
    [warning] = [r.getMessage() for r in caplog.records]  # one warning, not one per item
    assert "database or disk is full" in warning and "items go on without it" in warning


async def test_old_records_without_cached_are_still_resumed(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    urls = _serve(images, distinct=2, urls=2)
    out_file = tmp_path / "old.jsonl"
    old = {"source": urls[0], "description": "A cat.", "error": None, "model": "m",
           "prompt": "p", "usage": None, "image": None, "finish_reason": "STOP",
           "latency_ms": 5, "attempts": 1}  # fmt: skip
    out_file.write_text(json.dumps(old) + "\n")
    out = await describe_run(capsys, urls, output=out_file)
    assert out.code == 0 and "1 already described (resumed)" in out.stderr
    assert gemini_env.stats.generate_requests == 1


async def test_a_schema_answer_comes_back_from_the_cache_with_its_data_and_a_new_schema_misses(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    images.add("/s.jpg", jpeg(seed=21))
    url = images.url("/s.jpg")
    first = await describe_run(capsys, [url], schema="title, people int")
    [paid] = first.records
    assert paid["error"] is None and set(paid["data"]) == {"title", "people"}
    gemini_env.reset_stats()
    [hit] = (await describe_run(capsys, [url], schema="title, people int")).records
    assert gemini_env.stats.generate_requests == 0 and hit["cached"] is True
    assert hit["data"] == paid["data"]  # the parsed fields come back, not only the text
    [other] = (await describe_run(capsys, [url], schema="title, mood")).records
    assert gemini_env.stats.generate_requests == 1 and other["cached"] is False
    assert set(other["data"]) == {"title", "mood"}
