"""Quota benchmark: N images under an R-requests-per-window Gemini quota, with and without --rpm.

What it measures. A local Gemini emulator enforces a sliding-window quota of R generate
requests per W seconds (Gemini's semantics: "an RPM limit of 20: 21 requests within a minute
fail"; 429 RESOURCE_EXHAUSTED with a RetryInfo.retryDelay) and answers after a uniform
0.5-1.5 s. N small distinct JPEGs (made once under ``bench-out/quota/images/``) are served by
the project's ImageServer. Both servers run on one event loop in a thread of this script, on
127.0.0.1 only. describer is run twice, as a separate process each time:

(a) told the quota: ``--rpm R``;
(b) not told: no ``--rpm`` (AIMD concurrency and the shared 429 gate must cope).

With the real window (W = 60, the default) the client is the ``describe-images`` CLI itself.
The CLI has no window option, so with ``--window W`` other than 60 the client is the library
instead, ``describer.run(Config(rpm=R, quota_window=W, ...), [urls_file])``, in a child
``python -c`` process (same measurement: wall time of the whole process). A fresh emulator
(same seed, so the same latency sequence) and image server are started for each run, so the
stats and the quota window start empty.

Printed per run: wall time (``time.perf_counter`` around the process); the bound
``(N - burst) / R`` windows with burst = R (a token-bucket view, 90 s for 300 at 120/min) and
the sliding-window optimum ``(ceil(N/R) - 1) * W + mean latency`` (121 s for 300 at 120/min:
R requests at 0, then R more each time the first ones leave the window), and wall divided by
each; generate requests and 429s (emulator stats); the most requests that arrived in any W
seconds; whether every item was described (records with ``error`` null in the output file);
errors by type; the client's exit code and its summary line.

Run from the project root, in its virtualenv::

    . .venv/bin/activate
    python scripts/bench_quota.py                        # 300 items, 120/min, 60 s: ~5 min
    python scripts/bench_quota.py --n 60 --rpm 20 --window 6   # scaled down: ~30 s

Scratch files go to ``bench-out/quota/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from describer.emulator import EmulatorSettings, GeminiEmulator, ImageServer
from describer.emulator.stats import EmulatorStats
from describer.limits import MIN_MARGIN_S

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out" / "quota"
IMAGES = OUT / "images"
CLI = Path(sys.executable).parent / "describe-images"
LATENCY = (0.5, 1.5)  # seconds, uniform: the emulator's answer time per generate request
MEAN_LATENCY = sum(LATENCY) / 2
REAL_WINDOW = 60.0  # seconds: Gemini's per-minute quota window
SEED = 0
IMAGE_SIDE = 48  # px; small noise JPEGs: every one distinct, ~3 KB
INTERRUPT_GRACE_S = 30.0  # after a timeout: SIGINT, then SIGKILL this much later

# The library client used for a scaled window (the CLI has no window option).
LIBRARY_CLIENT = """
import asyncio, json, sys
from pathlib import Path
from describer import Config, run
a = json.loads(sys.argv[1])
config = Config(rpm=a["rpm"], quota_window=a["window"], concurrency=a["concurrency"],
                base_url=a["base_url"], api_key="bench", output=Path(a["output"]),
                overwrite=True, progress=False)
sys.exit(asyncio.run(run(config, [a["urls"]])))
"""


@dataclass
class Outcome:
    """What one client run did."""

    label: str
    client: str
    wall: float
    exit_code: int | None
    timed_out: bool
    stats: EmulatorStats
    records: int = 0
    described: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    max_attempts: int = 0
    summary: str = ""


def make_images(n: int) -> list[str]:
    """File names of ``n`` distinct small JPEGs under IMAGES (made once, reused)."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"img-{i:05d}.jpg"
        path = IMAGES / name
        if not path.exists():
            rng = random.Random(f"quota-image:{i}")
            noise = rng.randbytes(IMAGE_SIDE * IMAGE_SIDE * 3)
            Image.frombytes("RGB", (IMAGE_SIDE, IMAGE_SIDE), noise).save(path, quality=85)
        names.append(name)
    return names


