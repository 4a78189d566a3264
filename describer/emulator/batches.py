"""Batch API of the Gemini emulator (``emu.batch``): create, get, list, cancel, delete.

What google-genai 3.4.0 sends with an API key (recorded against a logging server; every path
is served for any API version ``{v}``):

* ``batches.create``: ``POST /{v}/models/{model}:batchGenerateContent`` with
  ``{"batch": {"displayName": ..., "inputConfig": {"fileName": "files/ID"}}}`` or
  ``{"batch": {"inputConfig": {"requests": {"requests": [{"request": GenerateContentRequest,
  "metadata": {...}}]}}}}`` (dispatched by models.ModelsApi, counted in ``emu.stats``);
  ``batches.get``: ``GET /{v}/batches/{id}``; ``batches.cancel``: ``POST
  /{v}/batches/{id}:cancel`` (empty body, answer ignored); ``batches.delete``: ``DELETE
  /{v}/batches/{id}``; ``batches.list``: ``GET /{v}/batches`` -> ``{"operations": [...]}``.
  Create and get answer a long-running Operation (jobs.BatchJob.operation).

Jobs move on when polled (deterministic by default): PENDING for ``pending_polls`` gets,
RUNNING for ``running_polls`` more, then ``end_state``; or by time (``pending_seconds``,
``running_seconds``). Each request of a job is answered as generateContent would answer it,
with the emulator's per-image scripts (fail:CODE, block, safety, ...) but no sleeps, quota
or injected faults; ``suspended`` is not applied to lines (at Google a suspended key fails
the create call itself).

Figures and where they come from:

* 20 MB per inline batch create request (Batch API: inline requests under 20 MB; the
  emulator applies the 20 MiB inline limit of generateContent).
* 2 GB per input file (Files API limit, see files.py).
* 100 concurrent batch jobs per project (``max_concurrent_jobs``; Batch API "rate limits":
  concurrent batch requests 100); past it batches.create is a 429 (wire.batch_limit_error).
* Lines may carry ``fileData`` http(s) URLs (Gemini fetches them on the Batch API too):
  fetched when the job runs, each URL that cannot be fetched failing its lines with the
  400 of urls.py.
* A line naming a ``cachedContent`` fails with a 400 (contents.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from .answers import build_response
from .batch_control import add_control_routes
from .behaviour import Behaviour
from .contents import (
    MAX_REQUEST_BYTES,
    MSG_TOO_LARGE,
    THREAD_DECODE_BYTES,
    FileParts,
    GenerateRequest,
    parse_payload,
)
from .files import FilesApi, StoredFile
from .jobs import (
    CANCELLED,
    EXPIRED,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    BatchJob,
    Line,
    inline_lines,
    parse_jsonl,
    state_name,
)
from .stats import BatchStats
from .urls import UrlParts, fetch_each, url_uris
from .wire import (
    ApiError,
    api_route,
    batch_limit_error,
    get_field,
    load_json,
    new_id,
    page,
    short_id,
)

MSG_NO_BATCH_INPUT = "* BatchGenerateContentRequest.batch.input_config: input is required"
MSG_EMPTY_BATCH = "The batch input contains no requests."
MSG_BATCH_FAILED = "The batch job failed."
#: Concurrent batch jobs per project (Batch API "rate limits": 100 concurrent batch requests).
MAX_CONCURRENT_JOBS = 100
_JOB_SETTINGS = ("pending_polls", "running_polls", "pending_seconds", "running_seconds",
                 "end_state", "max_concurrent_jobs")


class BatchApi:
    """Batch API state and routes of one GeminiEmulator (``emu.batch``).

    Python API for tests: ``jobs`` (name -> BatchJob), ``stats`` (BatchStats, shared with
    ``files``, the FilesApi ``emu.files``), ``unfinished()``, ``force(name, state)``,
    ``configure(**settings)``. Settings (plain attributes, deterministic by default):

    pending_polls: batches.get calls that still see PENDING (default 1; None: poll count
        never advances it); running_polls: the following gets that see RUNNING (default 1);
    pending_seconds / running_seconds: or advance after this long in the state (None: off);
        whichever of polls / seconds comes first advances the job, checked on each get;
    end_state: where jobs end on their own: SUCCEEDED (default), FAILED or EXPIRED;
    max_concurrent_jobs: batches.create answers 429 (wire.batch_limit_error) while this
        many jobs are PENDING or RUNNING (default MAX_CONCURRENT_JOBS, 100; None: no limit;
        0 refuses every create). Jobs move on only when polled, so a job counts until a get
        (or ``force``) sees it end, whatever its seconds;
    missing_file_status: the Files API's setting (emu.files), accepted here too.
    """

    def __init__(self, behaviour: Behaviour, files: FilesApi, stats: BatchStats,
                 base_url: Callable[[], str],
                 client: Callable[[], aiohttp.ClientSession] | None = None) -> None:
        self.jobs: dict[str, BatchJob] = {}
        self.stats = stats
        self.pending_polls: int | None = 1
        self.running_polls: int | None = 1
        self.pending_seconds: float | None = None
        self.running_seconds: float | None = None
        self.end_state = SUCCEEDED
        self.max_concurrent_jobs: int | None = MAX_CONCURRENT_JOBS
        self._behaviour = behaviour
        self.files = files
        self._base_url = base_url
        self._client = client

    # ----- Python control API ----------------------------------------------------------
    def configure(self, **changes: Any) -> dict[str, Any]:
        """Set settings by name (see class docstring); returns all settings. ValueError for
        an unknown name, an end_state other than SUCCEEDED, FAILED or EXPIRED, or a
        max_concurrent_jobs other than None or an integer >= 0."""
        unknown = set(changes) - set(self.settings())
        if unknown:
            raise ValueError(f"unknown batch setting {sorted(unknown)[0]!r}")
        for key, value in changes.items():
            if key == "end_state":
                value = state_name(value)
                if value not in (SUCCEEDED, FAILED, EXPIRED):
                    raise ValueError("end_state must be SUCCEEDED, FAILED or EXPIRED")
            if key == "max_concurrent_jobs" and not (
                    value is None or (type(value) is int and value >= 0)):
                raise ValueError("max_concurrent_jobs must be None or an integer >= 0")
            if key in _JOB_SETTINGS:
                setattr(self, key, value)
            else:
                self.files.configure(**{key: value})
        return self.settings()

    def settings(self) -> dict[str, Any]:
        """The current settings as a dict (job settings and the Files API's)."""
        return {**{n: getattr(self, n) for n in _JOB_SETTINGS}, **self.files.settings()}

    def force(self, name: str, state: str) -> BatchJob:
        """Put job ``name`` in ``state`` now: SUCCEEDED (answers its requests), FAILED,
        EXPIRED, CANCELLED or RUNNING (accepts BATCH_STATE_/JOB_STATE_ prefixes).
        ApiError 404 for an unknown job, ValueError for another state."""
        job = self._job(name)
        target = state_name(state)
        if target == RUNNING:
            job.enter(RUNNING)
            job.running_from = job.polls
        elif target in TERMINAL:
            parsed = self._parse_lines(job) if target == SUCCEEDED else []
            self._finish(job, parsed, target, "v1")
        else:
            raise ValueError(f"cannot force state {state!r}")
        return job

    # ----- routes ----------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        """Register the Batch API routes and the ``/_emulator/batch`` control routes
        (batch_control.py) on ``app`` (batchGenerateContent is served by the models router,
        see :meth:`create`)."""
        key, r = self._behaviour.check_key, app.router
        r.add_get("/{version}/batches", api_route(self._list_jobs, self.stats, key))
        r.add_get("/{version}/batches/{name}", api_route(self._get_job, self.stats, key))
        r.add_post("/{version}/batches/{name}", api_route(self._cancel_job, self.stats, key))
        r.add_delete("/{version}/batches/{name}", api_route(self._delete_job, self.stats, key))
        add_control_routes(app, self)

    async def create(self, request: web.Request, model: str, body: bytes) -> dict[str, Any]:
        """batchGenerateContent: a new PENDING job from an input file or inline requests;
        returns its Operation. ApiError 429 (counted in ``stats.batch_jobs_refused``) while
        ``max_concurrent_jobs`` jobs are unfinished, checked first; 400 for no input, no
        requests or an inline body over 20 MiB; the Files API's error for a missing input
        file."""
        if self.max_concurrent_jobs is not None and (
                self.unfinished() >= self.max_concurrent_jobs):
            self.stats.batch_jobs_refused += 1
            raise batch_limit_error()
        batch = load_json(body).get("batch")
        batch = batch if isinstance(batch, dict) else {}
        config = get_field(batch, "inputConfig", "input_config")
        config = config if isinstance(config, dict) else {}
        file_name = get_field(config, "fileName", "file_name")
        if file_name:
            data = self.files.get(str(file_name)).data
            lines = (await asyncio.to_thread(parse_jsonl, data)
                     if len(data) > THREAD_DECODE_BYTES else parse_jsonl(data))
        elif "requests" in config:
            if len(body) > MAX_REQUEST_BYTES:
                raise ApiError(400, MSG_TOO_LARGE)
            data, lines = body, inline_lines(config["requests"])
        else:
            raise ApiError(400, MSG_NO_BATCH_INPUT)
        if not lines:
            raise ApiError(400, MSG_EMPTY_BATCH)
        return self._new_job(model, batch, lines, file_name, len(data)).operation()

    def _new_job(self, model: str, batch: dict[str, Any], lines: list[Line],
                 file_name: Any, input_bytes: int) -> BatchJob:
        name = f"batches/{new_id(36)}"
        src = f"files/{short_id(str(file_name), 'files')}" if file_name else None
        display = str(get_field(batch, "displayName", "display_name") or "")
        job = BatchJob(name, model.removeprefix("models/"), display, lines, src, input_bytes)
        self.jobs[name] = job
        self.stats.batch_jobs_created += 1
        self.stats.batch_requests += len(lines)
        self.stats.requests_per_job.append(len(lines))
        self.stats.max_unfinished = max(self.stats.max_unfinished, self.unfinished())
        return job

    def unfinished(self) -> int:
        """How many jobs are PENDING or RUNNING now (deleted jobs are not counted)."""
        return sum(job.state not in TERMINAL for job in self.jobs.values())

    def _job(self, name: str) -> BatchJob:
        job = self.jobs.get(f"batches/{short_id(name, 'batches')}")
        if job is None:
            raise ApiError(404)
        return job

    async def _get_job(self, request: web.Request, body: bytes) -> web.Response:
        job = self._job(request.match_info["name"])
        self.stats.batch_polls += 1
        job.polls += 1
        await self._advance(job, request.match_info["version"])
        return web.json_response(job.operation())

    async def _advance(self, job: BatchJob, version: str) -> None:
        """Move a polled job on: PENDING -> RUNNING -> end_state (see class docstring)."""
        if job.state == PENDING and self._due(job, job.polls, self.pending_polls,
                                              self.pending_seconds):
            job.enter(RUNNING)
            job.running_from = job.polls - 1  # this get is the first to see RUNNING
        if job.state == RUNNING and self._due(job, job.polls - job.running_from,
                                              self.running_polls, self.running_seconds):
            parsed: list[GenerateRequest | ApiError] = []
            if self.end_state == SUCCEEDED:
                files = await self._url_parts(job)
                big = job.input_bytes > THREAD_DECODE_BYTES or files is not self.files
                parsed = (await asyncio.to_thread(self._parse_lines, job, files)
                          if big else self._parse_lines(job, files))
                urls = [m for p in parsed if not isinstance(p, ApiError)
                        for m in p.media if m.source == "url"]
                self.stats.url_parts += len(urls)
                self.stats.url_bytes_fetched += sum(m.nbytes for m in urls)
            self._finish(job, parsed, self.end_state, version)

    @staticmethod
    def _due(job: BatchJob, polls: int, poll_limit: int | None,
             seconds: float | None) -> bool:
        by_polls = poll_limit is not None and polls > poll_limit
        by_time = seconds is not None and time.monotonic() - job.since >= seconds
        return by_polls or by_time

    async def _url_parts(self, job: BatchJob) -> FileParts:
        """The Files API, or with the job's http(s) fileData URLs fetched (urls.py) a
        UrlParts over it: a URL that cannot be fetched fails its lines only."""
        own = self._base_url()
        uris = list(dict.fromkeys(u for line in job.lines if line.request is not None
                                  for u in url_uris(line.request, own)))
        if not uris or self._client is None:
            return self.files
        return UrlParts(self.files, await fetch_each(self._client(), uris), own)

    def _parse_lines(self, job: BatchJob,
                     files: FileParts | None = None) -> list[GenerateRequest | ApiError]:
        """Parse every request (probes media; safe in a worker thread)."""
        out: list[GenerateRequest | ApiError] = []
        for line in job.lines:
            try:
                if line.error is not None or line.request is None:
                    raise line.error or ApiError(400)
                out.append(parse_payload(job.model, line.request, files or self.files, True))
            except ApiError as err:
                out.append(err)
        return out

    def _answer(self, parsed: GenerateRequest | ApiError) -> dict[str, Any]:
        """``{"response": ...}`` or ``{"error": ...}`` for one parsed request, with the
        per-image scripts applied (module docstring)."""
        if isinstance(parsed, ApiError):
            return {"error": parsed.body()["error"]}
        script = self._behaviour.script_for(parsed.focus[0].sha256 if parsed.focus else None)
        try:
            self._behaviour.raise_scripted(script, key=None)
        except ApiError as err:
            return {"error": err.body()["error"]}
        return {"response": build_response(parsed, self._behaviour.answer_shape(script),
                                           echo_tier=True)}

    def _finish(self, job: BatchJob, parsed: list[GenerateRequest | ApiError], state: str,
                version: str) -> None:
        """End ``job`` in ``state``; SUCCEEDED answers every request and stores results."""
        if state == SUCCEEDED:
            job.results = [line.result(self._answer(p))
                           for line, p in zip(job.lines, parsed, strict=True)]
            if job.src_file is not None:
                job.result_file = self._store_results(job, job.results, version).name
        elif state == FAILED:
            job.error = ApiError(500, MSG_BATCH_FAILED).body()["error"]
        job.enter(state)

    def _store_results(self, job: BatchJob, results: list[dict[str, Any]],
                       version: str) -> StoredFile:
        name = f"files/batch-{short_id(job.name, 'batches')}"
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in results).encode()
        base = f"{self._base_url()}/{version}/{name}"
        return self.files.put(StoredFile(name, data, "application/jsonl",
                                          f"{job.display_name} responses", base, "GENERATED",
                                          f"{base}:download?alt=media"))

    async def _cancel_job(self, request: web.Request, body: bytes) -> web.Response:
        name = request.match_info["name"]
        if not name.endswith(":cancel"):
            raise ApiError(404, f"Method not found: {name}")
        job = self._job(name.removesuffix(":cancel"))
        if job.state not in TERMINAL:
            self._finish(job, [], CANCELLED, request.match_info["version"])
            self.stats.batch_cancels += 1
        return web.json_response({})

    async def _delete_job(self, request: web.Request, body: bytes) -> web.Response:
        job = self._job(request.match_info["name"])
        del self.jobs[job.name]
        self.stats.batch_deletes += 1
        return web.json_response({})

    async def _list_jobs(self, request: web.Request, body: bytes) -> web.Response:
        items, token = page(list(self.jobs.values()), request.query)
        out: dict[str, Any] = {"operations": [j.operation() for j in items]}
        if token:
            out["nextPageToken"] = token
        return web.json_response(out)
