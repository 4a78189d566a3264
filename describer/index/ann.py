"""The approximate part of the index: a FAISS inverted-file index with 8-bit scalar
quantisation (``IndexIVFScalarQuantizer``, inner product on unit vectors = cosine).

Vectors are assigned to the nearest of ``nlist`` centroids (k-means on a sample); each list
keeps its vectors as ``dim`` bytes and the journal's row numbers as ids. A search scans the
``nprobe`` lists nearest the query. The file is opened with ``IO_FLAG_MMAP``: its lists stay
on disk and only the pages a query reads are brought into memory, so a million 768-dimension
vectors (730 MiB of codes) are searched in well under the 1.5 GB RSS target.

Sizes (see README, "The index", for the measurements): ``nlist`` is about sqrt(n) (FAISS's
guidance: 4·sqrt(n) to 16·sqrt(n) lists for up to 1M; sqrt(n) keeps training and adding
cheap), trained on ``TRAIN_PER_LIST`` (40) vectors per list (FAISS warns under 39);
``NPROBE`` = 32 lists.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import faiss
import numpy as np

#: Vectors per list that k-means trains on (FAISS warns below 39 per centroid).
TRAIN_PER_LIST = 40
#: Lists scanned per query.
NPROBE = 32
#: Fewest and most lists.
MIN_LIST, MAX_LIST = 16, 4096


def lists_for(n: int) -> int:
    """``nlist`` for ``n`` vectors: about sqrt(n), within [MIN_LIST, MAX_LIST]."""
    return max(MIN_LIST, min(MAX_LIST, round(math.sqrt(n))))


def train(sample: np.ndarray, nlist: int) -> faiss.Index:
    """An empty index whose ``nlist`` centroids are trained on ``sample`` (float32
    (n, dim), unit rows; n ≥ nlist)."""
    dim = sample.shape[1]
    index = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_8bit,
        faiss.METRIC_INNER_PRODUCT,
    )  # fmt: skip
    index.train(np.ascontiguousarray(sample))
    return index


def add(index: faiss.Index, rows: np.ndarray, vectors: np.ndarray) -> None:
    """Add ``vectors`` (float32 (n, dim)) under the ids ``rows`` (int64 (n,))."""
    index.add_with_ids(np.ascontiguousarray(vectors), np.ascontiguousarray(rows))


def save(index: faiss.Index, path: Path) -> None:
    """Write ``index`` to ``path`` whole: under a temporary name, synced, then renamed."""
    temp = path.with_name(f".{path.name}.tmp")
    faiss.write_index(index, str(temp))
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, path)


def load(path: Path, mapped: bool) -> faiss.Index:
    """The index at ``path``: memory-mapped and read-only (``mapped``: for search), or read
    into memory (to add to it)."""
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mapped else 0
    return faiss.read_index(str(path), flags)


def search(
    index: faiss.Index, query: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows to ``query`` (float32 (dim,)): (rows int64, scores float32),
    best first; rows restricted to ``allowed`` (int64) when given. Fewer when the index
    holds fewer."""
    params = faiss.SearchParametersIVF(nprobe=NPROBE)
    if allowed is not None:
        params.sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
    scores, rows = index.search(query[None].astype(np.float32), k, params=params)
    keep = rows[0] >= 0
    return rows[0][keep], scores[0][keep]
