"""The vector index: embedded records kept on disk for ``search`` (see :mod:`.store`).

``describe --embed -o FILE`` and ``embed FILE`` add their records to it as they write them
(:func:`index_writer`); ``search`` opens it (:func:`.store.open_for_search`) and never reads
the output file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..config import Config
from ..tables.columns import journal_of
from .store import VectorStore, index_path, open_for_search, open_for_writing
from .writer import IndexWriter

__all__ = ["IndexWriter", "VectorStore", "index_folder", "index_path", "index_writer",
           "open_for_search"]  # fmt: skip


def index_folder(config: Config, output: Path | None) -> Path | None:
    """The index a run writes: ``--index PATH``, else beside ``output``, else none."""
    if config.index is not None:
        return config.index
    return index_path(output) if output is not None else None


@contextlib.contextmanager
def index_writer(
    config: Config, output: Path | None, *, deferred: bool = False, overwrite: bool = False
) -> Iterator[IndexWriter | None]:
    """An :class:`IndexWriter` for the run's index (None when it has none), caught up with
    ``output`` first (:meth:`IndexWriter.sync`); emptied first with ``overwrite``. On a
    normal exit the rest is added and the approximate index brought up to date; on an
    exception what was added is kept, except with ``deferred`` (one transaction for the
    block: ``embed FILE``, whose file is then left as it was), where it is dropped. Raises
    :class:`~describer.errors.ConfigError` (index not describer's, in use, of another model
    or dimension)."""
    folder = index_folder(config, output)
    if folder is None:
        yield None
        return
    with open_for_writing(folder) as store:
        if overwrite:
            store.clear()
        records = journal_of(output) if output is not None else None  # a table's: its journal
        writer = IndexWriter(store, config.embed_model, config.embed_dim, records, deferred)
        writer.sync()
        try:
            yield writer
        except BaseException:
            if deferred:
                writer.abandon()
            raise
        writer.finish()
