"""Run the Gemini emulator: ``python -m describer.emulator [--port 8089] [--latency 0.5-1.5]``.

Prints the base URL alone as the first stdout line (so scripts can read it; ``--port 0``
picks a free port), a human line on stderr, and serves until SIGINT or SIGTERM (exit 0).
Every option is an EmulatorSettings field (settings.py says what each models and why); a
bad combination exits with status 2 and the settings' message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from .server import GeminiEmulator
from .settings import IMPLICIT_CACHE_TTL_S, QUOTA_STYLES, SHED_STATUSES, EmulatorSettings
from .uplink import parse_rate


def parse_latency(text: str) -> tuple[float, float]:
    """Parse "0.2" (fixed seconds) or "0.5-1.5" (uniform range in seconds)."""
    low, sep, high = text.partition("-")
    try:
        pair = (float(low), float(high)) if sep else (float(low), float(low))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"latency must be S or LOW-HIGH, got {text!r}") from exc
    if not 0 <= pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError("latency needs 0 <= LOW <= HIGH")
    return pair


def rate_arg(text: str) -> float:
    """Parse "100Mbit", "12.5MB" ... to bytes per second (uplink.parse_rate)."""
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; defaults: 127.0.0.1:8089, no latency, quota or faults."""
    p = argparse.ArgumentParser(prog="python -m describer.emulator",
                                description="Local emulator of the Gemini REST API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    p.add_argument("--latency", type=parse_latency, default=(0.0, 0.0),
                   help="seconds per generate request: S or LOW-HIGH (uniform)")
    p.add_argument("--embed-latency", type=parse_latency, default=(0.0, 0.0),
                   help="seconds per embed call: S or LOW-HIGH (uniform)")
    p.add_argument("--rpm", type=int, default=None,
                   help="generate requests per quota window (429 past it)")
    p.add_argument("--tpm", type=int, default=None,
                   help="generate input tokens per quota window (token 429 past it)")
    p.add_argument("--quota-window", type=float, default=60.0,
                   help="seconds of the --rpm/--tpm 'minute' (Gemini: 60)")
    p.add_argument("--rpm-style", choices=QUOTA_STYLES, default="window",
                   help="per-minute quotas as a sliding window (default) or a token bucket")
    p.add_argument("--burst", type=int, default=None,
                   help="bucket capacity in requests (default: one second's worth)")
    p.add_argument("--tpm-burst", type=int, default=None,
                   help="bucket capacity in tokens (default: one second's worth)")
    p.add_argument("--rpd", type=int, default=None,
                   help="generate requests per day (per-day 429 past it, until restart)")
    p.add_argument("--bare-429", action="store_true",
                   help="quota 429s without details (python-genai#2065)")
    p.add_argument("--bare-fraction", type=float, default=0.0,
                   help="fraction of quota 429s without details (seeded)")
    p.add_argument("--flex-latency", type=parse_latency, default=(0.0, 0.0),
                   help="seconds added to flex requests: S or LOW-HIGH (Google: 60-900)")
    p.add_argument("--flex-shed-rate", type=float, default=0.0,
                   help="fraction of flex requests shed (seeded)")
    p.add_argument("--flex-shed-status", type=int, choices=SHED_STATUSES, default=429,
                   help="what a shed answers: 429 without details (default) or 503")
    p.add_argument("--no-implicit-cache", action="store_true",
                   help="never report cachedContentTokenCount")
    p.add_argument("--cache-ttl", type=float, default=IMPLICIT_CACHE_TTL_S,
                   help="seconds an implicit-cache prefix lives (default 300)")
    p.add_argument("--fault-rate", type=float, default=0.0,
                   help="fraction of generate requests answered 503")
    p.add_argument("--upload-rate", type=rate_arg, default=None,
                   help="cap on request body bytes read per second, standing in for the "
                        "client's uplink: e.g. 100Mbit, 12.5MB, 500kbit (default: no cap)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-key", action="store_true", help="do not require an API key")
    return p


def settings_from(args: argparse.Namespace) -> EmulatorSettings:
    """The EmulatorSettings the parsed options name; ValueError for a bad value."""
    return EmulatorSettings(
        latency=args.latency, rpm=args.rpm, fault_rate=args.fault_rate,
        quota_window=args.quota_window, rpd=args.rpd, bare_429=args.bare_429,
        seed=args.seed, require_key=not args.no_key, embed_latency=args.embed_latency,
        rpm_style=args.rpm_style, burst=args.burst, tpm=args.tpm, tpm_burst=args.tpm_burst,
        bare_fraction=args.bare_fraction, flex_latency=args.flex_latency,
        flex_shed_rate=args.flex_shed_rate, flex_shed_status=args.flex_shed_status,
        implicit_cache=not args.no_implicit_cache, cache_ttl=args.cache_ttl,
        upload_bytes_per_s=args.upload_rate,
    )


async def serve(args: argparse.Namespace, settings: EmulatorSettings) -> None:
    """Start the emulator, announce its URL, and wait for SIGINT/SIGTERM."""
    emulator = GeminiEmulator(settings)
    url = await emulator.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(url, flush=True)
    print(f"Gemini emulator on {url} (set GOOGLE_GEMINI_BASE_URL to this and "
          "GEMINI_API_KEY to any value)", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args)
    except ValueError as exc:
        parser.error(str(exc))  # exits with status 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
