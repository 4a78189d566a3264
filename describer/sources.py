"""Sources stage: turn command-line arguments into a lazy, de-duplicated stream of items.

An argument is an http(s) URL, an image file, a folder (walked recursively), a text file of
sources (one URL or path per line; blank lines and ``#`` comments skipped) or ``-`` for such
lines on stdin. Nothing is read whole: a list of a million lines streams line by line, and
only a 16-byte fingerprint per source is kept to drop repeats.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from .formats import SNIFF_BYTES, accepted, sniff
from .model import Source, SourceKind

#: File name endings taken as lists of sources when a file's bytes are not an image.
LIST_SUFFIXES = (".txt", ".list", ".lst", ".urls", ".csv", ".tsv")
_SUPPORTED_SCHEMES = ("http://", "https://")


@dataclass
class SourceStats:
    """Counts kept while reading sources, for the run summary."""

    skipped: int = 0  # folder entries that are not of a --media kind
    symlinks_skipped: int = 0  # symlinks leaving a folder, without --follow-symlinks
    duplicates: int = 0
    already_done: int = 0  # described by an earlier run into the same -o FILE


def fingerprint(text: str) -> bytes:
    """A 16-byte digest standing for a source string in sets (repeats, resume)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).digest()


def classify(ref: str) -> Source:
    """Classify one user-written source (a list line or an argument) without reading it."""
    lowered = ref.lower()
    if lowered.startswith(_SUPPORTED_SCHEMES):
        if "://" in ref and not ref.split("://", 1)[1].split("/", 1)[0]:
            return Source(ref, SourceKind.INVALID, ref, "URL has no host")
        return Source(ref, SourceKind.URL, ref)
    if "://" in ref:
        scheme = ref.split("://", 1)[0]
        problem = f"unsupported scheme {scheme}:// (use http or https)"
        return Source(ref, SourceKind.INVALID, ref, problem)
    path = os.path.abspath(os.path.expanduser(ref))
    if os.path.isdir(path) or os.path.isfile(path):
        return Source(ref, SourceKind.PATH, path)
    problem = "neither an http(s) URL nor an existing file or folder"
    return Source(ref, SourceKind.INVALID, ref, problem)


def is_list_file(path: str) -> bool:
    """Whether a file is a list of sources: not an image, and named like a list or plain text."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if sniff(head) is not None:
        return False
    if path.lower().endswith(LIST_SUFFIXES):
        return True
    text = head.lstrip()
    return b"\x00" not in head and not text.startswith(b"<") and _first_line_is_source(text)


def _first_line_is_source(text: bytes) -> bool:
    for raw in text.splitlines():
        line = raw.strip().decode("utf-8", "replace")
        if line and not line.startswith("#"):
            return classify(line).kind is not SourceKind.INVALID
    return False


class SourceReader:
    """Expands arguments into :class:`Source` items, lazily, each distinct source once."""

    def __init__(
        self,
        follow_symlinks: bool = False,
        stdin: IO[str] | None = None,
        done: set[bytes] | None = None,
        media: frozenset[str] = frozenset({"image"}),
    ) -> None:
        """``done``: :func:`fingerprint` of sources already described (resume), skipped;
        ``media``: the ``--media`` kinds a folder walk takes."""
        self.stats = SourceStats()
        self._taken = accepted(media)
        self._follow_symlinks = follow_symlinks
        self._stdin = stdin
        self._done = done
        self._seen: set[bytes] = set()

    def iter(self, args: Iterable[str]) -> Iterator[Source]:
        """Yield the sources named by ``args`` in order, without repeats."""
        for arg in args:
            for source in self._expand(arg):
                if self._first_time(source):
                    yield source

    def _first_time(self, source: Source) -> bool:
        if self._done and fingerprint(source.ref) in self._done:
            self.stats.already_done += 1
            return False
        digest = fingerprint(source.location)
        if digest in self._seen:
            self.stats.duplicates += 1
            return False
        self._seen.add(digest)
        return True

    def _expand(self, arg: str) -> Iterator[Source]:
        if arg == "-":
            yield from self._lines(self._stdin or sys.stdin)
            return
        source = classify(arg)
        if source.kind is not SourceKind.PATH:
            yield source
        elif os.path.isdir(source.location):
            yield from self._walk(source.location, arg)
        elif is_list_file(source.location):
            with open(source.location, encoding="utf-8", errors="surrogateescape") as fh:
                yield from self._lines(fh)
        else:
            yield source

    def _lines(self, lines: Iterable[str]) -> Iterator[Source]:
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            source = classify(line)
            if source.kind is SourceKind.PATH and os.path.isdir(source.location):
                yield from self._walk(source.location, line)
            else:
                yield source

    def _walk(self, root: str, shown_root: str) -> Iterator[Source]:
        real_root = os.path.realpath(root)
        visited = {real_root}
        for path in self._walk_dir(root, real_root, visited):
            with open(path, "rb") as fh:
                head = fh.read(SNIFF_BYTES)
            if sniff(head) in self._taken:
                shown = os.path.join(shown_root, os.path.relpath(path, root))
                yield Source(shown, SourceKind.PATH, os.path.abspath(path))
            else:
                self.stats.skipped += 1

    def _walk_dir(self, folder: str, real_root: str, visited: set[str]) -> Iterator[str]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink() and not self._symlink_allowed(entry.path, real_root):
                self.stats.symlinks_skipped += 1
                continue
            if entry.is_dir():
                real = os.path.realpath(entry.path)
                if real not in visited:  # symlink cycles
                    visited.add(real)
                    yield from self._walk_dir(entry.path, real_root, visited)
            elif entry.is_file():
                yield entry.path

    def _symlink_allowed(self, path: str, real_root: str) -> bool:
        if self._follow_symlinks:
            return True
        target = os.path.realpath(path)
        return target == real_root or target.startswith(real_root + os.sep)
