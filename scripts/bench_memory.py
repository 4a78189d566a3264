"""Peak RSS of preparing a folder of huge 1-bit PNGs (issue 9), measured in a child process.

Usage: ``python scripts/bench_memory.py [--files 6] [--side 13000] [--max-side 1024]``.
Each case runs ``describer.pipeline.load`` on every file at once (as the pipeline does, with
the default byte budget for ``-c 16``) in a fresh child; its peak RSS comes from
``os.wait4``'s ``ru_maxrss`` (KiB on Linux). Prints one line per case.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

CHILD = """
import asyncio, sys
from describer import Config
from describer.limits import ByteBudget
from describer.model import Source, SourceKind
from describer.pipeline import load

async def main(paths, max_side):
    config = Config(api_key="unused", max_side=max_side)
    budget = ByteBudget(config.byte_budget)
    async def one(p):
        lease = budget.lease()
        try:
            return await load(Source(p, SourceKind.PATH, p), None, config, lease)
        finally:
            await lease.release()
    done = await asyncio.gather(*(one(p) for p in paths))
    print(sorted({(d.media.mime_type, d.media.width) for d in done}))

side = int(sys.argv[1]) or None
asyncio.run(main(sys.argv[2:], side))
"""


def make_files(folder: Path, count: int, side: int) -> list[str]:
    """``count`` distinct ``side`` x ``side`` 1-bit PNGs in ``folder``."""
    paths = []
    for i in range(count):
        image = Image.new("1", (side, side))
        image.putpixel((i, i), 1)
        out = io.BytesIO()
        image.save(out, format="PNG")
        path = folder / f"scan{i}.png"
        path.write_bytes(out.getvalue())
        paths.append(str(path))
    return paths


def peak_rss_mb(paths: list[str], max_side: int | None) -> tuple[float, str]:
    """Peak RSS in MB of a child preparing ``paths``, and what it printed."""
    args = [sys.executable, "-c", CHILD, str(max_side or 0), *paths]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    out = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"child failed with status {status}")
    return usage.ru_maxrss / 1024, out.strip()


def main() -> None:
    """Print peak RSS for the folder prepared with and without ``--max-side``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--side", type=int, default=13_000)
    parser.add_argument("--max-side", type=int, default=1024)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paths = make_files(Path(folder), options.files, options.side)
        for max_side in (None, options.max_side):
            peak, sent = peak_rss_mb(paths, max_side)
            print(f"{options.files} x {options.side}^2 1-bit PNG, max_side={max_side}: "
                  f"peak RSS {peak:,.0f} MB; sent {sent}")


if __name__ == "__main__":
    main()
