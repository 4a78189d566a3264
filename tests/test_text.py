"""Text that is not clean UTF-8: list encodings (BOM, UTF-16, binary), NUL bytes in a line,
file names that are not UTF-8, and one identity for a source however it is spelled."""

from __future__ import annotations

import base64
import codecs
import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, TEST_KEY, describe_run
from imaging import jpeg

from describer.emulator import EmulatorSettings, GeminiEmulator
from describer.model import SourceKind
from describer.sources import SourceReader, classify

URL = "https://example.com/a.jpg"


def _refs(reader: SourceReader, args: list[str]) -> list[tuple[str, SourceKind, str | None]]:
    return [(s.ref, s.kind, s.problem) for s in reader.iter(args)]


def _list_file(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("name", ["list.txt", "sources"])  # by suffix, and by its content
def test_utf8_bom_is_dropped_from_a_list_file(tmp_path: Path, write_files, name: str) -> None:
    image = write_files({"a.jpg": jpeg()}) / "a.jpg"
    listing = _list_file(tmp_path, name, codecs.BOM_UTF8 + f"{URL}\n{image}\n".encode())
    assert _refs(SourceReader(), [listing]) == [
        (URL, SourceKind.URL, None), (str(image), SourceKind.PATH, None)
    ]


def test_utf8_bom_is_dropped_from_stdin_bytes_and_text() -> None:
    raw = io.TextIOWrapper(io.BytesIO(codecs.BOM_UTF8 + f"{URL}\n".encode()), "latin-1")
    assert _refs(SourceReader(stdin=raw), ["-"]) == [(URL, SourceKind.URL, None)]
    text = io.StringIO(f"\ufeff{URL}\n")  # a text stream with no bytes under it
    assert _refs(SourceReader(stdin=text), ["-"]) == [(URL, SourceKind.URL, None)]


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-16-le", b""),  # no BOM: a NUL every other byte
        ("utf-16-be", b""),
    ],
)
@pytest.mark.parametrize("name", ["list.txt", "sources"])
def test_utf16_lists_are_decoded(
    tmp_path: Path, write_files, encoding: str, bom: bytes, name: str
) -> None:
    image = write_files({"é.jpg": jpeg()}) / "é.jpg"
    text = f"# photos\r\n{URL}\r\n{image}\r\n"
    listing = _list_file(tmp_path, name, bom + text.encode(encoding))
    assert _refs(SourceReader(), [listing]) == [
        (URL, SourceKind.URL, None), (str(image), SourceKind.PATH, None)
    ]


def test_utf16_on_stdin_is_decoded() -> None:
    data = codecs.BOM_UTF16_LE + f"{URL}\n".encode("utf-16-le")
    stdin = io.TextIOWrapper(io.BytesIO(data), "utf-8")
    assert _refs(SourceReader(stdin=stdin), ["-"]) == [(URL, SourceKind.URL, None)]


def test_a_binary_list_is_one_invalid_source_not_a_record_per_line(tmp_path: Path) -> None:
    garbage = bytes(range(256)) * 8 + b"\n\xff\x00\n" * 50
    listing = _list_file(tmp_path, "list.txt", garbage)
    got = _refs(SourceReader(), [listing, URL])
    assert [(ref, kind) for ref, kind, _ in got] == [
        (listing, SourceKind.INVALID), (URL, SourceKind.URL)
    ]
    assert "binary" in (got[0][2] or "")
    stdin = io.TextIOWrapper(io.BytesIO(garbage), "utf-8")
    piped = _refs(SourceReader(stdin=stdin), ["-"])
    assert [(ref, kind) for ref, kind, _ in piped] == [("-", SourceKind.INVALID)]


def test_classify_never_raises_on_a_nul_byte() -> None:
    for ref in ("~\x00x", "~root\x00/a.jpg", "pics/\x00.jpg", "\x00"):
        source = classify(ref)
        assert source.kind is SourceKind.INVALID
        assert "contains a NUL byte" in (source.problem or "")


