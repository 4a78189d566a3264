"""Quota benchmark: issue 10's per-minute and per-day quota targets, in both enforcement styles.

What it measures. A local Gemini emulator enforces R generate requests per W seconds (W = 60,
Gemini's minute, by default) in each of its styles: ``window`` (sliding: "an RPM limit of 20:
21 requests within a minute fail") and ``bucket`` (a token bucket with the default burst, one
second's worth: the harsher case); it answers after a uniform 0.5-1.5 s. Small distinct JPEGs
(made once under ``bench-out/quota/images/``) are served by the project's ImageServer. Each
run gets a fresh emulator and image server (an event loop in a thread of this script,
127.0.0.1 only) and a client process of its own; runs mostly wait on the quota, so ``--jobs``
of them go at once. The targets:

T1  60-RPM quota, 150 images, no ``--rpm``: all described, 429s <= 10 % of N, wall <= 1.25 x
    the same run with ``--rpm 60`` (the baseline, same style, run in the same invocation);
T2  the same with a 10-RPM quota and 40 images;
T3  T1 and T2 with a third of the 429s bare (``bare_fraction=1/3``, seeded so that the first
    429 comes bare; compared with the same baseline: it sees no 429 when T4 holds);
T4  the baselines (``--rpm R``) get 0 429s;
T5  ``rpd=20`` (no per-minute quota, so no style), 60 images, ``-c 4``, no ``--rpm``,
    ``-o FILE``: the client exits within 10 s of the emulator's first per-day 429 (its
    ``stats.first_day_limited_at`` against ``time.monotonic()`` here when the child exits),
    sends at most 4 requests after it, leaves 20 described and 0 error records, exits 3;
    then, after ``reset_day()`` and ``rpd=None`` on the same emulator, the same command
    makes 40 generate requests, appends the other 40 images described, and exits 0.

With W = 60 the client is the ``describe-images`` CLI. It has no window option, so with
``--window W`` (a scaled-down smoke run) the client is the library instead, the CLI's body
``describe_main(Config(quota_window=W, ...))`` (``describer.run`` plus the CLI's summary and
exit codes), in a child ``python -c``. Wall time is that of the whole child process.

Printed: one table, a row per run (case, style, ``--rpm`` given, N, wall, wall / baseline,
generate requests, 429s and % of N, bare 429s, described / N, error records, exit code, PASS or the
targets failed), then T5's figures. Exit 1 if a target fails.

Run from the project root, in its virtualenv::

    . .venv/bin/activate
    python scripts/bench_quota.py                      # the whole matrix, 60 s window: ~7 min
    python scripts/bench_quota.py --window 6           # scaled down: ~1 min
    python scripts/bench_quota.py --only rpd --only rpm10 --style bucket

Scratch files (images, URL lists, outputs, each client's stderr with its summary line) go
to ``bench-out/quota/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from describer.emulator import EmulatorSettings, GeminiEmulator, ImageServer
from describer.emulator.stats import EmulatorStats

T = TypeVar("T")
OnLoop = Callable[[Callable[[], Any]], Any]
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out" / "quota"
IMAGES = OUT / "images"
CLI = Path(sys.executable).parent / "describe-images"
LATENCY = (0.5, 1.5)  # seconds, uniform: the emulator's answer time per generate request
REAL_WINDOW = 60.0  # seconds: Gemini's per-minute quota window
SEED = 0
IMAGE_SIDE = 48  # px; small noise JPEGs: every one distinct, ~3 KB
INTERRUPT_GRACE_S = 30.0  # after a timeout: SIGINT, then SIGKILL this much later
QUOTAS = {"rpm60": (60, 150), "rpm10": (10, 40)}  # case -> (requests per window, N)
STYLES = ("window", "bucket")
CONCURRENCY = 16  # the CLI's default -c, for T1-T4
BARE = 1 / 3
#: Seed of the bare runs: the emulator's bare-429 RNG then draws bare, detailed, detailed,
#: detailed, bare, detailed, so the first 429 comes bare, before the client could learn the
#: limit (SEED's first two are detailed, and a run meets only a few 429s: T3 untested).
BARE_SEED = 1
MAX_429_SHARE = 0.10
MAX_WALL_RATIO = 1.25
RPD, RPD_N, RPD_CONCURRENCY, RPD_END_S = 20, 60, 4, 10.0
RPD_TIMEOUT_S = 300.0

# The library client used for a scaled window (the CLI has no window option).
LIBRARY_CLIENT = """
import asyncio, json, sys
from pathlib import Path
from describer import Config
from describer.cli.commands import describe_main
a = json.loads(sys.argv[1])
config = Config(rpm=a["rpm"], quota_window=a["window"], concurrency=a["concurrency"],
                base_url=a["base_url"], api_key="bench", output=Path(a["output"]),
                progress=False, cache=False)
