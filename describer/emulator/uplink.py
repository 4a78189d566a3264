"""A stand-in for the client's uplink: request bodies read no faster than a set rate.

``EmulatorSettings.upload_bytes_per_s`` (None: no cap) makes the emulator read every POST
body in chunks and sleep so that, from the first byte, ``n`` bytes take at least
``n / rate`` seconds. A real client on a real uplink spends that time sending; benchmarks
use it to compare sending bytes with sending URLs. The cap is on the server's reads, so
the client's socket buffers (a few hundred KB on loopback) fill and then the client waits,
as it would on a slow link; the first buffers' worth is not delayed at the client side, a
small optimism of the model.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

CHUNK_BYTES = 64 * 1024  # bytes read between sleeps.

Sleep = Callable[[float], Awaitable[None]]

_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9,
          "bit": 1 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8}
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)(?:/s|ps)?\s*$",
                   re.IGNORECASE)


def parse_rate(text: str) -> float:
    """Bytes per second from "100Mbit", "12.5MB", "500kbit/s", "2e6" (bytes): decimal
    prefixes, "bit" units divided by 8, case ignored. ValueError for anything else or 0."""
    match = _RATE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"rate must be a number with B, kB, MB, GB, bit, kbit, Mbit or Gbit,"
                         f" got {text!r}")
    rate = float(match.group(1)) * _UNITS[unit]
    if rate <= 0:
        raise ValueError("rate must be > 0")
    return rate


class Stream(Protocol):
    """What is read: aiohttp's ``request.content`` (a StreamReader)."""

    async def read(self, n: int = -1) -> bytes: ...


class Uplink:
    """Reads bodies at no more than a rate; ``sleep`` and ``clock`` are injectable so a
    test can record the sleeps asked for instead of waiting them out."""

    def __init__(self, sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sleep = sleep
        self.clock = clock

    async def read(self, stream: Stream, rate: float, max_bytes: int | None = None) -> bytes:
        """The whole body of ``stream``, sleeping after each chunk until ``total / rate``
        seconds have passed since reading began. ValueError past ``max_bytes``."""
        start = self.clock()
        body = bytearray()
        while chunk := await stream.read(CHUNK_BYTES):
            body += chunk
            if max_bytes is not None and len(body) > max_bytes:
                raise ValueError(f"body over {max_bytes} bytes")
            due = len(body) / rate - (self.clock() - start)
            if due > 0:
                await self.sleep(due)
        return bytes(body)
