"""Sources stage: turn command-line arguments into a lazy, de-duplicated stream of items.

An argument is an http(s) URL, an image file, a folder (walked recursively), a text file of
sources (one URL or path per line; blank lines and ``#`` comments skipped), ``-`` for such
lines on stdin, or a table (CSV, TSV, Parquet, JSONL: one source a row, read by
:mod:`describer.tables`). Nothing is read whole: a list of a million lines streams line by
line, and only a 16-byte fingerprint per source is kept to drop repeats.

A list (file or stdin) is read as bytes and decoded (:mod:`describer.listfiles`): UTF-8 (a
BOM is dropped; bytes that are not UTF-8, as in file names, are kept with
``surrogateescape``) or UTF-16 (a BOM, or a NUL every other byte). A list that is binary
gives one ``invalid`` source naming it, never a source per line of garbage; a line with a
NUL byte gives one ``invalid`` source.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from .config import Config
from .formats import SNIFF_BYTES, accepted, sniff
from .listfiles import BINARY_LIST, decoded_lines, head_of, list_encoding, read_chunks, without_bom
from .model import Source, SourceKind
from .tables import TableSpec, check_table, table_sources

#: File name endings taken as lists of sources when a file's bytes are not an image (``.csv``
#: and ``.tsv`` only with ``--input-format list``: otherwise they are tables).
LIST_SUFFIXES = (".txt", ".list", ".lst", ".urls", ".csv", ".tsv")
_SUPPORTED_SCHEMES = ("http://", "https://")
NUL_BYTE = "contains a NUL byte: neither a URL nor a path"


@dataclass
class SourceStats:
    """Counts kept while reading sources, for the run summary."""

    skipped: int = 0  # folder entries that are not of a --media kind
    symlinks_skipped: int = 0  # symlinks leaving a folder, without --follow-symlinks
    duplicates: int = 0
    already_done: int = 0  # described by an earlier run into the same -o FILE


def identity(ref: str) -> str:
    """The one name of a source, across runs (resume) and within one (repeats): the absolute
    path for a file or folder (``~`` expanded, ``./`` and ``..`` folded; symlinks are not
    resolved), the URL with its scheme and host lower-cased for a URL, the text itself for
    anything else. ``pics``, ``./pics/a.jpg`` and ``$PWD/pics/a.jpg`` name one file. The record
    keeps ``source`` as written."""
    lowered = ref.lower()
    if lowered.startswith(_SUPPORTED_SCHEMES):
        scheme, rest = ref.split("://", 1)
        authority, slash, path = rest.partition("/")
        userinfo, at, host = authority.rpartition("@")
        return f"{scheme.lower()}://{userinfo}{at}{host.lower()}{slash}{path}"
    if "://" in ref:
        return ref
    try:
        return os.path.abspath(os.path.expanduser(ref))
    except ValueError:  # e.g. a NUL byte: not a path
        return ref


def fingerprint(text: str) -> bytes:
    """A 16-byte digest standing for a source string in sets (repeats, resume)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).digest()


def source_key(ref: str, id: str | None = None) -> bytes:
    """The key by which a source is done (resume) or repeated: the :func:`fingerprint` of
    its ``id`` (a table's ``--id-col``) when it has one, else of its :func:`identity`. An id
    and a path never share a key."""
    if id is not None:
        return fingerprint("\x00id\x00" + id)
    return fingerprint(identity(ref))


def classify(ref: str) -> Source:
    """Classify one user-written source (a list line or an argument) without reading it.
    Never raises: what cannot be a URL or a path is an ``INVALID`` source saying why."""
    if "\x00" in ref:
        return Source(ref, SourceKind.INVALID, ref, NUL_BYTE)
    lowered = ref.lower()
    if lowered.startswith(_SUPPORTED_SCHEMES):
        if "://" in ref and not ref.split("://", 1)[1].split("/", 1)[0]:
            return Source(ref, SourceKind.INVALID, ref, "URL has no host")
        return Source(ref, SourceKind.URL, ref)
    if "://" in ref:
        scheme = ref.split("://", 1)[0]
        problem = f"unsupported scheme {scheme}:// (use http or https)"
        return Source(ref, SourceKind.INVALID, ref, problem)
    try:
        path = os.path.abspath(os.path.expanduser(ref))
        exists = os.path.isdir(path) or os.path.isfile(path)
    except (ValueError, OSError) as exc:
        return Source(ref, SourceKind.INVALID, ref, f"not a path: {exc}")
    if exists:
        return Source(ref, SourceKind.PATH, path)
    problem = "neither an http(s) URL nor an existing file or folder"
    return Source(ref, SourceKind.INVALID, ref, problem)