sys.exit(asyncio.run(describe_main(config, [a["urls"]])))
"""


@dataclass(frozen=True)
class Case:
    """One run of the matrix (T5 is one case of two client runs)."""

    group: str  # "rpm60", "rpm10" or "rpd"
    style: str  # the emulator's rpm_style, "-" without a per-minute quota
    n: int
    quota: int | None  # the emulator's requests per window
    given: int | None = None  # the client's --rpm
    bare: float = 0.0
    concurrency: int = CONCURRENCY

    @property
    def label(self) -> str:
        kind = "rpm" if self.given else "bare" if self.bare else "plain"
        return "rpd" if self.group == "rpd" else f"{self.group}-{self.style}-{kind}"

    @property
    def seed(self) -> int:
        return BARE_SEED if self.bare else SEED

    def bare_429s(self, stats: EmulatorStats) -> int:
        """How many of a run's 429s came bare, replaying the emulator's bare-429 RNG
        (quota.Quotas._refusal: one draw per quota 429, bare when below the fraction)."""
        rng = random.Random(f"{self.seed}:bare")
        return sum(rng.random() < self.bare for _ in range(stats.rate_limited))

    def settings(self, window: float) -> EmulatorSettings:
        return EmulatorSettings(
            latency=LATENCY, rpm=self.quota, quota_window=window, seed=self.seed,
            rpm_style=self.style if self.quota else "window", bare_fraction=self.bare,
            rpd=RPD if self.group == "rpd" else None)

    def timeout(self, args: argparse.Namespace) -> float:
        if args.timeout:
            return float(args.timeout)
        return RPD_TIMEOUT_S if self.quota is None else 4 * self.n / self.quota * args.window + 120


@dataclass
class Run:
    """One client process: exit code, wall time, when it ended (monotonic); then the
    emulator's stats and the records it wrote (sources described, errors by type, lines)."""

    exit_code: int | None
    wall: float
    ended_at: float
    timed_out: bool
    stats: EmulatorStats = field(default_factory=EmulatorStats)
    described: set[str] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    lines: int = 0


