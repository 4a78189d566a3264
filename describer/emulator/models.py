"""The models surface: ``POST /{v}/models/{model}:{action}`` for generateContent,
batchEmbedContents and embedContent (and batchGenerateContent, served by batches.BatchApi).

google-genai 3.4.0 with an API key calls ``{base}/v1/models/{model}:generateContent``;
``embed_content`` always calls ``:batchEmbedContents`` (one request per text). Every
version prefix is served.

Figures and where they come from:

* at most 100 requests per batchEmbedContents call: Gemini API limit (the SDK does not split
  longer lists; the emulator answers 400 with Gemini's message).
* ``outputDimensionality`` in [1, 3072]; 3072 by default: gemini-embedding-001.
* 20 MiB per generateContent request with inline data (contents.py).
* ``fileData`` parts with an http(s) URL are fetched by the emulator, up to 100 MB each,
  and a URL it cannot fetch is a 400 (urls.py says where these come from).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from .answers import DEFAULT_EMBED_DIM, build_response, embedding_vector, prompt_tokens
from .behaviour import Behaviour, Garbled, garbled_response
from .contents import (
    MAX_REQUEST_BYTES,
    MSG_TOO_LARGE,
    THREAD_DECODE_BYTES,
    FileParts,
    GenerateRequest,
    parse_payload,
    parts,
)
from .stats import EmulatorStats, ImageRecord
from .urls import UrlParts, fetch_all, url_uris
from .wire import (
    MSG_INVALID,
    MSG_OVERLOADED,
    ApiError,
    count_status,
    error_response,
    get_field,
    load_json,
    request_key,
)

MAX_EMBED_BATCH = 100  # Gemini API limit per batchEmbedContents call.
MSG_BATCH_TOO_BIG = (
    "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
)
MSG_NO_REQUESTS = "* BatchEmbedContentsRequest.requests: requests is not specified"

Action = Callable[[web.Request, str, bytes], Awaitable[dict[str, Any]]]
#: Resolves a request's ``cachedContent`` (contexts.ContextsApi.read): the request with the
#: cache's contents first, and the cached tokens.
CacheReader = Callable[[GenerateRequest], tuple[GenerateRequest, int]]


class ModelsApi:
    """Handlers of the models surface of one GeminiEmulator (``emu.models``).

    Counts into ``stats`` (EmulatorStats); quota, latency, faults and scripts come from
    ``behaviour``; ``fileData`` parts are resolved by ``files``, or fetched (urls.py) when
    they name an http(s) URL not under ``base_url()`` (the emulator's own URL). Actions are
    looked up by name; :meth:`add_action` adds one (batchGenerateContent).
    """

    def __init__(self, behaviour: Behaviour, stats: EmulatorStats, files: FileParts,
                 base_url: Callable[[], str] = str,
                 read_cache: CacheReader = lambda req: (req, 0)) -> None:
        self.stats = stats
        self._read_cache = read_cache
        self._base_url = base_url
        self._behaviour = behaviour
        self._files = files
        self._records = _RecordBook()
        self._session: aiohttp.ClientSession | None = None
        self._actions: dict[str, Action] = {
            "generateContent": self.generate,
            "batchEmbedContents": self.batch_embed,
            "embedContent": self.embed_one,
        }

    def client(self) -> aiohttp.ClientSession:
        """The emulator's own HTTP client session, for fileData URLs (made on first use)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        """Close the client session, if one was made."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def add_action(self, name: str, action: Action) -> None:
        """Serve ``POST /{v}/models/{model}:{name}`` with ``action(request, model, body)``,
        which returns the JSON answer or raises ApiError."""
        self._actions[name] = action

    def add_routes(self, app: web.Application) -> None:
        """Register ``POST /{version}/models/{model}:{action}`` on ``app``."""
        app.router.add_post("/{version}/models/{rest}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        """Dispatch one models call, keeping the counters of EmulatorStats."""
        model, _, action = request.match_info["rest"].rpartition(":")
        generate = action == "generateContent"
        if action in ("batchEmbedContents", "embedContent"):
            self.stats.embed_requests += 1
        if generate:
            self.stats.generate_requests += 1
            self.stats.keep(self.stats.request_times, time.monotonic())
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            response = await self._dispatch(request, model, action)
        finally:
            if generate:
                self.stats.in_flight -= 1
        count_status(self.stats, response.status)
        return response

    async def _dispatch(self, request: web.Request, model: str, action: str) -> web.Response:
        try:
            body = await request.read()
            self.stats.request_bytes += len(body)
            handler = self._actions.get(action)
            if handler is None or not model:
                raise ApiError(404, f"Method {action!r} not found for models/{model}.")
            self._behaviour.check_key(request)
            return web.json_response(await handler(request, model, body))
        except ApiError as err:
            if err.code == 429:
                self.stats.rate_limited += 1
                daily = err.quota in ("rpd", "embed_rpd")
                self.stats.day_limited += daily
                if daily and self.stats.first_day_limited_at is None:
                    self.stats.first_day_limited_at = time.monotonic()
                self.stats.token_limited += err.quota == "tpm"
            return error_response(err)
        except Garbled:
            return garbled_response()

    # ----- generateContent --------------------------------------------------------------
    async def generate(self, request: web.Request, model: str, body: bytes) -> dict[str, Any]:
        """generateContent: request quotas, parse (in a thread if large), the explicit cache
        it names (contexts.py), token quota, record, sleep (plus the flex wait), flex shed,
        scripted or injected failure, then the answer (answers.build_response) with the
        explicit cache's tokens, else the implicit cache's."""
        counted_at = self._behaviour.admit(model)
        req, explicit = self._read_cache(await self.parse(model, body))
        self._behaviour.admit_tokens(model, prompt_tokens(req), counted_at)
        urls = [m for m in req.media if m.source == "url"]
        self.stats.image_bytes += sum(m.nbytes for m in req.media if m.source != "url")
        self.stats.url_parts += len(urls)
        self.stats.url_bytes_fetched += sum(m.nbytes for m in urls)
        self.stats.keep(self.stats.images, self._records.record(req))
        self.stats.service_tiers[req.service_tier] += 1
        script = self._behaviour.script_for(req.focus[0].sha256 if req.focus else None)
        flex = req.service_tier == "flex"
        await self._behaviour.generate_delay(script, flex)
        if flex:
            self._shed()
        self._behaviour.raise_scripted(script, request_key(request) or "")
        if self._behaviour.fault_due():
            self.stats.injected_faults += 1
            raise ApiError(503, MSG_OVERLOADED)
        cached = explicit or self._behaviour.cached_tokens(req)
        self.stats.cached_tokens += cached
        return build_response(req, self._behaviour.answer_shape(script), cached, echo_tier=True)

    async def parse(self, model: str, body: bytes) -> GenerateRequest:
        """A generateContent body parsed and its media probed (in a worker thread when the
        body is large), after fetching its http(s) fileData URLs (urls.py). ApiError 400 as
        contents.parse_generate, or MSG_URL_FETCH for a URL that cannot be fetched."""
        if len(body) > MAX_REQUEST_BYTES:
            raise ApiError(400, MSG_TOO_LARGE)
        big = len(body) > THREAD_DECODE_BYTES
        payload = await asyncio.to_thread(load_json, body) if big else load_json(body)
        files: FileParts = self._files
        own = self._base_url()
        uris = url_uris(payload, own)
        if uris:
            files = UrlParts(self._files, await fetch_all(self.client(), uris), own)
            big = True  # fetched images can be large: probe them off the event loop
        if big:
            return await asyncio.to_thread(parse_payload, model, payload, files)
        return parse_payload(model, payload, files)

    def _shed(self) -> None:
        """Shed a flex request when the shed RNG says so, counting it."""
        try:
            self._behaviour.raise_shed()
        except ApiError:
            self.stats.flex_shed += 1
            raise

    # ----- embeddings -------------------------------------------------------------------
    async def batch_embed(self, request: web.Request, model: str,
                          body: bytes) -> dict[str, Any]:
        """batchEmbedContents: ``{"embeddings": [{"values": [...]}, ...]}`` in request order;
        ApiError 400 for no requests or more than 100 (the size is recorded either way)."""
        requests = load_json(body).get("requests")
        if not isinstance(requests, list) or not requests:
            raise ApiError(400, MSG_NO_REQUESTS)
        self.stats.keep(self.stats.batch_sizes, len(requests))
        if len(requests) > MAX_EMBED_BATCH:
            raise ApiError(400, MSG_BATCH_TOO_BIG)
        self._behaviour.admit_embed(model)
        self._behaviour.raise_scripted(self._behaviour.embed_script, request_key(request) or "")
        vectors = [embed_values(r) for r in requests]
        await self._behaviour.embed_delay()
        return {"embeddings": [{"values": v} for v in vectors]}

    async def embed_one(self, request: web.Request, model: str, body: bytes) -> dict[str, Any]:
        """embedContent: ``{"embedding": {"values": [...]}}``."""
        vector = embed_values(load_json(body))
        await self._behaviour.embed_delay()
        return {"embedding": {"values": vector}}


def embed_values(req: Any) -> list[float]:
    """The vector for one EmbedContentRequest dict (the text of its content parts).

    ApiError 400 if ``req`` is not an object or outputDimensionality is not in [1, 3072].
    """
    if not isinstance(req, dict):
        raise ApiError(400, MSG_INVALID)
    text = "\n".join(p["text"] for p in parts(req.get("content"))
                     if isinstance(p.get("text"), str))
    dim = get_field(req, "outputDimensionality", "output_dimensionality") or DEFAULT_EMBED_DIM
    if not isinstance(dim, int) or not 1 <= dim <= DEFAULT_EMBED_DIM:
        raise ApiError(400, f"* EmbedContentRequest.output_dimensionality: must be in "
                            f"[1, {DEFAULT_EMBED_DIM}]")
    return embedding_vector(text, dim)


class _RecordBook:
    """Makes ImageRecords, sharing equal strings and generation configs (keeps memory small)."""

    def __init__(self) -> None:
        self._configs: dict[str, dict[str, Any]] = {}

    def config(self, config: dict[str, Any]) -> dict[str, Any]:
        key = json.dumps(config, sort_keys=True, default=str)
        if key not in self._configs and len(self._configs) < 1024:
            self._configs[key] = config
        return self._configs.get(key, config)

    def record(self, req: GenerateRequest) -> ImageRecord:
        first = req.focus[0] if req.focus else None
        return ImageRecord(
            sha256=first.sha256 if first else None,
            mime_type=sys.intern(first.mime_type) if first else None,
            bytes=first.nbytes if first else 0,
            width=first.width if first else 0,
            height=first.height if first else 0,
            image_count=len(req.media),
            model=sys.intern(req.model),
            prompt=sys.intern("\n".join(req.texts)),
            system_instruction=sys.intern(req.system_instruction),
            generation_config=self.config(req.generation_config),
            first_part_kind=req.first_part_kind,
            source=first.source if first else None,
        )
