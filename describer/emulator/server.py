"""``GeminiEmulator``: a local Gemini REST API on real loopback HTTP, composed of its surfaces.

Tests and benchmarks point the real ``google-genai`` client at it with
``HttpOptions(base_url=emu.base_url)`` (or ``GOOGLE_GEMINI_BASE_URL``). It decodes the media
it receives, answers with deterministic media-derived text, Google-shaped usage metadata and
Google-shaped errors (400, 403, 404, 429, 500, 503), and records what it saw.

Where each part lives: models.py (generateContent, embeddings), files.py (Files API),
batches.py, jobs.py and batch_control.py (Batch API), contexts.py (cachedContents),
behaviour.py (latency, faults, flex, scripts) with
settings.py (EmulatorSettings), quota.py (quotas) and caching.py (implicit cache),
contents.py / media.py / answers.py (requests in, answers out), wire.py (errors and JSON),
stats.py (what tests assert on), loopback.py (the aiohttp server lifecycle).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from aiohttp import web

from .batches import BatchApi
from .behaviour import Behaviour, EmulatorSettings
from .contents import MAX_REQUEST_BYTES
from .contexts import ContextsApi
from .files import FilesApi
from .loopback import LoopbackServer
from .models import ModelsApi
from .quota import Clock
from .stats import BatchStats, EmulatorStats
from .uplink import Uplink
from .wire import ApiError, error_response

MAX_BODY_BYTES = 4 * MAX_REQUEST_BYTES  # aiohttp's client_max_size for every route.


class GeminiEmulator(LoopbackServer):
    """An aiohttp app emulating the Gemini REST API on 127.0.0.1 (see module docstring).

    Use ``async with GeminiEmulator(EmulatorSettings(...)) as emu:`` and point the client at
    ``emu.base_url`` (``http://127.0.0.1:PORT``), or ``await emu.start()`` /
    ``await emu.stop()``, or ``with emu.in_thread() as base_url:`` from synchronous code.

    Parts: ``stats`` (EmulatorStats of the models surface), ``behaviour`` (Behaviour),
    ``models`` (ModelsApi), ``files`` (FilesApi), ``contexts`` (ContextsApi: explicit
    context caches, ``contexts.stats``), ``batch`` (BatchApi; ``batch.stats`` is the Files
    and Batch API's BatchStats). Control routes: ``GET /_emulator/stats[?lists=0]`` (its
    ``contexts``: the cachedContents counters), ``POST /_emulator/reset``,
    ``GET|POST /_emulator/config``, ``POST /_emulator/script``, ``GET|POST /_emulator/batch``,
    ``POST /_emulator/batch/force``. ``clock`` (seconds,
    time.monotonic by default) is the time the quotas and the implicit cache read: a test
    passes a fake one to step through a quota window without sleeping. ``uplink``
    (uplink.Uplink) reads POST bodies when ``upload_bytes_per_s`` is set; a test may replace
    its ``sleep`` and ``clock`` to record the waits instead of sleeping them.
    """

    site_options: ClassVar[dict[str, Any]] = {"backlog": 4096}

    def __init__(self, settings: EmulatorSettings | None = None,
                 clock: Clock = time.monotonic) -> None:
        super().__init__()
        self.behaviour = Behaviour(settings or EmulatorSettings(), clock)
        self.stats = EmulatorStats()
        shared = BatchStats()
        self.files = FilesApi(self.behaviour, shared, self._url)
        self.contexts = ContextsApi(self.behaviour, self.files)
        self.models = ModelsApi(self.behaviour, self.stats, self.files, self._url,
                                self.contexts.read)
        self.batch = BatchApi(self.behaviour, self.files, shared, self._url, self.models.client)
        self.models.add_action("batchGenerateContent", self.batch.create)
        self.uplink = Uplink()
        self.app = self._make_app()

    @property
    def settings(self) -> EmulatorSettings:
        """The current settings (change them with :meth:`configure`)."""
        return self.behaviour.settings

    def _url(self) -> str:
        return self.base_url

    # ----- lifecycle -------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop listening, then close the session that fetches fileData URLs."""
        await super().stop()
        await self.models.close()

    @contextmanager
    def in_thread(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Run the emulator on its own event loop in a daemon thread; yields ``base_url``."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="gemini-emulator", daemon=True)
        thread.start()
        try:
            yield asyncio.run_coroutine_threadsafe(self.start(host, port), loop).result()
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result()
            asyncio.run_coroutine_threadsafe(_cancel_pending(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    # ----- Python control API ----------------------------------------------------------
    def script(self, sha256_hex: str, behaviour: str | None) -> None:
        """Script how requests whose first image has this sha256 are answered (None: clear).

        behaviour: "block", "safety", "empty", "max_tokens", "suspended", "fail:503:N",
        "fail:500:N", "fail:400", "slow:SECONDS", "bad_json[:N]", "off_schema[:N]" (see
        behaviour.parse_script). ValueError if unknown. "suspended" answers 403 with the
        caller's API key in the message; "bad_json" and "off_schema" break structured
        output (prose; JSON not valid under the request's responseJsonSchema)."""
        self.behaviour.script(sha256_hex, behaviour)

    def clear_scripts(self) -> None:
        """Remove every scripted behaviour."""
        self.behaviour.clear_scripts()

    def script_embed(self, behaviour: str | None) -> None:
        """Script every embedding call: "fail:CODE[:N]" (the first N calls, or all, fail with
        HTTP CODE) or "suspended"; None clears it. Batch sizes are recorded either way."""
        self.behaviour.script_embed(behaviour)

    def configure(self, **changes: Any) -> EmulatorSettings:
        """Replace some settings at run time (same names as EmulatorSettings); returns them.

        Changing ``seed`` re-seeds the RNGs. ValueError (TypeError) for a bad value
        (unknown name); the settings are then unchanged.
        """
        return self.behaviour.configure(**changes)

    def reset_stats(self) -> None:
        """Zero ``stats`` and ``batch.stats`` in place, empty the per-minute quotas (rpm,
        tpm) and the implicit cache (in-flight requests stay counted). Scripts (and their
        remaining-failure counters), settings, files, jobs and the day's rpd count are kept
        (see :meth:`reset_day`)."""
        self.stats.reset()
        self.batch.stats.reset()
        self.behaviour.reset_window()
        self.behaviour.cache.clear()

    def reset_day(self) -> None:
        """A new quota day: the rpd and embed_rpd counts start again from zero (at Google:
        midnight Pacific)."""
        self.behaviour.reset_day()

    # ----- HTTP ------------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        @web.middleware
        async def uplink(request: web.Request, handler: Any) -> web.StreamResponse:
            return await self._uplink(request, handler)

        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[uplink])
        self.models.add_routes(app)
        self.files.add_routes(app)
        self.contexts.add_routes(app)
        self.batch.add_routes(app)
        app.router.add_get("/_emulator/stats", self._handle_stats)
        app.router.add_post("/_emulator/reset", self._handle_reset)
        app.router.add_get("/_emulator/config", self._handle_get_config)
        app.router.add_post("/_emulator/config", self._handle_config)
        app.router.add_post("/_emulator/script", self._handle_script)
        return app

    async def _uplink(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Read a POST body at no more than ``upload_bytes_per_s`` (uplink.py), before the
        handler runs; the handler's ``request.read()`` then returns it."""
        rate = self.settings.upload_bytes_per_s
        if rate is not None and request.method == "POST" and request.can_read_body:
            try:
                body = await self.uplink.read(request.content, rate, MAX_BODY_BYTES)
            except ValueError:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES,
                                                    actual_size=MAX_BODY_BYTES + 1) from None
            request._read_bytes = body  # aiohttp's cache of the body: read() returns it
        return await handler(request)

    async def _handle_stats(self, request: web.Request) -> web.Response:
        lists = request.query.get("lists", "1").lower() not in ("0", "false", "no")
        out = self.stats.to_dict(lists=lists)
        out["contexts"] = self.contexts.stats.to_dict()
        return web.json_response(out)

    async def _handle_reset(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.json_response({"ok": True})

    async def _handle_get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.settings.to_dict())

    async def _handle_config(self, request: web.Request) -> web.Response:
        """POST /_emulator/config {"rpm": 7, "latency": [0, 0.01] or 0.2, ...}."""
        try:
            settings = self.configure(**_setting_changes(await request.json()))
        except (ValueError, TypeError) as exc:
            return error_response(ApiError(400, str(exc)))
        return web.json_response(settings.to_dict())

    async def _handle_script(self, request: web.Request) -> web.Response:
        """POST /_emulator/script {"sha256": HEX, "behaviour": "fail:503:2" | null}."""
        try:
            payload = await request.json()
            self.script(str(payload["sha256"]), payload.get("behaviour"))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return error_response(ApiError(400, str(exc)))
        return web.json_response({"ok": True})


def _setting_changes(changes: Any) -> dict[str, Any]:
    """Validate a JSON settings object; ranges (latency, embed_latency, flex_latency) as
    [low, high] or one number -> tuples."""
    names = {f.name for f in dataclasses.fields(EmulatorSettings)}
    if not isinstance(changes, dict) or set(changes) - names:
        raise ValueError(f"expected a JSON object with keys among {sorted(names)}")
    for key in EmulatorSettings.range_names():
        if isinstance(changes.get(key), int | float):
            changes[key] = (changes[key], changes[key])
        elif key in changes:
            changes[key] = tuple(changes[key])
    return changes


async def _cancel_pending() -> None:
    """Cancel what is still running on this loop (a handler sleeping out a long latency for
    a client that is gone), so the loop closes with no task pending."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
