"""Explicit context caches (``emu.contexts``): the ``cachedContents`` surface, and what a
generateContent call that names one reads from it.

What google-genai 3.4.0 sends with an API key (every path served for any ``{v}``):
``caches.create``: ``POST /{v}/cachedContents`` with ``{"model": "models/M", "contents":
[...], "systemInstruction": {...}, "ttl": "3600s", "displayName": ...}``; ``caches.get``
/ ``caches.delete``: ``GET`` / ``DELETE /{v}/cachedContents/{id}``; ``caches.update``:
``PATCH /{v}/cachedContents/{id}`` with ``{"ttl": "600s"}`` or ``{"expireTime": ...}``;
``caches.list``: ``GET /{v}/cachedContents``. A cache answers as a CachedContent:
``name`` (``cachedContents/{id}``), ``model``, ``displayName``, ``createTime``,
``updateTime``, ``expireTime`` and ``usageMetadata.totalTokenCount``.

Figures and behaviour, and where they come from (ai.google.dev/gemini-api/docs/caching,
read 2026-11, unless said otherwise):

* TTL: one hour when none is given ("If not set, the TTL defaults to 1 hour"); a cache is
  gone at its ``expireTime``, measured on the emulator's clock, so a test steps past it.
* Minimum size: the model's minimum input token count for context caching, the same table
  as implicit caching (caching.min_prefix_tokens: 4,096 on Gemini 3, 2,048 on 2.5; models
  before 2.5 are not in the table and get 4,096, the harsher case). Under it, Gemini's 400
  "Cached content is too small. total_token_count=N, min_total_token_count=M"
  (zyddnys/manga-image-translator#929, BerriAI/litellm#17696).
* A generateContent call naming a cache: its cached tokens count in ``promptTokenCount``
  and are reported as ``cachedContentTokenCount`` (the usage of every call that reads it);
  the cache's system instruction and contents come before the request's contents. A
  request that names a cache *and* sets a ``systemInstruction`` is Gemini's 400
  "CachedContent can not be used with GenerateContent request setting system_instruction,
  tools or tool_config." (python-genai users' reports); one for another model than the
  cache's, its 400 "Model used by GenerateContent request (...) and CachedContent (...)
  has to be the same.". A name that is unknown, deleted or expired: the 403 of contents.py.
* ``get``, ``update`` and ``delete`` of a name that is unknown, deleted or expired: 404
  NOT_FOUND. Whether Gemini answers these with 404 or with the 403 generateContent gives is
  not documented; a client must take either as "gone".
* Storage: billed per token and hour the cache is set to live ("Storage duration"); the
  emulator counts ``storage_token_seconds`` from creation to the end of the time the cache
  was set to live (its last ``expireTime``), deleted early or not, the harsher reading of
  the docs (a forum answer of 2025 says a deletion does not shorten what is billed).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from .answers import text_tokens
from .behaviour import Behaviour
from .caching import MIN_PREFIX_TOKENS_3, min_prefix_tokens
from .contents import MSG_CACHE_NOT_FOUND, FileParts, GenerateRequest, collect, text_of
from .media import Media, billed
from .stats import json_ready
from .wire import ApiError, api_route, get_field, load_json, new_id, page, short_id, stamp

DEFAULT_TTL_S = 3600.0  # "If not set, the TTL defaults to 1 hour" (caching page).
MSG_TOO_SMALL = "Cached content is too small. total_token_count={n}, min_total_token_count={m}"
MSG_WITH_SYSTEM = ("CachedContent can not be used with GenerateContent request setting "
                   "system_instruction, tools or tool_config.\n\nProposed fix: move those "
                   "values to CachedContent from GenerateContent request.")
MSG_OTHER_MODEL = ("Model used by GenerateContent request ({request}) and CachedContent "
                   "({cache}) has to be the same.")
_TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


@dataclass
class ContextStats:
    """What the cachedContents surface saw (``emu.contexts.stats``).

    created / refused (400s at create) / updated / deleted / gets: calls by kind;
    calls_by_cache: generateContent calls that read each cache, by name (a Counter);
    unknown_reads: generateContent calls naming a cache that was not there (403);
    storage_token_seconds: tokens x seconds each cache was set to live (module docstring);
    request_bytes / responses_by_status: of these endpoints.
    """

    created: int = 0
    refused: int = 0
    updated: int = 0
    deleted: int = 0
    gets: int = 0
    calls_by_cache: Counter[str] = field(default_factory=Counter)
    unknown_reads: int = 0
    storage_token_seconds: float = 0.0
    responses_by_status: dict[int, int] = field(default_factory=dict)
    request_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stats.json_ready)."""
        return json_ready(self)


