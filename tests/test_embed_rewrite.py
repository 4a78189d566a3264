"""``embed FILE`` rewrites only describer's own files, keeps every line in place, one writer.

Issue 9: a torn last line was joined onto the next record and lines came back reordered;
a concurrent writer's records were dropped by embed's atomic replace.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import TEST_KEY, cli, cli_process, wait_until

from describer import Config, enrich
from describer.emulator import GeminiEmulator
from describer.enrich import embed_file
from describer.errors import ConfigError


def _record(i: int, vector: list[float] | None = None) -> bytes:
    record: dict[str, object] = {
        "source": f"img{i}.jpg", "description": f"photo {i} of a red car", "error": None,
        "model": "gemini-test", "prompt": "p", "usage": None,
    }  # fmt: skip
    if vector is not None:
        record |= {"embedding": vector, "embedding_model": "gemini-embedding-001",
                   "embedding_error": None}  # fmt: skip
    return json.dumps(record).encode() + b"\n"


def _mixed_file(path: Path, count: int) -> list[str]:
    """``count`` records, every third one already embedded (8 values: the index beside the
    file takes only vectors of the run's model and dimension); their sources in file order."""
    path.write_bytes(b"".join(_record(i, [0.5, 0.25] * 4 if i % 3 == 2 else None)
                              for i in range(count)))  # fmt: skip
    return [f"img{i}.jpg" for i in range(count)]


async def test_lines_come_back_in_file_order(gemini_env: GeminiEmulator, tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sources = _mixed_file(path, 60)
    gemini_env.configure(embed_latency=(0.0, 0.02))  # batches finish out of order
    config = Config(embed_dim=8, embed_batch_size=3, concurrency=4, embed_timeout=0)
    report = await embed_file(path, config)
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert [r["source"] for r in records] == sources
    assert (report.embedded, report.already, report.lines) == (40, 20, 60)


async def test_a_torn_last_line_is_kept_byte_for_byte_at_the_end(
    gemini_env: GeminiEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"
    sources = _mixed_file(path, 12)
    torn = b'{"source": "img12.jpg", "descr'
    path.write_bytes(path.read_bytes() + torn)
    await embed_file(path, Config(embed_dim=8, embed_batch_size=4, embed_timeout=0))
    data = path.read_bytes()
    assert data.endswith(b"\n" + torn)
    whole = [json.loads(line) for line in data[: -len(torn)].splitlines()]
    assert [r["source"] for r in whole] == sources  # no record merged with the fragment
    assert all(r["embedding"] for r in whole)


@pytest.mark.parametrize(
    "content",
    [
        b'{"name": "not describer", "description": "a cat"}\n',  # JSON, not a record
        _record(0) + b"plain text notes\n" + _record(1),  # one foreign line among records
        _record(0) + b"\n",  # an empty line
        b'{"source": "img0.jpg", "descr',  # only a torn fragment: nothing to recognise
    ],
    ids=["foreign-json", "foreign-line", "empty-line", "fragment-only"],
)
async def test_a_file_describer_did_not_write_is_refused_untouched(
    gemini_env: GeminiEmulator, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="describer"):
        await embed_file(path, Config(embed_dim=8, embed_timeout=0))
    assert path.read_bytes() == content
    assert gemini_env.stats.embed_requests == 0
    assert [p.name for p in tmp_path.iterdir()] == ["notes.jsonl"]


def test_the_cli_refuses_a_foreign_file_with_one_line_and_exit_2(tmp_path: Path) -> None:
    emulator = GeminiEmulator()
    path = tmp_path / "notes.jsonl"
    path.write_bytes(b'{"description": "a cat"}\n')
    with emulator.in_thread():
        env = {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": emulator.base_url}
        done = cli(["embed", str(path)], env, timeout=30)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not a describer record" in done.stderr
    assert path.read_bytes() == b'{"description": "a cat"}\n'


def test_a_second_embed_of_the_same_file_is_refused_while_the_first_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.jsonl"
    _mixed_file(path, 5)
    before = path.read_bytes()
    emulator = GeminiEmulator()
    with emulator.in_thread():
        env = {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": emulator.base_url}
        emulator.configure(embed_latency=(60.0, 60.0))  # the first run's batch never returns
        # one batch of all 4 records, sent when the reader reaches the end of the file
        first = cli_process(["embed", str(path), "--embed-timeout", "30", "--embed-dim", "8"], env)
        try:
            wait_until(lambda: emulator.stats.embed_requests >= 1)
            second = cli(["embed", str(path), "--embed-dim", "8"], env, timeout=20)
            assert second.returncode == 2
            assert second.stderr.count("\n") == 1
            assert "another describer process" in second.stderr
            assert emulator.stats.embed_requests == 1  # the second never called the API
        finally:
            first.send_signal(signal.SIGINT)  # first: stop taking lines
            first.stderr.readline()
            first.send_signal(signal.SIGINT)  # second: cancel; the file is left as it was
            first.communicate(timeout=30)
    assert first.returncode == 130
    assert path.read_bytes() == before



async def test_lines_read_ahead_of_the_writer_are_bounded_by_the_window(
    gemini_env: GeminiEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.jsonl"
    # the first record waits for its vector while 200 embedded lines behind it are read
    path.write_bytes(_record(0) + b"".join(_record(i, [0.5] * 8) for i in range(1, 201)))
    gemini_env.configure(embed_latency=(0.2, 0.2))
    monkeypatch.setattr(enrich, "MIN_WINDOW", 8)
    held: list[int] = []
    put = enrich._InOrder.put

    def watched(self: enrich._InOrder, line: enrich.Line) -> None:
        put(self, line)
        held.append(len(self._pending))

    monkeypatch.setattr(enrich._InOrder, "put", watched)
    config = Config(embed_dim=8, embed_batch_size=1, concurrency=1, embed_timeout=0)
    report = await embed_file(path, config)
    assert report.lines == 201 and report.embedded == 1
    assert max(held) <= 8  # never more than the window waits behind the first record
    assert [json.loads(line)["source"] for line in path.read_bytes().splitlines()] == [
        f"img{i}.jpg" for i in range(201)
    ]
