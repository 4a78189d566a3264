"""What the real client put on the wire: a recording proxy in front of the emulator, and the
command line run in a child process without blocking the event loop the servers run on."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import aiohttp
from aiohttp import web
from conftest import CLI, _child_env

from describer.emulator.loopback import LoopbackServer

#: Request headers not passed on: the proxy's own connection sets them.
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}


class WireTap(LoopbackServer):
    """Passes every request on to ``target`` (the emulator's base URL) and its answer back,
    keeping the JSON body of each ``generateContent`` request in ``bodies``, in arrival
    order: the request exactly as google-genai sent it (the emulator keeps only some of it)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.bodies: list[dict[str, Any]] = []
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._forward)

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path.endswith(":generateContent"):
            self.bodies.append(json.loads(body))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.target + request.path_qs, data=body, headers=headers
            ) as answer,
        ):
            data = await answer.read()
            return web.Response(status=answer.status, body=data, content_type=answer.content_type)


async def cli_async(
    args: list[str], env: dict[str, str], stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``describe-images ARGS`` in a child process, awaited, so servers on this event loop
    (the emulator, the image server, a tap) keep answering it; the child sees only ``env``
    and the basics (``conftest._child_env``)."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env=_child_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
    )  # fmt: skip
    data = stdin.encode() if stdin is not None else None
    out, err = await asyncio.wait_for(proc.communicate(data), timeout)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())