@dataclass
class CachedContent:
    """One cache: its ``name``, ``model`` (``models/M``), the texts and media it holds (the
    system instruction apart), its ``tokens``, and ``created`` / ``updated`` / ``expires``
    in seconds of the emulator's clock; ``billed``: the time up to which its storage is
    counted in ``storage_token_seconds``."""

    name: str
    model: str
    display_name: str
    system_instruction: str
    texts: list[str]
    media: list[Media]
    tokens: int
    created: float
    updated: float
    expires: float
    billed: float = 0.0


class ContextsApi:
    """The cachedContents handlers and the lookup generateContent makes (module docstring).

    ``behaviour`` gives the clock and the API key check; ``files`` resolves ``fileData``
    parts in a cache's contents. Times are written as RFC 3339 from the wall clock at
    start plus the emulator clock's advance since, so a fake clock moves them too. A test
    sets ``fail_deletes`` to answer every delete with a 503 (the cache stays)."""

    def __init__(self, behaviour: Behaviour, files: FileParts) -> None:
        self.stats = ContextStats()
        self.caches: dict[str, CachedContent] = {}
        self._behaviour = behaviour
        self._files = files
        self.fail_deletes = False
        self._clock0 = behaviour.clock()
        self._wall0 = datetime.now(UTC)

    def add_routes(self, app: web.Application) -> None:
        """Register ``/{version}/cachedContents[/{id}]`` on ``app``."""
        key, r = self._behaviour.check_key, app.router
        r.add_post("/{version}/cachedContents", api_route(self._create, self.stats, key))
        r.add_get("/{version}/cachedContents", api_route(self._list, self.stats, key))
        r.add_get("/{version}/cachedContents/{id}", api_route(self._get, self.stats, key))
        r.add_patch("/{version}/cachedContents/{id}", api_route(self._update, self.stats, key))
        r.add_delete("/{version}/cachedContents/{id}", api_route(self._delete, self.stats, key))

    # ----- the lookup generateContent makes ----------------------------------------------
    def read(self, req: GenerateRequest) -> tuple[GenerateRequest, int]:
        """``req`` as the model sees it with its cache's contents first, and the cached
        tokens; ``(req, 0)`` when it names none. ApiError 403 for a cache that is not
        there, 400 with a system instruction or another model (module docstring)."""
        if not req.cached_content:
            return req, 0
        cache = self._live(req.cached_content)
        if cache is None:
            self.stats.unknown_reads += 1
            raise ApiError(403, MSG_CACHE_NOT_FOUND)
        if req.system_instruction:
            raise ApiError(400, MSG_WITH_SYSTEM)
        if _model(req.model) != cache.model:
            raise ApiError(400, MSG_OTHER_MODEL.format(request=_model(req.model),
                                                       cache=cache.model))
        self.stats.calls_by_cache[cache.name] += 1
        merged = dataclasses.replace(
            req, media=[*cache.media, *req.media], texts=[*cache.texts, *req.texts],
            system_instruction=cache.system_instruction, subject=tuple(req.focus),
        )
        return merged, cache.tokens

    # ----- handlers ----------------------------------------------------------------------
    async def _create(self, request: web.Request, body: bytes) -> web.Response:
        payload = load_json(body)
        model = _model(str(payload.get("model") or ""))
        texts, media, _, _ = collect(payload.get("contents"), self._files)
        media = billed(media, model, {})  # a cache has no mediaResolution: the default's
        system = text_of(get_field(payload, "systemInstruction", "system_instruction"))
        tokens = sum(m.tokens for m in media) + text_tokens(
            sum(len(t) for t in texts) + len(system))
        minimum = min_prefix_tokens(model) or MIN_PREFIX_TOKENS_3
        if tokens < minimum:
            self.stats.refused += 1
            raise ApiError(400, MSG_TOO_SMALL.format(n=tokens, m=minimum))
        now = self._behaviour.clock()
        name = f"cachedContents/{new_id(12)}"
        display = str(get_field(payload, "displayName", "display_name") or "")
        cache = CachedContent(name, model, display, system, texts, media, tokens, now, now,
                              now + _lifetime(payload, now, self._stamp_time), now)
        self.caches[name] = cache
        self.stats.created += 1
        return web.json_response(self._json(cache))

    async def _get(self, request: web.Request, body: bytes) -> web.Response:
        self.stats.gets += 1
        return web.json_response(self._json(self._found(request)))

    async def _update(self, request: web.Request, body: bytes) -> web.Response:
        cache = self._found(request)
        now = self._behaviour.clock()
        self._bill(cache, now)
        cache.expires = now + _lifetime(load_json(body), now, self._stamp_time)
        cache.updated = now
        self.stats.updated += 1
        return web.json_response(self._json(cache))

    async def _delete(self, request: web.Request, body: bytes) -> web.Response:
        if self.fail_deletes:
            raise ApiError(503, "The service is currently unavailable.")
        cache = self._found(request)
        self._bill(cache, cache.expires)
        del self.caches[cache.name]
        self.stats.deleted += 1
        return web.json_response({})

    async def _list(self, request: web.Request, body: bytes) -> web.Response:
        live = [c for c in list(self.caches.values()) if self._live(c.name) is not None]
        items, token = page(live, request.query)
        out: dict[str, Any] = {"cachedContents": [self._json(c) for c in items]}
        if token:
            out["nextPageToken"] = token
        return web.json_response(out)

    # ----- helpers -----------------------------------------------------------------------
    def _live(self, name: str) -> CachedContent | None:
        """The cache called ``name`` (``cachedContents/ID`` or ``ID``), or None when there is
        none or it has expired (an expired one is billed and dropped)."""
        cache = self.caches.get(f"cachedContents/{short_id(name, 'cachedContents')}")
        if cache is not None and self._behaviour.clock() >= cache.expires:
            self._bill(cache, cache.expires)
            del self.caches[cache.name]
            return None
        return cache

    def _found(self, request: web.Request) -> CachedContent:
        cache = self._live(request.match_info["id"])
        if cache is None:
            raise ApiError(404, MSG_CACHE_NOT_FOUND)
        return cache

    def _bill(self, cache: CachedContent, until: float) -> None:
        """Count the storage from ``cache.billed`` to ``until``, and move the mark there."""
        self.stats.storage_token_seconds += cache.tokens * max(0.0, until - cache.billed)
        cache.billed = max(cache.billed, until)

    def storage_token_seconds(self) -> float:
        """Storage billed so far plus that of the live caches to their ``expireTime``."""
        live = sum(c.tokens * max(0.0, c.expires - c.billed) for c in self.caches.values())
        return self.stats.storage_token_seconds + live

    def _stamp_time(self, moment: float) -> datetime:
        return self._wall0 + timedelta(seconds=moment - self._clock0)

    def _json(self, cache: CachedContent) -> dict[str, Any]:
        when = self._stamp_time
        return {
            "name": cache.name, "model": cache.model, "displayName": cache.display_name,
            "createTime": stamp(when(cache.created)), "updateTime": stamp(when(cache.updated)),
            "expireTime": stamp(when(cache.expires)),
            "usageMetadata": {"totalTokenCount": cache.tokens},
        }


def _model(name: str) -> str:
    """``models/NAME`` for ``NAME`` or ``models/NAME``."""
    return "models/" + name.removeprefix("models/")


def _lifetime(payload: dict[str, Any], now: float, to_wall: Any) -> float:
    """Seconds from ``now`` a cache lives: ``ttl`` ("300s"), else ``expireTime`` (RFC
    3339), else DEFAULT_TTL_S. ApiError 400 for a malformed or non-positive value."""
    ttl, expire = payload.get("ttl"), get_field(payload, "expireTime", "expire_time")
    if ttl is not None:
        match = _TTL.match(str(ttl))
        seconds = float(match.group(1)) if match else -1.0
    elif expire is not None:
        try:
            moment = datetime.fromisoformat(str(expire).replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(400, f"Invalid value at 'expire_time': {expire!r}") from None
        seconds = (moment - to_wall(now)).total_seconds()
    else:
        return DEFAULT_TTL_S
    if seconds <= 0:
        raise ApiError(400, f"* CachedContent: ttl must be positive, got {ttl or expire!r}")
    return seconds
