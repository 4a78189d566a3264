"""How the emulator behaves beyond the happy path: quota, latency, faults, flex and scripts.

One object, ``Behaviour`` (``emu.behaviour``), holds the settings (settings.py) and
everything they drive: the quotas (``quotas``, quota.py), the implicit cache (``cache``,
caching.py), the seeded latency, fault and flex RNGs, and the scripted per-image
behaviours (``emu.script(sha256, "fail:503:2")``). ``clock`` (time.monotonic unless a test
passes a fake one) is the time the quotas and the cache read.

Figures and where they come from:

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
* Flex (``serviceTier: flex``): Google documents half price, "Best-effort (Sheddable)"
  reliability and "Minutes (1-15 min target)" latency (ai.google.dev/gemini-api/docs/
  optimization; docs/flex-inference: "variable latency and best-effort availability"), and
  docker/docker-agent#4348 reports that flex "queues requests for up to 15 minutes before
  returning the first byte". Modelled: ``flex_latency`` seconds added before the answer
  (nothing is sent until then), then ``flex_shed_rate`` of flex requests shed. What a shed
  answers is not documented for the Gemini API, so the default is the harsher case a
  client cannot tell from a quota: 429 RESOURCE_EXHAUSTED "Resource has been exhausted
  (e.g. check quota)." with no details (Gemini's wording for a bare 429,
  googleapis/python-genai#1299). Google documents a 429 without quota details for shared
  capacity that is not available on Vertex ("Resource exhausted, please try again later.",
  cloud.google.com/vertex-ai/generative-ai/docs/provisioned-throughput/error-code-429), and
  OpenAI's flex tier answers 429 when it lacks capacity. ``flex_shed_status=503`` answers
  503 UNAVAILABLE "This model is currently experiencing high demand. ..." (Gemini's 503,
  reported on discuss.ai.google.dev in 2026), which clients already retry. A shed request
  stays counted against the quotas (it was admitted; the harsher case). Which models
  refuse flex, and with what answer, is not documented for the Gemini API (Vertex's Flex
  PayGo page only says newer models such as Gemini 4 Argon do not take it), so every
  model serves flex here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .caching import ImplicitCache
from .contents import GenerateRequest
from .quota import DAY_RETRY_S, Clock, Quotas
from .settings import RPM_WINDOW_S, EmulatorSettings
from .wire import (
    MSG_EXHAUSTED,
    MSG_HIGH_DEMAND,
    STATUS_NAMES,
    ApiError,
    require_key,
    suspended_error,
)

__all__ = ["DAY_RETRY_S", "RPM_WINDOW_S", "Behaviour", "EmulatorSettings", "Garbled",
           "Script", "garbled_response", "parse_script"]

SHAPES = frozenset({"block", "safety", "empty", "max_tokens"})  # answer shapes (answers.py)
#: Answer shapes for structured output, for the first N requests or every one (answers.py:
#: prose instead of JSON; JSON that breaks the request's responseJsonSchema).
COUNTED_SHAPES = frozenset({"bad_json", "off_schema"})
#: A generateContent answer cut off after its first bytes: HTTP 200, not JSON.
GARBAGE_BODY = '{\n  "candidates": [\n    {\n      "content": {\n        "parts": [\n          {"te'


class Garbled(Exception):
    """Raised by :meth:`Behaviour.raise_scripted` for a due ``garbage`` script: the handler
    answers HTTP 200 with ``GARBAGE_BODY`` (see :func:`garbled_response`)."""


def garbled_response() -> web.Response:
    """HTTP 200, ``application/json``, whose body is ``GARBAGE_BODY`` (not JSON)."""
    return web.Response(status=200, text=GARBAGE_BODY, content_type="application/json")


@dataclass(slots=True)
class Script:
    """A scripted per-image behaviour parsed from text (see :func:`parse_script`).

    kind: block | safety | empty | max_tokens | bad_json | off_schema | fail | garbage |
    slow | suspended; status: HTTP code (fail); remaining: requests left to script (fail,
    garbage, bad_json, off_schema; None = always); seconds: delay (slow).
    """

    kind: str
    status: int = 0
    remaining: int | None = None
    seconds: float = 0.0


def parse_script(text: str) -> Script:
    """Parse "block", "safety", "empty", "max_tokens", "suspended", "garbage[:N]",
    "bad_json[:N]", "off_schema[:N]", "fail:CODE[:N]" or "slow:SECONDS"; ValueError if it
    is none of these.

    bad_json:N answers the first N requests for the image with prose where a
    responseJsonSchema asks for JSON; off_schema:N with JSON that is not valid under the
    schema (answers.py); then normally; without N, every time.
    fail:CODE:N fails the first N requests for the image with HTTP CODE (e.g. 503, 500,
    429), then answers normally; fail:CODE without N fails every time. garbage:N answers
    the first N requests with HTTP 200 and a body that is not JSON (module docstring);
    garbage without N, every request. suspended answers every request with the 403 that
    quotes the caller's API key (module docstring).
    """
    kind, _, rest = text.partition(":")
    if (kind in SHAPES or kind in COUNTED_SHAPES or kind in ("suspended", "garbage")) and not rest:
        return Script(kind)
    try:
        if kind in (*COUNTED_SHAPES, "garbage") and int(rest) >= 0:
            return Script(kind, remaining=int(rest))
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
    """Quota, latency, faults, flex and scripts of one emulator (see the module docstring).

    ``settings`` (EmulatorSettings) is replaced by :meth:`configure`; scripts are keyed by
    the lowercase hex sha256 of a request's first media part; ``quotas`` (quota.Quotas) and
    ``cache`` (caching.ImplicitCache) read the time from ``clock`` (seconds).
    """

    def __init__(self, settings: EmulatorSettings, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.quotas = Quotas(settings, clock)
        self.cache = ImplicitCache()
        self.embed_script: Script | None = None
        self._scripts: dict[str, Script] = {}
        self._reseed()

    # ----- control ---------------------------------------------------------------------
    def configure(self, **changes: Any) -> EmulatorSettings:
        """Replace some settings (EmulatorSettings names); changing ``seed`` re-seeds the
        RNGs. TypeError for an unknown name, ValueError for a bad value (nothing changes)."""
        settings = dataclasses.replace(self.settings, **changes)
        self.settings = settings
        self.quotas.configure(settings, reseed="seed" in changes)
        if "seed" in changes:
            self._reseed()
        return settings

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
        """Forget what the per-minute quotas (rpm, tpm) counted."""
        self.quotas.reset_window()

    def reset_day(self) -> None:
        """Start a new day: the rpd counters go back to zero (midnight Pacific at Google)."""
        self.quotas.reset_day()

    @property
    def day_count(self) -> int:
        """Generate requests counted against rpd since start or ``reset_day``."""
        return self.quotas.day_count

    def _reseed(self) -> None:
        seed = self.settings.seed
        self._latency_rng = random.Random(f"{seed}:latency")
        self._fault_rng = random.Random(f"{seed}:faults")
        self._embed_rng = random.Random(f"{seed}:embed")
        self._flex_rng = random.Random(f"{seed}:flex")
        self._shed_rng = random.Random(f"{seed}:shed")

    # ----- per request -----------------------------------------------------------------
    def check_key(self, request: web.Request) -> None:
        """ApiError 403 if ``require_key`` and the request carries no credentials."""
        require_key(request, self.settings.require_key)

    def admit(self, model: str = "gemini-2.5-flash") -> float:
        """Count one generate request against rpd and rpm (quota.Quotas.admit_request);
        returns the time it was counted at. ApiError 429 if either is spent."""
        return self.quotas.admit_request(model)

    def admit_tokens(self, model: str, tokens: int, counted_at: float) -> None:
        """Count a request's input tokens against tpm; ApiError 429 (and the request's slot
        given back) if they do not fit (quota.Quotas.admit_tokens)."""
        self.quotas.admit_tokens(model, tokens, counted_at)

    def admit_embed(self, model: str) -> None:
        """Count one embedding call against ``embed_rpd``; the per-day 429 once spent."""
        self.quotas.admit_embed(model)

    def cached_tokens(self, req: GenerateRequest) -> int:
        """Prompt tokens of ``req`` read from the implicit cache (0 when off)."""
        if not self.settings.implicit_cache:
            return 0
        return self.cache.lookup(req, self.clock(), self.settings.cache_ttl)

    async def generate_delay(self, script: Script | None, flex: bool = False) -> None:
        """Sleep a ``slow`` script's seconds, else uniform(latency) from the latency RNG;
        plus uniform(flex_latency) from the flex RNG for a flex request."""
        if script is not None and script.kind == "slow":
            delay = script.seconds
        else:
            delay = _draw(self._latency_rng, self.settings.latency)
        if flex:
            delay += _draw(self._flex_rng, self.settings.flex_latency)
        if delay > 0:
            await asyncio.sleep(delay)

    async def embed_delay(self) -> None:
        """Sleep uniform(embed_latency) seconds from the embed RNG."""
        delay = _draw(self._embed_rng, self.settings.embed_latency)
        if delay > 0:
            await asyncio.sleep(delay)

    def raise_shed(self) -> None:
        """For a flex request: draw from the shed RNG and raise the shed answer (module
        docstring; ``flex_shed_status``) for a ``flex_shed_rate`` fraction of them."""
        rate = self.settings.flex_shed_rate
        if rate > 0 and self._shed_rng.random() < rate:
            if self.settings.flex_shed_status == 503:
                raise ApiError(503, MSG_HIGH_DEMAND)
            raise ApiError(429, MSG_EXHAUSTED)

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

    def answer_shape(self, script: Script | None) -> str | None:
        """The answer shape ``script`` asks of this answer (answers.build_response), None
        for a normal one: a ``bad_json``/``off_schema`` script counts down ``remaining``
        and asks for its shape while some are left; other kinds are passed on as they are
        (build_response answers normally for those that are not shapes)."""
        if script is None:
            return None
        if script.kind in COUNTED_SHAPES and script.remaining is not None:
            if script.remaining <= 0:
                return None
            script.remaining -= 1
        return script.kind

    def fault_due(self) -> bool:
        """Draw from the fault RNG: True for a ``fault_rate`` fraction of calls."""
        rate = self.settings.fault_rate
        return rate > 0 and self._fault_rng.random() < rate


def _draw(rng: random.Random, bounds: tuple[float, float]) -> float:
    """uniform(low, high) from ``rng``; 0 (and no draw) when high is 0."""
    low, high = bounds
    return rng.uniform(low, high) if high > 0 else 0.0
