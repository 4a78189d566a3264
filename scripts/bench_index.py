"""Vector store candidates for ``search``, measured on this machine: sqlite-vec, LanceDB,
usearch and FAISS.

What it measures. N synthetic vectors (768 float32 dimensions, unit length) are written once
to a raw file; each candidate then, in a subprocess of its own (so peak RSS is its own:
``VmHWM``, see :func:`peak_rss_mb`):

* ``build``: reads the vectors in chunks of 50,000 and builds its on-disk index: build
  seconds, peak RSS of the build process, bytes on disk;
* ``query``: a fresh process opens the index from disk and answers 20 queries (k=10): p50 and
  p95 milliseconds of search time, peak RSS of that process (open + 20 queries);
* recall@10 of its answers against exact search (numpy, over the raw file in chunks).

The vectors are not uniform on the sphere (no store finds neighbours there, and real
embeddings are not like that): each is a 64-dimensional Gaussian-mixture point (1,000
centres) projected to 768 dimensions, plus isotropic noise, then normalised; queries are 20
fresh points drawn the same way. Candidates and their settings:

* ``sqlite-vec``: a ``vec0`` table, ``float[768]`` with cosine distance; exact (brute force).
  Python's ``sqlite3`` here cannot load extensions, so ``pysqlite3-binary`` is used.
* ``lancedb``: one table, an ``IVF_PQ`` index (cosine, sqrt(N) partitions, 96 sub-vectors),
  queried with ``nprobes=32`` and ``refine_factor=10``.
* ``usearch``: HNSW, ``dtype='i8'``, connectivity 16, expansion_add 64, expansion_search 96;
  searched as a memory-mapped view (``Index.restore(path, view=True)``).
* ``faiss``: ``IndexIVFScalarQuantizer`` (8-bit, inner product, sqrt(N) lists, trained on
  50,000 vectors), ``nprobe=32``; opened with ``IO_FLAG_MMAP``.

A build that passes ``--budget`` seconds is stopped and recorded as over budget.

Run from the project root, in its virtualenv (``pip install sqlite-vec pysqlite3-binary
lancedb usearch faiss-cpu`` for the candidates that are not describer's dependencies)::

    python scripts/bench_index.py --n 100000                      # ~3 min
    python scripts/bench_index.py --n 1000000 --budget 1200       # ~30 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

DIM = 768
CHUNK = 50_000
K = 10
QUERIES = 20
CANDIDATES = ("sqlite-vec", "lancedb", "usearch", "faiss")


# ----- synthetic data and exact answers ---------------------------------------------------


def synthetic(n: int, seed: int) -> Iterator[np.ndarray]:
    """``n`` unit vectors (float32, DIM) in chunks of at most CHUNK rows; the same mixture
    (centres and projection from seed 0) whatever ``seed`` draws the points."""
    base = np.random.default_rng(0)
    centres = base.standard_normal((1000, 64)).astype(np.float32) * 2
    projection = base.standard_normal((64, DIM)).astype(np.float32) / 8
    rng = np.random.default_rng(seed)
    for start in range(0, n, CHUNK):
        rows = min(CHUNK, n - start)
        latent = centres[rng.integers(0, 1000, rows)] + rng.standard_normal((rows, 64))
        x = latent.astype(np.float32) @ projection
        x += 0.5 * rng.standard_normal((rows, DIM)).astype(np.float32) / np.sqrt(DIM)
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def chunks(path: Path) -> Iterator[np.ndarray]:
    """The raw file's vectors, CHUNK rows at a time, read (not mapped: RSS stays a chunk)."""
    n = path.stat().st_size // (4 * DIM)
    with open(path, "rb") as fh:
        for start in range(0, n, CHUNK):
            rows = min(CHUNK, n - start)
            yield np.fromfile(fh, dtype=np.float32, count=rows * DIM).reshape(rows, DIM)


