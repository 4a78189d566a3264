"""What the result cache saves: 100 URLs that are 30 distinct images, described three times.

Serves 30 distinct images (a 2 MP JPEG, a 1 MP JPEG and a 640 px WEBP of each of the 10
sample photos) under 100 URLs (URL i shows image i % 30) from a local server, starts the
project's Gemini emulator (latency 0.5-1.5 s a call), and runs ``describe-images`` as child
processes with a fresh ``DESCRIBER_HOME``:

1. ``urls.txt -o run1.jsonl``: the cache is empty; repeats wait for or read the first answer;
2. ``urls.txt -o run2.jsonl``: a rerun into a new output file: every answer from the cache;
3. ``urls.txt --no-cache -o run3.jsonl``: today's behaviour without the cache, to compare.

Prints, per run, the model calls the emulator received, the records, how many say
``cached: true``, the wall time, and the summary line.

    .venv/bin/python scripts/bench_cache.py
    .venv/bin/python scripts/bench_cache.py --send auto   # URLs keyed by URL: no cross-URL reuse
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_batch import make_images, servers  # the batch benchmark's images and servers

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out" / "cache"
BIN = Path(sys.executable).parent
#: (size in px, Pillow format, suffix) of the three variants made of each sample photo.
VARIANTS = (((1600, 1200), "JPEG", "jpg"), ((1200, 900), "JPEG", "1mp.jpg"),
            ((640, 480), "WEBP", "webp"))  # fmt: skip


def calls(emu_url: str) -> int:
    """generateContent requests the emulator has received."""
    with urllib.request.urlopen(f"{emu_url}/_emulator/stats?lists=0") as response:
        return int(json.load(response)["generate_requests"])


def describe(args: list[str], env: dict[str, str], emu_url: str, out: Path) -> dict[str, object]:
    """One describe-images run: its model calls, records, cached records, wall s, summary."""
    out.unlink(missing_ok=True)
    before = calls(emu_url)
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "describe-images"), *args, "-o", str(out)], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"describe-images {' '.join(args)} failed: {done.stderr[-2000:]}")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    return {"calls": calls(emu_url) - before, "records": len(records),
            "cached": sum(r["cached"] for r in records), "wall": wall,
            "summary": done.stderr.strip().splitlines()[-1]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=100, help="URLs (of 30 distinct images)")
    parser.add_argument("--send", default="bytes", help="--send mode of the runs [bytes]")
    args = parser.parse_args()
    files = make_images(OUT / "images", VARIANTS)
    with servers(OUT / "images", "--latency", "0.5-1.5") as (emu_url, img_url):
        run(args.urls, files, emu_url, img_url, args.send)


def run(n: int, files: list[Path], emu_url: str, img_url: str, send: str) -> None:
    urls = OUT / "urls.txt"
    urls.write_text("".join(f"{img_url}/files/{files[i % len(files)].name}?copy={i}\n"
                            for i in range(n)))  # fmt: skip
    home = tempfile.mkdtemp(prefix="describer-home-")
    env = {**os.environ, "GEMINI_API_KEY": "bench", "GOOGLE_GEMINI_BASE_URL": emu_url,
           "DESCRIBER_HOME": home}  # fmt: skip
    source = [str(urls), "--send", send]
    runs = {
        "1: empty cache": describe(source, env, emu_url, OUT / "run1.jsonl"),
        "2: rerun, new -o": describe(source, env, emu_url, OUT / "run2.jsonl"),
        "3: --no-cache": describe([*source, "--no-cache"], env, emu_url, OUT / "run3.jsonl"),
    }
    print(f"{n} URLs of {len(files)} distinct images (2 MP and 1 MP JPEG, 640 px WEBP), "
          f"emulator latency 0.5-1.5 s, -c 16, --send {send}")  # fmt: skip
    print(f"  {'run':<18} {'model calls':>11} {'records':>8} {'cached':>7} {'wall':>8}")
    for name, r in runs.items():
        print(f"  {name:<18} {r['calls']:>11} {r['records']:>8} {r['cached']:>7} "
              f"{r['wall']:>6.1f} s")  # fmt: skip
    for name, r in runs.items():
        print(f"  {name}: {r['summary']}")


if __name__ == "__main__":
    main()
