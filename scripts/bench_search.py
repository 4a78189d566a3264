"""describer's vector index against issue 12's targets, with synthetic vectors.

What it measures (768 dimensions, the vectors of ``bench_index.synthetic``):

1. ``--n`` (1,000,000) records are added to a fresh index (``describer.index``: journal, then
   the FAISS file built by ``VectorStore.fold``), in a subprocess; its time and peak RSS.
2. Search time: the index opened as ``search`` opens it, 20 queries (k=10) through
   ``describer.search.hits`` (ANN + journal lookups; the query embedding excluded): p50, p95;
   recall@10 of those answers against exact search over the journal's vectors.
3. End to end: ``describe-images search FILE QUERY --index PATH`` as a process against the
   emulator (``python -m describer.emulator``, default settings, a subprocess): wall time
   from start to exit (median of 5), and that process's peak RSS (``VmHWM``, read at exit).
4. Adding ``--add`` (100,000) records the way ``describe --embed -o`` does (``IndexWriter.add``
   per record, then ``finish``: the commit and the FAISS build) against the time the
   embedding calls for them take at the emulator's default latency (``Embedder.embed``, 100
   texts per call, ``--concurrency`` 16), measured on ``--calls`` calls (default all) and
   scaled to ``--add`` texts.

Targets: search p50 ≤ 100 ms, end to end ≤ 1.5 s, RSS ≤ 1.5 GB, recall@10 ≥ 0.95; adding
100,000 ≤ 10 % of the embedding calls' time.

Run from the project root, in its virtualenv::

    python scripts/bench_search.py                          # ~15 min on 2 cores
    python scripts/bench_search.py --n 100000 --calls 100   # ~2 min
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_index import QUERIES, K, peak_rss_mb, synthetic

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gemini-embedding-001"
DIM = 768
#: Runs the CLI and prints the process's peak RSS (VmHWM, kB) on stderr as it exits.
WRAP = ("import atexit, sys\n"
        "def hwm():\n"
        "    line = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "    print('VMHWM', line.split()[1], file=sys.stderr)\n"
        "atexit.register(hwm)\n"
        "sys.argv = ['describe-images', *sys.argv[1:]]\n"
        "from describer.cli import main\n"
        "main()\n")  # fmt: skip


def record(i: int, vector: np.ndarray) -> dict[str, object]:
    """A describer record as ``describe --embed`` writes it (the vector as a list)."""
    return {"source": f"https://example.com/{i}.jpg", "description": f"synthetic image {i}",
            "error": None, "embedding": vector.tolist(), "embedding_model": MODEL}  # fmt: skip


def build(folder: Path, n: int) -> dict[str, float]:
    """Add ``n`` records to a fresh index at ``folder`` (journal batches, then fold)."""
    from describer.index.journal import Item
    from describer.index.store import open_for_writing

    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    with open_for_writing(folder) as store:
        store.journal.set(model=MODEL, dim=DIM)
        offset = 0
        for chunk in synthetic(n, seed=1):
            store.add([Item(f"k{offset + i}", f"https://example.com/{offset + i}.jpg",
                            f"synthetic image {offset + i}", None, None, v)
                       for i, v in enumerate(chunk)])  # fmt: skip
            offset += len(chunk)
        journal_s = time.perf_counter() - started
        store.fold()
    return {"journal_s": journal_s, "total_s": time.perf_counter() - started,
            "rss_mb": peak_rss_mb()}  # fmt: skip


def search_time(folder: Path) -> dict[str, object]:
    """p50/p95 of 20 searches and recall@10 against exact search over the journal."""
    from describer.index import open_for_search
    from describer.search import hits

    queries = next(synthetic(QUERIES, seed=2))
    store = open_for_search(folder)
    times, found = [], []
    for q in queries:
        started = time.perf_counter()
        found.append([h.source for h in hits(store, q, K)])
        times.append(time.perf_counter() - started)
    rss = peak_rss_mb()
    best: list[list[tuple[float, int]]] = [[] for _ in queries]
    for rows, matrix in store.journal.vectors():
        scores = queries @ matrix.T
        for qi, row_scores in enumerate(scores):
            top = np.argsort(-row_scores)[:K]
            best[qi] = sorted(best[qi] + list(zip(row_scores[top], rows[top], strict=True)),
                              reverse=True)[:K]  # fmt: skip
    exact = [store.entries(int(r) for _, r in b) for b in best]
    recall = statistics.mean(len({e.source for e in ex.values()} & set(f)) / K
                             for ex, f in zip(exact, found, strict=True))  # fmt: skip
    times.sort()
    return {"p50_ms": 1000 * statistics.median(times), "p95_ms": 1000 * times[18],
            "recall": recall, "rss_mb": rss}  # fmt: skip


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    """``python -m describer.emulator --port 0`` and its base URL (its first stdout line)."""
    proc = subprocess.Popen([sys.executable, "-m", "describer.emulator", "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.strip().split()[-1]


def end_to_end(folder: Path, url: str) -> dict[str, float]:
    """Median wall seconds of 5 ``describe-images search`` processes, and the most RSS."""
    env = {**os.environ, "GEMINI_API_KEY": "bench", "GOOGLE_GEMINI_BASE_URL": url}
    walls, rss = [], 0.0
    for i in range(5):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", WRAP, "search", "bench.jsonl",
                               f"a red car {i}", "--index", str(folder)], env=env,
                              capture_output=True, text=True, check=True)  # fmt: skip
        walls.append(time.perf_counter() - started)
        assert len(done.stdout.splitlines()) == K, done.stderr
        rss = max(rss, int(done.stderr.split("VMHWM")[-1].split()[0]) / 1024)
    return {"wall_s": statistics.median(walls), "rss_mb": rss}


async def embed_seconds(url: str, calls: int) -> float:
    """Seconds for ``calls`` embedding calls of 100 texts at 768 dimensions, 16 at once."""
    from describer import Config
    from describer.embed import Embedder
    from describer.gemini import connect

    config = Config(api_key="bench", base_url=url)
    texts = [[f"synthetic description {c}-{i} of a photo" for i in range(100)]
             for c in range(calls)]  # fmt: skip
    async with connect(config) as connection:
        embedder = Embedder(connection, config)
        started = time.perf_counter()
        await asyncio.gather(*(embedder.embed(batch) for batch in texts))
        return time.perf_counter() - started


def add_seconds(folder: Path, n: int) -> float:
    """Seconds to add ``n`` records through ``IndexWriter`` (as describe does) and finish."""
    from describer.index.store import open_for_writing
    from describer.index.writer import IndexWriter

    shutil.rmtree(folder, ignore_errors=True)
    records = [record(i, v) for i, chunk in enumerate(synthetic(n, seed=3)) for v in chunk]
    started = time.perf_counter()
    with open_for_writing(folder) as store:
        writer = IndexWriter(store, MODEL, DIM, None)
        for r in records:
            writer.add(r)
        writer.finish()
    return time.perf_counter() - started


def child(step: str, folder: Path, n: int) -> None:
    result = build(folder, n) if step == "build" else search_time(folder)
    print(json.dumps(result))


def run_child(step: str, folder: Path, n: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", step, str(folder), str(n)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="records searched")
    parser.add_argument("--add", type=int, default=100_000, help="records added (target 4)")
    parser.add_argument("--calls", type=int, help="embedding calls measured [default: add/100]")
    parser.add_argument("--dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "describer-bench-search")
    args = parser.parse_args()
    folder = args.dir / f"index-{args.n}"
    built = run_child("build", folder, args.n)
    print(f"built {args.n:,} records in {built['total_s']:.0f} s (journal "
          f"{built['journal_s']:.0f} s, peak RSS {built['rss_mb']:.0f} MB)", flush=True)
    s = run_child("search", folder, args.n)
    print(f"search: p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms (target p50 <= 100), "
          f"recall@10 {s['recall']:.3f} (>= 0.95)", flush=True)  # fmt: skip
    emulator, url = start_emulator()
    try:
        e2e = end_to_end(folder, url)
        print(f"end to end: {e2e['wall_s']:.2f} s (<= 1.5), peak RSS {e2e['rss_mb']:.0f} MB "
              "(<= 1500)", flush=True)  # fmt: skip
        calls = args.calls or args.add // 100
        embed_s = asyncio.run(embed_seconds(url, calls)) * (args.add / 100) / calls
    finally:
        emulator.terminate()
        emulator.wait()
    add_s = add_seconds(args.dir / "index-add", args.add)
    print(f"adding {args.add:,}: {add_s:.1f} s; their embedding calls: {embed_s:.1f} s "
          f"({calls} calls measured); ratio {add_s / embed_s:.1%} (<= 10%)")


if __name__ == "__main__":
    main()
