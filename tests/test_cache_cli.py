"""The result cache at the command line: ``cache stats|clear``, ``--no-cache``, files that
are not describer's cache, a cache that cannot be made, and two processes sharing one."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_KEY, cli, cli_process
from imaging import jpeg

from describer.cache import cache_path
from describer.emulator import GeminiEmulator


@pytest.fixture
def emulator_in_thread() -> Iterator[GeminiEmulator]:
    """An emulator on its own thread, for child describe-images processes."""
    emulator = GeminiEmulator()
    with emulator.in_thread():
        yield emulator


def _env(emulator: GeminiEmulator) -> dict[str, str]:
    return {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": emulator.base_url}


def _stats(env: dict[str, str]) -> dict[str, str]:
    done = cli(["cache", "stats"], env)
    assert done.returncode == 0 and done.stderr == ""
    return dict(line.split(": ", 1) for line in done.stdout.splitlines())


def test_stats_clear_and_no_cache(
    emulator_in_thread: GeminiEmulator, write_files, tmp_path: Path
) -> None:
    env = _env(emulator_in_thread)
    folder = write_files({f"{i}.jpg": jpeg(seed=i) for i in range(3)} | {"copy.jpg": jpeg(seed=0)})
    assert _stats(env) == {"path": f"{cache_path()} (not made yet)", "entries": "0",
                           "size": "0 bytes"}  # fmt: skip
    first = cli([str(folder), "-o", str(tmp_path / "a.jsonl")], env)
    assert first.returncode == 0 and "4 described (1 from cache)" in first.stderr
    assert emulator_in_thread.stats.generate_requests == 3
    shown = _stats(env)
    assert shown["path"] == str(cache_path()) and shown["entries"] == "3"
    assert int(shown["size"].removesuffix(" bytes")) >= 4096  # an SQLite page at least

    again = cli([str(folder)], env)  # stdout this time
    assert again.returncode == 0 and emulator_in_thread.stats.generate_requests == 3
    assert all(json.loads(line)["cached"] for line in again.stdout.splitlines())

    uncached = cli([str(folder), "--no-cache"], env)
    assert uncached.returncode == 0 and emulator_in_thread.stats.generate_requests == 7
    assert not any(json.loads(line)["cached"] for line in uncached.stdout.splitlines())

    cleared = cli(["cache", "clear"], env)
    assert cleared.returncode == 0 and cleared.stdout == ""
    assert cleared.stderr == f"describer: cache cleared: 3 entries removed from {cache_path()}\n"
    assert _stats(env)["entries"] == "0"
    assert cli([str(folder)], env).returncode == 0
    assert emulator_in_thread.stats.generate_requests == 10  # asked again after clear


def _foreign_sqlite(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.execute("INSERT INTO notes VALUES ('mine')")
    db.commit()
    db.close()


@pytest.mark.parametrize("kind", ["text", "sqlite", "empty"])
def test_a_file_that_is_not_describers_cache_is_refused_untouched(
    emulator_in_thread: GeminiEmulator, write_files, kind: str
) -> None:
    env = _env(emulator_in_thread)
    folder = write_files({"a.jpg": jpeg()})
    path = cache_path()
    path.parent.mkdir(parents=True)
    if kind == "sqlite":
        _foreign_sqlite(path)
    else:
        path.write_bytes(b"my precious notes\n" if kind == "text" else b"")
    before = path.read_bytes()
    for args in ([str(folder)], ["cache", "stats"], ["cache", "clear"]):
        done = cli(args, env)
        assert done.returncode == 2 and done.stdout == "", args
        [line] = done.stderr.splitlines()
        assert line.startswith(f"describe-images: error: {path} is not describer's cache")
        assert "--no-cache" in line
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no -wal, no temp
    assert emulator_in_thread.stats.generate_requests == 0
    assert cli([str(folder), "--no-cache"], env).returncode == 0


def test_a_cache_that_cannot_be_made_is_one_warning_and_the_run_goes_on(
    emulator_in_thread: GeminiEmulator, write_files, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {**_env(emulator_in_thread), "DESCRIBER_HOME": str(blocker / "home")}  # not a folder
    folder = write_files({"a.jpg": jpeg(), "b.jpg": jpeg(seed=1)})
    done = cli([str(folder)], env)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2
    warning, summary = done.stderr.splitlines()
    assert warning.startswith("describer: WARNING: the result cache is off for this run: "
                              f"cannot open the cache {blocker}/home/cache.sqlite3")  # fmt: skip
    assert summary.startswith("describer: 2 described, 0 failed")


def test_two_runs_at_once_share_the_cache_without_harm(
    emulator_in_thread: GeminiEmulator, write_files
) -> None:
    """The same 40 images in two folders, described by two processes at once: each asks
    about the images the other has not answered yet, and both store those answers."""
    emulator_in_thread.configure(latency=(0.01, 0.03))
    files = {f"{i:02}.jpg": jpeg(48, 32, seed=i) for i in range(40)}
    folders = [write_files(files, folder=name) for name in ("one", "two")]
    env = _env(emulator_in_thread)
    runs = [cli_process([str(folder), "-c", "8"], env) for folder in folders]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    for stdout, stderr in outputs:
        assert "WARNING" not in stderr, stderr  # no failed write, no "database is locked"
        assert len(stdout.splitlines()) == 40
    assert 40 <= emulator_in_thread.stats.generate_requests <= 80
    db = sqlite3.connect(cache_path())
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT count(*) FROM answers").fetchone() == (40,)
    db.close()


WRITER = """
import sys
from pathlib import Path
from describer.cache import CacheStore
store = CacheStore.open()
ready = Path(sys.argv[3])
(ready / sys.argv[1]).touch()
while len(list(ready.iterdir())) < 2:  # both open: start writing together
    pass
for i in range(int(sys.argv[2])):
    store.put(f"{sys.argv[1]}-{i}", '{"description": "x"}')
    store.get(f"{sys.argv[1]}-{i // 2}")
store.close()
"""


def test_two_processes_writing_at_once_neither_fail_nor_corrupt(tmp_path: Path) -> None:
    """Every write its own transaction, each process its own connection: WAL and the busy
    timeout make them take turns (2 x 1,500 writes, interleaved)."""
    env = {**os.environ, "DESCRIBER_HOME": os.environ["DESCRIBER_HOME"]}
    ready = tmp_path / "ready"
    ready.mkdir()
    pipes = {"env": env, "stderr": subprocess.PIPE, "text": True}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, name, "1500", str(ready)], **pipes)
        for name in ("a", "b")
    ]
    errors = [writer.communicate(timeout=120)[1] for writer in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    db = sqlite3.connect(cache_path())
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT count(*) FROM answers").fetchone() == (3000,)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()
