"""Embedding benchmark: batched ``embed_stream`` against one ``embed_content`` call per text.

What it measures. N distinct descriptions (default 1,000 one-sentence texts) are released by a
producer at a steady rate (default 50/s, like a describe run finishing items) and turned into
vectors, through the real google-genai client over HTTP on 127.0.0.1, by a GeminiEmulator
started in this script (in a thread of its own), whose batchEmbedContents calls answer after
a uniform 0.1-0.3 s (``--embed-latency``). Variants (``--variants``, default all):

* ``batch-T`` for each T of ``--timeouts`` (default 0.5 and 2): describer's path,
  ``describer.embed.embed_stream`` with an ``Embedder`` (batch_size ``--batch-size`` = 100,
  timeout T s, at most --concurrency batches in flight: ``Embedder.concurrency``);
* ``item-stream``: the same path with batch_size 1, timeout 0 (``--embed-batch-size 1``);
* ``item-sdk``: one ``client.aio.models.embed_content(contents=[text])`` per description,
  ``--concurrency`` (16) at once, no describer code in between: the naive baseline;
* ``item-embedder``: ``Embedder.embed([text])`` per description, ``--concurrency``
  at once (the Embedder's own throttle still allows only 4 calls at once).

Printed per variant: embedding calls (emulator ``embed_requests``) and their batch sizes
(``batch_sizes``: mean, min, max), vectors received and failures, wall time (first text
released to last vector available), and the added latency per item, from the moment its
description is due (its slot in the release schedule: when the producer is held back by
back-pressure the wait counts) until its vector is available to the consumer: mean, p50, p95,
max; and how far the producer fell behind its schedule.
The emulator's stats are reset and its RNG re-seeded before each variant, so every variant
sees the same latency sequence. Vectors have ``--dim`` (768) dimensions, a size the README
suggests; 3072 (the model's default) adds JSON CPU that this 2-core, one-process setup
would charge to the latency.

Run from the project root, in its virtualenv::

    . .venv/bin/activate
    python scripts/bench_embed.py                      # ~3 min
    python scripts/bench_embed.py --n 200 --rate 100   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from google import genai
from google.genai import types

from describer import Config
from describer.embed import Embedder, EmbedOutcome, embed_stream
from describer.emulator import EmulatorSettings, GeminiEmulator
from describer.gemini import Connection, create_client, open_session

SEED = 0
API_KEY = "bench-key"
DEFAULT_VARIANTS = "batch,item-stream,item-sdk,item-embedder"

_ADJ = ("calm", "busy", "quiet", "sunlit", "misty", "crowded", "rustic", "modern", "faded",
        "vivid", "weathered", "serene")
_COLOUR = ("amber", "teal", "crimson", "ochre", "slate", "emerald", "ivory", "indigo",
           "copper", "olive")
_SUBJECT = ("harbour", "forest path", "city street", "kitchen", "mountain lake", "market stall",
            "library", "garden", "railway platform", "beach", "workshop", "rooftop")
_TIME = ("at dusk", "at dawn", "at noon", "at night", "in the rain", "in fog", "in snow",
         "under streetlights")
_DETAIL = ("a red bicycle", "two people talking", "a sleeping cat", "stacked crates",
           "a flock of birds", "a parked van", "potted plants", "a hand-painted sign")


@dataclass
class Item:
    """One description on its way to a vector; times are ``time.perf_counter()``."""

    index: int
    text: str
    released: float = 0.0  # when it was due (its slot in the schedule), or later if on time
    lag: float = 0.0  # seconds the producer was held back past that slot (back-pressure)
    available: float = 0.0
    ok: bool = False


@dataclass
class Outcome:
    """What one variant did."""

    name: str
    wall: float
    items: list[Item]
    calls: int
    batch_sizes: list[int]
    timed_out: bool = False
    notes: list[str] = field(default_factory=list)


def descriptions(n: int) -> list[str]:
    """``n`` distinct one-sentence descriptions, like alt text from a describe run."""
    rng = random.Random(SEED)
    return [
        f"A {rng.choice(_ADJ)} {rng.choice(_SUBJECT)} in {rng.choice(_COLOUR)} tones "
        f"{rng.choice(_TIME)}, with {rng.choice(_DETAIL)} in the foreground (photo {i})."
        for i in range(n)
    ]


async def release(texts: list[str], rate: float) -> AsyncIterator[Item]:
    """Each text as an Item at ``rate`` per second (a fixed schedule from the first).

    A text handed over late because the consumer held the producer back (back-pressure) is
    stamped with its scheduled time: the wait counts as added latency, as it would in a run.
    """
    start = time.perf_counter()
    for i, text in enumerate(texts):
        due = start + i / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
            yield Item(i, text, released=time.perf_counter())
        else:
            yield Item(i, text, released=due, lag=-delay)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def client_config(base_url: str, dim: int, batch_size: int, timeout: float) -> Config:
    """The run configuration the Embedder sees."""
    return Config(api_key=API_KEY, base_url=base_url, embed_dim=dim,
                  embed_batch_size=batch_size, embed_timeout=timeout)


async def via_stream(base_url: str, texts: list[str], args: argparse.Namespace,
                     done: list[Item], batch_size: int, timeout: float) -> None:
    """describer's path: ``embed_stream`` with an ``Embedder``; finished items go to ``done``."""
    config = client_config(base_url, args.dim, batch_size, timeout)

    def attach(item: Item, outcome: EmbedOutcome) -> Item:
        item.ok = outcome.vector is not None and len(outcome.vector) == args.dim
        return item

    async with open_session() as session:
        embedder = Embedder(Connection(session, create_client(config, session), ()), config)
        stream = embed_stream(release(texts, args.rate), embedder, lambda it: it.text, attach,
                              batch_size, timeout)
        async for item in stream:
            item.available = time.perf_counter()
            done.append(item)


