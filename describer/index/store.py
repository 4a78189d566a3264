"""The vector index of an output file: a folder, by default the output's name plus ``.index``
(``photos.jsonl`` → ``photos.jsonl.index/``), or where ``--index PATH`` says.

It holds the journal (:mod:`.journal`: every vector with its record's source, description,
``id`` and ``meta``; the model and dimension) and, once there are ``TRAIN_AT`` vectors, an
approximate index over them (:mod:`.ann`, a file ``ivf-ROW.faiss`` covering rows up to ROW).
A search asks the approximate index about the rows it covers and scans the rows added since
exactly, and merges the two. :meth:`VectorStore.fold` brings the approximate index up to
date; writers call it when they finish, so it is rebuilt from the journal, whole, only when
the collection has grown ``RETRAIN_GROWTH`` times since its centroids were trained.

One process writes an index at a time (describer's lock on ``writer.lock`` in the folder);
searches read it meanwhile (SQLite WAL; ANN files are replaced by rename).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .. import locks
from ..errors import ConfigError
from ..tables.columns import JOURNAL_SUFFIX
from . import ann
from .journal import Entry, Item, Journal

#: Below this many vectors there is no approximate index: every search is exact (at 20,000
#: rows of 768 dimensions, a 30 MB scan of a few milliseconds).
TRAIN_AT = 20_000
#: The approximate index is retrained, whole, once the rows have grown this many times
#: since its centroids were trained (so ``nlist`` stays near sqrt(n)).
RETRAIN_GROWTH = 4
#: The approximate index is asked for this many times ``k`` candidates, which are scored
#: again exactly with the journal's vectors (8-bit codes rank near neighbours less finely).
REFINE = 4
#: A ``where`` filter that leaves at most this many rows is answered by scanning them
#: exactly (100,000 x 768 float16: 150 MB read, ~0.1 s); more, by the approximate index.
EXACT_UP_TO = 100_000


def index_path(output: Path) -> Path:
    """Where the index of ``output`` lives unless ``--index`` says: ``output`` + ``.index``;
    for a table's journal (``out.parquet.journal.jsonl``), beside the table
    (``out.parquet.index``), so ``-o out.parquet``, ``embed`` of its journal and ``search
    out.parquet`` all meet the one index."""
    name = output.name.removesuffix(JOURNAL_SUFFIX)
    return output.with_name(name + ".index")


class VectorStore:
    """An open index: :meth:`add` (writers), :meth:`search` and :meth:`entries` (readers)."""

    def __init__(self, folder: Path, journal: Journal) -> None:
        self.folder = folder
        self.journal = journal
        self._ann: Any = None  # the memory-mapped approximate index, once searched
        self._model_dim: tuple[str | None, int | None] | None = None

    @property
    def model(self) -> str | None:
        """The embedding model of the vectors (None until the first is added)."""
        return self._kind()[0]

    @property
    def dim(self) -> int | None:
        """Their dimension (None until the first is added)."""
        return self._kind()[1]

    def _kind(self) -> tuple[str | None, int | None]:
        """(model, dim), read once they are set: they never change but by :meth:`clear`."""
        if self._model_dim is None:
            kind = (self.journal.setting("model"), self.journal.setting("dim"))
            if kind[0] is None:
                return kind
            self._model_dim = kind
        return self._model_dim

    def check(self, model: str, dim: int | None, what: str) -> None:
        """Raise :class:`ConfigError` when the index holds vectors of another model or
        dimension than ``model`` and ``dim`` (``what`` names where they come from)."""
        held = (self.model, self.dim)
        if held[0] is None or (held[0] == model and (dim is None or held[1] == dim)):
            return
        raise ConfigError(
            f"the index {self.folder} holds {held[1]}-dimension vectors of {held[0]}, but "
            f"{what} {dim or 'its model'}-dimension vectors of {model}: give --embed-model "
            f"{held[0]} --embed-dim {held[1]}, or another --index PATH"
        )

    def add(self, items: list[Item], settings: dict[str, Any] | None = None,
            commit: bool = True) -> int:  # fmt: skip
        """Add ``items`` (keys not yet held) and ``settings`` in one transaction (left open
        when not ``commit``); how many were added."""
        return self.journal.put(items, settings, commit=commit)

    def search(self, query: np.ndarray, k: int, where: dict[str, str] | None = None
               ) -> list[tuple[int, float]]:  # fmt: skip
        """The ``k`` rows nearest ``query`` (float32 (dim,), any length) by cosine, best
        first: the approximate index's ``REFINE * k`` candidates among the rows it covers,
        scored again exactly, and an exact scan of the rest.
        With ``where`` (``meta`` name → value, all must match), only matching rows: an
        exact scan of them when they are at most ``EXACT_UP_TO``, else the approximate
        index restricted to them."""
        q = (query / (np.linalg.norm(query) or 1.0)).astype(np.float32)
        allowed = None if not where else self.journal.rows_where(where)
        if allowed is not None and len(allowed) <= EXACT_UP_TO:
            return _best(self.journal.vectors_of(allowed), q, k)
        state = self.journal.setting("ann")
        found: list[tuple[int, float]] = []
        if state is not None:
            if self._ann is None:
                self._ann = ann.load(self.folder / state["file"], mapped=True)
            rows, _ = ann.search(self._ann, q, k * REFINE, allowed)
            found = _best(self.journal.vectors_of(np.sort(rows)), q, k)
        tail = self.journal.vectors(after=state["upto"] if state else 0)
        if allowed is not None:
            tail = ((r[np.isin(r, allowed)], m[np.isin(r, allowed)]) for r, m in tail)
        return _best(tail, q, k, found)

    def entries(self, rows: Iterable[int]) -> dict[int, Entry]:
        """What search shows of each of ``rows``."""
        return self.journal.entries(rows)

    def clear(self) -> None:
        """Forget every vector (``describe --overwrite``)."""
        self.journal.clear()
        self._model_dim = None
        self._drop_ann_files(keep=None)

    def fold(self) -> None:
        """Bring the approximate index up to date with the journal: none under ``TRAIN_AT``
        rows; trained afresh when there is none or the rows have grown ``RETRAIN_GROWTH``
        times; else the new rows added to it. Written whole under a new name, then named in
        the journal; the old file is removed after."""
        state = self.journal.setting("ann")
        total, last = self.journal.count(), self.journal.last_row()
        if total < TRAIN_AT or (state is not None and state["upto"] >= last):
            return
        if state is None or total >= RETRAIN_GROWTH * state["trained_at"]:
            index = ann.train(self.journal.sample(ann.TRAIN_PER_LIST * ann.lists_for(total)),
                              ann.lists_for(total))  # fmt: skip
            state, after = {"trained_at": total}, 0
        else:
            index, after = ann.load(self.folder / state["file"], mapped=False), state["upto"]
        for rows, matrix in self.journal.vectors(after=after, upto=last):
            ann.add(index, rows, matrix)
        name = f"ivf-{last}.faiss"
        ann.save(index, self.folder / name)
        self.journal.set(ann=state | {"file": name, "upto": last})
        self._drop_ann_files(keep=name)

    def _drop_ann_files(self, keep: str | None) -> None:
        for path in self.folder.glob("ivf-*.faiss"):
            if path.name != keep:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the journal."""
        self._ann = None
        self.journal.close()