@dataclass
class Outcome:
    """A case: its run, T5's rerun, and the checks (name, passed) made on them."""

    case: Case
    run: Run
    rerun: Run | None = None
    checks: list[tuple[str, bool]] = field(default_factory=list)
    rerun_checks: list[tuple[str, bool]] = field(default_factory=list)


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
def servers(settings: EmulatorSettings) -> Iterator[tuple[GeminiEmulator, ImageServer, OnLoop]]:
    """A fresh emulator and image server on one event loop in a daemon thread, and a
    function that calls ``fn()`` on that loop (so it never races a request)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="bench-servers", daemon=True)
    thread.start()
    emulator, images = GeminiEmulator(settings), ImageServer(IMAGES)

    def wait(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def call(fn: Callable[[], Any]) -> Any:
        return fn()

    try:
        wait(emulator.start("127.0.0.1", 0))
        wait(images.start())
        yield emulator, images, lambda fn: wait(call(fn))
    finally:
        wait(images.stop())
        wait(emulator.stop())
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


def client_command(case: Case, window: float, urls: Path, output: Path,
                   base_url: str) -> list[str]:
    """The client's command line: the CLI at the real window, else the library (resumes
    ``output``: the caller deletes it for a fresh start)."""
    if window == REAL_WINDOW:
        cmd = [str(CLI), str(urls), "-o", str(output), "--no-progress", "--no-cache",
               "-c", str(case.concurrency)]  # every case asks the model about every item
        return cmd + (["--rpm", str(case.given)] if case.given else [])
    spec = {"rpm": case.given, "window": window, "concurrency": case.concurrency,
            "base_url": base_url, "output": str(output), "urls": str(urls)}
    return [sys.executable, "-c", LIBRARY_CLIENT, json.dumps(spec)]


def launch(cmd: list[str], base_url: str, stderr_path: Path, timeout: float) -> Run:
    """Run one client process to its end (SIGINT after ``timeout``, then SIGKILL)."""
    timed_out = False
    with stderr_path.open("w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=client_env(base_url), cwd=OUT,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.send_signal(signal.SIGINT)  # finish the items in flight, write them
            try:
                proc.wait(timeout=INTERRUPT_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        ended_at = time.monotonic()
        wall = time.perf_counter() - started
    return Run(proc.returncode, wall, ended_at, timed_out)


def read_records(path: Path, run: Run, skip: int = 0) -> None:
    """Sources described and errors by type, in the output file from line ``skip`` on."""
    lines = path.read_text().splitlines()[skip:] if path.exists() else []
    for record in (json.loads(line) for line in lines if line.strip()):
        run.lines += 1
        if record.get("error") is None:
            run.described.add(record["source"])
        else:
            run.errors[record["error"]["type"]] += 1


def execute(case: Case, args: argparse.Namespace) -> Outcome:
    """One case against a fresh emulator (T5: the run, then the day's reset and the rerun)."""
    names = make_images(case.n)
    output, urls = OUT / f"out-{case.label}.jsonl", OUT / f"urls-{case.label}.txt"
    output.unlink(missing_ok=True)
    with servers(case.settings(args.window)) as (emulator, images, on_loop):
        urls.write_text("".join(images.url(name) + "\n" for name in names))
        cmd = client_command(case, args.window, urls, output, emulator.base_url)

        def one(suffix: str, skip: int) -> Run:
            run = launch(cmd, emulator.base_url, OUT / f"stderr-{case.label}{suffix}.txt",
                         case.timeout(args))
            run.stats = on_loop(lambda: copy.deepcopy(emulator.stats))
            read_records(output, run, skip)
            return run

        outcome = Outcome(case, one("", 0))
        if case.group == "rpd":
            on_loop(lambda: new_day(emulator))
            outcome.rerun = one("-rerun", outcome.run.lines)
    return outcome


def new_day(emulator: GeminiEmulator) -> None:
    """The quota day resets (and rpd is lifted); the stats start again for the rerun."""
    emulator.reset_day()
    emulator.configure(rpd=None)
    emulator.reset_stats()


def quota_checks(o: Outcome, baseline: Outcome | None) -> list[tuple[str, bool]]:
    """T1-T4 for one run (its baseline: the same group and style with --rpm)."""
    r, n = o.run, o.case.n
    done = len(r.described) == n and not r.timed_out
    if o.case.given:
        return [("all described", done), ("T4 0 429s", r.stats.rate_limited == 0)]
    target = "T3" if o.case.bare else "T1" if o.case.group == "rpm60" else "T2"
    ratio = r.wall / baseline.run.wall if baseline else float("inf")
    return [(f"{target} all described", done),
            (f"{target} 429s<=10%", r.stats.rate_limited <= MAX_429_SHARE * n),
            (f"{target} wall<=1.25x", ratio <= MAX_WALL_RATIO)]


def after_first_daily(run: Run) -> tuple[float | None, int]:
    """Seconds from the first per-day 429 to the client's exit; requests that arrived after it."""
    first = run.stats.first_day_limited_at
    if first is None:
        return None, 0
    return run.ended_at - first, sum(t > first for t in run.stats.request_times)


def rpd_checks(o: Outcome) -> None:
    """T5's checks on the run and the rerun."""
    run, rerun = o.run, o.rerun
    assert rerun is not None
    to_exit, later = after_first_daily(run)
    o.checks = [("T5 exit<=10s after 1st daily 429", to_exit is not None and to_exit <= RPD_END_S),
                (f"T5 <={RPD_CONCURRENCY} requests after it", later <= RPD_CONCURRENCY),
                (f"T5 {RPD} described", len(run.described) == RPD),
                ("T5 0 error records", not run.errors),
                ("T5 exit 3", run.exit_code == 3)]
    new = rerun.described
    other = len(new) == RPD_N - RPD and not new & run.described
    o.rerun_checks = [(f"T5 {RPD_N - RPD} requests", rerun.stats.generate_requests == RPD_N - RPD),
                      (f"T5 the other {RPD_N - RPD} described", other),
                      ("T5 0 error records", not rerun.errors),
                      ("T5 exit 0", rerun.exit_code == 0)]


def verdict(checks: list[tuple[str, bool]]) -> str:
    failed = [name for name, ok in checks if not ok]
    return "PASS" if not failed else "FAIL: " + "; ".join(failed)


HEADER = (f"{'case':<14} {'style':<7} {'--rpm':>5} {'N':>4} {'wall s':>7} {'ratio':>6} "
          f"{'requests':>8} {'429s (%N)':>10} {'bare':>4} {'described':>10} {'errors':>6} "
          f"{'exit':>4}  targets")


def row(name: str, style: str, given: int | None, n: int, run: Run, ratio: float | None,
        bare: int | None, checks: list[tuple[str, bool]]) -> str:
    s = run.stats
    share = f"{s.rate_limited} ({s.rate_limited / n:.0%})"
    flag = " TIMED OUT" if run.timed_out else ""
    return (f"{name:<14} {style:<7} {given or '-':>5} {n:>4} {run.wall:>7.1f} "
            f"{'-' if ratio is None else f'{ratio:.2f}':>6} {s.generate_requests:>8} "
            f"{share:>10} {'-' if bare is None else bare:>4} "
            f"{f'{len(run.described)}/{n}':>10} {sum(run.errors.values()):>6} "
            f"{run.exit_code!s:>4}  {verdict(checks)}{flag}")


def print_table(outcomes: list[Outcome], baselines: dict[tuple[str, str], Outcome]) -> None:
    """The table of every run, then T5's figures."""
    print(HEADER)
    for o in outcomes:
        c, run = o.case, o.run
        base = baselines.get((c.group, c.style))
        ratio = run.wall / base.run.wall if base and c.quota else None
        name = c.group + (" bare1/3" if c.bare else "")
        bare = c.bare_429s(run.stats) if c.bare else None
        print(row(name, c.style, c.given, c.n, run, ratio, bare, o.checks))
        if o.rerun is not None:
            print(row("rpd rerun", "-", None, c.n - RPD, o.rerun, None, None, o.rerun_checks))
    for o in outcomes:
        if o.rerun is not None:
            print_rpd(o)


def print_rpd(o: Outcome) -> None:
    """T5's figures."""
    run, rerun = o.run, o.rerun
    assert rerun is not None
    to_exit, later = after_first_daily(run)
    gap = "never" if to_exit is None else f"{to_exit:.2f} s"
    print(f"\nT5 rpd={RPD}, {RPD_N} images, -c {RPD_CONCURRENCY}, no --rpm, -o FILE: first daily "
          f"429 -> client exit {gap} (<= {RPD_END_S:g} s); requests after it {later} (<= "
          f"{RPD_CONCURRENCY}); daily 429s {run.stats.day_limited}; rerun after reset_day() "
          f"with rpd=None: {len(rerun.described)} new described, "
          f"{len(rerun.described & run.described)} of them already described by the run")


def plan(args: argparse.Namespace) -> list[Case]:
    """The cases asked for, in the table's order."""
    cases = []
    for group, (quota, n) in QUOTAS.items():
        if args.only and group not in args.only:
            continue
        for style in args.style or STYLES:
            cases += [Case(group, style, n, quota, given=quota), Case(group, style, n, quota),
                      Case(group, style, n, quota, bare=BARE)]
    if not args.only or "rpd" in args.only:
        cases.append(Case("rpd", "-", RPD_N, None, concurrency=RPD_CONCURRENCY))
    return cases


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--window", type=float, default=REAL_WINDOW,
                   help="quota window in seconds (60: the CLI is run; else the library)")
    p.add_argument("--jobs", "-j", type=int, default=8, help="runs at once")
    p.add_argument("--only", action="append", choices=(*QUOTAS, "rpd"),
                   help="run these cases only (repeatable)")
    p.add_argument("--style", action="append", choices=STYLES,
                   help="run these enforcement styles only (repeatable)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per client run before it is interrupted "
                        "(default 4 x N/R windows + 120; T5: 300)")
    args = p.parse_args(argv)
    if args.window <= 0 or args.jobs < 1:
        p.error("--window and --jobs must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the cases, print the table; 0 when every target passed."""
    args = parse(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    make_images(max(n for _, n in QUOTAS.values()))
    cases = plan(args)
    print(f"quota benchmark: {len(cases)} cases, window {args.window:g} s, latency uniform "
          f"{LATENCY[0]}-{LATENCY[1]} s, client -c {CONCURRENCY} (T5: -c {RPD_CONCURRENCY}), "
          f"{args.jobs} at once\n", flush=True)
    started = time.perf_counter()
    outcomes: dict[Case, Outcome] = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        longest_first = sorted(cases, key=lambda c: -c.n / (c.quota or c.n))
        futures = [pool.submit(execute, case, args) for case in longest_first]
        for future in as_completed(futures):
            o = future.result()
            outcomes[o.case] = o
            print(f"  done {o.case.label:<22} {o.run.wall:7.1f} s  "
                  f"exit {o.run.exit_code}", flush=True)
    ordered = [outcomes[c] for c in cases]
    baselines = {(o.case.group, o.case.style): o for o in ordered if o.case.given}
    for o in ordered:
        if o.case.group == "rpd":
            rpd_checks(o)
        else:
            o.checks = quota_checks(o, baselines.get((o.case.group, o.case.style)))
    print()
    print_table(ordered, baselines)
    print(f"\nwhole benchmark: {time.perf_counter() - started:.0f} s", flush=True)
    checks = [ok for o in ordered for _, ok in o.checks + o.rerun_checks]
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
