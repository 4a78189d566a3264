"""What one context cache per run saves: 200 images, a 6,000-token guideline, 3 examples.

Makes 200 distinct 320x240 JPEGs, a guideline of 24,000 characters (6,000 tokens at the
emulator's 4 characters a token) and 3 example images with their answers, starts the
project's Gemini emulator with its implicit caching off (Gemini guarantees no implicit
saving, so the baseline is what a run is sure to be billed), and runs ``describe-images``
as child processes with a fresh ``DESCRIBER_HOME`` and ``--no-cache``:

1. ``--context guide.md --example ... x3``: one context cache for the run;
2. the same with ``--no-context-cache``: the guideline and examples inline in each request.

Prints per run what the emulator received (caches made, calls naming one, deletions), the
input tokens (fresh and cached), the input billed in full-price tokens (a cached token at
its price: a tenth of one on gemini-3.8-flash) and the whole run's estimate (the summary
line's, storage included), and the ratio of the two runs' billed input (target: <= 20 %).

    .venv/bin/python scripts/bench_context.py [--n 200] [--latency 0.05-0.15]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out" / "context"
BIN = Path(sys.executable).parent
GUIDE = ("Caption each product photo for the catalogue: name the product first, then its "
         "colour and material, then the setting; plain words, present tense, no brand names "
         "unless legible. ")  # fmt: skip
ANSWERS = ("A red enamel mug on a pine table, lit from the left.",
           "A pair of brown leather boots on a white floor.",
           "A green linen shirt folded on a grey shelf.")  # fmt: skip
PRICE_INPUT, PRICE_CACHED = 0.75, 0.075  # gemini-3.8-flash, USD per 1M (describer.cost)


def make_inputs(n: int) -> tuple[Path, Path, list[Path]]:
    """``n`` distinct JPEGs in a folder, the 6,000-token guideline, the 3 example images."""
    photos, examples = OUT / "photos", OUT / "examples"
    for folder in (photos, examples):
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(n + 3):
        target = photos / f"p{i:04d}.jpg" if i < n else examples / f"e{i - n}.jpg"
        if not target.exists():
            colour = (i * 37 % 256, i * 91 % 256, i * 53 % 256)
            Image.new("RGB", (320, 240), colour).save(target, quality=85)
    guide = OUT / "guide.md"
    guide.write_text((GUIDE * (24_000 // len(GUIDE) + 1))[:24_000])
    return photos, guide, sorted(examples.glob("e*.jpg"))


def start_emulator(latency: str) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "describer.emulator", "--port", "0", "--no-implicit-cache",
            "--latency", latency]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def stats(url: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}/_emulator/stats?lists=0") as response:
        return json.loads(response.read())


def run(label: str, args: list[str], url: str) -> dict[str, object]:
    """One describe run; what the emulator saw of it and what its records say."""
    before = stats(url)["contexts"]
    home = tempfile.mkdtemp(prefix="describer-home-")
    env = {"PATH": os.environ["PATH"], "DESCRIBER_HOME": home, "GEMINI_API_KEY": "bench",
           "GOOGLE_GEMINI_BASE_URL": url}
    out = OUT / f"{label}.jsonl"
    done = subprocess.run([str(BIN / "describe-images"), *args, "--no-cache", "--no-progress",
                           "-o", str(out), "--overwrite"], env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{label} failed ({done.returncode}): {done.stderr[-2000:]}")
    after = stats(url)["contexts"]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    fresh = sum(r["usage"]["input_tokens"] - r["usage"]["cached_tokens"] for r in records)
    cached = sum(r["usage"]["cached_tokens"] for r in records)
    calls = {k: v - before["calls_by_cache"].get(k, 0)  # type: ignore[union-attr]
             for k, v in after["calls_by_cache"].items()}  # type: ignore[union-attr]
    return {
        "label": label, "records": len(records),
        "described": sum(r["error"] is None for r in records),
        "created": after["created"] - before["created"],  # type: ignore[operator]
        "deleted": after["deleted"] - before["deleted"],  # type: ignore[operator]
        "calls_naming_a_cache": sum(v for v in calls.values() if v),
        "fresh": fresh, "cached": cached,
        "billed_input": fresh + cached * PRICE_CACHED / PRICE_INPUT,
        "lines": [line for line in done.stderr.splitlines() if line.startswith("describer:")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="images to describe")
    parser.add_argument("--latency", default="0.05-0.15", help="emulator seconds per call")
    args = parser.parse_args()
    photos, guide, examples = make_inputs(args.n)
    shared = ["--context", str(guide)]
    for image, answer in zip(examples, ANSWERS, strict=True):
        shared += ["--example", str(image), answer]
    emulator, url = start_emulator(args.latency)
    try:
        cached = run("cache", [str(photos), *shared], url)
        inline = run("inline", [str(photos), *shared, "--no-context-cache"], url)
    finally:
        emulator.terminate()
        emulator.wait()
    for figures in (cached, inline):
        print(f"\n== {figures['label']}: {figures['described']}/{figures['records']} described; "
              f"caches created {figures['created']}, calls naming one "
              f"{figures['calls_naming_a_cache']}, deleted {figures['deleted']}")
        print(f"   input tokens: {figures['fresh']:,} fresh + {figures['cached']:,} cached = "
              f"{figures['billed_input']:,.0f} billed as full-price input tokens")
        for line in figures["lines"]:  # type: ignore[attr-defined]
            print("   " + line)
    ratio = cached["billed_input"] / inline["billed_input"]  # type: ignore[operator]
    print(f"\nbilled input with the cache: {ratio:.1%} of --no-context-cache (target <= 20%)")


if __name__ == "__main__":
    main()
