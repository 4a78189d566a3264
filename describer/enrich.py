"""``describe-images embed FILE.jsonl``: add embeddings to an earlier run's records, in place.

Described records without an ``embedding`` get one; every other line is copied byte for byte,
and every line keeps its place. A torn last line (no newline: a run that was killed) is
never embedded: it is copied as it is, last. Only describer's own output is rewritten: before
anything is written, every whole line must be a describer record (:func:`model.is_record`),
else the file is refused. The rewrite holds describer's write lock (:mod:`locks`) from the
check to the replace, so a concurrent ``describe -o FILE`` or ``embed FILE`` is refused
instead of losing records. The new file is written beside the old one and moved over it
atomically (``os.replace``), so the old file stays whole until the new one is. Interrupted
(Ctrl-C), the batches in flight finish and the remaining lines are copied unchanged; a rerun
picks up where it stopped. The new vectors go into the file's index (:mod:`describer.index`)
in one transaction, kept once the new file has replaced the old one and dropped otherwise;
vectors the file already had and the index lacks (a file from an earlier describer) are
added first.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import gemini, locks
from .config import Config
from .embed import Embedder, EmbedOutcome, embed_stream, embed_text
from .errors import ConfigError
from .index import IndexWriter, index_writer
from .quotas import Quota
from .resume import recognised_lines

#: Fewest lines read ahead of the first line not yet written (see :func:`_window`).
MIN_WINDOW = 256


@dataclass
class Line:
    """One line of the file: its place (0-based), its bytes, and its record when it needs an
    embedding."""

    number: int
    raw: bytes
    record: dict[str, Any] | None = None


@dataclass
class EnrichReport:
    """What ``embed FILE`` did: lines seen, vectors added, embeddings that failed, and the
    ``quota`` that stopped it (its lines without a vector are left as they were) and why
    (``quota_reason``, e.g. ``"daily quota spent: ..."``)."""

    lines: int = 0
    embedded: int = 0
    failed: int = 0
    already: int = 0
    no_text: int = 0  # described records with nothing to embed (no such --embed-field)
    quota: Quota | None = None
    quota_reason: str = ""


def needs_embedding(record: object, field: str | None = None) -> bool:
    """A described record (no error) with text to embed (its description, or with
    ``field`` its ``data[field]``: :func:`describer.embed.embed_text`) and no embedding yet."""
    return (
        isinstance(record, dict)
        and record.get("error") is None
        and embed_text(record.get("description"), record.get("data"), field) is not None
        and not record.get("embedding")
    )


async def embed_file(path: Path, config: Config, stop: asyncio.Event | None = None) -> EnrichReport:
    """Embed the descriptions in ``path`` that lack a vector; the counts.

    Lines keep their order; a torn last line is copied as it is. Setting ``stop`` embeds no
    more lines (batches in flight finish; the rest are copied); a spent per-day embedding
    quota sets it, the lines it held back are copied as they were, and the report carries
    the quota. Cancelled, the file is left
    as it was. Raises :class:`ConfigError`, the file untouched, when another describer process
    is writing it, a whole line of it is not a describer record (or it holds only a torn
    fragment), it cannot be read or replaced, or there are no credentials.
    """
    stop = stop or asyncio.Event()
    with locks.exclusive(path, create=False) as fd, open(fd, "rb", closefd=False) as source:
        try:
            check_recognised(path, source)
            source.seek(0)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        with index_writer(config, path, deferred=True) as index:
            async with gemini.connect(config) as connection:
                embedder = Embedder(connection, config, lambda quota: _stop_at(quota, stop))
                report = await _rewrite(path, source, embedder, config, stop, index)
                report.quota, report.quota_reason = embedder.spent, embedder.stop_reason
                return report


def _stop_at(quota: Quota, stop: asyncio.Event) -> None:
    """Stop reading new lines once a 429 names a per-day quota."""
    if quota.daily:
        stop.set()


def check_recognised(path: Path, source: IO[bytes]) -> None:
    """Refuse (:class:`ConfigError`) a file that describer did not write: one whose whole
    lines are not all describer records (:func:`resume.recognised_lines`), or that holds
    only a torn fragment. An empty file, or a torn last line after records, passes. Reads
    ``source`` to its end."""
    advice = "embed only rewrites describer's own output, so the file is left as it was"
    for number, (_, record) in enumerate(recognised_lines(source, path, advice)):
        if record is None and number == 0:
            raise ConfigError(
                f"{path} holds only a torn line, not a describer record; left as it was"
            )


async def _rewrite(
    path: Path,
    source: IO[bytes],
    embedder: Embedder,
    config: Config,
    stop: asyncio.Event,
    index: IndexWriter | None,
) -> EnrichReport:
    report = EnrichReport()
    window = asyncio.Semaphore(_window(config))
    tmp = path.with_name(f".{path.name}.describer-tmp")
    try:
        with open(tmp, "wb") as target:
            writer = _InOrder(target, report, window, index)
            lines = _lines(source, stop, report, window, config.embed_field)
            async for line in _enrich(lines, embedder, config):
                writer.put(line)
            writer.finish()
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot rewrite {path}: {exc.strerror}") from None
    except BaseException:  # cancelled (a second Ctrl-C) or a bug: the file stays as it was
        tmp.unlink(missing_ok=True)
        raise
    return report


def _window(config: Config) -> int:
    """Lines that may be read past the first line not yet written: enough for every embedding
    slot to hold a full batch and one more to be filling, so the window never idles a slot;
    at least :data:`MIN_WINDOW`, so sparse records among embedded lines still fill batches."""
    return max(MIN_WINDOW, config.embed_batch_size * (config.concurrency + 1))


class _InOrder:
    """Writes lines in file order whatever order they come back in: a line that is early
    waits in ``pending`` until those before it are written. Each line written frees one place
    of the reader's window."""

    def __init__(
        self,
        target: IO[bytes],
        report: EnrichReport,
        window: asyncio.Semaphore,
        index: IndexWriter | None = None,
    ) -> None:
        self._index = index
        self._target = target
        self._report = report
        self._window = window
        self._pending: dict[int, Line] = {}
        self._next = 0

    def put(self, line: Line) -> None:
        """Take one line back; write it and every pending line that now follows in order."""
        self._pending[line.number] = line
        while (ready := self._pending.pop(self._next, None)) is not None:
            _write(self._target, ready, self._report)
            if self._index is not None and ready.record is not None:
                self._index.add(ready.record)
            self._next += 1
            self._window.release()

    def finish(self) -> None:
        """At the end: raises ``RuntimeError`` (a bug; the file is kept) if a line was lost."""
        if self._pending:
            raise RuntimeError(f"embed lost line {self._next + 1}; the file is left as it was")


