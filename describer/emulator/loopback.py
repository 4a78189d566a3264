"""The lifecycle the emulator and the image server share: an aiohttp app on a local port."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from aiohttp import web


class LoopbackServer:
    """Serves ``self.app`` on ``host:port`` (0: a free port); an async context manager.

    Subclasses set ``app`` and may set ``runner_options`` (``web.AppRunner`` keywords) and
    ``site_options`` (``web.TCPSite`` keywords). ``base_url`` and ``port`` are set by
    :meth:`start`.
    """

    app: web.Application
    runner_options: ClassVar[dict[str, Any]] = {}
    site_options: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        self.base_url = ""
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port``; return and set ``base_url``."""
        options = {"access_log": None, "shutdown_timeout": 0.5, **self.runner_options}
        self._runner = web.AppRunner(self.app, **options)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, **self.site_options).start()
        self.port = int(self._runner.addresses[0][1])
        shown = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown}:{self.port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening; requests still running after about 0.5 s are cancelled."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
