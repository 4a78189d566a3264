"""What a Batch API submission of N images costs on this machine: time, CPU, memory, bytes.

Serves N distinct image URLs (half 2 MP JPEGs, half small WEBPs, made from samples/) from a
local server, starts the project's Gemini emulator, and runs, as measured child processes,
``describe-images batch submit urls.txt`` and then ``describe-images batch fetch JOB --wait``.
Prints wall time, CPU time and peak RSS of each (``os.wait4``), the request-file bytes
uploaded, the number of jobs, and the records written.

    .venv/bin/python scripts/bench_batch.py                  # 10,000 images, bytes and url
    .venv/bin/python scripts/bench_batch.py --n 500          # a quick look
    .venv/bin/python scripts/bench_batch.py --send url       # one mode only

With ``--send bytes,url`` (the default) both submissions run in turn, against the same
servers, and the ratios url / bytes are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out" / "batch"
BIN = Path(sys.executable).parent


#: (size in px, Pillow format, suffix) of the variants made of each sample photo.
VARIANTS = (((1600, 1200), "JPEG", "jpg"), ((640, 480), "WEBP", "webp"))


def make_images(folder: Path = OUT / "images", variants: tuple = VARIANTS) -> list[Path]:
    """Each of ``variants`` (size, Pillow format, suffix) of each sample photo, made once in
    ``folder``: 20 files by default (a 2 MP JPEG and a 640 px WEBP of each)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for photo in sorted((ROOT / "samples").glob("*.[jp][pn]g")):
        with Image.open(photo) as source:
            rgb = source.convert("RGB")
        for size, fmt, suffix in variants:
            target = folder / f"{photo.stem}.{suffix}"
            if not target.exists():
                buffer = io.BytesIO()
                rgb.resize(size).save(buffer, format=fmt, quality=88)
                target.write_bytes(buffer.getvalue())
            made.append(target)
    return made


def start(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start a server process that prints its base URL first; the process and the URL."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def measured(args: list[str], env: dict[str, str], out: Path) -> dict[str, float]:
    """Run a child; its wall s, CPU s and peak RSS MB (``os.wait4``)."""
    started = time.perf_counter()
    with open(out, "w") as stdout, open(out.with_suffix(".err"), "w") as stderr:
        proc = subprocess.Popen(args, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{args[:3]} failed: {out.with_suffix('.err').read_text()[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024}


def image_server() -> str:
    return (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from describer.emulator import ImageServer\n"
        "async def main():\n"
        "    async with ImageServer(Path(sys.argv[1])) as srv:\n"
        "        print(srv.base_url, flush=True)\n"
        "        await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )


@contextlib.contextmanager
def servers(images: Path, *emulator_args: str) -> Iterator[tuple[str, str]]:
    """The emulator (with ``emulator_args``) and an image server over ``images``, as
    processes for the block: their base URLs."""
    emulator, emu_url = start([sys.executable, "-m", "describer.emulator", "--port", "0",
                               *emulator_args])  # fmt: skip
    server, img_url = start([sys.executable, "-c", image_server(), str(images)])
    try:
        yield emu_url, img_url
    finally:
        for proc in (emulator, server):
            proc.terminate()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images to submit")
    parser.add_argument("--send", default="bytes,url", help="--send modes, comma-separated")
    args = parser.parse_args()
    files = make_images()
    with servers(OUT / "images") as (emu_url, img_url):
        figures = {mode: run(args.n, files, emu_url, img_url, mode)
                   for mode in args.send.split(",")}  # fmt: skip
    if {"bytes", "url"} <= figures.keys():
        url, raw = figures["url"], figures["bytes"]
        print(f"url / bytes: request files {url['uploaded'] / raw['uploaded']:.4f}x, "
              f"submit wall {url['wall'] / raw['wall']:.2f}x, "
              f"submit CPU {url['cpu'] / raw['cpu']:.2f}x")


def run(n: int, files: list[Path], emu_url: str, img_url: str, send: str) -> dict[str, float]:
    """Submit and fetch ``n`` URLs with ``--send send``; the submission's figures."""
    urls = OUT / "urls.txt"
    urls.write_text("".join(f"{img_url}/files/{files[i % len(files)].name}?copy={i}\n"
                            for i in range(n)))  # fmt: skip
    sizes = [files[i % len(files)].stat().st_size for i in range(n)]
    home = tempfile.mkdtemp(prefix="describer-home-")
    env = {**os.environ, "GEMINI_API_KEY": "bench", "GOOGLE_GEMINI_BASE_URL": emu_url,
           "DESCRIBER_HOME": home}  # fmt: skip
    cli = str(BIN / "describe-images")
    before = _batch_stats(emu_url)
    submit = measured([cli, "batch", "submit", str(urls), "--send", send], env,
                      OUT / "submit.out")  # fmt: skip
    job = (OUT / "submit.out").read_text().strip()
    after = _batch_stats(emu_url)
    stats = {key: after[key] - before[key] for key in ("file_bytes_uploaded",
                                                       "batch_jobs_created")}  # fmt: skip
    stats["requests_per_job"] = after["requests_per_job"][len(before["requests_per_job"]):]
    records = OUT / "records.jsonl"
    records.unlink(missing_ok=True)
    fetch = measured([cli, "batch", "fetch", job, "--wait", "--poll-interval", "1", "-o",
                      str(records)], env, OUT / "fetch.out")  # fmt: skip
    lines = records.read_text().splitlines()
    described = sum(json.loads(line)["error"] is None for line in lines)
    print(f"batch submit --send {send} of {n:,} images ({sum(sizes) / 1e6:,.0f} MB: 2 MP JPEG "
          f"and 640 px WEBP, served on loopback)")  # fmt: skip
    for name, figures in (("submit", submit), ("fetch --wait", fetch)):
        print(f"  {name:<13} wall {figures['wall']:7.1f} s   CPU {figures['cpu']:7.1f} s   "
              f"peak RSS {figures['rss']:6.0f} MB")  # fmt: skip
    print(f"  request files uploaded: {stats['file_bytes_uploaded'] / 1e6:,.0f} MB in "
          f"{stats['batch_jobs_created']} job(s); requests per job {stats['requests_per_job']}")
    print(f"  records written: {len(lines):,}, described: {described:,}")
    print(f"  submit summary: {(OUT / 'submit.err').read_text().strip()}")
    print(f"  fetch summary: {(OUT / 'fetch.err').read_text().strip().splitlines()[-1]}")
    return {**submit, "uploaded": float(stats["file_bytes_uploaded"])}


def _batch_stats(emu_url: str) -> dict:
    return json.load(urllib.request.urlopen(f"{emu_url}/_emulator/batch"))["stats"]


if __name__ == "__main__":
    main()
