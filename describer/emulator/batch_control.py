"""The Batch API emulator's control routes (``/_emulator/batch``), for tests and benchmarks.

``GET /_emulator/batch``: settings, stats (with ``files_live``), jobs and files;
``POST /_emulator/batch {"pending_polls": 0, ...}``: change settings (400 for a bad one);
``POST /_emulator/batch/force {"name": "batches/..", "state": "EXPIRED"}``: force a state.
The same operations are Python methods of ``batches.BatchApi`` (``configure``, ``force``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .wire import ApiError, error_response

if TYPE_CHECKING:
    from .batches import BatchApi


def add_control_routes(app: web.Application, api: BatchApi) -> None:
    """Register the ``/_emulator/batch`` routes of ``api`` on ``app``."""

    async def control(request: web.Request) -> web.Response:
        stats = {**api.stats.to_dict(), "files_live": api.files.live}
        jobs = [{"name": j.name, "state": j.state, "requests": len(j.lines), "polls": j.polls,
                 "result_file": j.result_file} for j in api.jobs.values()]
        files = [{"name": f.name, "mimeType": f.mime_type, "sizeBytes": len(f.data),
                  "source": f.source} for f in api.files.files.values()]
        return web.json_response({"settings": api.settings(), "stats": stats, "jobs": jobs,
                                  "files": files})

    async def configure(request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            return web.json_response(api.configure(**changes))
        except (ValueError, TypeError) as exc:
            return error_response(ApiError(400, str(exc)))

    async def force(request: web.Request) -> web.Response:
        try:
            payload = await request.json()
            job = api.force(str(payload["name"]), str(payload["state"]))
        except (ValueError, TypeError, KeyError) as exc:
            return error_response(ApiError(400, str(exc)))
        except ApiError as err:
            return error_response(err)
        return web.json_response(job.operation())

    app.router.add_get("/_emulator/batch", control)
    app.router.add_post("/_emulator/batch", configure)
    app.router.add_post("/_emulator/batch/force", force)
