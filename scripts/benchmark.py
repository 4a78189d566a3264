"""Benchmark describer against Google's cookbook pattern, on a local Gemini emulator.

What it measures, per client run (each client is a separate process, reaped with
``os.wait4`` for its resource usage):

* wall time (``time.perf_counter`` around the process), CPU time (user + system, all
  threads) and peak RSS (``ru_maxrss``) of the client process alone;
* bytes uploaded to Gemini (the emulator's ``request_bytes``: every HTTP body it received),
  generate requests, most requests in flight, and the records written (one per URL; errors
  counted by type);
* the CPU used meanwhile by the emulator and the image server (separate processes, not
  counted against the client) so a saturated server shows up.

The standard run describes N URLs (default 100) drawn from 30 files made once from the
photos in ``samples/`` (or ``/work/shared/images/``): 10 x 12 MP JPEG (4000x3000, q90, with
grain so they weigh 3-6 MB like camera photos), 10 x 2 MP JPEG (1600x1200) and 10 small
WEBP (480 px), each URL distinct (``?copy=K``). The emulator answers after a uniform
0.5-1.5 s (mean 1.0 s), re-seeded before each run so every client sees the same latencies.
Runs: ``describe-images`` at the default concurrency (16) and at ``-c 32``, then
``scripts/cookbook_baseline.py`` (Google's cookbook: PIL images, re-encoded as PNG by the
SDK, every request at once). Printed: a table, cookbook/describer ratios, the latency bound
``N x 1.0 s / concurrency`` plus start-up (wall of a 1-URL run at zero latency), and PASS/FAIL
for the targets: >= 20x faster than the cookbook; wall <= 1.25 x (bound + start-up); peak
RSS <= 250 MB.

``--scale`` adds a run over 100,000 distinct URLs (``--scale-n``) of one ~20 KB JPEG at zero
emulator latency, at concurrency 16 and 64 (``--scale-concurrency``), with the targets peak
RSS <= 250 MB and client CPU <= 3 ms per image.

All traffic stays on 127.0.0.1. Scratch files go to ``bench-out/`` (git-ignored).

Run from the project root, in its virtualenv::

    . .venv/bin/activate
    python scripts/benchmark.py                          # ~3 min, the cookbook is slow
    python scripts/benchmark.py --skip-cookbook          # ~1 min
    python scripts/benchmark.py --scale --skip-cookbook  # plus 100,000 small images, ~13 min

Exit status: 0 when every target checked passes, 1 otherwise.
(``--serve DIR --port P`` and ``--emulator ARGS...`` are internal modes: the image server and
the Gemini emulator (``describer.emulator``'s own ``main``) this script starts as
subprocesses; running the emulator under this script's name keeps it out of reach of a
``pkill -f describer.emulator`` from another session's cleanup.)
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import fcntl
import heapq
import json
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out"
IMAGES = OUT / "images"
PHOTO_DIRS = (ROOT / "samples", Path("/work/shared/images"))
COOKBOOK = ROOT / "scripts" / "cookbook_baseline.py"

LATENCY = (0.5, 1.5)  # seconds, uniform: the emulator's answer time in the standard run
MEAN_LATENCY = sum(LATENCY) / 2
SEED = 0
IMAGE_SET_VERSION = 2  # bump to regenerate bench-out/images
PHOTOS_PER_SET = 10
BIG_SIZE = (4000, 3000)  # 12 MP
MID_SIZE = (1600, 1200)  # 2 MP
SMALL_SIDE = 480  # px, long side of the small WEBPs
GRAIN_SIGMA = 10.0  # std dev of the added per-channel Gaussian grain (0-255 scale)
JPEG_QUALITY = 90
SCALE_IMAGE = "scale.jpg"
SCALE_SIZE = (400, 300)
SCALE_QUALITY = 80

TARGET_SPEEDUP = 20.0  # describer wall at least this many times shorter than the cookbook's
TARGET_BOUND_FACTOR = 1.25  # describer wall <= this x (latency bound + start-up)
TARGET_RSS_MB = 250.0
TARGET_CPU_MS_PER_IMAGE = 3.0

SERVICE_START_TIMEOUT_S = 60.0
LOCK_WAIT_S = 3600.0  # longest wait for another benchmark run to finish
STARTUP_RUNS = 3
_MiB = 1024 * 1024
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "ws_proxy", "wss_proxy")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# ----- the image set ------------------------------------------------------------------------
def photo_paths() -> list[Path]:
    """The real photos the image set is made from (samples/, else /work/shared/images/)."""
    for folder in PHOTO_DIRS:
        if folder.is_dir():
            photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
            if photos:
                return photos
    raise SystemExit(f"no photos (*.jpg, *.png) in any of {', '.join(map(str, PHOTO_DIRS))}")


def _grain(image: Any, sigma: float) -> Any:
    """``image`` plus independent Gaussian noise per channel, like a camera sensor's."""
    from PIL import Image, ImageChops

    # Keep levels off 0 and 255 first, so flat black or white areas are not clipped clean.
    lifted = image.point(lambda v: 8 + v * 239 // 255)
    noise = Image.merge("RGB", [Image.effect_noise(image.size, sigma) for _ in range(3)])
    return ImageChops.add(lifted, noise, scale=1.0, offset=-128)


def make_image_set(force: bool = False) -> list[str]:
    """Create (once) the 30 benchmark files and the scale image; their names, interleaved.

    Order: 12 MP, 2 MP, small, for photo 0, then photo 1, ... so any run of consecutive
    URLs mixes the three sizes.
    """
    from PIL import Image, ImageOps

    manifest = IMAGES / "manifest.json"
    if not force and manifest.is_file():
        saved = json.loads(manifest.read_text())
        names = saved.get("names", [])
        if saved.get("version") == IMAGE_SET_VERSION and all((IMAGES / n).is_file()
                                                               for n in [*names, SCALE_IMAGE]):
            return list(names)
    IMAGES.mkdir(parents=True, exist_ok=True)
    photos = photo_paths()
    names: list[str] = []
    print(f"generating the image set in {IMAGES} from {photos[0].parent} ...", flush=True)
    for i in range(PHOTOS_PER_SET):
        photo = photos[i % len(photos)]
        with Image.open(photo) as opened:
            source = opened.convert("RGB")
        stem = f"{i:02d}-{photo.stem}"
        for size, label in ((BIG_SIZE, "12mp"), (MID_SIZE, "2mp")):
            fitted = ImageOps.fit(source, size, Image.Resampling.BICUBIC)
            name = f"{stem}-{label}.jpg"
            _grain(fitted, GRAIN_SIGMA).save(IMAGES / name, "JPEG", quality=JPEG_QUALITY)
            names.append(name)
        small = ImageOps.contain(source, (SMALL_SIDE, SMALL_SIDE), Image.Resampling.BICUBIC)
        name = f"{stem}-small.webp"
        small.save(IMAGES / name, "WEBP", quality=80)
        names.append(name)
    with Image.open(photos[min(4, len(photos) - 1)]) as opened:
        scale = ImageOps.fit(opened.convert("RGB"), SCALE_SIZE, Image.Resampling.BICUBIC)
    scale.save(IMAGES / SCALE_IMAGE, "JPEG", quality=SCALE_QUALITY)
    manifest.write_text(json.dumps({"version": IMAGE_SET_VERSION, "names": names}, indent=1))
    return names


def write_url_list(path: Path, urls: Iterator[str]) -> int:
    """Write one URL per line; the number written."""
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for url in urls:
            fh.write(url + "\n")
            count += 1
    return count


# ----- the image server (``--serve`` mode, run as a subprocess) -----------------------------
_CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
                  ".webp": "image/webp"}


