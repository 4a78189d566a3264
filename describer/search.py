"""``describe-images search FILE.jsonl "query"``: rank described images by meaning.

The query is embedded (task type ``RETRIEVAL_QUERY``) with the index's model and dimension,
and the index (:mod:`describer.index`: beside FILE, or ``--index PATH``) answers with the
records nearest by cosine similarity. The output file itself is never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import gemini
from .config import Config
from .embed import Embedder
from .errors import ConfigError, ItemFailure
from .index import VectorStore, index_folder, open_for_search


class VectorIndex(Protocol):
    """Nearest neighbours by cosine similarity over integer row numbers (implemented by
    :class:`describer.index.VectorStore`)."""

    def search(
        self, query: np.ndarray, k: int, where: dict[str, str] | None = None
    ) -> list[tuple[int, float]]:
        """The ``k`` rows most similar to ``query`` (float32 (dim,)), best first, with their
        cosine scores; with ``where``, only rows whose ``meta`` matches it."""
        ...


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: the record's source and description, its cosine score, and its
    ``id`` and ``meta`` when the record had them."""

    source: str
    score: float
    description: str
    id: str | None = None
    meta: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON line printed when stdout is not a terminal (``id`` and ``meta`` only
        when present)."""
        extra = {name: value for name, value in (("id", self.id), ("meta", self.meta))
                 if value is not None}  # fmt: skip
        return {"source": self.source, "score": round(self.score, 6),
                "description": self.description} | extra  # fmt: skip


def open_index(file: Path, config: Config) -> VectorStore:
    """The index of ``file`` (``config.index`` when set). Raises :class:`ConfigError` when
    there is none, saying how to build it, or it is not describer's."""
    folder = index_folder(config, file)
    assert folder is not None
    try:
        return open_for_search(folder)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc}: describe-images embed {file}{_index_arg(config)} builds it from the "
            "file's vectors (and embeds the records that have none)"
        ) from None


def _index_arg(config: Config) -> str:
    return f" --index {config.index}" if config.index is not None else ""


async def search(
    index: VectorStore, query: str, k: int, config: Config, where: dict[str, str] | None = None
) -> list[Hit]:
    """The ``k`` records closest to ``query``; embeds the query once (RETRIEVAL_QUERY). With
    ``where``, only records whose ``meta`` has each of its ``name: value`` pairs.

    Raises :class:`ConfigError` when there are no credentials or the query cannot be embedded.
    """
    model, dim = index.model, index.dim
    assert model is not None and dim is not None
    async with gemini.connect(config) as connection:
        embedder = Embedder(connection, replace(config, embed_model=model))
        try:
            [vector] = await embedder.embed([query], "RETRIEVAL_QUERY", dim=dim)
        except ItemFailure as failure:
            raise ConfigError(f"cannot embed the query: {failure.error.message}") from None
    return hits(index, np.asarray(vector, dtype=np.float32), k, where)


def hits(
    index: VectorStore,
    vector: Sequence[float] | np.ndarray,
    k: int,
    where: dict[str, str] | None = None,
) -> list[Hit]:
    """The ``k`` records nearest ``vector``, best first (only those ``where`` allows)."""
    found = index.search(np.asarray(vector, dtype=np.float32), k, where)
    entries = index.entries(row for row, _ in found)
    return [
        Hit(e.source, score, e.description, e.id, e.meta)
        for row, score in found
        if (e := entries.get(row)) is not None
    ]