def is_list_file(path: str) -> bool:
    """Whether a file is a list of sources: not an image, and named like a list or text
    (UTF-8 or UTF-16, see :func:`list_encoding`) whose first line is a source."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if sniff(head) is not None:
        return False
    if path.lower().endswith(LIST_SUFFIXES):
        return True
    found = list_encoding(head)
    if found is None:
        return False
    encoding, bom = found
    text = head[bom:].decode(encoding, "replace").lstrip()
    return not text.startswith("<") and _first_line_is_source(text)


def _first_line_is_source(text: str) -> bool:
    for raw in text.splitlines():
        line = raw.strip()
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
        table: TableSpec | None = None,
    ) -> None:
        """``done``: :func:`source_key` of sources already described (resume), skipped;
        ``media``: the ``--media`` kinds a folder walk takes; ``table``: how tables are read
        (``--input-format``, ``--url-col``, ``--id-col``, ``--keep-cols``)."""
        self.stats = SourceStats()
        self._table = table or TableSpec()
        self._taken = accepted(media)
        self._follow_symlinks = follow_symlinks
        self._stdin = stdin
        self._done = done
        self._seen: set[bytes] = set()

    @classmethod
    def of(
        cls, config: Config, stdin: IO[str] | None = None, done: set[bytes] | None = None
    ) -> SourceReader:
        """A reader with the run's settings (``--follow-symlinks``, ``--media``, tables)."""
        return cls(config.follow_symlinks, stdin, done, config.media, TableSpec.of(config))

    def iter(self, args: Iterable[str]) -> Iterator[Source]:
        """Yield the sources named by ``args`` in order, without repeats (a table row with
        an id: by its id). Raises :class:`~describer.errors.ConfigError` before the first
        source when a table argument lacks a named column (see :func:`check_table`; ``args``
        that are not a sequence, a library caller's generator, are not read ahead: a table
        among them is checked when it is reached)."""
        for arg in args if isinstance(args, Sequence) else ():
            fmt = self._table_format(arg)
            if fmt is not None and arg != "-":
                check_table(arg, fmt, self._table)
        for arg in args:
            for source in self._expand(arg):
                if self._first_time(source):
                    yield source

    def _first_time(self, source: Source) -> bool:
        digest = source_key(source.ref, source.id)
        if self._done and digest in self._done:
            self.stats.already_done += 1
            return False
        if digest in self._seen:
            self.stats.duplicates += 1
            return False
        self._seen.add(digest)
        return True

    def _expand(self, arg: str) -> Iterator[Source]:
        fmt = self._table_format(arg)
        if fmt is not None:
            yield from table_sources(arg, fmt, self._table, classify, self._stdin)
            return
        if arg == "-":
            yield from self._stdin_sources()
            return
        source = classify(arg)
        if source.kind is not SourceKind.PATH:
            yield source
        elif os.path.isdir(source.location):
            yield from self._walk(source.location, arg)
        elif is_list_file(source.location):
            with open(source.location, "rb") as fh:
                yield from self._list(fh, arg)
        else:
            yield source

    def _table_format(self, arg: str) -> str | None:
        """The table format ``arg`` is read in (None: not a table). Only ``-`` and files are
        tables: never a URL or a folder."""
        if arg != "-" and ("://" in arg or not os.path.isfile(arg)):
            return None
        return self._table.format_of(arg)

    def _stdin_sources(self) -> Iterator[Source]:
        """``-``: stdin's bytes when it has them (its encoding told as a list file's is),
        else its text lines, a BOM dropped."""
        stream = self._stdin if self._stdin is not None else sys.stdin
        raw = getattr(stream, "buffer", None)
        if raw is not None:
            yield from self._list(raw, "-")
        else:
            yield from self._lines(without_bom(stream))

    def _list(self, stream: IO[bytes], name: str) -> Iterator[Source]:
        """The sources of a list read as bytes; one ``INVALID`` source ``name`` when it is
        binary."""
        chunks = read_chunks(stream)
        head = head_of(chunks)
        found = list_encoding(head)
        if found is None:
            yield Source(name, SourceKind.INVALID, name, BINARY_LIST)
            return
        encoding, bom = found
        yield from self._lines(decoded_lines(itertools.chain([head[bom:]], chunks), encoding))

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