async def test_a_list_line_with_a_nul_byte_is_one_record_and_the_run_goes_on(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files, tmp_path: Path
) -> None:
    image = write_files({"a.jpg": jpeg()}) / "a.jpg"
    listing = _list_file(tmp_path, "list.txt", f"~\x00x\n{image}\n".encode())
    out = await describe_run(capsys, [listing])
    by_source = out.by_source()
    assert set(by_source) == {"~\x00x", str(image)}
    bad = by_source["~\x00x"]["error"]
    assert bad["type"] == "invalid_source" and "contains a NUL byte" in bad["message"]
    assert by_source[str(image)]["error"] is None and by_source[str(image)]["description"]
    assert gemini_env.stats.generate_requests == 1


async def test_binary_list_run_gives_one_record_and_goes_on(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files, tmp_path: Path
) -> None:
    image = write_files({"a.jpg": jpeg()}) / "a.jpg"
    listing = _list_file(tmp_path, "list.txt", bytes(range(256)) * 4 + b"\x00\n\xfe\n" * 20)
    out = await describe_run(capsys, [listing, str(image)])
    assert [r["source"] for r in out.records] == [listing, str(image)]
    assert out.records[0]["error"]["type"] == "invalid_source"
    assert out.records[1]["error"] is None


async def test_a_file_name_that_is_not_utf8_is_written_as_valid_utf8_and_resumed(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files, tmp_path: Path
) -> None:
    folder = write_files({"ok.jpg": jpeg(seed=1)})
    raw_name = os.fsencode(folder) + b"/\xffphoto.jpg"
    Path(os.fsdecode(raw_name)).write_bytes(jpeg(seed=2))
    out_file = tmp_path / "out.jsonl"
    first = await describe_run(capsys, [str(folder)], output=out_file)
    assert first.code == 0 and gemini_env.stats.generate_requests == 2
    lines = out_file.read_bytes().decode("utf-8").splitlines()  # valid UTF-8, or this raises
    records = {json.loads(line)["source"]: json.loads(line) for line in lines}
    odd = records[str(folder / "\\xffphoto.jpg")]
    assert base64.b64decode(odd["source_bytes"]) == raw_name and odd["error"] is None
    gemini_env.reset_stats()
    second = await describe_run(capsys, [str(folder)], output=out_file)
    assert second.code == 0 and gemini_env.stats.generate_requests == 0
    assert "2 already described (resumed)" in second.stderr
    assert len(out_file.read_bytes().splitlines()) == 2


async def test_three_spellings_of_one_folder_are_one_set_of_sources_across_runs(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_files({f"{i}.jpg": jpeg(seed=i) for i in range(10)}, folder="pics")
    monkeypatch.chdir(tmp_path)
    out_file = tmp_path / "out.jsonl"
    calls = []
    for spelling in ("pics", "./pics", f"{tmp_path}/pics"):
        gemini_env.reset_stats()
        run = await describe_run(capsys, [spelling], output=out_file)
        assert run.code == 0
        calls.append(gemini_env.stats.generate_requests)
    assert calls == [10, 0, 0]
    assert len(out_file.read_text().splitlines()) == 10


@pytest.fixture
def threaded_emulator() -> Iterator[GeminiEmulator]:
    """An emulator on its own thread, so a blocking child process can reach it."""
    emu = GeminiEmulator(EmulatorSettings())
    with emu.in_thread():
        yield emu


@pytest.mark.parametrize(
    ("bom", "encoding"),
    [(codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (b"", "utf-16-be")],
)
def test_the_command_reads_stdin_bytes_with_a_bom_or_in_utf16(
    threaded_emulator: GeminiEmulator, write_files, bom: bytes, encoding: str
) -> None:
    folder = write_files({"a.jpg": jpeg(seed=1), "b.jpg": jpeg(seed=2)})
    data = bom + f"{folder / 'a.jpg'}\n{folder / 'b.jpg'}\n".encode(encoding)
    env = {
        "PATH": os.environ["PATH"], "DESCRIBER_HOME": os.environ["DESCRIBER_HOME"],
        "GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": threaded_emulator.base_url,
    }
    done = subprocess.run(
        [*CLI, "-", "--no-progress"], input=data, capture_output=True, env=env, timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    sources = sorted(json.loads(line)["source"] for line in done.stdout.splitlines())
    assert sources == [str(folder / "a.jpg"), str(folder / "b.jpg")]
