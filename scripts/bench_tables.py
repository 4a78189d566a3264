"""A 1,000,000-row Parquet of URLs as a describe source: time to the first record, and the
describer process's RSS while it streams through the first 100,000 rows.

Writes ``bench-out/tables/urls.parquet`` (1,000,000 rows: ``id`` int64, ``url``, ``license``
and a 60-character ``caption``, row groups of 100,000; URL i is one of 10 small JPEGs served
by the project's local image server, ``?row=i`` making each URL distinct), starts the Gemini
emulator (zero latency) and the image server, then:

1. ``describe-images urls.parquet --id-col id --keep-cols license -c 64`` as a child process,
   its records read from its stdout as they come: the seconds from start to the first
   record, the rate, and its RSS (``VmRSS`` in ``/proc/PID/status``, sampled every 0.2 s)
   at every 10,000 records up to ``--rows`` (100,000), then Ctrl-C (SIGINT: items in flight
   finish) and the wait for it to exit. Every row goes through the whole pipeline: parsed,
   downloaded, prepared, looked up in the result cache (after the first 10 distinct images
   every answer is a cache hit unless ``--no-cache``), written;
2. ``describe-images urls.parquet --dry-run``: all 1,000,000 rows read and counted, nothing
   downloaded; its wall time and peak RSS (``os.wait4``).

    .venv/bin/python scripts/bench_tables.py [--rows 100000] [--no-cache]
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from bench_batch import servers  # the same servers as the batch benchmark
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out" / "tables"
BIN = Path(sys.executable).parent
ROWS = 1_000_000
GROUP = 100_000


def make_images() -> list[str]:
    """10 small JPEGs (96x64, from the sample photos) in OUT/images; their names."""
    folder = OUT / "images"
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for photo in sorted((ROOT / "samples").glob("*.[jp][pn]g"))[:10]:
        target = folder / f"{photo.stem}.jpg"
        if not target.exists():
            with Image.open(photo) as source:
                buffer = io.BytesIO()
                source.convert("RGB").resize((96, 64)).save(buffer, format="JPEG")
            target.write_bytes(buffer.getvalue())
        names.append(target.name)
    return names


def make_table(path: Path, img_url: str, names: list[str]) -> None:
    """The 1M-row Parquet, written a row group at a time."""
    schema = pa.schema([("id", pa.int64()), ("url", pa.string()), ("license", pa.string()),
                        ("caption", pa.string())])  # fmt: skip
    with pq.ParquetWriter(path, schema) as writer:
        for start_row in range(0, ROWS, GROUP):
            ids = range(start_row, start_row + GROUP)
            writer.write_table(pa.table({
                "id": list(ids),
                "url": [f"{img_url}/files/{names[i % len(names)]}?row={i}" for i in ids],
                "license": [("cc-by", "cc0", "mit")[i % 3] for i in ids],
                "caption": [f"a photograph number {i:09d} from a synthetic data set." for i in ids],
            }, schema=schema))  # fmt: skip


def rss_mb(pid: int) -> float:
    """The process's resident set size now, in MB (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stream(table: Path, env: dict[str, str], rows: int, cache: bool) -> None:
    """Run 1: first record, rate, RSS every 10,000 records."""
    args = [str(BIN / "describe-images"), str(table), "--id-col", "id", "--keep-cols",
            "license", "-c", "64", "--no-progress", *([] if cache else ["--no-cache"])]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    peak, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], rss_mb(proc.pid))

    threading.Thread(target=sample, daemon=True).start()
    assert proc.stdout is not None
    count, first = 0, None
    for _ in proc.stdout:
        count += 1
        if first is None:
            first = time.perf_counter() - started
            print(f"first record after {first:.2f} s (RSS {rss_mb(proc.pid):.0f} MB)")
        if count % 10_000 == 0:
            wall = time.perf_counter() - started
            print(f"{count:>7} records  {wall:7.1f} s  {count / wall:6.0f} records/s  "
                  f"RSS {rss_mb(proc.pid):5.0f} MB  (peak so far {peak[0]:.0f} MB)", flush=True)
        if count >= rows:
            break
    proc.send_signal(signal.SIGINT)
    rest = sum(1 for _ in proc.stdout)
    proc.wait()
    done.set()
    summary = proc.stderr.read().strip().splitlines() if proc.stderr else []
    print(f"stopped with Ctrl-C after {count + rest} records; peak RSS sampled {peak[0]:.0f} MB")
    print("  " + (summary[-1] if summary else "(no summary)"))


def dry_run(table: Path, env: dict[str, str]) -> None:
    """Run 2: every row read and counted; wall and peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen([str(BIN / "describe-images"), str(table), "--id-col", "id",
                             "--dry-run"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    lines = proc.stderr.read().strip().splitlines() if proc.stderr else []
    print(f"dry run over {ROWS:,} rows: {wall:.1f} s ({ROWS / wall:,.0f} rows/s), peak RSS "
          f"{usage.ru_maxrss / 1024:.0f} MB, exit {os.waitstatus_to_exitcode(status)}")
    print("  " + (lines[0] if lines else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="records to stream")
    parser.add_argument("--no-cache", action="store_true", help="a model call for every row")
    args = parser.parse_args()
    names = make_images()
    home = OUT / "home"
    with servers(OUT / "images") as (emu_url, img_url):
        env = {"PATH": os.environ.get("PATH", ""), "GEMINI_API_KEY": "bench-key",
               "GOOGLE_GEMINI_BASE_URL": emu_url, "DESCRIBER_HOME": str(home)}  # fmt: skip
        table = OUT / "urls.parquet"
        made = time.perf_counter()
        make_table(table, img_url, names)
        print(f"wrote {table} ({ROWS:,} rows, {table.stat().st_size / 1e6:.1f} MB) in "
              f"{time.perf_counter() - made:.1f} s")
        for name in ("cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"):
            (home / name).unlink(missing_ok=True)
        stream(table, env, args.rows, cache=not args.no_cache)
        dry_run(table, env)


if __name__ == "__main__":
    main()