async def per_item(texts: list[str], args: argparse.Namespace, done: list[Item],
                   call: Callable[[str], Awaitable[list[float]]]) -> None:
    """One call per description, ``args.concurrency`` at once, started as each is released."""
    slots = asyncio.Semaphore(args.concurrency)

    async def one(item: Item) -> None:
        try:
            async with slots:
                vector = await call(item.text)
            item.ok = len(vector) == args.dim
        except Exception:  # counted as a failure: the benchmark goes on
            item.ok = False
        item.available = time.perf_counter()
        done.append(item)

    async with asyncio.TaskGroup() as group:
        async for item in release(texts, args.rate):
            group.create_task(one(item))


async def via_sdk(base_url: str, texts: list[str], args: argparse.Namespace,
                  done: list[Item]) -> None:
    """``client.aio.models.embed_content(contents=[text])`` per description."""
    config = client_config(base_url, args.dim, 1, 0.0)
    settings = types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT",
                                        output_dimensionality=args.dim)
    async with open_session() as session:
        client: genai.Client = create_client(config, session)

        async def call(text: str) -> list[float]:
            response = await client.aio.models.embed_content(
                model=config.embed_model, contents=[text], config=settings)
            return list((response.embeddings or [])[0].values or [])

        await per_item(texts, args, done, call)


async def via_embedder(base_url: str, texts: list[str], args: argparse.Namespace,
                       done: list[Item]) -> None:
    """``Embedder.embed([text])`` per description."""
    config = client_config(base_url, args.dim, 1, 0.0)
    async with open_session() as session:
        embedder = Embedder(Connection(session, create_client(config, session), ()), config)

        async def call(text: str) -> list[float]:
            return (await embedder.embed([text]))[0]

        await per_item(texts, args, done, call)


async def run_variant(emulator: GeminiEmulator, name: str, texts: list[str],
                      args: argparse.Namespace) -> Outcome:
    """Reset the emulator, run one variant under ``args.timeout``, collect its figures."""
    emulator.configure(seed=SEED)  # same embed-latency sequence for every variant
    emulator.reset_stats()
    base_url = emulator.base_url
    items: list[Item] = []
    job: Awaitable[None]
    if name.startswith("batch-"):
        timeout = float(name.split("-", 1)[1])
        job = via_stream(base_url, texts, args, items, args.batch_size, timeout)
    elif name == "item-stream":
        job = via_stream(base_url, texts, args, items, 1, 0.0)
    elif name == "item-sdk":
        job = via_sdk(base_url, texts, args, items)
    else:
        job = via_embedder(base_url, texts, args, items)
    started = time.perf_counter()
    timed_out = False
    try:
        async with asyncio.timeout(args.timeout):
            await job
    except TimeoutError:
        timed_out = True
    wall = time.perf_counter() - started
    if items:
        wall = max(i.available for i in items) - min(i.released for i in items)
    stats = emulator.stats
    return Outcome(name, wall, items, stats.embed_requests, list(stats.batch_sizes), timed_out)