def serve_files(root: Path, port: int) -> None:
    """Serve every image file of ``root`` from memory at /files/{name} on 127.0.0.1:port.

    Prints the base URL alone on the first stdout line; runs until SIGTERM or SIGINT.
    """
    from aiohttp import web

    files = {p.name: (p.read_bytes(), _CONTENT_TYPES[p.suffix.lower()])
             for p in sorted(root.iterdir()) if p.suffix.lower() in _CONTENT_TYPES}

    async def handle(request: web.Request) -> web.Response:
        entry = files.get(request.match_info["name"])
        if entry is None:
            raise web.HTTPNotFound()
        return web.Response(body=entry[0], content_type=entry[1])

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/files/{name}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())


# ----- processes ----------------------------------------------------------------------------
def child_env(base_url: str | None = None) -> dict[str, str]:
    """The environment for every child: no proxies, a dummy key, the emulator as Gemini."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    for name in ("GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "DESCRIBER_MODEL"):
        env.pop(name, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["GEMINI_API_KEY"] = "benchmark-key"
    env["PYTHONUNBUFFERED"] = "1"
    if base_url is not None:
        env["GOOGLE_GEMINI_BASE_URL"] = base_url
    return env


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by a running process (all its threads)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class Service:
    """A server subprocess that prints its base URL alone on its first stdout line."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self._log = log.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=child_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.url = self._read_url()

    def _read_url(self) -> str:
        box: list[str] = []
        assert self.proc.stdout is not None
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(SERVICE_START_TIMEOUT_S)
        url = box[0].strip() if box else ""
        if not url.startswith("http://127.0.0.1:"):
            self.stop()
            raise SystemExit(f"{self.name} did not start (log: {self._log.name}): {url!r}")
        return url

    def cpu_seconds(self) -> float:
        """CPU seconds this service has used so far."""
        return process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; always reaped."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


