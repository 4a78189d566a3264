"""``describe-images embed FILE.jsonl``: add embeddings to an earlier run's records, in place.

Described records without an ``embedding`` get one; every other line is copied byte for byte.
The new file is written beside the old one and moved over it atomically (``os.replace``), so
the old file stays whole until the new one is. Interrupted (Ctrl-C), the batches in flight
finish and the remaining lines are copied unchanged; a rerun picks up where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import gemini
from .config import Config
from .embed import Embedder, EmbedOutcome, embed_stream
from .errors import ConfigError


@dataclass
class Line:
    """One line of the file: its bytes, and its record when it needs an embedding."""

    raw: bytes
    record: dict[str, Any] | None = None


@dataclass
class EnrichReport:
    """What ``embed FILE`` did: lines seen, vectors added, embeddings that failed."""

    lines: int = 0
    embedded: int = 0
    failed: int = 0
    already: int = 0


def needs_embedding(record: object) -> bool:
    """A described record (no error, a description) that has no embedding yet."""
    return (
        isinstance(record, dict)
        and record.get("error") is None
        and isinstance(record.get("description"), str)
        and not record.get("embedding")
    )


async def embed_file(path: Path, config: Config, stop: asyncio.Event | None = None) -> EnrichReport:
    """Embed the descriptions in ``path`` that lack a vector; the counts.

    Setting ``stop`` embeds no more lines (batches in flight finish; the rest are copied).
    Cancelled, the file is left as it was. Raises :class:`ConfigError` when the file cannot
    be read or replaced, or there are no credentials.
    """
    stop = stop or asyncio.Event()
    report = EnrichReport()
    async with gemini.connect(config) as connection:
        embedder = Embedder(connection, config)
        tmp = path.with_name(f".{path.name}.describer-tmp")
        try:
            with open(path, "rb") as source, open(tmp, "wb") as target:
                async for line in _enrich(_lines(source, stop, report), embedder, config):
                    _write(target, line, report)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ConfigError(f"cannot rewrite {path}: {exc.strerror}") from None
        except BaseException:  # cancelled (a second Ctrl-C) or a bug: the file stays as it was
            tmp.unlink(missing_ok=True)
            raise
    return report


def _enrich(lines: AsyncIterator[Line], embedder: Embedder, config: Config) -> AsyncIterator[Line]:
    def attach(line: Line, outcome: EmbedOutcome) -> Line:
        assert line.record is not None
        error = outcome.error.to_json() if outcome.error else None
        line.record |= {"embedding": outcome.vector, "embedding_model": embedder.model,
                        "embedding_error": error}  # fmt: skip
        return line

    def text_of(line: Line) -> str | None:
        return line.record["description"] if line.record is not None else None

    return embed_stream(
        lines, embedder, text_of, attach, config.embed_batch_size, config.embed_timeout
    )


#: How describer writes a present vector; such lines are counted without being parsed.
_HAS_VECTOR = re.compile(rb'"embedding": \[[-\d]')


async def _lines(source: Any, stop: asyncio.Event, report: EnrichReport) -> AsyncIterator[Line]:
    for raw in source:
        report.lines += 1
        if _HAS_VECTOR.search(raw):
            report.already += 1
            record = None
        else:
            record = None if stop.is_set() else _parse(raw)
        yield Line(raw, record if needs_embedding(record) else None)
        await asyncio.sleep(0)  # let batches go out while a long file is read


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None  # a torn last line is copied as it is
    return record if isinstance(record, dict) else None


def _write(target: Any, line: Line, report: EnrichReport) -> None:
    if line.record is None:
        target.write(line.raw)
        return
    if line.record.get("embedding"):
        report.embedded += 1
    else:
        report.failed += 1
    target.write(json.dumps(line.record, ensure_ascii=False).encode() + b"\n")
