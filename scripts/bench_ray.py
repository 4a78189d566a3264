"""describer on a local Ray against the emulator: Ray's overhead, and one quota for 4 actors.

1. Throughput: ``--images`` (10,000) distinct small JPEG files (32x24), the Gemini emulator
   answering in ``--latency`` seconds, no result cache. ``describe-images LIST -o out.jsonl
   -c C`` (one process) against ``describe-images ray TABLE -o DIR --workers 2 -c C/2`` (a
   local Ray started by the command: its start-up is in its wall time). Prints both walls,
   images/s, and the ratio Ray / single process (target >= 0.8).
2. One quota for the cluster: the emulator enforces ``--rpm`` (600) requests per 60 s window;
   ``describe-images ray ... --workers 4 --rpm 600`` describes ``--quota-images`` (600)
   images. Prints the 429s (target 0), the span from the first request the emulator saw to
   the last plus one pacing gap, and its ratio to N/R (target <= 1.1), and the command's wall
   (Ray's start-up included).

The emulator runs on a thread of this script; each command is a child process.

    .venv/bin/python scripts/bench_ray.py [--images 10000] [--quota-images 600] [--rpm 600]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from describer.emulator import EmulatorSettings, GeminiEmulator

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out" / "ray"
BIN = Path(sys.executable).parent


def make_images(count: int) -> list[str]:
    """``count`` distinct 32x24 JPEG files in OUT/images (made once); their paths."""
    folder = OUT / "images"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{index:06d}.jpg"
        if not path.exists():
            colour = (index % 251, (index // 251) % 251, (index * 7) % 251)
            buffer = io.BytesIO()
            Image.new("RGB", (32, 24), colour).save(buffer, format="JPEG")
            path.write_bytes(buffer.getvalue())
        paths.append(str(path))
    return paths


def write_inputs(paths: list[str], name: str) -> tuple[Path, Path]:
    """The same sources as a list file (for the single process) and a Parquet table."""
    listing, table = OUT / f"{name}.txt", OUT / f"{name}.parquet"
    listing.write_text("\n".join(paths) + "\n")
    pq.write_table(pa.table({"url": paths}), table)
    return listing, table


STARTED: list[float] = []  # time.monotonic() when the last command started


def run(args: list[str], url: str) -> tuple[float, str]:
    """``describe-images ARGS`` to the end: its wall in seconds and its stderr's last lines."""
    env = {**os.environ, "GEMINI_API_KEY": "bench-key", "GOOGLE_GEMINI_BASE_URL": url,
           "DESCRIBER_HOME": str(OUT / "home")}  # fmt: skip
    started = time.monotonic()
    STARTED[:] = [started]
    done = subprocess.run([str(BIN / "describe-images"), *args], env=env, text=True,
                          capture_output=True, check=False)  # fmt: skip
    wall = time.monotonic() - started
    lines = [line for line in done.stderr.splitlines() if line.startswith("describer")]
    if done.returncode != 0:
        raise SystemExit(f"describe-images {' '.join(args)} exited {done.returncode}:\n"
                         + done.stderr[-3000:])  # fmt: skip
    return wall, "\n".join(lines[-2:])


def fresh(path: Path) -> Path:
    """``path`` with nothing there (a file or a folder removed)."""
    if path.is_dir():
        shutil.rmtree(path)
    path.unlink(missing_ok=True)
    return path


def throughput(args: argparse.Namespace) -> None:
    paths = make_images(args.images)
    listing, table = write_inputs(paths, "throughput")
    settings = EmulatorSettings(latency=(args.latency, args.latency * 2))
    emulator = GeminiEmulator(settings)
    with emulator.in_thread() as url:
        single, line = run([str(listing), "-o", str(fresh(OUT / "single.jsonl")), "-c",
                            str(args.concurrency), "--no-cache", "--no-progress"], url)  # fmt: skip
        single_span = span(emulator)
        print(f"single process: {args.images} images in {single:.1f} s, "
              f"{args.images / single:.0f} images/s; requests over {single_span:.1f} s\n  {line}")
        emulator.stats.reset()
        on_ray, line = run(["ray", str(table), "-o", str(fresh(OUT / "throughput")),
                            "--workers", "2", "-c", str(args.concurrency // 2), "--no-cache"],
                           url)  # fmt: skip
        ray_span = span(emulator)
        first = emulator.stats.request_times[0] - STARTED[0]
    print(f"local Ray, 2 actors: {args.images} images in {on_ray:.1f} s, "
          f"{args.images / on_ray:.0f} images/s; requests over {ray_span:.1f} s, the first "
          f"{first:.1f} s after the command started (Ray's and the actors' start-up), the last "
          f"{on_ray - first - ray_span:.1f} s before it ended (the shards)\n  {line}")
    print(f"throughput ratio Ray / single process: {single / on_ray:.2f} (target >= 0.8); "
          f"while requests flow: {single_span / ray_span:.2f}")


def span(emulator: GeminiEmulator) -> float:
    """Seconds from the first generate request the emulator saw to the last."""
    times = emulator.stats.request_times
    return times[-1] - times[0] if times else 0.0


def shared_quota(args: argparse.Namespace) -> None:
    paths = make_images(args.quota_images)
    _, table = write_inputs(paths, "quota")
    settings = EmulatorSettings(rpm=args.rpm, latency=(0.2, 0.4))
    emulator = GeminiEmulator(settings)
    with emulator.in_thread() as url:
        # batches of 50 rows: every actor gets some (256-row batches left the 4th idle)
        wall, line = run(["ray", str(table), "-o", str(fresh(OUT / "quota")), "--workers", "4",
                          "--batch-rows", "50", "-c", "8", "--rpm", str(args.rpm),
                          "--no-cache"], url)  # fmt: skip
    stats = emulator.stats
    spread = span(emulator) + 60.0 / args.rpm  # plus one gap: N requests span N - 1 gaps
    ideal = args.quota_images / args.rpm * 60
    print(f"shared quota, 4 actors, --rpm {args.rpm}: {args.quota_images} images, "
          f"{stats.generate_requests} requests, {stats.rate_limited} 429s (target 0)")
    print(f"  first to last request + one gap: {spread:.1f} s = {spread / ideal:.3f} x N/R "
          f"({ideal:.0f} s; target <= 1.1); command wall with Ray's start: {wall:.1f} s\n  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.02, help="emulator's low latency")
    parser.add_argument("--quota-images", type=int, default=600)
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--skip", choices=["throughput", "quota"])
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.skip != "throughput":
        throughput(args)
    if args.skip != "quota":
        shared_quota(args)


if __name__ == "__main__":
    main()