class Emulator(Service):
    """The Gemini emulator subprocess and its control endpoints."""

    _opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, path: str, payload: dict[str, Any] | None = None,
              method: str = "GET") -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with self._opener.open(request, timeout=30) as response:
            result: dict[str, Any] = json.load(response)
            return result

    def reset(self) -> None:
        """Zero the emulator's counters."""
        self._call("/_emulator/reset", {}, "POST")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change emulator settings (latency, rpm, fault_rate, seed, ...)."""
        return self._call("/_emulator/config", settings, "POST")

    def stats(self) -> dict[str, Any]:
        """The counters, without the per-request lists."""
        return self._call("/_emulator/stats?lists=0")


@dataclass
class Usage:
    """Resource use of one finished client process."""

    wall_s: float
    cpu_s: float
    rss_mb: float
    exit_code: int


_running: list[subprocess.Popen[bytes]] = []  # clients in progress, killed on the way out


def run_measured(argv: Sequence[str], env: dict[str, str], timeout_s: float,
                 stdout: IO[bytes] | int, stderr: IO[bytes] | int) -> Usage:
    """Run ``argv`` to completion (killed after ``timeout_s``); its wall, CPU and peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=stdout, stderr=stderr)
    _running.append(proc)
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        _, status, rusage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    _running.remove(proc)
    if proc.returncode == -signal.SIGKILL:
        print(f"  ! killed after {timeout_s:.0f} s: {' '.join(argv)}", flush=True)
    return Usage(wall, rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss / 1024,
                 proc.returncode)


# ----- one benchmark run ----------------------------------------------------------------------
@dataclass
class RunResult:
    """One client run: its usage, the emulator's counters and the records it wrote."""

    label: str
    usage: Usage
    stats: dict[str, Any]
    lines: int
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[int] = field(default_factory=list)
    emulator_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    stderr_tail: str = ""

    @property
    def uploaded_mb(self) -> float:
        return float(self.stats.get("request_bytes", 0)) / 1e6

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def read_records(path: Path) -> tuple[int, Counter[str], list[int]]:
    """Lines in a JSONL output, its errors by type (unparseable lines count as errors) and
    the model-call latencies the client recorded (``latency_ms``, describer only)."""
    lines = 0
    errors: Counter[str] = Counter()
    latencies: list[int] = []
    if not path.is_file():
        return 0, errors, latencies
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            lines += 1
            try:
                record = json.loads(line)
            except ValueError:
                errors["unparseable_line"] += 1
                continue
            error = record.get("error")
            if error:
                kind = error.get("type") if isinstance(error, dict) else None
                errors[str(kind or error)] += 1
            if isinstance(record.get("latency_ms"), int):
                latencies.append(record["latency_ms"])
    return lines, errors, latencies


