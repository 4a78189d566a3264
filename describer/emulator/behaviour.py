"""How the emulator behaves beyond the happy path: quota, latency, faults and scripts.

One object, ``Behaviour`` (``emu.behaviour``), holds the settings and everything they drive:
the requests-per-minute window, the seeded latency and fault RNGs, and the scripted per-image
behaviours (``emu.script(sha256, "fail:503:2")``).

Figures and where they come from:

* 60 s sliding window for the requests-per-minute quota: Gemini rate limits are per minute
  (ai.google.dev "Rate limits": "21 requests within a minute fail for an RPM of 20");
  whether Google counts a bucket or a window is not documented, so this is the window.
* ``rpd``: requests per day, a plain counter (Google's day ends at midnight Pacific; here it
  ends when a test calls ``reset_day``). Once spent, every generate request gets the per-day
  429 (quotaId ``GenerateRequestsPerDayPerProjectPerModel-FreeTier``) whose retryDelay is
  short (``DAY_RETRY_S``), as Google's is: the delay says nothing about when the day ends.
  ``embed_rpd`` does the same for batchEmbedContents calls (quotaId
  ``EmbedContentRequestsPerDayPerProjectPerModel-FreeTier``).
* ``bare_429``: quota 429s without details or quota lines, as some come
  (googleapis/python-genai#2065).
* ``suspended``: the 403 PERMISSION_DENIED Gemini answers for a suspended API key, whose
  message and details quote the key ("Permission denied: Consumer 'api_key:KEY' has been
  suspended."; google/generative-ai-docs#356, continuedev/continue#10902; see wire.py). The
  body is Google's; two departures, both on the harsher side for a client: at Google every
  call with that key fails, here only the scripted image's (a test convenience); and the
  key is quoted whether it came as ``x-goog-api-key`` or ``?key=`` (the reports show it for
  ``?key=``; the consumer id is the key whatever the transport, so the header case is
  inferred). A client that logs or stores error messages holds the key, as with Gemini.
  Google's front-end 404 page ("The requested URL <code>/v1beta/...</code> was not found on
  this server.") quotes the request path; no captured page shows it quoting a query string,
  so the emulator does not model a key echo that way.
* ``garbage:N``: HTTP 200 whose body is not JSON (the first bytes of a generateContent
  answer, cut off: ``GARBAGE_BODY``), a model of an answer truncated by a proxy or a broken
  connection that still reached the client as a complete 200. No captured Gemini answer
  shows this; it is a harsher-case model of what a front end or middlebox may deliver,
  declared ``application/json`` so that a client cannot tell it apart by its headers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .wire import STATUS_NAMES, ApiError, quota_error, require_key, suspended_error

RPM_WINDOW_S = 60.0  # seconds; requests-per-minute quota window.
DAY_RETRY_S = 1.5  # seconds; the per-day 429's "Please retry in" (short, as at Google).
SHAPES = frozenset({"block", "safety", "empty", "max_tokens"})  # answer shapes (answers.py)
#: A generateContent answer cut off after its first bytes: HTTP 200, not JSON.
GARBAGE_BODY = '{\n  "candidates": [\n    {\n      "content": {\n        "parts": [\n          {"te'


class Garbled(Exception):
    """Raised by :meth:`Behaviour.raise_scripted` for a due ``garbage`` script: the handler
    answers HTTP 200 with ``GARBAGE_BODY`` (see :func:`garbled_response`)."""


def garbled_response() -> web.Response:
    """HTTP 200, ``application/json``, whose body is ``GARBAGE_BODY`` (not JSON)."""
    return web.Response(status=200, text=GARBAGE_BODY, content_type="application/json")


@dataclass(frozen=True)
class EmulatorSettings:
    """How the emulator behaves.

    latency: (low, high) seconds; each admitted generate request sleeps uniform(low, high),
        from an RNG seeded by ``seed``, after its body is read and its images decoded.
    rpm: requests accepted for generateContent per ``quota_window`` (a sliding window; Gemini
        documents RPM as "21 requests within a minute fail for an RPM of 20"); None = no quota.
    quota_window: seconds of that sliding window; 60 as at Gemini, shorter to make tests fast.
    fault_rate: fraction (0..1) of admitted generate requests answered with an injected 503
        UNAVAILABLE "The model is overloaded. Please try again later." (seeded RNG).
    seed: seeds three separate RNGs (generate latency, faults, embed latency), so changing
        one setting does not shift the others' sequences.
    require_key: answer 403 PERMISSION_DENIED when no ``x-goog-api-key`` header, ``?key=``
        or Bearer token is sent.
    embed_latency: (low, high) seconds slept per successful batchEmbedContents call.
    rpd: generate requests accepted per day (a counter until ``reset_day``); None = no quota.
    embed_rpd: batchEmbedContents calls accepted per day (until ``reset_day``); None = no
        quota. Past it every embedding call gets the per-day 429.
    bare_429: quota 429s carry no details (no QuotaFailure, no RetryInfo).
    ValueError from the constructor if a range is reversed or negative, rpm or rpd < 1, or
    fault_rate is outside [0, 1].
    """

    latency: tuple[float, float] = (0.0, 0.0)
    rpm: int | None = None
    quota_window: float = RPM_WINDOW_S
    fault_rate: float = 0.0
    seed: int = 0
    require_key: bool = True
    embed_latency: tuple[float, float] = (0.0, 0.0)
    rpd: int | None = None
    embed_rpd: int | None = None
    bare_429: bool = False

    def __post_init__(self) -> None:
        for name in ("latency", "embed_latency"):
            low, high = (float(x) for x in getattr(self, name))
            if not 0.0 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high")
            object.__setattr__(self, name, (low, high))
        for name in ("rpm", "rpd", "embed_rpd"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be None or >= 1")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the settings (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


@dataclass(slots=True)
class Script:
    """A scripted per-image behaviour parsed from text (see :func:`parse_script`).

    kind: block | safety | empty | max_tokens | fail | garbage | slow | suspended; status:
    HTTP code (fail); remaining: failures left (fail, garbage; None = always); seconds:
    delay (slow).
    """

    kind: str
    status: int = 0
    remaining: int | None = None
    seconds: float = 0.0


def parse_script(text: str) -> Script:
    """Parse "block", "safety", "empty", "max_tokens", "suspended", "garbage[:N]",
    "fail:CODE[:N]" or "slow:SECONDS"; ValueError if it is none of these.

    fail:CODE:N fails the first N requests for the image with HTTP CODE (e.g. 503, 500,
    429), then answers normally; fail:CODE without N fails every time. garbage:N answers
    the first N requests with HTTP 200 and a body that is not JSON (module docstring);
    garbage without N, every request. suspended answers every request with the 403 that
    quotes the caller's API key (module docstring).
    """
    kind, _, rest = text.partition(":")
    if (kind in SHAPES or kind in ("suspended", "garbage")) and not rest:
        return Script(kind)
    try:
        if kind == "garbage" and int(rest) >= 0:
            return Script("garbage", remaining=int(rest))
        if kind == "slow":
            seconds = float(rest)
            if seconds >= 0:
                return Script("slow", seconds=seconds)
        if kind == "fail":
            code, _, count = rest.partition(":")
            if int(code) in STATUS_NAMES:
                return Script("fail", int(code), int(count) if count else None)
    except ValueError:
        pass
    raise ValueError(f"unknown behaviour {text!r}")


class Behaviour:
    """Quota, latency, faults and scripts of one emulator (see the module docstring).

    ``settings`` (EmulatorSettings) is replaced by :meth:`configure`; scripts are keyed by
    the lowercase hex sha256 of a request's first media part.
    """

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.embed_script: Script | None = None
        self._scripts: dict[str, Script] = {}
        self._window: deque[float] = deque()
        self.day_count = 0  # generate requests accepted since start or ``reset_day``
        self.embed_day_count = 0  # embedding calls accepted since start or ``reset_day``
        self._reseed()

    # ----- control ---------------------------------------------------------------------
    def configure(self, **changes: Any) -> EmulatorSettings:
        """Replace some settings (EmulatorSettings names); changing ``seed`` re-seeds the
        RNGs. TypeError for an unknown name, ValueError for a bad value."""
        self.settings = dataclasses.replace(self.settings, **changes)
        if "seed" in changes:
            self._reseed()
        return self.settings

    def script(self, sha256_hex: str, behaviour: str | None) -> None:
        """Script the image with this sha256 (None clears it); ValueError if unknown."""
        if behaviour is None:
            self._scripts.pop(sha256_hex.lower(), None)
        else:
            self._scripts[sha256_hex.lower()] = parse_script(behaviour)

    def clear_scripts(self) -> None:
        """Remove every per-image script."""
        self._scripts.clear()

    def script_embed(self, behaviour: str | None) -> None:
        """Script every embedding call ("fail:CODE[:N]", "suspended"); None clears it."""
        self.embed_script = parse_script(behaviour) if behaviour else None

    def script_for(self, sha256_hex: str | None) -> Script | None:
        """The script for a request whose first media part has this sha256, if any."""
        return self._scripts.get(sha256_hex) if sha256_hex else None

    def reset_window(self) -> None:
        """Forget the requests counted in the rpm window."""
        self._window.clear()

    def reset_day(self) -> None:
        """Start a new day: the rpd counters go back to zero (midnight Pacific at Google)."""
        self.day_count = self.embed_day_count = 0

    def _reseed(self) -> None:
        seed = self.settings.seed
        self._latency_rng = random.Random(f"{seed}:latency")
        self._fault_rng = random.Random(f"{seed}:faults")
        self._embed_rng = random.Random(f"{seed}:embed")

    # ----- per request -----------------------------------------------------------------
    def check_key(self, request: web.Request) -> None:
        """ApiError 403 if ``require_key`` and the request carries no credentials."""
        require_key(request, self.settings.require_key)

    def admit(self, model: str = "gemini-2.5-flash") -> None:
        """Count one generate request for ``model`` against the day's ``rpd`` and the sliding
        ``quota_window``; ApiError 429 if either is spent: the per-day one (retryDelay
        ``DAY_RETRY_S``), else the per-minute one (retryDelay = seconds until the oldest
        request leaves the window). Refused requests are not counted."""
        settings = self.settings
        if settings.rpd is not None and self.day_count >= settings.rpd:
            raise quota_error(DAY_RETRY_S, "rpd", settings.rpd, model, settings.bare_429)
        if settings.rpm is not None:
            now = time.monotonic()
            window = settings.quota_window
            while self._window and now - self._window[0] >= window:
                self._window.popleft()
            if len(self._window) >= settings.rpm:
                wait = max(0.001, self._window[0] + window - now)
                raise quota_error(wait, "rpm", settings.rpm, model, settings.bare_429)
            self._window.append(now)
        self.day_count += 1

    def admit_embed(self, model: str) -> None:
        """Count one embedding call against ``embed_rpd``; the per-day 429 once spent."""
        limit = self.settings.embed_rpd
        if limit is not None and self.embed_day_count >= limit:
            raise quota_error(DAY_RETRY_S, "embed_rpd", limit, model, self.settings.bare_429)
        self.embed_day_count += 1

    async def generate_delay(self, script: Script | None) -> None:
        """Sleep a ``slow`` script's seconds, else uniform(latency) from the latency RNG."""
        if script is not None and script.kind == "slow":
            delay = script.seconds
        else:
            low, high = self.settings.latency
            delay = self._latency_rng.uniform(low, high) if high > 0 else 0.0
        if delay > 0:
            await asyncio.sleep(delay)

    async def embed_delay(self) -> None:
        """Sleep uniform(embed_latency) seconds from the embed RNG."""
        low, high = self.settings.embed_latency
        if high > 0:
            await asyncio.sleep(self._embed_rng.uniform(low, high))

    def raise_scripted(self, script: Script | None, key: str | None) -> None:
        """Raise the ApiError a ``fail`` script is due or :class:`Garbled` for a due
        ``garbage`` script (both counting down ``remaining``), or a ``suspended`` script's
        403 quoting ``key``. ``key`` None means a batch line, which has no HTTP answer or
        key of its own: ``suspended`` and ``garbage`` do not apply to it."""
        if script is None:
            return
        if script.kind == "suspended" and key is not None:
            raise suspended_error(key)
        if script.kind not in ("fail", "garbage") or (script.kind == "garbage" and key is None):
            return
        if script.remaining is not None:
            if script.remaining <= 0:
                return
            script.remaining -= 1
        if script.kind == "garbage":
            raise Garbled()
        raise ApiError(script.status)

    def fault_due(self) -> bool:
        """Draw from the fault RNG: True for a ``fault_rate`` fraction of calls."""
        rate = self.settings.fault_rate
        return rate > 0 and self._fault_rng.random() < rate
