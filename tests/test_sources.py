"""Reading sources: lists, folders, stdin, laziness, repeats, symlinks."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import describe_run
from imaging import jpeg

from describer import Config, describe_stream
from describer.emulator import GeminiEmulator, ImageServer
from describer.model import SourceKind
from describer.sources import SourceReader, classify


class CountingLines(io.TextIOBase):
    """A million-line stdin that counts how many lines were read."""

    def __init__(self, first: str, total: int) -> None:
        self.read_lines = 0
        self._first = first
        self._total = total

    def __iter__(self) -> Iterator[str]:
        for i in range(self._total):
            self.read_lines += 1
            yield self._first if i == 0 else f"http://127.0.0.1:9/{i}.jpg\n"  # refused at once


async def test_a_million_line_list_streams_without_being_read_whole(
    gemini_env: GeminiEmulator, images: ImageServer
) -> None:
    images.add("/first.jpg", jpeg())
    lines = CountingLines(images.url("/first.jpg") + "\n", 1_000_000)
    reader = SourceReader(stdin=lines)  # type: ignore[arg-type]
    stream = describe_stream(["-"], Config(concurrency=4), reader=reader)
    first = await anext(aiter(stream))
    await stream.aclose()  # type: ignore[attr-defined]
    assert first.source.startswith("http://127.0.0.1:")
    assert lines.read_lines < 5_000  # a bounded read-ahead, not the whole list


def test_classify_lines() -> None:
    assert classify("https://example.com/a.jpg").kind is SourceKind.URL
    assert classify("HTTP://EXAMPLE.COM/A.JPG").kind is SourceKind.URL
    ftp = classify("ftp://example.com/a.jpg")
    assert ftp.kind is SourceKind.INVALID and "unsupported scheme ftp://" in (ftp.problem or "")
    assert classify("file:///etc/passwd").kind is SourceKind.INVALID
    assert classify("https:///nohost.jpg").kind is SourceKind.INVALID
    missing = classify("not/a/real/file.jpg")
    assert missing.kind is SourceKind.INVALID and "neither" in (missing.problem or "")


def test_list_file_lines_folders_and_invalid_lines(write_files, tmp_path: Path) -> None:
    folder = write_files({"x/1.jpg": jpeg(seed=1), "x/2.jpg": jpeg(seed=2), "x/notes.md": b"#"})
    listing = tmp_path / "sources"  # no .txt: recognised as text all the same
    listing.write_text(f"{folder / 'x'}\n# comment\nnonsense here\n{folder / 'x' / '1.jpg'}\n")
    reader = SourceReader()
    got = list(reader.iter([str(listing)]))
    assert [(s.ref, s.kind) for s in got] == [
        (str(folder / "x" / "1.jpg"), SourceKind.PATH),
        (str(folder / "x" / "2.jpg"), SourceKind.PATH),
        ("nonsense here", SourceKind.INVALID),
    ]
    assert reader.stats.duplicates == 1 and reader.stats.skipped == 1


def test_image_argument_is_an_item_not_a_list(write_files) -> None:
    folder = write_files({"photo.txt": jpeg()})  # an image, whatever its name says
    got = list(SourceReader().iter([str(folder / "photo.txt")]))
    assert [(s.ref, s.kind) for s in got] == [(str(folder / "photo.txt"), SourceKind.PATH)]


async def test_symlinks_leaving_the_folder_are_not_followed_by_default(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files, tmp_path: Path
) -> None:
    outside = write_files({"secret.jpg": jpeg(seed=5)}, folder="outside")
    folder = write_files({"in.jpg": jpeg(seed=6)})
    os.symlink(outside / "secret.jpg", folder / "link.jpg")
    os.symlink(outside, folder / "linkdir")
    os.symlink(folder, folder / "loop")  # a cycle inside the folder
    out = await describe_run(capsys, [str(folder)])
    assert list(out.by_source()) == [str(folder / "in.jpg")]
    assert "2 symlinks outside the folder not followed" in out.stderr
    followed = await describe_run(capsys, [str(folder)], follow_symlinks=True)
    assert set(followed.by_source()) == {
        str(folder / "in.jpg"), str(folder / "link.jpg"), str(folder / "linkdir" / "secret.jpg")
    }