class Bench:
    """The emulator and image server, and client runs measured against them."""

    def __init__(self, emulator: Emulator, server: Service) -> None:
        self.emulator = emulator
        self.server = server
        self.env = child_env(emulator.url)
        exe = Path(sys.executable).parent / "describe-images"
        found = str(exe) if exe.is_file() else shutil.which("describe-images")
        if found is None:
            raise SystemExit("describe-images not found: activate the project's virtualenv")
        self.describe_images = found

    def describer_argv(self, urls: Path, output: Path, concurrency: int | None) -> list[str]:
        # --no-cache: every run pays for every image, as the figures compare pipelines
        argv = [self.describe_images, str(urls), "-o", str(output), "--no-progress", "--no-cache"]
        return argv if concurrency is None else [*argv, "-c", str(concurrency)]

    def cookbook_argv(self, urls: Path, output: Path) -> list[str]:
        return [sys.executable, str(COOKBOOK), str(urls), "-o", str(output)]

    def run(self, label: str, argv: list[str], output: Path, timeout_s: float) -> RunResult:
        """Reset and re-seed the emulator, run the client, collect everything."""
        print(f"  running {label} ...", flush=True)
        output.unlink(missing_ok=True)  # -o resumes an existing file: start from nothing
        self.emulator.configure(seed=SEED)
        self.emulator.reset()
        emu_cpu, srv_cpu = self.emulator.cpu_seconds(), self.server.cpu_seconds()
        err_path = output.with_suffix(".stderr.txt")
        with err_path.open("wb") as err:
            usage = run_measured(argv, self.env, timeout_s, subprocess.DEVNULL, err)
        result = RunResult(label, usage, self.emulator.stats(), 0,
                           emulator_cpu_s=self.emulator.cpu_seconds() - emu_cpu,
                           server_cpu_s=self.server.cpu_seconds() - srv_cpu)
        result.lines, result.errors, result.latencies_ms = read_records(output)
        for service in (self.emulator, self.server):
            if service.proc.poll() is not None:
                raise SystemExit(f"{service.name} (pid {service.proc.pid}) exited with status "
                                 f"{service.proc.returncode} during {label}: run invalid")
        tail = err_path.read_text(errors="replace").strip().splitlines()
        result.stderr_tail = tail[-1] if tail else ""
        return result

    def startup(self, url: str) -> Usage:
        """Describer on one small image at zero latency, median of a few runs: its fixed cost
        (wall: start-up; peak RSS: the baseline every run pays)."""
        urls = OUT / "startup-urls.txt"
        write_url_list(urls, iter([url]))
        self.emulator.configure(latency=[0, 0])
        runs: list[Usage] = []
        try:
            for _ in range(STARTUP_RUNS):
                output = OUT / "startup.jsonl"
                output.unlink(missing_ok=True)  # -o resumes an existing file
                usage = run_measured(self.describer_argv(urls, output, None), self.env, 60,
                                     subprocess.DEVNULL, subprocess.DEVNULL)
                lines, errors, _ = read_records(output)
                if usage.exit_code != 0 or lines != 1 or errors:
                    raise SystemExit(f"start-up run failed: exit {usage.exit_code}, "
                                     f"{lines} lines, errors {dict(errors)}")
                runs.append(usage)
        finally:
            self.emulator.configure(latency=list(LATENCY))
        runs.sort(key=lambda u: u.wall_s)
        return runs[len(runs) // 2]


# ----- reports ------------------------------------------------------------------------------
def ideal_makespan(n: int, concurrency: int) -> float:
    """Wall time of a zero-overhead client for the emulator's latency draws (informational).

    Mirrors the emulator: after re-seeding, request k (in arrival order) sleeps the k-th draw
    of ``random.Random(f"{seed}:latency").uniform(low, high)``; a perfect client starts the
    next request the instant a slot frees.
    """
    rng = random.Random(f"{SEED}:latency")
    slots = [0.0] * concurrency
    for _ in range(n):
        heapq.heappush(slots, heapq.heappop(slots) + rng.uniform(*LATENCY))
    return max(slots)


def print_table(results: Sequence[RunResult], n: int) -> None:
    header = (f"{'run':<22} {'wall s':>8} {'CPU s':>8} {'RSS MB':>8} {'MB up':>9} "
              f"{'requests':>8} {'max fly':>7} {'lines':>6} {'errors':>6} {'emu CPU':>7} "
              f"{'srv CPU':>7}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.label:<22} {r.usage.wall_s:>8.2f} {r.usage.cpu_s:>8.2f} "
              f"{r.usage.rss_mb:>8.1f} {r.uploaded_mb:>9.1f} "
              f"{r.stats.get('generate_requests', 0):>8} {r.stats.get('max_in_flight', 0):>7} "
              f"{r.lines:>6} {r.error_count:>6} {r.emulator_cpu_s:>7.1f} {r.server_cpu_s:>7.1f}")
    for r in results:
        problems = []
        if r.lines != n:
            problems.append(f"{r.lines} lines for {n} URLs")
        if r.errors:
            problems.append("errors: " + ", ".join(f"{k} x{v}" for k, v in r.errors.most_common()))
        if r.usage.exit_code != 0:
            problems.append(f"exit status {r.usage.exit_code}")
        statuses = r.stats.get("responses_by_status", {})
        note = f"  [{r.label}] emulator statuses {statuses}"
        if r.latencies_ms:
            note += (f"; model-call latency seen by the client: mean "
                     f"{statistics.mean(r.latencies_ms):.0f} ms, max {max(r.latencies_ms)} ms")
        print(note + ("; " + "; ".join(problems) if problems else ""))
        if r.stderr_tail:
            print(f"  [{r.label}] stderr: {r.stderr_tail[:300]}")


def verdict(ok: bool, text: str, checks: list[bool]) -> None:
    checks.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {text}")


def report_standard(results: dict[str, RunResult], n: int, startup: Usage,
                    source_mb: float, checks: list[bool]) -> None:
    startup_s = startup.wall_s
    print()
    print(f"== Standard run: {n} URLs ({source_mb:.1f} MB of images), emulator latency "
          f"uniform {LATENCY[0]}-{LATENCY[1]} s ==")
    print_table(list(results.values()), n)
    base = results["describer c=16"]
    cookbook = results.get("cookbook")
    if cookbook is not None:
        print()
        for label, r in results.items():
            if label == "cookbook":
                continue
            print(f"cookbook / {label}:  "
                  f"wall {cookbook.usage.wall_s / r.usage.wall_s:.1f}x, "
                  f"CPU {cookbook.usage.cpu_s / r.usage.cpu_s:.1f}x, "
                  f"peak RSS {cookbook.usage.rss_mb / r.usage.rss_mb:.1f}x, "
                  f"bytes uploaded {cookbook.uploaded_mb / max(r.uploaded_mb, 1e-9):.2f}x")
    print()
    print(f"start-up (describer, 1 URL, zero latency, median of {STARTUP_RUNS}): "
          f"{startup_s:.2f} s wall, {startup.cpu_s:.2f} s CPU, {startup.rss_mb:.1f} MB peak RSS")
    for label, concurrency in (("describer c=16", 16), ("describer c=32", 32)):
        r = results.get(label)
        if r is None:
            continue
        bound = n * MEAN_LATENCY / concurrency
        print(f"{label}: latency bound {n} x {MEAN_LATENCY:.1f} s / {concurrency} = "
              f"{bound:.2f} s; bound + start-up {bound + startup_s:.2f} s; wall "
              f"{r.usage.wall_s:.2f} s = {r.usage.wall_s / (bound + startup_s):.2f}x of it")
        ideal = ideal_makespan(n, concurrency)
        print(f"    (info: a zero-overhead client would take {ideal:.2f} s for these latency "
              f"draws, {ideal + startup_s:.2f} s with start-up; wall is "
              f"{r.usage.wall_s / (ideal + startup_s):.2f}x of that)")
    print()
    if cookbook is not None:
        speedup = cookbook.usage.wall_s / base.usage.wall_s
        verdict(speedup >= TARGET_SPEEDUP,
                f"describer (c=16) is {speedup:.1f}x faster than the cookbook "
                f"(target >= {TARGET_SPEEDUP:.0f}x)", checks)
        floor = ideal_makespan(n, 16) + startup_s
        print(f"      (info: even a zero-overhead client at c=16 needs {floor:.2f} s here, "
              f"i.e. at most {cookbook.usage.wall_s / floor:.1f}x; "
              f"c=32 is {cookbook.usage.wall_s / results['describer c=32'].usage.wall_s:.1f}x)")
    else:
        print("SKIP  speed-up over the cookbook (--skip-cookbook)")
    for label, concurrency in (("describer c=16", 16), ("describer c=32", 32)):
        r = results[label]
        limit = TARGET_BOUND_FACTOR * (n * MEAN_LATENCY / concurrency + startup_s)
        verdict(r.usage.wall_s <= limit,
                f"{label} wall {r.usage.wall_s:.2f} s <= {TARGET_BOUND_FACTOR} x "
                f"(bound + start-up) = {limit:.2f} s", checks)
    for label in ("describer c=16", "describer c=32"):
        r = results[label]
        verdict(r.usage.rss_mb <= TARGET_RSS_MB,
                f"{label} peak RSS {r.usage.rss_mb:.1f} MB <= {TARGET_RSS_MB:.0f} MB", checks)
        verdict(r.lines == n and not r.errors and r.usage.exit_code == 0,
                f"{label} wrote {r.lines}/{n} records, {r.error_count} errors, "
                f"exit {r.usage.exit_code}", checks)


def report_scale(results: list[tuple[int | None, RunResult]], n: int, image_kb: float,
                 checks: list[bool]) -> None:
    print()
    print(f"== Scale run: {n:,} URLs of one {image_kb:.1f} KB JPEG, emulator latency 0 ==")
    print_table([r for _, r in results], n)
    print()
    for _, r in results:
        wall = r.usage.wall_s
        done = max(r.lines, 1)
        print(f"{r.label}: wall {wall:.1f} s ({n / wall:.0f} images/s), client CPU "
              f"{r.usage.cpu_s:.1f} s = {1000 * r.usage.cpu_s / done:.2f} ms/image "
              f"({100 * r.usage.cpu_s / wall:.0f}% of a core), peak RSS {r.usage.rss_mb:.1f} MB; "
              f"emulator CPU {r.emulator_cpu_s:.1f} s ({100 * r.emulator_cpu_s / wall:.0f}% of a "
              f"core), image server CPU {r.server_cpu_s:.1f} s "
              f"({100 * r.server_cpu_s / wall:.0f}%)")
        if r.emulator_cpu_s / wall > 0.9:
            print(f"  note: the emulator was busy {100 * r.emulator_cpu_s / wall:.0f}% of the "
                  "time: it, not describer, bounds this run's wall time")
    print()
    for _, r in results:
        per_image = 1000 * r.usage.cpu_s / max(r.lines, 1)
        verdict(r.usage.rss_mb <= TARGET_RSS_MB,
                f"{r.label} peak RSS {r.usage.rss_mb:.1f} MB <= {TARGET_RSS_MB:.0f} MB", checks)
        verdict(per_image <= TARGET_CPU_MS_PER_IMAGE,
                f"{r.label} client CPU {per_image:.2f} ms/image <= "
                f"{TARGET_CPU_MS_PER_IMAGE:.0f} ms", checks)
        verdict(r.lines == n and not r.errors and r.usage.exit_code == 0,
                f"{r.label} wrote {r.lines:,}/{n:,} records, {r.error_count} errors, "
                f"exit {r.usage.exit_code}", checks)


# ----- main -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark describer against the cookbook pattern.")
    p.add_argument("--n", type=int, default=100, help="URLs in the standard run [100]")
    p.add_argument("--skip-cookbook", action="store_true", help="do not run the cookbook")
    p.add_argument("--scale", action="store_true", help="also run the 100,000-image scale test")
    p.add_argument("--scale-n", type=int, default=100_000, help="URLs in the scale run")
    p.add_argument("--scale-concurrency", default="16,64",
                   help="comma-separated concurrencies for the scale run [16,64]")
    p.add_argument("--regenerate", action="store_true", help="rebuild bench-out/images")
    p.add_argument("--serve", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.n < 1 or args.scale_n < 1:
        p.error("--n and --scale-n must be at least 1")
    try:
        args.scale_concurrency = [int(c) for c in args.scale_concurrency.split(",") if c]
    except ValueError:
        p.error("--scale-concurrency takes integers, e.g. 16,64")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--emulator"]:
        from describer.emulator.__main__ import main as emulator_main

        return emulator_main(argv[1:])
    args = parse_args(argv)
    if args.serve is not None:
        serve_files(args.serve, args.port)
        return 0
    OUT.mkdir(exist_ok=True)
    with exclusive_run(OUT / ".benchmark.lock"):
        return run_all(args)


@contextlib.contextmanager
def exclusive_run(lock_path: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold an exclusive lock for the whole benchmark, waiting up to ``wait_s`` for it.

    Two runs at once would overwrite each other's files in bench-out/ and compete for the
    CPU they measure; the second one waits for the first.
    """
    with lock_path.open("a+", encoding="utf-8") as fh:
        deadline = time.monotonic() + wait_s
        announced = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"another benchmark run still holds {lock_path}") from None
                if not announced:
                    fh.seek(0)
                    holder = fh.read().strip() or "unknown pid"
                    print(f"waiting for another benchmark run ({holder}) to finish ...",
                          flush=True)
                    announced = True
                time.sleep(1.0)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def image_set_in_child(force: bool) -> list[str]:
    """:func:`make_image_set` in a spawned child process. Made here, the images would grow
    this process to ~250 MB, and every client forked after that reports this process's RSS
    as its own peak (``ru_maxrss`` keeps the high-water mark from before ``exec``): the first
    run in a fresh tree measured 252 MB for a 1-URL start-up instead of 80 MB."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(make_image_set, force).result()


def run_all(args: argparse.Namespace) -> int:
    """Start the servers, run what ``args`` asks for, report; the exit status."""
    names = image_set_in_child(force=args.regenerate)
    services: list[Service] = []
    checks: list[bool] = []
    try:
        emulator = Emulator("emulator", [
            sys.executable, str(Path(__file__).resolve()), "--emulator", "--port", "0",
            "--latency", f"{LATENCY[0]}-{LATENCY[1]}", "--seed", str(SEED),
        ], OUT / "emulator.log")
        services.append(emulator)
        server = Service("image server", [
            sys.executable, str(Path(__file__).resolve()), "--serve", str(IMAGES), "--port", "0",
        ], OUT / "image-server.log")
        services.append(server)
        print(f"emulator {emulator.url} (pid {emulator.proc.pid}), image server {server.url} "
              f"(pid {server.proc.pid})", flush=True)
        bench = Bench(emulator, server)
        run_standard(bench, names, args, checks)
        if args.scale:
            run_scale(bench, args, checks)
    finally:
        for proc in _running:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
        for service in reversed(services):
            service.stop()
    print()
    print(f"{sum(checks)}/{len(checks)} checks passed")
    return 0 if all(checks) else 1


def run_standard(bench: Bench, names: list[str], args: argparse.Namespace,
                 checks: list[bool]) -> None:
    n = args.n
    urls = OUT / "urls.txt"
    write_url_list(urls, (f"{bench.server.url}/files/{names[k % len(names)]}?copy={k}"
                          for k in range(n)))
    source_mb = sum((IMAGES / names[k % len(names)]).stat().st_size for k in range(n)) / 1e6
    small = next(name for name in names if name.endswith(".webp"))
    print(f"standard run: {n} URLs in {urls}", flush=True)
    startup = bench.startup(f"{bench.server.url}/files/{small}?startup=1")
    timeout = 60 + 3 * n  # seconds; generous, only a hung client reaches it
    results: dict[str, RunResult] = {}
    for label, concurrency, out in (("describer c=16", None, "describer.jsonl"),
                                    ("describer c=32", 32, "describer-c32.jsonl")):
        argv = bench.describer_argv(urls, OUT / out, concurrency)
        results[label] = bench.run(label, argv, OUT / out, timeout)
    if not args.skip_cookbook:
        out = OUT / "cookbook.jsonl"
        results["cookbook"] = bench.run("cookbook", bench.cookbook_argv(urls, out), out,
                                        300 + 10 * n)
    report_standard(results, n, startup, source_mb, checks)


def run_scale(bench: Bench, args: argparse.Namespace, checks: list[bool]) -> None:
    n = args.scale_n
    urls = OUT / "scale-urls.txt"
    write_url_list(urls, (f"{bench.server.url}/files/{SCALE_IMAGE}?i={i}" for i in range(n)))
    image_kb = (IMAGES / SCALE_IMAGE).stat().st_size / 1024
    print(f"scale run: {n:,} URLs in {urls}", flush=True)
    bench.emulator.configure(latency=[0, 0])
    results: list[tuple[int | None, RunResult]] = []
    try:
        for concurrency in args.scale_concurrency:
            flag = None if concurrency == 16 else concurrency  # 16 is describer's default
            label = f"describer c={concurrency}"
            out = OUT / f"scale-c{concurrency}.jsonl"
            timeout = 600 + 0.05 * n  # seconds
            results.append((flag, bench.run(label, bench.describer_argv(urls, out, flag), out,
                                             timeout)))
    finally:
        bench.emulator.configure(latency=list(LATENCY))
    report_scale(results, n, image_kb, checks)


if __name__ == "__main__":
    sys.exit(main())