def _best(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    q: np.ndarray,
    k: int,
    found: list[tuple[int, float]] | None = None,
) -> list[tuple[int, float]]:
    """The ``k`` best of ``found`` and of each chunk's rows scored exactly against ``q``
    (chunks: (rows int64 (n,), vectors float32 (n, dim)))."""
    hits = list(found or [])
    for rows, matrix in chunks:
        scores = matrix @ q
        top = np.argsort(-scores)[:k]
        hits += zip(rows[top].tolist(), scores[top].tolist(), strict=True)
    return sorted(hits, key=lambda hit: -hit[1])[:k]


@contextlib.contextmanager
def open_for_writing(folder: Path) -> Iterator[VectorStore]:
    """The index in ``folder`` (made when absent), under describer's write lock. Raises
    :class:`ConfigError` when it is not describer's index, is being written by another
    process, or cannot be made."""
    journal = Journal.open(folder, create=True)
    try:
        with locks.exclusive(folder / "writer.lock"):
            yield VectorStore(folder, journal)
    finally:
        journal.close()


def open_for_search(folder: Path) -> VectorStore:
    """The index in ``folder``, to search. Raises :class:`ConfigError` when there is none
    (saying how to make one), it is not describer's, or it holds no vectors."""
    if not folder.exists():
        raise ConfigError(f"no index at {folder}")
    store = VectorStore(folder, Journal.open(folder, create=False))
    if store.model is None:
        store.close()
        raise ConfigError(f"the index {folder} holds no vectors yet")
    return store
