"""Embedding and search end to end: google-genai embed_content → HTTP → the emulator."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from conftest import TEST_KEY, cli, describe_run
from imaging import jpeg

from describer import Config
from describer.emulator import GeminiEmulator, ImageServer
from describer.emulator.answers import embedding_vector
from describer.enrich import embed_file


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _described_file(path: Path, count: int, failed: int = 0) -> list[str]:
    """A describe run's output: ``count`` described records and ``failed`` failed ones."""
    lines = []
    for i in range(count + failed):
        ok = i < count
        description = f"photo number {i} of a red car" if ok else None
        error = None if ok else {"type": "http_error", "message": "HTTP 404"}
        lines.append(json.dumps({"source": f"img{i}.jpg", "description": description,
                                 "error": error, "model": "gemini-test", "prompt": "p",
                                 "usage": None}))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return [f"photo number {i} of a red car" for i in range(count)]


async def test_embed_file_batches_250_records_into_100_100_50(
    gemini_env: GeminiEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"
    texts = _described_file(path, 250, failed=3)
    report = await embed_file(path, Config(embed_dim=8, embed_timeout=5))
    assert sorted(gemini_env.stats.batch_sizes) == [50, 100, 100]
    assert (report.embedded, report.failed, report.lines) == (250, 0, 253)
    by_source = {r["source"]: r for r in _records(path)}
    assert len(by_source) == 253
    for i, text in enumerate(texts):  # each vector landed on its own record
        assert by_source[f"img{i}.jpg"]["embedding"] == pytest.approx(embedding_vector(text, 8))
        assert by_source[f"img{i}.jpg"]["embedding_model"] == "gemini-embedding-001"
    assert "embedding" not in by_source["img250.jpg"]  # a failed description gets no vector


async def test_embed_file_skips_records_that_have_a_vector(
    gemini_env: GeminiEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"
    _described_file(path, 30)
    await embed_file(path, Config(embed_dim=8, embed_timeout=0.05))
    gemini_env.reset_stats()
    before = path.read_bytes()
    report = await embed_file(path, Config(embed_dim=8))
    assert gemini_env.stats.embed_requests == 0 and report.already == 30
    assert path.read_bytes() == before


async def test_interrupted_embed_file_keeps_every_line_and_resumes(
    gemini_env: GeminiEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"
    _described_file(path, 300)
    stop = asyncio.Event()
    stop.set()  # interrupted before it began: nothing is embedded, nothing is lost
    report = await embed_file(path, Config(embed_dim=8), stop)
    assert report.embedded == 0 and len(_records(path)) == 300
    report = await embed_file(path, Config(embed_dim=8, embed_timeout=0.05))
    assert report.embedded == 300


async def test_describe_with_embed_adds_vectors_and_keeps_failures_flowing(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(5):
        images.add(f"/{i}.jpg", jpeg(seed=i))
    images.add("/missing.jpg", b"", status=404)
    sources = [images.url(f"/{i}.jpg") for i in range(5)] + [images.url("/missing.jpg")]
    out = await describe_run(capsys, sources, embed=True, embed_dim=16, embed_timeout=0.2)
    assert out.code == 1  # the 404
    got = out.by_source()
    for i in range(5):
        record = got[images.url(f"/{i}.jpg")]
        assert record["embedding"] == pytest.approx(embedding_vector(record["description"], 16))
        assert record["embedding_model"] == "gemini-embedding-001"
        assert record["embedding_error"] is None
    assert got[images.url("/missing.jpg")]["embedding"] is None
    assert sum(gemini_env.stats.batch_sizes) == 5
    assert "5 embedded, 0 embeddings failed" in out.stderr


async def test_a_failing_embedding_batch_is_retried_then_reported_without_losing_descriptions(
    gemini_env: GeminiEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"
    _described_file(path, 4)
    gemini_env.script_embed("fail:503:1")  # the first call fails, its retry succeeds
    report = await embed_file(path, Config(embed_dim=8, retry_wait=0.01))
    assert report.embedded == 4 and gemini_env.stats.batch_sizes == [4, 4]
    gemini_env.script_embed("fail:503:9")
    _described_file(path, 4)
    report = await embed_file(path, Config(embed_dim=8, retry_wait=0.01, max_attempts=2))
    assert report.failed == 4
    for record in _records(path):
        assert record["description"]  # kept
        assert record["embedding"] is None
        assert record["embedding_error"]["message"].startswith("503 UNAVAILABLE")


def test_search_ranks_a_records_own_description_first(tmp_path: Path, write_files) -> None:
    emulator = GeminiEmulator()
    folder = write_files({f"{i}.jpg": jpeg(seed=i) for i in range(6)})
    out = tmp_path / "out.jsonl"
    with emulator.in_thread():
        env = {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": emulator.base_url}
        described = cli([str(folder), "-o", str(out), "--embed", "--embed-timeout", "0.1"], env)
        assert described.returncode == 0, described.stderr
        target = _records(out)[3]
        found = cli(["search", str(out), str(target["description"]), "-k", "3"], env)
    assert found.returncode == 0, found.stderr
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert len(hits) == 3
    # vectors are kept as float16 in the index: a score to about 3 decimal places
    assert hits[0]["source"] == target["source"]
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_search_without_an_index_says_how_to_build_it(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    _described_file(path, 2)
    done = cli(["search", str(path), "red car"], {"GEMINI_API_KEY": TEST_KEY})
    assert done.returncode == 2
    assert f"no index at {path}.index: describe-images embed {path} builds it" in done.stderr