def report(o: Outcome, n: int) -> None:
    """Print one variant's figures."""
    added = [i.available - i.released for i in o.items]
    ok = sum(i.ok for i in o.items)
    sizes = o.batch_sizes
    flag = "  (TIMED OUT)" if o.timed_out else ""
    print(f"{o.name}{flag}")
    print(f"  embed calls                 {o.calls:6d}   batch size mean "
          f"{statistics.fmean(sizes) if sizes else 0:.1f}, min {min(sizes, default=0)}, "
          f"max {max(sizes, default=0)}")
    print(f"  vectors                     {ok:6d} / {n}   (failed or missing: {n - ok})")
    lag = max((i.lag for i in o.items), default=0.0)
    print(f"  wall (first release -> last vector) {o.wall:7.2f} s   producer held back: "
          f"at most {lag:.2f} s behind schedule")
    if added:
        print(f"  added latency per item      mean {statistics.fmean(added):6.3f} s   "
              f"p50 {percentile(added, 50):6.3f} s   p95 {percentile(added, 95):6.3f} s   "
              f"max {max(added):6.3f} s")
    print(flush=True)


def parse_range(text: str) -> tuple[float, float]:
    """"0.1-0.3" (uniform seconds) or "0.2" (fixed)."""
    low, sep, high = text.partition("-")
    return (float(low), float(high)) if sep else (float(low), float(low))


def variant_names(args: argparse.Namespace) -> list[str]:
    """Expand ``--variants`` ("batch" becomes one batch-T per ``--timeouts``)."""
    names: list[str] = []
    for name in args.variants.split(","):
        name = name.strip()
        if name == "batch":
            names += [f"batch-{float(t):g}" for t in args.timeouts.split(",")]
        elif name in ("item-stream", "item-sdk", "item-embedder") or name.startswith("batch-"):
            names.append(name)
        else:
            raise SystemExit(f"unknown variant {name!r}")
    return names


async def amain(args: argparse.Namespace) -> None:
    texts = descriptions(args.n)
    assert len(set(texts)) == len(texts)
    names = variant_names(args)
    emulator = GeminiEmulator(EmulatorSettings(embed_latency=args.embed_latency, seed=SEED))
    low, high = args.embed_latency
    print(f"embedding benchmark: {args.n} distinct descriptions released at {args.rate:g}/s "
          f"(~{args.n / args.rate:.0f} s), emulator embed latency uniform {low}-{high} s per "
          f"call, {args.dim} dimensions; describer embedding concurrency={Config().concurrency}, "
          f"per-item concurrency {args.concurrency}\n", flush=True)
    with emulator.in_thread():
        for name in names:
            report(await run_variant(emulator, name, texts, args), args.n)


def main(argv: list[str] | None = None) -> int:
    """Run the variants and print their figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=1000, help="distinct descriptions")
    p.add_argument("--rate", type=float, default=50.0, help="descriptions released per second")
    p.add_argument("--embed-latency", type=parse_range, default=(0.1, 0.3),
                   help="emulator seconds per embedding call: S or LOW-HIGH (uniform)")
    p.add_argument("--batch-size", type=int, default=100, help="batch size of batch-T variants")
    p.add_argument("--timeouts", default="0.5,2", help="batcher timeouts, comma-separated")
    p.add_argument("--concurrency", type=int, default=16, help="per-item calls at once")
    p.add_argument("--dim", type=int, default=768, help="output_dimensionality")
    p.add_argument("--variants", default=DEFAULT_VARIANTS,
                   help="comma-separated: batch (one per --timeouts), batch-T, item-stream, "
                        "item-sdk, item-embedder")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per variant, at most")
    args = p.parse_args(argv)
    if args.n < 1 or args.rate <= 0:
        p.error("--n and --rate must be positive")
    asyncio.run(amain(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
