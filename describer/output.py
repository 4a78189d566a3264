"""Output stage: one JSON line per record, on stdout or appended to ``-o FILE`` (resumed).

:func:`open_sink` opens where records go: it takes describer's lock on the file (one writer
per file), reads what an earlier run left there (:mod:`describer.resume`; a file that is not
describer's is refused untouched) and drops a torn last line. :func:`write_all` is the one
write loop, used by ``run`` and by ``batch fetch``. A write that fails (disk full) is undone
back to the last whole record and raises :class:`~describer.errors.OutputError`.

``-o FILE.parquet`` and ``-o FILE.csv`` are written the same way into their journal,
``FILE.parquet.journal.jsonl`` (the JSONL records, resumed as any ``-o FILE.jsonl``), and
the table is made from the journal when the sink closes (:mod:`describer.export`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from .errors import ConfigError, OutputError
from .export import check_target, export
from .locks import exclusive
from .model import Result
from .report import Progress, Tally
from .resume import Resume, scan
from .sources import source_key
from .tables.columns import journal_of, output_format


class Sink:
    """Where records go: stdout, or ``-o FILE`` appended to one whole line per write."""

    def __init__(
        self,
        resume: Resume,
        stream: IO[str] | None = None,
        fd: int | None = None,
        path: Path | None = None,
    ) -> None:
        self.resume = resume
        self._stream = stream
        self._fd = fd
        self._path = path
        self._size = os.fstat(fd).st_size if fd is not None else 0

    def write(self, result: Result) -> None:
        """Write one record as one line, at once: flushed to stdout, or ``write(2)`` calls
        to the file. Raises :class:`OutputError` when the file cannot take it (disk full,
        quota, I/O error), after cutting the file back to its last whole record."""
        line = result.to_line()
        if self._fd is None:
            assert self._stream is not None
            self._stream.write(line)
            self._stream.flush()
            return
        data = memoryview(line.encode("utf-8", "backslashreplace"))
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise OutputError(f"cannot write {self._path}: {exc.strerror}") from None
        self._size += len(line.encode("utf-8", "backslashreplace"))

    @property
    def size(self) -> int | None:
        """Bytes in ``-o FILE`` after the last record written (None on stdout)."""
        return self._size if self._fd is not None else None

    def already_done(self, result: Result) -> bool:
        """Whether the file already holds a successful record for ``result``'s source (by
        its ``id`` when it has one)."""
        return source_key(result.source, result.id) in self.resume.done


@contextlib.contextmanager
def open_sink(
    path: Path | None,
    overwrite: bool = False,
    model: str = "",
    prompt: str = "",
    structured: bool | None = None,
) -> Iterator[Sink]:
    """Open the run's output: stdout, or ``path`` resumed (appended), or emptied with
    ``overwrite``; describer's lock on ``path`` is held until the block ends.

    A table ``path`` (``.parquet``, ``.csv``) has its records go to its journal
    (:func:`journal_of`), and is made from the journal when the block ends without an
    exception (a run stopped by Ctrl-C or a quota included); a killed run leaves the
    journal, which the next run resumes and then makes the table from.

    Raises :class:`ConfigError` when another describer process writes ``path``, the file
    cannot be read or written, or it is not describer's (checked before anything is
    written, ``overwrite`` or not; for a table, the table and its journal).
    """
    if path is None:
        yield Sink(Resume(), stream=sys.stdout)
        return
    table, journal = output_format(path), journal_of(path)
    if table is not None:
        check_target(path, table)
    with exclusive(journal) as lock_fd:
        resume = _scan(lock_fd, journal, model, prompt, structured)
        fd = _open_for_append(journal, 0 if overwrite else resume.kept_bytes, resume.torn)
        try:
            yield Sink(Resume() if overwrite else resume, fd=fd, path=journal)
        finally:
            os.close(fd)
        if table is not None:
            export(journal, path, table)


def _scan(fd: int, path: Path, model: str, prompt: str, structured: bool | None) -> Resume:
    try:
        with os.fdopen(os.dup(fd), "rb") as handle:
            return scan(handle, path, model, prompt, structured)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _open_for_append(path: Path, keep: int, torn: bool) -> int:
    """The file opened for appending, cut to ``keep`` bytes when that drops anything."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        if torn or keep < os.fstat(fd).st_size:
            os.ftruncate(fd, keep)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    return fd


class Indexer(Protocol):
    """Where embedded records go once written (:class:`describer.index.IndexWriter`)."""

    def add(self, record: dict[str, Any], written: int | None = None) -> None: ...


async def write_all(
    results: AsyncIterable[Result],
    sink: Sink,
    tally: Tally,
    progress: Progress | None = None,
    index: Indexer | None = None,
) -> None:
    """Write each result as it comes (those already described in the sink are dropped),
    counting it in ``tally`` and on ``progress``; then, when it has a vector, add it to
    ``index``. Raises :class:`OutputError` when the output cannot take a record."""
    async for result in results:
        if sink.already_done(result):
            continue
        sink.write(result)
        if index is not None and result.embedding:
            index.add(result.to_json(), sink.size)
        tally.add(result)
        if progress is not None:
            progress.update(tally)