def _enrich(lines: AsyncIterator[Line], embedder: Embedder, config: Config) -> AsyncIterator[Line]:
    def attach(line: Line, outcome: EmbedOutcome) -> Line:
        assert line.record is not None
        if not outcome.done:  # held back by a spent per-day quota: left as it was
            return Line(line.number, line.raw)
        error = outcome.error.to_json() if outcome.error else None
        line.record |= {"embedding": outcome.vector, "embedding_model": embedder.model,
                        "embedding_error": error}  # fmt: skip
        return line

    def text_of(line: Line) -> str | None:
        if line.record is None:
            return None
        return embed_text(line.record.get("description"), line.record.get("data"),
                          config.embed_field)  # fmt: skip

    return embed_stream(
        lines, embedder, text_of, attach, config.embed_batch_size, config.embed_timeout
    )


#: How describer writes a present vector; such lines are counted without being parsed.
_HAS_VECTOR = re.compile(rb'"embedding": \[[-\d]')


async def _lines(
    source: IO[bytes],
    stop: asyncio.Event,
    report: EnrichReport,
    window: asyncio.Semaphore,
    field: str | None,
) -> AsyncIterator[Line]:
    for number, raw in enumerate(source):
        await window.acquire()  # at most the window's lines read ahead of the writer
        report.lines += 1
        record = None
        if not raw.endswith(b"\n"):
            pass  # a torn last line: copied as it is, never embedded
        elif _HAS_VECTOR.search(raw):
            report.already += 1
        elif not stop.is_set():
            record = _loads(raw)
            if not needs_embedding(record, field):
                report.no_text += isinstance(record, dict) and record.get("error") is None
                record = None
        yield Line(number, raw, record)
        await asyncio.sleep(0)  # let batches go out while a long file is read


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _write(target: IO[bytes], line: Line, report: EnrichReport) -> None:
    if line.record is None:
        target.write(line.raw)
        return
    if line.record.get("embedding"):
        report.embedded += 1
    else:
        report.failed += 1
    target.write(json.dumps(line.record, ensure_ascii=False).encode() + b"\n")
