"""A local static HTTP server for images, with scripted misbehaviour, for tests.

``ImageServer(root)`` serves files under ``root`` at ``/files/{name}`` and in-memory routes
added by tests (plain, redirect, endless stream, hang, slow, flaky). It listens on a free
port of 127.0.0.1 and shuts down within about 0.5 s even while handlers hang or stream.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web

from .loopback import LoopbackServer

SHUTDOWN_TIMEOUT_S = 0.25  # seconds; stop() waits at most twice this for busy handlers.
ENDLESS_CHUNK_BYTES = 64 * 1024  # size of each chunk an endless route writes.

_EXTRA_TYPES = {
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def content_type_for(path: Path | str) -> str:
    """MIME type for a file name by its extension (application/octet-stream if unknown)."""
    suffix = Path(path).suffix.lower()
    guessed = _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(str(path))[0]
    return guessed or "application/octet-stream"


class ImageServer(LoopbackServer):
    """Static and scripted HTTP routes on 127.0.0.1, for download tests.

    ``async with ImageServer(root) as srv:`` then ``srv.url("a.jpg")`` (a file under root,
    served at /files/a.jpg) or ``srv.url("/x.jpg")`` (a route added with ``add*``).
    ``srv.hits[path]`` counts requests per URL path (e.g. "/x.jpg", "/files/a.jpg");
    ``await srv.wait_for_hits(path, n)`` returns once n requests for it have arrived.
    ``srv.served[path]`` sums the body bytes each answer declared (Content-Length; a ranged
    answer's part, a whole body the client cut off counted whole, a chunked one not at all).
    Files under root honour ``Range`` (206); added routes ignore it (200, whole body), as
    many servers do. Only GET and HEAD are served; unknown paths answer 404.
    """

    runner_options: ClassVar[dict[str, Any]] = {
        "shutdown_timeout": SHUTDOWN_TIMEOUT_S, "handler_cancellation": True,
    }

    def __init__(self, root: Path | None = None) -> None:
        super().__init__()
        self.root = root.resolve() if root is not None else None
        self.hits: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self._arrived = asyncio.Condition()
        self._routes: dict[str, Handler] = {}
        self.app = web.Application()
        self.app.router.add_get("/{tail:.*}", self._handle)
        self.app.on_response_prepare.append(self._count)

    def url(self, name: str) -> str:
        """Full URL: "/path" for an added route, "name" for a file under root (/files/name)."""
        return self.base_url + (name if name.startswith("/") else f"/files/{name}")

    async def wait_for_hits(self, path: str, count: int = 1) -> None:
        """Return once ``hits[path]`` reaches ``count`` (requests that arrived, answered or not).

        Real synchronisation for tests: woken by each arriving request, no polling or sleeps.
        Call it on the server's event loop.
        """
        async with self._arrived:
            await self._arrived.wait_for(lambda: self.hits[_norm(path)] >= count)

    # ----- routes ---------------------------------------------------------------------------
    def add(self, path: str, body: bytes, content_type: str = "image/jpeg", status: int = 200,
            headers: Mapping[str, str] | None = None) -> None:
        """Answer ``path`` with ``body`` (bytes), status and extra headers."""
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=body, status=status, content_type=content_type,
                                headers=dict(headers or {}))
        self._routes[_norm(path)] = handler

    def add_guarded(self, path: str, body: bytes, user_agent: str,
                    content_type: str = "image/jpeg") -> None:
        """Answer ``path`` with ``body`` only to a User-Agent that starts with
        ``user_agent``, 403 to anyone else: a host that lets browsers (or describer) in and
        keeps crawlers, such as the fetcher behind Gemini's URL input, out."""
        async def handler(request: web.Request) -> web.StreamResponse:
            if not request.headers.get("User-Agent", "").startswith(user_agent):
                return web.Response(status=403, text="forbidden")
            return web.Response(body=body, content_type=content_type)
        self._routes[_norm(path)] = handler

    def add_redirect(self, path: str, to_path: str, status: int = 302) -> None:
        """Answer ``path`` with a redirect (302 by default) to ``to_path`` on this server."""
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, headers={"Location": to_path})
        self._routes[_norm(path)] = handler

    def add_endless(self, path: str, content_type: str = "image/jpeg") -> None:
        """Stream random bytes in 64 KiB chunks (chunked encoding) until the client leaves."""
        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": content_type})
            response.enable_chunked_encoding()
            await response.prepare(request)
            chunk = os.urandom(ENDLESS_CHUNK_BYTES)
            try:
                while True:
                    await response.write(chunk)
                    await asyncio.sleep(0)
            except ConnectionError:
                return response
        self._routes[_norm(path)] = handler

    def add_hang(self, path: str) -> None:
        """Accept requests for ``path`` and never answer (until cancelled)."""
        async def handler(request: web.Request) -> web.StreamResponse:
            await asyncio.Event().wait()  # never set: only cancellation ends this
            return web.Response(status=500)
        self._routes[_norm(path)] = handler

    def add_slow(self, path: str, body: bytes, content_type: str = "image/jpeg",
                 delay: float = 1.0) -> None:
        """Wait ``delay`` seconds before answering ``path`` with ``body``."""
        async def handler(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(delay)
            return web.Response(body=body, content_type=content_type)
        self._routes[_norm(path)] = handler

    def add_flaky(self, path: str, body: bytes, content_type: str = "image/jpeg",
                  failures: int = 1, status: int = 503,
                  headers: Mapping[str, str] | None = None) -> None:
        """Answer the first ``failures`` requests with ``status`` and extra ``headers`` (e.g.
        ``Retry-After``), then ``body`` (200)."""
        left = [failures]

        async def handler(request: web.Request) -> web.StreamResponse:
            if left[0] > 0:
                left[0] -= 1
                return web.Response(status=status, text=f"flaky: {status}",
                                    headers=dict(headers or {}))
            return web.Response(body=body, content_type=content_type)
        self._routes[_norm(path)] = handler

    async def _count(self, request: web.Request, response: web.StreamResponse) -> None:
        self.served[request.path] += response.content_length or 0

    # ----- dispatch ---------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        async with self._arrived:
            self._arrived.notify_all()
        handler = self._routes.get(request.path)
        if handler is not None:
            return await handler(request)
        if self.root is not None and request.path.startswith("/files/"):
            return self._file(request.path.removeprefix("/files/"))
        raise web.HTTPNotFound()

    def _file(self, name: str) -> web.StreamResponse:
        assert self.root is not None
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": content_type_for(path)})


def _norm(path: str) -> str:
    return path if path.startswith("/") else f"/{path}"