def prepare(work: Path, n: int) -> None:
    """Write the vectors, the queries and the exact top-K (ids) once per ``n``."""
    work.mkdir(parents=True, exist_ok=True)
    raw, queries, truth = work / "vectors.f32", work / "queries.npy", work / "truth.npy"
    if truth.exists():
        return
    with open(raw, "wb") as fh:
        for x in synthetic(n, seed=1):
            x.tofile(fh)
    q = next(synthetic(QUERIES, seed=2))
    best = np.full((QUERIES, K), -np.inf, dtype=np.float32)
    ids = np.zeros((QUERIES, K), dtype=np.int64)
    offset = 0
    for x in chunks(raw):
        scores = np.concatenate([best, q @ x.T], axis=1)
        new_ids = np.arange(offset, offset + len(x))[None].repeat(QUERIES, 0)
        all_ids = np.concatenate([ids, new_ids], 1)
        top = np.argsort(-scores, axis=1)[:, :K]
        best, ids = np.take_along_axis(scores, top, 1), np.take_along_axis(all_ids, top, 1)
        offset += len(x)
    np.save(queries, q)
    np.save(truth, ids)


# ----- the candidates (each function runs in its own subprocess) --------------------------


def _sqlite_connect(path: Path):  # type: ignore[no-untyped-def]
    try:
        import pysqlite3 as sqlite3  # type: ignore[import-not-found]
    except ImportError:
        import sqlite3
    import sqlite_vec

    db = sqlite3.connect(path)
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    return db


def build_sqlite_vec(raw: Path, out: Path, n: int) -> None:
    db = _sqlite_connect(out / "vec.sqlite3")
    db.execute(f"create virtual table v using vec0(embedding float[{DIM}] distance_metric=cosine)")
    offset = 0
    for x in chunks(raw):
        db.executemany("insert into v(rowid, embedding) values (?, ?)",
                       ((offset + i, row.tobytes()) for i, row in enumerate(x)))  # fmt: skip
        db.commit()
        offset += len(x)
    db.close()


def query_sqlite_vec(out: Path, queries: np.ndarray) -> Iterator[list[int]]:
    db = _sqlite_connect(out / "vec.sqlite3")
    sql = "select rowid from v where embedding match ? and k = ? order by distance"
    for q in queries:
        yield [r[0] for r in db.execute(sql, (q.tobytes(), K))]


def build_lancedb(raw: Path, out: Path, n: int) -> None:
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(out)
    table = None
    offset = 0
    for x in chunks(raw):
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM)
        batch = pa.table({"id": pa.array(np.arange(offset, offset + len(x))), "vector": vectors})
        table = db.create_table("v", batch) if table is None else table
        if offset:
            table.add(batch)
        offset += len(x)
    table.create_index(metric="cosine", num_partitions=int(np.sqrt(n)), num_sub_vectors=96,
                       index_type="IVF_PQ")  # fmt: skip


def query_lancedb(out: Path, queries: np.ndarray) -> Iterator[list[int]]:
    import lancedb

    table = lancedb.connect(out).open_table("v")
    for q in queries:
        rows = (table.search(q).metric("cosine").nprobes(32).refine_factor(10).limit(K)
                .select(["id"]).to_list())  # fmt: skip
        yield [r["id"] for r in rows]


def build_usearch(raw: Path, out: Path, n: int) -> None:
    from usearch.index import Index

    index = Index(ndim=DIM, metric="cos", dtype="i8", connectivity=16, expansion_add=64)
    offset = 0
    for x in chunks(raw):
        index.add(np.arange(offset, offset + len(x)), x, threads=2)
        offset += len(x)
    index.save(str(out / "index.usearch"))


def query_usearch(out: Path, queries: np.ndarray) -> Iterator[list[int]]:
    from usearch.index import Index

    index = Index.restore(str(out / "index.usearch"), view=True)
    index.expansion_search = 96
    for q in queries:
        yield [int(key) for key in index.search(q, K).keys]


def build_faiss(raw: Path, out: Path, n: int) -> None:
    import faiss

    quantizer = faiss.IndexFlatIP(DIM)
    index = faiss.IndexIVFScalarQuantizer(quantizer, DIM, int(np.sqrt(n)),
                                          faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)  # fmt: skip
    for x in chunks(raw):
        if not index.is_trained:
            index.train(x)
        index.add(x)
    faiss.write_index(index, str(out / "index.faiss"))


