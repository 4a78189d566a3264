"""The describe-images command in a child process: stdin, exit codes, stderr, streaming, Ctrl-C."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_KEY, cli, cli_process, wait_until
from imaging import jpeg, sha256

from describer import Config, ConfigError, __version__
from describer.emulator import EmulatorSettings, GeminiEmulator
from describer.gemini import check_credentials


@pytest.fixture
def threaded_emulator() -> Iterator[GeminiEmulator]:
    """An emulator on its own thread, so blocking subprocess calls can reach it."""
    emu = GeminiEmulator(EmulatorSettings())
    with emu.in_thread():
        yield emu


@pytest.fixture
def env(threaded_emulator: GeminiEmulator) -> dict[str, str]:
    return {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": threaded_emulator.base_url}


def _records(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_paths_on_stdin(env: dict[str, str], write_files) -> None:
    folder = write_files({"a.jpg": jpeg(seed=1), "b.jpg": jpeg(seed=2)})
    lines = f"# from find\n{folder / 'a.jpg'}\n\n{folder / 'b.jpg'}\n"
    done = cli(["-", "--no-progress"], env, stdin=lines)
    assert done.returncode == 0, done.stderr
    assert sorted(r["source"] for r in _records(done.stdout)) == [
        str(folder / "a.jpg"), str(folder / "b.jpg")
    ]
    assert "2 described, 0 failed" in done.stderr


def test_version_prints_the_package_version() -> None:
    done = cli(["--version"], {})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "describe-images, version 0.1.0\n"
    assert done.stdout == f"describe-images, version {__version__}\n"  # not a copy of it


def test_no_credentials_is_one_line_and_exit_2(write_files) -> None:
    folder = write_files({"a.jpg": jpeg()})
    done = cli([str(folder)], {})
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "GEMINI_API_KEY" in done.stderr and "aistudio.google.com/apikey" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no/such/folder"], "no such file or folder: no/such/folder"),
        (["{folder}", "-c", "0"], "Invalid value for '-c' / '--concurrency'"),
        (["{folder}", "--max-bytes", "lots"], "is not a size"),
    ],
)
def test_usage_errors_exit_2_without_traceback(
    env: dict[str, str], write_files, args: list[str], message: str
) -> None:
    folder = write_files({"a.jpg": jpeg()})
    done = cli([a.format(folder=folder) for a in args], env)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_some_failed_exit_1_and_output_file(env: dict[str, str], write_files, tmp_path) -> None:
    folder = write_files({"a.jpg": jpeg(), "b.jpg": b"\xff\xd8\xff\xe0 truncated"})
    out = tmp_path / "out.jsonl"
    done = cli([str(folder), "-o", str(out)], env)
    assert done.returncode == 1
    assert done.stdout == ""
    errors = {r["source"]: r["error"] for r in _records(out.read_text())}
    assert errors[str(folder / "a.jpg")] is None
    assert errors[str(folder / "b.jpg")]["type"] == "corrupt_image"


def _slow_folder(write_files, emulator: GeminiEmulator, slow: int, seconds: float) -> Path:
    files = {"a.jpg": jpeg(seed=0)}
    for i in range(1, slow + 1):
        body = jpeg(seed=i)
        emulator.script(sha256(body), f"slow:{seconds}")
        files[f"s{i}.jpg"] = body
    return write_files(files)


def test_lines_are_flushed_as_items_complete(
    env: dict[str, str], threaded_emulator: GeminiEmulator, write_files
) -> None:
    folder = _slow_folder(write_files, threaded_emulator, slow=1, seconds=4)
    proc = cli_process([str(folder), "--no-progress"], env)
    first = json.loads(proc.stdout.readline())
    still_running = proc.poll() is None  # the slow item is still at the model
    rest, _ = proc.communicate(timeout=30)
    assert first["source"] == str(folder / "a.jpg")
    assert still_running
    assert [r["source"] for r in _records(rest)] == [str(folder / "s1.jpg")]


def test_ctrl_c_finishes_items_in_flight_and_exits_130(
    env: dict[str, str], threaded_emulator: GeminiEmulator, write_files
) -> None:
    folder = _slow_folder(write_files, threaded_emulator, slow=6, seconds=1.5)
    proc = cli_process([str(folder), "-c", "2", "--prefetch", "0", "--no-progress"], env)
    first = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    rest, stderr = proc.communicate(timeout=30)
    records = _records(first + rest)  # every line is whole JSON
    assert proc.returncode == 130
    assert 2 <= len(records) <= 3  # the fast one, plus what was in flight; no new items
    assert all(r["error"] is None for r in records)
    assert "interrupted" in stderr and "Traceback" not in stderr


def test_embed_file_ctrl_c_twice_cancels_and_leaves_the_file_as_it_was(
    env: dict[str, str], threaded_emulator: GeminiEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"
    records = [{"source": f"img{i}.jpg", "description": f"photo {i}", "error": None,
                "model": "m", "prompt": "p", "usage": None} for i in range(5)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    before = path.read_bytes()
    threaded_emulator.configure(embed_latency=(60.0, 60.0))  # the batch never comes back
    proc = cli_process(["embed", str(path), "--embed-timeout", "0"], env)
    wait_until(lambda: threaded_emulator.stats.embed_requests >= 1)
    proc.send_signal(signal.SIGINT)  # first: batches in flight may finish; this one will not
    assert "stopping" in proc.stderr.readline()
    proc.send_signal(signal.SIGINT)  # second: cancel
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "left as it was" in stderr and "Traceback" not in stderr
    assert path.read_bytes() == before
    # no temporary file left; the index beside the file was made but got no vector
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.jsonl.index"]
    with sqlite3.connect(tmp_path / "out.jsonl.index" / "index.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM items").fetchone() == (0,)



@pytest.mark.parametrize(
    ("variables", "ok"),
    [
        ({"GOOGLE_API_KEY": "k"}, True),
        ({"GOOGLE_GENAI_USE_VERTEXAI": "true", "GOOGLE_CLOUD_PROJECT": "p",
          "GOOGLE_CLOUD_LOCATION": "us-central1"}, True),
        ({"GOOGLE_GENAI_USE_VERTEXAI": "true", "GOOGLE_CLOUD_PROJECT": "p"}, False),
        ({"GOOGLE_GENAI_USE_VERTEXAI": "false"}, False),
    ],
)
def test_credential_rules(variables: dict[str, str], ok: bool) -> None:
    if ok:
        check_credentials(Config(), variables)
    else:
        with pytest.raises(ConfigError, match="GOOGLE_CLOUD_"):
            check_credentials(Config(), variables)


def test_progress_bar_on_request_goes_to_stderr_only(env: dict[str, str], write_files) -> None:
    folder = write_files({"a.jpg": jpeg(seed=1), "b.jpg": jpeg(seed=2)})
    done = cli([str(folder), "--progress"], env)
    assert done.returncode == 0
    assert "2img" in done.stderr.replace(" ", "")  # tqdm's count, e.g. "2img [00:00, ...]"
    assert len(_records(done.stdout)) == 2  # stdout stays pure JSON lines
