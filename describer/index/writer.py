"""Writing records into an index as they are written to the output: :class:`IndexWriter`.

Records are written to the output file first, then added to the index in batches
(``FLUSH_ROWS`` records, or ``FLUSH_S`` seconds after the first of a batch, or at the end),
each batch one transaction that also records how far into the output file the index has
read (``synced``: the file's inode and byte size). The index therefore never holds a record
the file does not; a killed run loses at most the last batch from the index, and the next
writer (``describe -o``, ``embed FILE``) adds what is missing by reading the file from that
offset (:meth:`IndexWriter.sync`; the whole file when it was replaced meanwhile). Records
are keyed by ``id`` when they have one, else by ``source``: a key already held is not added
again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .journal import Item
from .store import VectorStore

FLUSH_ROWS = 512
FLUSH_S = 1.0
#: How describer writes a present vector (as ``enrich`` finds them): only such lines are parsed.
_HAS_VECTOR = re.compile(rb'"embedding": \[[-\d]')


class IndexWriter:
    """Adds embedded records to ``store``; the model and dimension are checked against the
    store's (the first record fixes them in a new store)."""

    def __init__(self, store: VectorStore, model: str, dim: int | None, output: Path | None,
                 deferred: bool = False) -> None:  # fmt: skip
        store.check(model, dim, "this run makes")
        self.store = store
        self.added = 0
        self._model, self._dim = model, dim
        self._output = output
        self._deferred = deferred  # one transaction until finish(): embed FILE's rewrite
        self._batch: list[Item] = []
        self._written: int | None = None
        self._timer: asyncio.TimerHandle | None = None

    def add(self, record: dict[str, Any], written: int | None = None) -> None:
        """Take ``record`` (a describer record as JSON) if it has a vector; ``written``: the
        output file's size once it was written. The batch is added once it holds
        ``FLUSH_ROWS``, or ``FLUSH_S`` after its first record (a timer on the running event
        loop, if any: a stalled run still gets its records in). Raises
        :class:`ConfigError` for a vector of another model or dimension than the index's."""
        item = self._item(record)
        if item is None:
            return
        self._written = written
        self._batch.append(item)
        if len(self._batch) >= FLUSH_ROWS:
            self.flush(written)
        elif len(self._batch) == 1:
            self._timer = _later(FLUSH_S, lambda: self.flush(self._written))

    def flush(self, written: int | None = None) -> None:
        """Add the batch; with ``written``, record that the output is read up to there."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        settings: dict[str, Any] = {}
        if self._batch and self.store.model is None:
            settings |= {"model": self._model, "dim": len(self._batch[0].vector)}
        if written is not None and self._output is not None and not self._deferred:
            settings["synced"] = _position(self._output, written)
        self.added += self.store.add(self._batch, settings, commit=not self._deferred)
        self._batch = []

    def finish(self, written: int | None = None) -> None:
        """Add what is left, commit, and bring the approximate index up to date."""
        self.flush(written)
        if self._output is not None and self._output.exists():
            self.store.add([], {"synced": _position(self._output, None)})
        self.store.fold()

    def abandon(self) -> None:
        """Drop an open transaction (``embed FILE`` cancelled: its file is left as it was)."""
        if self._timer is not None:
            self._timer.cancel()
        self.store.journal.rollback()

    def sync(self) -> int:
        """Add the output's embedded records the index lacks, reading the output from where
        the index last read it (from its start when it was replaced or cut); how many were
        added. Raises :class:`ConfigError` for a vector of another model or dimension."""
        if self._output is None or not self._output.exists():
            return 0
        offset = _resume_offset(self._output, self.store.journal.setting("synced"))
        before = self.added
        deferred, self._deferred = self._deferred, False  # what the file holds is kept
        try:
            end = offset
            for record, after in _lines(self._output, offset):
                if record is not None:
                    self.add(record)
                end = after
            self.flush(end)
        finally:
            self._deferred = deferred
        return self.added - before

    def _item(self, record: dict[str, Any]) -> Item | None:
        vector = record.get("embedding")
        if not vector or record.get("error") is not None:
            return None
        dim = self.store.dim or self._dim or len(vector)
        model = record.get("embedding_model") or self._model
        if model != (self.store.model or self._model) or len(vector) != dim:
            raise ConfigError(
                f"{self._output or 'the output'} has {len(vector)}-dimension vectors of "
                f"{model}; the index {self.store.folder} takes {dim}-dimension vectors of "
                f"{self.store.model or self._model}: give --embed-model and --embed-dim to "
                "match, or another --index PATH"
            )
        row = np.asarray(vector, dtype=np.float32)
        row /= np.linalg.norm(row) or 1.0
        key = record.get("id")
        return Item(str(record["source"] if key is None else key), str(record["source"]),
                    _text(record), None if key is None else str(key), record.get("meta"),
                    row)  # fmt: skip


def _later(delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle | None:
    """``callback`` after ``delay`` seconds on the running event loop (None: no loop)."""
    try:
        return asyncio.get_running_loop().call_later(delay, callback)
    except RuntimeError:
        return None


def _text(record: dict[str, Any]) -> str:
    description = record.get("description")
    if isinstance(description, str):
        return description
    return json.dumps(record.get("data"), ensure_ascii=False) if "data" in record else ""


def _position(output: Path, written: int | None) -> dict[str, int]:
    st = os.stat(output)
    return {"inode": st.st_ino, "bytes": st.st_size if written is None else written}


def _resume_offset(output: Path, synced: dict[str, int] | None) -> int:
    """Where to read ``output`` from: the synced offset when it is the same file and no
    shorter, else 0."""
    st = os.stat(output)
    if synced and synced["inode"] == st.st_ino and synced["bytes"] <= st.st_size:
        return synced["bytes"]
    return 0


def _lines(output: Path, offset: int) -> Iterator[tuple[dict[str, Any] | None, int]]:
    """Each whole line of ``output`` from ``offset`` (a torn last line is not read): its
    record when it carries a vector (others are not parsed), and the offset after it."""
    try:
        with open(output, "rb") as fh:
            fh.seek(offset)
            for raw in fh:
                if not raw.endswith(b"\n"):
                    return
                offset += len(raw)
                record = json.loads(raw) if _HAS_VECTOR.search(raw) else None
                yield (record if isinstance(record, dict) else None), offset
    except OSError as exc:
        raise ConfigError(f"cannot read {output}: {exc.strerror}") from None