def query_faiss(out: Path, queries: np.ndarray) -> Iterator[list[int]]:
    import faiss

    index = faiss.read_index(str(out / "index.faiss"), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    index.nprobe = 32
    for q in queries:
        _, ids = index.search(q[None], K)
        yield [int(i) for i in ids[0]]


# ----- the harness ------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set in MiB: ``VmHWM`` of /proc/self/status on Linux,
    else ``getrusage(RUSAGE_SELF).ru_maxrss``. (Linux keeps ru_maxrss across ``execve``, so
    a child started by a large parent would report the parent's peak; VmHWM starts afresh.)"""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(step: str, name: str, work: Path) -> None:
    """One step of one candidate; prints its figures as one JSON line."""
    fn = name.replace("-", "_")
    out = work / name
    if step == "build":
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        started = time.perf_counter()
        raw = work / "vectors.f32"
        globals()[f"build_{fn}"](raw, out, raw.stat().st_size // (4 * DIM))
        print(json.dumps({"build_s": time.perf_counter() - started, "build_rss_mb": peak_rss_mb()}))
        return
    queries = np.load(work / "queries.npy")
    times, answers = [], []
    answer = globals()[f"query_{fn}"](out, queries)
    for _ in range(QUERIES):
        started = time.perf_counter()
        answers.append(next(answer))
        times.append(time.perf_counter() - started)
    print(json.dumps({"times": times, "ids": answers, "query_rss_mb": peak_rss_mb()}))


def measure(name: str, work: Path, budget: float) -> dict[str, object]:
    """Build then query ``name`` in fresh subprocesses; its row of the table."""
    row: dict[str, object] = {"candidate": name}
    for step in ("build", "query"):
        try:
            argv = [sys.executable, __file__, "--child", step, name, str(work)]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=budget, check=True)
        except subprocess.TimeoutExpired:
            return row | {"note": f"{step} over the {budget:.0f} s budget"}
        except subprocess.CalledProcessError as exc:
            return row | {"note": f"{step} failed: {exc.stderr.strip().splitlines()[-1:]}"}
        row |= json.loads(done.stdout.strip().splitlines()[-1])
    times = sorted(row.pop("times"))  # type: ignore[arg-type]
    truth = np.load(work / "truth.npy")
    found = row.pop("ids")
    recall = statistics.mean(len(set(f) & set(t.tolist())) / K
                             for f, t in zip(found, truth, strict=True))  # type: ignore[arg-type]
    size = sum(p.stat().st_size for p in (work / name).rglob("*") if p.is_file())
    return row | {"p50_ms": 1000 * statistics.median(times),
                  "p95_ms": 1000 * times[int(0.95 * len(times)) - 1],
                  "size_mb": size / 2**20, "recall@10": recall}  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="vectors (default 100,000)")
    parser.add_argument("--only", default=",".join(CANDIDATES), help="candidates, comma-separated")
    parser.add_argument("--budget", type=float, default=900, help="seconds per build or query step")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/describer-bench-index"))
    args = parser.parse_args()
    work = args.dir / str(args.n)
    started = time.perf_counter()
    prepare(work, args.n)
    print(f"{args.n:,} x {DIM} vectors ready in {time.perf_counter() - started:.0f} s", flush=True)
    print("| candidate | build s | build RSS MB | on disk MB | query p50 ms | p95 ms "
          "| query RSS MB | recall@10 |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for name in args.only.split(","):
        row = measure(name, work, args.budget)
        if "note" in row:
            print(f"| {name} | {row['note']} |||||||", flush=True)
            continue
        print(f"| {name} | {row['build_s']:.1f} | {row['build_rss_mb']:.0f} | "
              f"{row['size_mb']:.0f} | "
              f"{row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['query_rss_mb']:.0f} | "
              f"{row['recall@10']:.3f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
