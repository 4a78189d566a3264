"""The vector index: written as records are, resumed, searched without the output file."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_KEY, cli, cli_process, describe_run, wait_until
from imaging import jpeg

from describer import Config
from describer.emulator import GeminiEmulator, ImageServer
from describer.emulator.answers import embedding_vector
from describer.enrich import embed_file
from describer.index import open_for_search


@pytest.fixture
def threaded_emulator() -> Iterator[GeminiEmulator]:
    """An emulator on its own thread, so blocking subprocess calls can reach it."""
    emu = GeminiEmulator()
    with emu.in_thread():
        yield emu


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _keys(index: Path) -> set[str]:
    """The keys the index's journal holds, read with plain sqlite3 (another process's view)."""
    with sqlite3.connect(f"file:{index / 'index.sqlite3'}?mode=ro", uri=True) as db:
        return {key for (key,) in db.execute("SELECT key FROM items")}


def _described(path: Path, count: int, extra: dict[int, dict[str, Any]] | None = None) -> None:
    """A describe run's output of ``count`` described records, without vectors; ``extra``
    adds fields (``id``, ``meta``) to some records."""
    lines = []
    for i in range(count):
        record = {"source": f"img{i}.jpg", "description": f"photo {i} of a red car",
                  "error": None, "model": "gemini-test", "prompt": "p", "usage": None}  # fmt: skip
        lines.append(json.dumps(record | (extra or {}).get(i, {})))
    path.write_text("\n".join(lines) + "\n")


async def test_describe_embed_writes_the_index_beside_the_output_at_768_dimensions(
    gemini_env: GeminiEmulator, images: ImageServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    sources = []
    for i in range(4):
        images.add(f"/{i}.jpg", jpeg(seed=i))
        sources.append(images.url(f"/{i}.jpg"))
    out = tmp_path / "out.jsonl"
    done = await describe_run(capsys, sources, embed=True, output=out, embed_timeout=0.05)
    assert done.code == 0, done.stderr
    # the emulator answers 3072 values unless outputDimensionality was sent: 768 was sent
    assert {len(r["embedding"]) for r in _records(out)} == {768}
    store = open_for_search(tmp_path / "out.jsonl.index")
    assert (store.model, store.dim, store.journal.count()) == ("gemini-embedding-001", 768, 4)
    store.close()


def test_a_killed_run_leaves_a_consistent_index_and_a_rerun_adds_only_the_missing(
    threaded_emulator: GeminiEmulator, write_files, tmp_path: Path
) -> None:
    slow = jpeg(seed=99)
    threaded_emulator.script(hashlib.sha256(slow).hexdigest(), "slow:60")
    folder = write_files({**{f"{i}.jpg": jpeg(seed=i) for i in range(5)}, "slow.jpg": slow})
    out, index = tmp_path / "out.jsonl", tmp_path / "out.jsonl.index"
    env = {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": threaded_emulator.base_url}
    args = [str(folder), "-o", str(out), "--embed", "--embed-timeout", "0", "--no-progress"]
    proc = cli_process(args, env)
    # the five fast records reach the index while the slow one is still at the model
    wait_until(lambda: (index / "index.sqlite3").exists() and len(_keys(index)) == 5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    embedded = {r["source"] for r in _records(out) if r.get("embedding")}
    assert _keys(index) <= embedded and str(folder / "slow.jpg") not in embedded
    threaded_emulator.script(hashlib.sha256(slow).hexdigest(), None)
    threaded_emulator.stats.batch_sizes.clear()
    rerun = cli(args, env)
    assert rerun.returncode == 0, rerun.stderr
    assert threaded_emulator.stats.batch_sizes == [1]  # only the slow one is embedded now
    assert _keys(index) == {r["source"] for r in _records(out)} and len(_keys(index)) == 6


async def test_records_written_but_not_yet_indexed_are_added_from_the_file_on_resume(
    gemini_env: GeminiEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"
    _described(path, 30)
    await embed_file(path, Config(embed_timeout=0.01))
    index = tmp_path / "out.jsonl.index"
    with sqlite3.connect(index / "index.sqlite3") as db:  # as if killed before these commits
        db.execute("DELETE FROM items WHERE key IN ('img3.jpg', 'img17.jpg')")
        db.execute("DELETE FROM settings WHERE name = 'synced'")
    calls = gemini_env.stats.embed_requests
    report = await embed_file(path, Config(embed_timeout=0.01))
    assert report.embedded == 0 and gemini_env.stats.embed_requests == calls
    assert _keys(index) == {f"img{i}.jpg" for i in range(30)}


def test_search_reads_the_index_not_the_output_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    _described(path, 6)
    emulator = GeminiEmulator()
    with emulator.in_thread():
        env = {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": emulator.base_url}
        assert cli(["embed", str(path), "--embed-timeout", "0"], env).returncode == 0
        path.rename(tmp_path / "elsewhere.jsonl")  # search never opens it
        found = cli(["search", str(path), "photo 4 of a red car", "-k", "2"], env)
    assert found.returncode == 0, found.stderr
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert hits[0]["source"] == "img4.jpg" and hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert hits[0]["description"] == "photo 4 of a red car" and len(hits) == 2


async def test_index_path_option_and_id_and_meta_carried_into_hits(
    gemini_env: GeminiEmulator, tmp_path: Path
) -> None:
    from describer.search import hits, open_index

    path = tmp_path / "out.jsonl"
    _described(path, 3, {1: {"id": "row-1", "meta": {"license": "cc-by"}}})
    elsewhere = tmp_path / "vectors"
    await embed_file(path, Config(embed_timeout=0, index=elsewhere))
    assert not (tmp_path / "out.jsonl.index").exists() and _keys(elsewhere) == {
        "img0.jpg", "row-1", "img2.jpg"}  # fmt: skip
    store = open_index(path, Config(index=elsewhere))
    found = hits(store, embedding_vector("photo 1 of a red car", 768), 3)
    assert found[0].to_json() | {"score": 1} == {
        "source": "img1.jpg", "score": 1, "description": "photo 1 of a red car",
        "id": "row-1", "meta": {"license": "cc-by"}}  # fmt: skip
    assert set(found[1].to_json()) == {"source", "score", "description"}
    store.close()


def test_an_index_of_another_dimension_is_refused_with_one_line(
    threaded_emulator: GeminiEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"
    _described(path, 2)
    env = {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": threaded_emulator.base_url}
    assert cli(["embed", str(path), "--embed-timeout", "0"], env).returncode == 0
    _described(path, 3)  # a new record to embed, at another dimension
    done = cli(["embed", str(path), "--embed-dim", "1536"], env)
    assert done.returncode == 2
    assert "holds 768-dimension vectors of gemini-embedding-001" in done.stderr
    assert "--embed-dim 768" in done.stderr and "Traceback" not in done.stderr


def test_a_folder_that_is_not_an_index_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    _described(path, 2)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    done = cli(["embed", str(path), "--index", str(foreign)], {"GEMINI_API_KEY": TEST_KEY})
    assert done.returncode == 2 and "is not a describer index" in done.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


async def test_where_keeps_only_records_whose_meta_matches(
    gemini_env: GeminiEmulator, tmp_path: Path
) -> None:
    from describer.search import hits, open_index

    path = tmp_path / "out.jsonl"
    licences = {0: "cc-by", 1: "cc0", 2: "cc-by", 3: None}
    _described(path, 4, {i: {"meta": {"license": v, "year": 2020 + i}}
                         for i, v in licences.items() if v})  # fmt: skip
    await embed_file(path, Config(embed_timeout=0))
    store = open_index(path, Config())
    query = embedding_vector("photo 1 of a red car", 768)
    assert {h.source for h in hits(store, query, 4, {"license": "cc-by"})} == {
        "img0.jpg", "img2.jpg"}  # fmt: skip
    assert [h.source for h in hits(store, query, 4, {"license": "cc0", "year": "2021"})] == [
        "img1.jpg"]  # fmt: skip
    assert hits(store, query, 4, {"license": "cc0", "year": "2020"}) == []
    store.close()


def test_describe_overwrite_starts_the_index_afresh_too(
    threaded_emulator: GeminiEmulator, write_files, tmp_path: Path
) -> None:
    out, index = tmp_path / "out.jsonl", tmp_path / "out.jsonl.index"
    env = {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": threaded_emulator.base_url}
    first = write_files({f"{i}.jpg": jpeg(seed=i) for i in range(3)})
    assert cli([str(first), "-o", str(out), "--embed", "--embed-timeout", "0"], env).returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.jpg").write_bytes(jpeg(seed=50))
    again = cli([str(other), "-o", str(out), "--embed", "--embed-timeout", "0", "--overwrite"], env)
    assert again.returncode == 0, again.stderr
    assert _keys(index) == {str(other / "x.jpg")}


async def test_a_table_output_is_indexed_from_its_journal_and_searched_by_its_name(
    gemini_env: GeminiEmulator, images: ImageServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from describer.search import open_index

    table = tmp_path / "in.csv"
    rows = ["id,url,license"]
    for i in range(3):
        images.add(f"/{i}.jpg", jpeg(seed=i))
        rows.append(f"r{i},{images.url(f'/{i}.jpg')},cc0")
    table.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out.parquet"
    done = await describe_run(capsys, [str(table)], embed=True, output=out, id_col="id",
                              keep_cols=("license",), embed_timeout=0.05)  # fmt: skip
    assert done.code == 0, done.stderr
    assert _keys(tmp_path / "out.parquet.index") == {"r0", "r1", "r2"}
    store = open_index(out, Config())  # `search out.parquet` meets the same index
    assert store.journal.count() == 3
    store.close()
    # an index lost (or never caught up) is rebuilt from the journal by the next run
    shutil.rmtree(tmp_path / "out.parquet.index")
    again = await describe_run(capsys, [str(table)], embed=True, output=out, id_col="id",
                               embed_timeout=0.05)  # fmt: skip
    assert again.code == 0 and gemini_env.stats.generate_requests == 3, again.stderr
    assert _keys(tmp_path / "out.parquet.index") == {"r0", "r1", "r2"}
    # embedding the journal by hand adds to the same index, not to one of its own
    await embed_file(tmp_path / "out.parquet.journal.jsonl", Config(embed_timeout=0))
    assert not (tmp_path / "out.parquet.journal.jsonl.index").exists()
