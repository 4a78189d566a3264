"""``describe-images search FILE.jsonl "query"``: rank described images by meaning.

The query is embedded (task type ``RETRIEVAL_QUERY``) with the records' model and dimension,
and records are ranked by cosine similarity. The vectors sit behind :class:`VectorIndex`, so a
larger store can replace the in-memory numpy matrix later.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import gemini
from .config import Config
from .embed import Embedder
from .errors import ConfigError, ItemFailure


class VectorIndex(Protocol):
    """Nearest neighbours by cosine similarity over integer keys."""

    def add(self, key: int, vector: Sequence[float]) -> None:
        """Store one vector under ``key``."""

    def search(self, query: Sequence[float], k: int) -> list[tuple[int, float]]:
        """The ``k`` keys most similar to ``query``, best first, with their cosine scores."""


class NumpyIndex:
    """All vectors in one float32 matrix (n x dim), rows normalised; exact search."""

    def __init__(self) -> None:
        self._rows: list[np.ndarray] = []
        self._keys: list[int] = []
        self._matrix: np.ndarray | None = None

    def add(self, key: int, vector: Sequence[float]) -> None:
        row = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(row))
        self._rows.append(row / norm if norm else row)
        self._keys.append(key)
        self._matrix = None

    def search(self, query: Sequence[float], k: int) -> list[tuple[int, float]]:
        if not self._rows:
            return []
        if self._matrix is None:
            self._matrix = np.vstack(self._rows)
        q = np.asarray(query, dtype=np.float32)
        scores = self._matrix @ (q / (np.linalg.norm(q) or 1.0))
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        best = top[np.argsort(-scores[top])]
        return [(self._keys[i], float(scores[i])) for i in best]

    def __len__(self) -> int:
        return len(self._keys)


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: the record's source and description, and its cosine score."""

    source: str
    score: float
    description: str

    def to_json(self) -> dict[str, Any]:
        """The JSON line printed when stdout is not a terminal."""
        return {"source": self.source, "score": round(self.score, 6),
                "description": self.description}  # fmt: skip


@dataclass
class Corpus:
    """The embedded records of a file: their index, and what to show for each key."""

    index: VectorIndex
    entries: list[tuple[str, str]]  # key -> (source, description)
    model: str
    dim: int
    skipped: int  # records without a vector, or of another model or dimension


def load_corpus(path: Path, index: VectorIndex | None = None) -> Corpus:
    """Read the records of ``path`` that carry an embedding of the file's main model and
    dimension into ``index`` (default: a new :class:`NumpyIndex`). Raises
    :class:`ConfigError` when the file is unreadable or has no vectors."""
    kinds = Counter((model, len(vec)) for model, vec, _, _ in _embedded(path))
    if not kinds:
        raise ConfigError(f"{path} has no embeddings: run describe-images embed {path} first")
    (model, dim), _ = kinds.most_common(1)[0]
    corpus = Corpus(NumpyIndex() if index is None else index, [], model, dim, 0)
    for rec_model, vector, source, description in _embedded(path):
        if (rec_model, len(vector)) != (model, dim):
            corpus.skipped += 1
            continue
        corpus.index.add(len(corpus.entries), vector)
        corpus.entries.append((source, description))
    return corpus


def _embedded(path: Path) -> Iterator[tuple[str, list[float], str, str]]:
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                vector = record.get("embedding") if isinstance(record, dict) else None
                if vector:
                    yield (str(record.get("embedding_model")), vector, str(record["source"]),
                           str(record.get("description") or ""))  # fmt: skip
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


async def search(corpus: Corpus, query: str, k: int, config: Config) -> list[Hit]:
    """The ``k`` records closest to ``query``; embeds the query once (RETRIEVAL_QUERY).

    Raises :class:`ConfigError` when there are no credentials or the query cannot be embedded.
    """
    async with gemini.connect(config) as connection:
        embedder = Embedder(connection, _with_model(config, corpus.model))
        try:
            [vector] = await embedder.embed([query], "RETRIEVAL_QUERY", dim=corpus.dim)
        except ItemFailure as failure:
            raise ConfigError(f"cannot embed the query: {failure.error.message}") from None
    return [
        Hit(corpus.entries[key][0], score, corpus.entries[key][1])
        for key, score in corpus.index.search(vector, k)
    ]


def _with_model(config: Config, model: str) -> Config:
    return replace(config, embed_model=model)