@contextmanager
def servers(settings: EmulatorSettings) -> Iterator[tuple[GeminiEmulator, ImageServer]]:
    """A fresh emulator and image server on one event loop in a daemon thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="bench-servers", daemon=True)
    thread.start()
    emulator = GeminiEmulator(settings)
    images = ImageServer(IMAGES)

    def call(coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()  # type: ignore[arg-type]

    try:
        call(emulator.start("127.0.0.1", 0))
        call(images.start())
        yield emulator, images
    finally:
        call(images.stop())
        call(emulator.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def client_env(base_url: str) -> dict[str, str]:
    """The client's environment: the emulator as endpoint, no DESCRIBER_* overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESCRIBER_")}
    env.update(GOOGLE_GEMINI_BASE_URL=base_url, GEMINI_API_KEY="bench-key",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    for name in ("GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"):
        env.pop(name, None)
    return env


def run_client(args: argparse.Namespace, label: str, rpm: int | None) -> Outcome:
    """One describer run against a fresh emulator; its wall time, stats and records."""
    settings = EmulatorSettings(latency=LATENCY, rpm=args.rpm, quota_window=args.window,
                                seed=SEED)
    names = make_images(args.n)
    output = OUT / f"out-{label}.jsonl"
    stderr_path = OUT / f"stderr-{label}.txt"
    urls = OUT / f"urls-{label}.txt"
    output.unlink(missing_ok=True)
    with servers(settings) as (emulator, images):
        urls.write_text("".join(images.url(name) + "\n" for name in names))
        if args.window == REAL_WINDOW:
            client = "describe-images CLI"
            cmd = [str(CLI), str(urls), "-o", str(output), "--overwrite", "--no-progress",
                   "-c", str(args.concurrency)]
            if rpm is not None:
                cmd += ["--rpm", str(rpm)]
        else:
            client = f"describer.run(Config(quota_window={args.window:g}, ...))"
            spec = {"rpm": rpm, "window": args.window, "concurrency": args.concurrency,
                    "base_url": emulator.base_url, "output": str(output), "urls": str(urls)}
            cmd = [sys.executable, "-c", LIBRARY_CLIENT, json.dumps(spec)]
        timed_out = False
        with stderr_path.open("w") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(cmd, env=client_env(emulator.base_url), cwd=OUT,
                                    stdout=subprocess.DEVNULL, stderr=err)
            try:
                proc.wait(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                proc.send_signal(signal.SIGINT)  # finish the items in flight, write them
                try:
                    proc.wait(timeout=INTERRUPT_GRACE_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            wall = time.perf_counter() - started
        stats = emulator.stats
    outcome = Outcome(label, client, wall, proc.returncode, timed_out, stats)
    read_records(output, outcome)
    lines = stderr_path.read_text().strip().splitlines()
    outcome.summary = next((x for x in reversed(lines) if x.startswith("describer:")), "")
    return outcome


def read_records(path: Path, outcome: Outcome) -> None:
    """Count records, described ones (error null) and errors by type in the output file."""
    if not path.exists():
        return
    with path.open() as fh:
        for line in fh:
            if not line.strip():
                continue
            record = json.loads(line)
            outcome.records += 1
            if record.get("error") is None:
                outcome.described += 1
            else:
                outcome.errors[record["error"]["type"]] += 1
            outcome.max_attempts = max(outcome.max_attempts, record.get("attempts") or 0)


def max_in_window(times: list[float], window: float) -> int:
    """The most request arrivals within any ``window`` seconds."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)),
               default=0)


def report(o: Outcome, args: argparse.Namespace) -> None:
    """Print one run's figures."""
    n, r, w = args.n, args.rpm, args.window
    bound = max(n - r, 0) / r * w
    optimum = (math.ceil(n / r) - 1) * w + MEAN_LATENCY
    own_window = w + max(w / 60, MIN_MARGIN_S)
    own_best = (math.ceil(n / r) - 1) * own_window + MEAN_LATENCY
    s = o.stats
    arrivals = s.request_times
    span = max(arrivals) - min(arrivals) if arrivals else 0.0
    flag = "  (TIMED OUT: interrupted)" if o.timed_out else ""
    print(f"({o.label}) client: {o.client}{flag}")
    print(f"  wall time                         {o.wall:8.1f} s")
    print(f"  bound (N-burst)/R, burst=R={r:<5}  {bound:8.1f} s   wall/bound   "
          f"{o.wall / bound if bound else float('nan'):5.2f}")
    print(f"  sliding-window optimum            {optimum:8.1f} s   wall/optimum "
          f"{o.wall / optimum:5.2f}")
    print(f"    (describer's own {own_window:g} s window: best {own_best:.1f} s)")
    print(f"  generate requests                 {s.generate_requests:8d}")
    print(f"  429s (rate_limited)               {s.rate_limited:8d}")
    print(f"  responses by status               {dict(sorted(s.responses_by_status.items()))}")
    print(f"  most arrivals in any {w:g} s        {max_in_window(arrivals, w):8d}   "
          f"(quota {r}; 429s included)")
    print(f"  first->last request arrival       {span:8.1f} s   max in flight "
          f"{s.max_in_flight}")
    ok = "yes" if o.described == n and o.records == n else "NO"
    print(f"  every item described              {ok:>8}   ({o.described}/{n} error null, "
          f"{o.records} records; errors {dict(o.errors) or 'none'}; "
          f"max attempts/item {o.max_attempts})")
    print(f"  exit code                         {o.exit_code!s:>8}")
    print(f"  summary: {o.summary}")
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run both variants and print their figures; exit 0 when both described everything."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=300, help="items (distinct small JPEGs)")
    p.add_argument("--rpm", type=int, default=120, help="emulator quota per window; --rpm of (a)")
    p.add_argument("--window", type=float, default=REAL_WINDOW,
                   help="quota window in seconds (60: the CLI is run; else the library)")
    p.add_argument("--concurrency", "-c", type=int, default=16, help="client -c")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per run before it is interrupted "
                        "(default 5 x the sliding-window optimum + 60)")
    p.add_argument("--only", choices=("a", "b"), help="run one variant only")
    args = p.parse_args(argv)
    if args.n < 1 or args.rpm < 1 or args.window <= 0:
        p.error("--n, --rpm and --window must be positive")
    optimum = (math.ceil(args.n / args.rpm) - 1) * args.window + MEAN_LATENCY
    if args.timeout is None:
        args.timeout = 5 * optimum + 60
    OUT.mkdir(parents=True, exist_ok=True)
    make_images(args.n)
    print(f"quota benchmark: {args.n} items, emulator quota {args.rpm} requests per "
          f"{args.window:g} s (sliding), latency uniform {LATENCY[0]}-{LATENCY[1]} s, "
          f"client -c {args.concurrency}, timeout {args.timeout:.0f} s per run\n", flush=True)
    variants = [("a", args.rpm), ("b", None)]
    outcomes = []
    for label, rpm in variants:
        if args.only and label != args.only:
            continue
        name = f"a: --rpm {rpm}" if rpm else "b: no --rpm"
        outcome = run_client(args, label, rpm)
        outcome.label = name
        report(outcome, args)
        outcomes.append(outcome)
    return 0 if all(o.described == args.n and not o.timed_out for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
