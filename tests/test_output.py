"""The output file: describer writes only into its own files, one writer at a time, and a
write that fails (disk full) leaves whole records, one clear line and the summary."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_KEY, cli, cli_process, describe_run, wait_until
from imaging import jpeg

from describer import ConfigError
from describer.emulator import GeminiEmulator

MANIFEST = b'{"source": "a.jpg", "label": "cat"}\n{"source": "b.jpg", "label": "dog"}\n'


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("conf.json", b'{"debug": true, "workers": 4}'),  # one line, no trailing newline
        ("blob.bin", bytes(range(256)) * 12),  # 3 KB of binary, newlines included
        ("manifest.jsonl", MANIFEST),  # JSON lines with a "source" key: not describer's
        ("notes.txt", b"my precious notes\n"),
    ],
)
async def test_a_file_describer_did_not_write_is_refused_untouched(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    write_files, name: str, body: bytes,
) -> None:
    folder = write_files({"a.jpg": jpeg()})
    target = tmp_path / name
    target.write_bytes(body)
    for overwrite in (False, True):  # --overwrite does not clobber a foreign file either
        with pytest.raises(ConfigError, match="is not a describer output"):
            await describe_run(capsys, [str(folder)], output=target, overwrite=overwrite)
        assert target.read_bytes() == body
    assert gemini_env.stats.generate_requests == 0  # refused before any model call


async def test_a_torn_first_record_is_recognised_and_redone(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, write_files
) -> None:
    folder = write_files({"a.jpg": jpeg()})
    target = tmp_path / "out.jsonl"
    target.write_bytes(b'{"source": "' + str(folder / "a.jpg").encode() + b'", "descrip')
    out = await describe_run(capsys, [str(folder)], output=target)
    assert out.code == 0 and "dropped a torn last line" in out.stderr
    [record] = [json.loads(line) for line in target.read_text().splitlines()]
    assert record["source"] == str(folder / "a.jpg") and record["error"] is None


def test_a_second_writer_of_the_same_output_is_refused(
    threaded_emulator_env: dict[str, str], tmp_path: Path, write_files
) -> None:
    folder = write_files({"a.jpg": jpeg()})
    target = tmp_path / "out.jsonl"
    target.write_text("")
    from describer.locks import exclusive

    with exclusive(target):  # what a running describe -o, embed or batch fetch holds
        done = cli([str(folder), "-o", str(target)], threaded_emulator_env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"describe-images: error: {target} is being written by another describer process; "
        "wait for it or choose another file"
    ]
    assert target.read_bytes() == b""


@pytest.mark.parametrize("first", ["describe", "embed"])
def test_a_run_into_a_file_another_run_is_writing_is_refused(
    tmp_path: Path, write_files, first: str
) -> None:
    """The issue's cases: two describe -o F at once (each would describe everything, at twice
    the cost), and describe -o F during embed F (whose replace dropped describe's records)."""
    folder = write_files({f"{i}.jpg": jpeg(seed=i) for i in range(3)})
    target = tmp_path / "out.jsonl"
    record = {"source": "x.jpg", "description": "a cat", "error": None, "model": "m",
              "prompt": "p", "usage": None}  # fmt: skip
    target.write_text(json.dumps(record) + "\n")
    emulator = GeminiEmulator()
    emulator.configure(latency=(60.0, 60.0), embed_latency=(60.0, 60.0))  # the first hangs
    with emulator.in_thread():
        env = {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": emulator.base_url}
        args = [str(folder), "-o", str(target)] if first == "describe" else ["embed", str(target)]
        holder = cli_process(args, env)
        try:
            wait_until(lambda: emulator.stats.generate_requests + emulator.stats.embed_requests)
            second = cli([str(folder), "-o", str(target)], env)
        finally:
            holder.kill()
            holder.communicate(timeout=30)
    assert second.returncode == 2
    assert "is being written by another describer process" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert emulator.stats.generate_requests <= 3  # the second run made no model call



def test_disk_full_keeps_whole_records_says_so_and_shows_the_summary(
    threaded_emulator_env: dict[str, str], tmp_path: Path, write_files
) -> None:
    folder = write_files({f"{i:02}.jpg": jpeg(seed=i) for i in range(12)})
    target = tmp_path / "out.jsonl"
    limit = 1500  # bytes: room for two or three records, then writes fail (EFBIG)

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    # No bytecode cache from this child: its .pyc writes would be cut at the limit too.
    env = {**threaded_emulator_env, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = cli_process([str(folder), "-o", str(target), "-c", "2"], env, preexec_fn=small_disk)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in stderr
    assert f"describe-images: error: cannot write {target}: File too large; stopped" in stderr
    assert "described, 0 failed" in stderr.splitlines()[-1]  # the summary, last
    data = target.read_bytes()
    assert data.endswith(b"\n") and len(data) <= limit  # no torn line left behind
    records = [json.loads(line) for line in data.splitlines()]
    assert records and all(r["error"] is None for r in records)
    written = int(stderr.splitlines()[-1].split("describer: ")[1].split(" described")[0])
    assert written == len(records)  # the summary counts what is in the file


@pytest.fixture
def threaded_emulator_env() -> Iterator[dict[str, str]]:
    """The environment of a child describe-images talking to an emulator on a thread."""
    emulator = GeminiEmulator()
    with emulator.in_thread():
        yield {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": emulator.base_url}


def test_stdin_closed_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", "-c", 'exec "$0" -c "from describer.cli import main; main()" - <&-',
         sys.executable],
        capture_output=True, text=True, env={"GEMINI_API_KEY": TEST_KEY, "PATH": "/usr/bin:/bin"},
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "describe-images: error: - reads sources from stdin, but stdin is closed"
    ]
