"""Files API and Batch API of the Gemini emulator (see gemini.GeminiEmulator, ``emu.batch``).

What google-genai 3.4.0 sends with an API key (recorded against a logging server; the
default API version of the Gemini Developer client is ``v1``; every path below is served
for any ``{v}``, e.g. v1 or v1beta):

* ``files.upload``: ``POST /upload/{v}/files`` with headers ``X-Goog-Upload-Protocol:
  resumable``, ``X-Goog-Upload-Command: start``, ``X-Goog-Upload-Header-Content-Length``,
  ``X-Goog-Upload-Header-Content-Type``, ``x-goog-api-key`` and the JSON body
  ``{"file": {"display_name": ..., "mime_type": ..., "size_bytes": N}}`` (snake_case). The
  answer's ``X-Goog-Upload-URL`` header is then used *verbatim* (host included): 8 MiB
  chunks are POSTed to it with ``X-Goog-Upload-Command: upload`` (``upload, finalize`` for
  the last), ``X-Goog-Upload-Offset`` and *no* API key. Every answer must carry
  ``X-Goog-Upload-Status`` (``active`` / ``final``), else the SDK retries the chunk 3 times;
  the final answer's body is ``{"file": File}``.
* ``files.get`` / ``files.delete``: ``GET`` / ``DELETE /{v}/files/{id}``; ``files.list``:
  ``GET /{v}/files[?pageSize&pageToken]`` -> ``{"files": [...], "nextPageToken"}``;
  ``files.download(file="files/{id}")``: ``GET /{v}/files/{id}:download?alt=media`` -> raw
  bytes (also served at ``/download/{v}/files/{id}:download``, the REST docs' URL).
* ``batches.create``: ``POST /{v}/models/{model}:batchGenerateContent`` with
  ``{"batch": {"displayName": ..., "inputConfig": {"fileName": "files/ID"}}}`` or
  ``{"batch": {"inputConfig": {"requests": {"requests": [{"request": GenerateContentRequest,
  "metadata": {...}}]}}}}``; ``batches.get``: ``GET /{v}/batches/{id}``;
  ``batches.cancel``: ``POST /{v}/batches/{id}:cancel`` (empty body, answer ignored);
  ``batches.delete``: ``DELETE /{v}/batches/{id}``; ``batches.list``: ``GET /{v}/batches``
  -> ``{"operations": [...]}``. Create and get answer a long-running Operation: the SDK
  reads ``name`` and ``metadata.{displayName, state, createTime, updateTime, endTime,
  model, output}``; ``BATCH_STATE_X`` becomes ``JobState.JOB_STATE_X`` and
  ``metadata.output.responsesFile`` becomes ``job.dest.file_name`` (``batchStats`` and
  ``error`` are sent but not parsed by the SDK).
* ``generateContent`` with ``Part.from_uri``: ``{"fileData": {"file_uri": ..., "mime_type":
  ...}}`` (camelCase key, snake_case fields).

Figures and where they come from:

* 2 GB per file (Files API limit; also the Batch API's input-file limit); files expire
  48 hours after upload (Files API: files are stored for 48 hours).
* 20 MB per inline batch create request (Batch API: inline requests under 20 MB).
* 258 tokens per PDF page (Gemini "Document understanding"), 32 tokens per second of audio
  and 263 per second of video (Gemini "Understand and count tokens"). Durations are not
  decoded: the emulator assumes 16,000 bytes/s of audio (128 kbit/s) and 250,000 bytes/s
  of video (2 Mbit/s); PDF pages are counted as ``/Type /Page`` objects (at least 1).
* A missing or deleted file answers 403 PERMISSION_DENIED "You do not have permission to
  access the File ID or it may not exist." as Gemini does (googleapis/python-genai#1218,
  google-gemini/deprecated-generative-ai-js#236); ``missing_file_status`` changes the code.
* Result lines ``{"key", "response": GenerateContentResponse}`` or ``{"key", "error":
  {"code", "message", "status"}}``, in input order (Batch API guide: each output line is a
  GenerateContentResponse or a status object, keyed by the input line's key).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import math
import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from describer.emulator.gemini import (
    MAX_REQUEST_BYTES,
    MSG_TOO_LARGE,
    THREAD_DECODE_BYTES,
    ApiError,
    _GenerateRequest,
    _get,
    _Image,
    _load_json,
    build_response,
    parse_payload,
    probe_image,
)

if TYPE_CHECKING:
    from describer.emulator.gemini import GeminiEmulator

MAX_FILE_BYTES = 2 * 1024**3  # Files API: 2 GB per file (also the batch input-file limit).
FILE_TTL = timedelta(hours=48)  # Files API: files are stored for 48 hours.
PDF_PAGE_TOKENS = 258  # Gemini document understanding: 258 tokens per page.
AUDIO_TOKENS_PER_S = 32  # Gemini token counting: audio at 32 tokens per second.
VIDEO_TOKENS_PER_S = 263  # Gemini token counting: video at 263 tokens per second.
AUDIO_BYTES_PER_S = 16_000  # emulator assumption: 128 kbit/s audio.
VIDEO_BYTES_PER_S = 250_000  # emulator assumption: 2 Mbit/s video.
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 10, 100  # Files API list: default 10, at most 100.

BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = BATCH_TYPE + "Output"
PENDING, RUNNING = "BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"
SUCCEEDED, FAILED = "BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED"
CANCELLED, EXPIRED = "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED})
MSG_NO_PAGES = "The document has no pages."
MSG_NO_BATCH_INPUT = "* BatchGenerateContentRequest.batch.input_config: input is required"
MSG_EMPTY_BATCH = "The batch input contains no requests."
MSG_BATCH_FAILED = "The batch job failed."
_ID_CHARS = string.ascii_lowercase + string.digits
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")

_TOPICS = ("a quarterly budget", "a train timetable", "a research paper", "a recipe",
           "a user manual", "a rental contract", "a museum guide", "a school report")
_SOUNDS = ("a person speaking", "piano music", "birdsong", "street traffic",
           "a phone conversation", "rain on a roof", "a lecture", "a crowd cheering")
_SCENES = ("a city street", "a beach at dusk", "a kitchen", "a football match",
           "a mountain trail", "an office meeting", "a birthday party", "a train journey")


def _now() -> str:
    """RFC 3339 UTC timestamp with microseconds, e.g. 2025-01-01T00:00:00.000000Z."""
    return _stamp(datetime.now(UTC))


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new_id(length: int) -> str:
    """A random lowercase alphanumeric id (file ids: 12 chars, batch ids: 36, as at Google)."""
    return "".join(secrets.choice(_ID_CHARS) for _ in range(length))


def _short_id(name: str, collection: str) -> str:
    """``files/abc`` / ``abc`` / ``https://host/v1/files/abc`` -> ``abc``."""
    marker = f"{collection}/"
    return name.rsplit(marker, 1)[-1] if marker in name else name


def probe_media(data: bytes, mime_type: str) -> _Image:
    """Describe PDF / audio / video bytes deterministically (see module docstring for tokens).

    Returns an ``_Image`` with width = height = 0, label PDF | AUDIO | VIDEO, modality
    DOCUMENT | AUDIO | VIDEO, its token count and description. ApiError 400 "The document
    has no pages." for a PDF whose bytes do not start with ``%PDF-``.
    """
    digest = hashlib.sha256(data).hexdigest()
    pick = bytes.fromhex(digest)
    if mime_type == "application/pdf":
        if not data.startswith(b"%PDF-"):
            raise ApiError(400, MSG_NO_PAGES)
        pages = max(1, len(_PDF_PAGE.findall(data)))
        text = (f"A {pages}-page PDF document ({len(data)} bytes) about "
                f"{_TOPICS[pick[0] % 8]}. Document {digest[:8]}.")
        return _Image(digest, mime_type, len(data), 0, 0, "PDF", PDF_PAGE_TOKENS * pages,
                      "DOCUMENT", text)
    video = mime_type.startswith("video/")
    seconds = max(1, math.ceil(len(data) / (VIDEO_BYTES_PER_S if video else AUDIO_BYTES_PER_S)))
    if video:
        text = (f"A video of about {seconds} s ({mime_type}) showing "
                f"{_SCENES[pick[0] % 8]}. Video {digest[:8]}.")
        return _Image(digest, mime_type, len(data), 0, 0, "VIDEO",
                      VIDEO_TOKENS_PER_S * seconds, "VIDEO", text)
    text = (f"An audio recording of about {seconds} s ({mime_type}) with "
            f"{_SOUNDS[pick[0] % 8]}. Recording {digest[:8]}.")
    return _Image(digest, mime_type, len(data), 0, 0, "AUDIO", AUDIO_TOKENS_PER_S * seconds,
                  "AUDIO", text)


def is_media_type(mime_type: str) -> bool:
    """True for the non-image types the emulator describes: PDF, audio/*, video/*."""
    return mime_type == "application/pdf" or mime_type.startswith(("audio/", "video/"))


@dataclass
class StoredFile:
    """One file in the emulator's Files API store (bytes kept in memory)."""

    name: str  # files/<id>
    data: bytes
    mime_type: str
    display_name: str
    uri: str
    source: str = "UPLOADED"  # UPLOADED | GENERATED (batch results)
    download_uri: str | None = None
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        """The File resource as Gemini sends it (int64 sizeBytes as a string)."""
        out: dict[str, Any] = {
            "name": self.name, "mimeType": self.mime_type, "sizeBytes": str(len(self.data)),
            "createTime": _stamp(self.created), "updateTime": _stamp(self.created),
            "expirationTime": _stamp(self.created + FILE_TTL),
            "sha256Hash": base64.b64encode(hashlib.sha256(self.data).digest()).decode(),
            "uri": self.uri, "state": "ACTIVE", "source": self.source,
        }
        if self.display_name:
            out["displayName"] = self.display_name
        if self.download_uri:
            out["downloadUri"] = self.download_uri
        return out


@dataclass
class _Upload:
    """A resumable upload session between ``start`` and ``finalize``."""

    mime_type: str
    display_name: str
    declared: int | None
    uri_base: str  # scheme://host/{version}
    name: str
    data: bytearray = field(default_factory=bytearray)


@dataclass
class _Line:
    """One batch request: its key (file input) or metadata (inline), request or parse error."""

    key: str | None
    metadata: Any
    request: dict[str, Any] | None
    error: ApiError | None = None


@dataclass
class BatchJob:
    """One batch job and its state (``emu.batch.jobs[name]``).

    polls: batches.get calls so far; running_from: polls before RUNNING was first seen;
    since: time.monotonic() when the current state began; results: the result entries
    (``{"key"|"metadata", "response"|"error"}``) once SUCCEEDED.
    """

    name: str
    model: str
    display_name: str
    lines: list[_Line]
    src_file: str | None
    input_bytes: int
    state: str = PENDING
    polls: int = 0
    running_from: int = 0
    since: float = field(default_factory=time.monotonic)
    create_time: str = field(default_factory=_now)
    update_time: str = ""
    end_time: str | None = None
    result_file: str | None = None
    results: list[dict[str, Any]] | None = None
    error: dict[str, Any] | None = None

    def enter(self, state: str) -> None:
        """Move to ``state`` now (sets update/end times)."""
        self.state, self.since, self.update_time = state, time.monotonic(), _now()
        if state in TERMINAL:
            self.end_time = self.update_time

    def counts(self) -> dict[str, str]:
        """batchStats: request/successful/failed/pending counts (int64 -> strings)."""
        results = self.results or []
        failed = sum(1 for r in results if "error" in r)
        done = len(results)
        return {"requestCount": str(len(self.lines)), "successfulRequestCount": str(done - failed),
                "failedRequestCount": str(failed), "pendingRequestCount":
                str(0 if self.state in TERMINAL else len(self.lines) - done)}

    def output(self) -> dict[str, Any] | None:
        """GenerateContentBatchOutput once SUCCEEDED: responsesFile or inlinedResponses."""
        if self.state != SUCCEEDED:
            return None
        if self.result_file:
            return {"responsesFile": self.result_file}
        return {"inlinedResponses": {"inlinedResponses": self.results or []}}

    def operation(self) -> dict[str, Any]:
        """The long-running Operation Gemini answers for create / get / list."""
        meta: dict[str, Any] = {
            "@type": BATCH_TYPE, "model": f"models/{self.model}",
            "displayName": self.display_name, "createTime": self.create_time,
            "updateTime": self.update_time or self.create_time,
            "batchStats": self.counts(), "state": self.state, "name": self.name,
        }
        if self.src_file:
            meta["inputConfig"] = {"fileName": self.src_file}
        if self.end_time:
            meta["endTime"] = self.end_time
        op: dict[str, Any] = {"name": self.name, "metadata": meta}
        output = self.output()
        if output is not None:
            meta["output"] = output
            op["response"] = {"@type": OUTPUT_TYPE, **output}
        if self.state in TERMINAL:
            op["done"] = True
        if self.error is not None:
            op["error"] = self.error
        return op


@dataclass
class BatchStats:
    """Files/Batch counters since start or the last reset (``emu.batch.stats``).

    upload_sessions / upload_chunks: resumable starts / chunk POSTs; files_uploaded,
    file_bytes_uploaded: finalized uploads and their bytes; files_deleted; files_downloaded,
    file_bytes_downloaded; file_parts: fileData parts resolved (generateContent and batch
    lines); batch_jobs_created; batch_requests: requests in all created jobs;
    requests_per_job: one count per created job; batch_polls: batches.get calls;
    batch_cancels: cancels of unfinished jobs; batch_deletes;
    responses_by_status / request_bytes: of the Files/Batch endpoints only
    (batchGenerateContent is counted in ``emu.stats`` like generateContent).
    """

    upload_sessions: int = 0
    upload_chunks: int = 0
    files_uploaded: int = 0
    file_bytes_uploaded: int = 0
    files_deleted: int = 0
    files_downloaded: int = 0
    file_bytes_downloaded: int = 0
    file_parts: int = 0
    batch_jobs_created: int = 0
    batch_requests: int = 0
    requests_per_job: list[int] = field(default_factory=list)
    batch_polls: int = 0
    batch_cancels: int = 0
    batch_deletes: int = 0
    responses_by_status: dict[int, int] = field(default_factory=dict)
    request_bytes: int = 0

    def reset(self) -> None:
        """Zero every counter in place."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(BatchStats(), f.name))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = dataclasses.asdict(self)
        out["responses_by_status"] = {str(k): v for k, v in self.responses_by_status.items()}
        return out


def parse_jsonl(data: bytes) -> list[_Line]:
    """Batch input lines ``{"key": str, "request": GenerateContentRequest}`` (blank lines
    skipped); a line that is not such a JSON object becomes a 400 line error."""
    lines: list[_Line] = []
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            obj = None
        request = obj.get("request") if isinstance(obj, dict) else None
        key = obj.get("key") if isinstance(obj, dict) else None
        key = None if key is None else str(key)
        if isinstance(request, dict):
            lines.append(_Line(key, None, request))
        else:
            lines.append(_Line(key, None, None, ApiError(400, "Invalid JSON payload received.")))
    return lines


def _inline_lines(requests: Any) -> list[_Line]:
    """Inline ``{"requests": [{"request": ..., "metadata": ...}]}`` entries as lines."""
    items = requests.get("requests") if isinstance(requests, dict) else None
    lines: list[_Line] = []
    for item in items if isinstance(items, list) else []:
        request = item.get("request") if isinstance(item, dict) else None
        metadata = item.get("metadata") if isinstance(item, dict) else None
        error = None if isinstance(request, dict) else ApiError(400, "Request is missing.")
        lines.append(_Line(None, metadata, request if error is None else None, error))
    return lines


def _page(items: list[Any], query: Any) -> tuple[list[Any], str | None]:
    """Offset paging: pageSize (default 10, at most 100) and pageToken (an offset)."""
    try:
        size = min(MAX_PAGE_SIZE, max(1, int(query.get("pageSize", DEFAULT_PAGE_SIZE))))
        start = max(0, int(query.get("pageToken") or 0))
    except ValueError as exc:
        raise ApiError(400, "Invalid page size or token.") from exc
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


Handler = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]


class BatchApi:
    """Files + Batch API state of one GeminiEmulator (``emu.batch``).

    Python API for tests: ``files`` (name -> StoredFile), ``jobs`` (name -> BatchJob),
    ``stats`` (BatchStats), ``files_live``; ``add_file(data, mime)``; ``force(name, state)``;
    ``configure(**settings)``. Settings (plain attributes, deterministic by default):

    pending_polls: batches.get calls that still see PENDING (default 1; None: poll count
        never advances it); running_polls: the following gets that see RUNNING (default 1);
    pending_seconds / running_seconds: or advance after this long in the state (None: off);
        whichever of polls / seconds comes first advances the job, checked on each get;
    end_state: where jobs end on their own: SUCCEEDED (default), FAILED or EXPIRED;
    missing_file_status: HTTP code for a missing/deleted file (403 as Gemini; 404, 400 ...).
    """

    def __init__(self, emulator: GeminiEmulator) -> None:
        self._emu = emulator
        self.files: dict[str, StoredFile] = {}
        self.jobs: dict[str, BatchJob] = {}
        self.stats = BatchStats()
        self._uploads: dict[str, _Upload] = {}
        self.pending_polls: int | None = 1
        self.running_polls: int | None = 1
        self.pending_seconds: float | None = None
        self.running_seconds: float | None = None
        self.end_state = SUCCEEDED
        self.missing_file_status = 403

    @property
    def files_live(self) -> int:
        """Files currently stored (uploaded and generated, not deleted)."""
        return len(self.files)

    # ----- Python control API ----------------------------------------------------------
    def configure(self, **changes: Any) -> dict[str, Any]:
        """Set settings by name (see class docstring); returns all settings."""
        for key, value in changes.items():
            if key not in self.settings():
                raise ValueError(f"unknown batch setting {key!r}")
            if key == "end_state":
                value = _state_name(value)
                if value not in (SUCCEEDED, FAILED, EXPIRED):
                    raise ValueError("end_state must be SUCCEEDED, FAILED or EXPIRED")
            setattr(self, key, value)
        return self.settings()

    def settings(self) -> dict[str, Any]:
        """The current settings as a dict."""
        names = ("pending_polls", "running_polls", "pending_seconds", "running_seconds",
                 "end_state", "missing_file_status")
        return {n: getattr(self, n) for n in names}

    def add_file(self, data: bytes, mime_type: str, display_name: str = "") -> StoredFile:
        """Store a file directly (as if uploaded) and return it."""
        name = f"files/{_new_id(12)}"
        stored = StoredFile(name, bytes(data), mime_type, display_name,
                            f"{self._emu.base_url}/v1/{name}")
        self.files[name] = stored
        return stored

    def force(self, name: str, state: str) -> BatchJob:
        """Put job ``name`` in ``state`` now: SUCCEEDED (answers its requests), FAILED,
        EXPIRED, CANCELLED or RUNNING (accepts BATCH_STATE_/JOB_STATE_ prefixes)."""
        job = self._job(name)
        target = _state_name(state)
        if target == RUNNING:
            job.enter(RUNNING)
            job.running_from = job.polls
        elif target in TERMINAL:
            parsed = self._parse_lines(job) if target == SUCCEEDED else []
            self._finish(job, parsed, target, "v1")
        else:
            raise ValueError(f"cannot force state {state!r}")
        return job

    # ----- MediaSource (gemini.parse_generate) -------------------------------------------
    def probe(self, data: bytes, mime_type: str) -> _Image:
        """Inline data: PDF/audio/video described by probe_media, the rest by probe_image."""
        return probe_media(data, mime_type) if is_media_type(mime_type) else probe_image(
            data, mime_type)

    def file_part(self, file_data: dict[str, Any]) -> _Image:
        """A ``fileData`` part: the stored file's bytes, probed under the part's MIME type."""
        uri = str(_get(file_data, "fileUri", "file_uri") or "")
        stored = self._file(uri)
        self.stats.file_parts += 1
        mime = str(_get(file_data, "mimeType", "mime_type") or stored.mime_type)
        return self.probe(stored.data, mime)

    # ----- routes ----------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        """Register the Files/Batch routes (batchGenerateContent goes via gemini's router)."""
        r = app.router
        r.add_post("/upload/{version}/files", self._route(self._upload, key=False, upload=True))
        r.add_get("/{version}/files", self._route(self._list_files))
        r.add_get("/{version}/files/{name}", self._route(self._get_file))
        r.add_delete("/{version}/files/{name}", self._route(self._delete_file))
        r.add_get("/download/{version}/files/{name}", self._route(self._get_file))
        r.add_get("/{version}/batches", self._route(self._list_jobs))
        r.add_get("/{version}/batches/{name}", self._route(self._get_job))
        r.add_post("/{version}/batches/{name}", self._route(self._cancel_job))
        r.add_delete("/{version}/batches/{name}", self._route(self._delete_job))
        r.add_get("/_emulator/batch", self._handle_control)
        r.add_post("/_emulator/batch", self._handle_configure)
        r.add_post("/_emulator/batch/force", self._handle_force)

    def _route(self, handler: Handler, key: bool = True,
               upload: bool = False) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap a handler: read the body, check the key, turn ApiError into Google JSON."""

        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                body = await request.read()
                self.stats.request_bytes += len(body)
                if key:
                    self._emu._check_key(request)
                response = await handler(request, body)
            except ApiError as err:
                response = web.json_response(err.body(), status=err.code)
                if upload:
                    response.headers["X-Goog-Upload-Status"] = "final"
            counts = self.stats.responses_by_status
            counts[response.status] = counts.get(response.status, 0) + 1
            return response

        return handle

    # ----- Files API -------------------------------------------------------------------
    def _missing(self, file_id: str) -> ApiError:
        return ApiError(self.missing_file_status, f"You do not have permission to access the "
                                                  f"File {file_id} or it may not exist.")

    def _file(self, name: str) -> StoredFile:
        file_id = _short_id(name, "files")
        stored = self.files.get(f"files/{file_id}")
        if stored is None:
            raise self._missing(file_id)
        return stored

    async def _upload(self, request: web.Request, body: bytes) -> web.Response:
        if "upload_id" in request.query:
            return self._upload_chunk(request, body)
        self._emu._check_key(request)
        return self._upload_start(request, body)

    def _upload_start(self, request: web.Request, body: bytes) -> web.Response:
        """``X-Goog-Upload-Command: start``: open a session, answer its URL in a header."""
        if request.headers.get("X-Goog-Upload-Protocol", "").lower() != "resumable":
            raise ApiError(400, "Only the resumable upload protocol is emulated.")
        meta = _load_json(body).get("file") if body.strip() else None
        meta = meta if isinstance(meta, dict) else {}
        declared = request.headers.get("X-Goog-Upload-Header-Content-Length")
        size = int(declared) if declared and declared.isdigit() else None
        if size is not None and size > MAX_FILE_BYTES:
            raise ApiError(400, f"File size {size} exceeds the limit of {MAX_FILE_BYTES} bytes.")
        mime = (_get(meta, "mimeType", "mime_type")
                or request.headers.get("X-Goog-Upload-Header-Content-Type") or "")
        base = f"{request.scheme}://{request.host}"
        upload_id = _new_id(24)
        self._uploads[upload_id] = _Upload(
            str(mime), str(_get(meta, "displayName", "display_name") or ""), size,
            f"{base}/{request.match_info['version']}", self._new_file_name(meta))
        self.stats.upload_sessions += 1
        url = (f"{base}/upload/{request.match_info['version']}/files?upload_id={upload_id}"
               "&upload_protocol=resumable")
        return web.Response(headers={"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"})

    def _new_file_name(self, meta: dict[str, Any]) -> str:
        wanted = meta.get("name")
        if not wanted:
            return f"files/{_new_id(12)}"
        file_id = _short_id(str(wanted), "files")
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?", file_id) or (
                f"files/{file_id}" in self.files):
            raise ApiError(400, f"Invalid or existing file name: {wanted}")
        return f"files/{file_id}"

    def _upload_chunk(self, request: web.Request, body: bytes) -> web.Response:
        """``upload`` / ``upload, finalize`` / ``query`` on a session URL (no key needed)."""
        upload_id = request.query["upload_id"]
        session = self._uploads.get(upload_id)
        if session is None:
            raise ApiError(404, "Upload session not found.")
        commands = {c.strip().lower()
                    for c in request.headers.get("X-Goog-Upload-Command", "").split(",")}
        if "upload" in commands:
            self._append(session, request, body)
        if "finalize" in commands:
            del self._uploads[upload_id]
            stored = self._store_upload(session)
            return web.json_response({"file": stored.to_json()},
                                     headers={"X-Goog-Upload-Status": "final"})
        return web.Response(headers={"X-Goog-Upload-Status": "active",
                                     "X-Goog-Upload-Size-Received": str(len(session.data))})

    def _append(self, session: _Upload, request: web.Request, body: bytes) -> None:
        offset = request.headers.get("X-Goog-Upload-Offset", str(len(session.data)))
        if offset != str(len(session.data)):
            raise ApiError(400, f"Invalid upload offset {offset}; expected {len(session.data)}.")
        if len(session.data) + len(body) > MAX_FILE_BYTES:
            raise ApiError(400, f"File exceeds the limit of {MAX_FILE_BYTES} bytes.")
        session.data += body
        self.stats.upload_chunks += 1

    def _store_upload(self, session: _Upload) -> StoredFile:
        if session.declared is not None and session.declared != len(session.data):
            raise ApiError(400, f"Uploaded {len(session.data)} bytes, declared "
                                f"{session.declared}.")
        stored = StoredFile(session.name, bytes(session.data), session.mime_type,
                            session.display_name, f"{session.uri_base}/{session.name}")
        self.files[stored.name] = stored
        self.stats.files_uploaded += 1
        self.stats.file_bytes_uploaded += len(stored.data)
        return stored

    async def _get_file(self, request: web.Request, body: bytes) -> web.Response:
        name = request.match_info["name"]
        if name.endswith(":download"):
            return self._download(name.removesuffix(":download"))
        return web.json_response(self._file(name).to_json())

    def _download(self, name: str) -> web.Response:
        stored = self._file(name)
        self.stats.files_downloaded += 1
        self.stats.file_bytes_downloaded += len(stored.data)
        ctype = stored.mime_type if "/" in stored.mime_type else "application/octet-stream"
        return web.Response(body=stored.data, content_type=ctype)

    async def _delete_file(self, request: web.Request, body: bytes) -> web.Response:
        stored = self._file(request.match_info["name"])
        del self.files[stored.name]
        self.stats.files_deleted += 1
        return web.json_response({})

    async def _list_files(self, request: web.Request, body: bytes) -> web.Response:
        page, token = _page(list(self.files.values()), request.query)
        out: dict[str, Any] = {"files": [f.to_json() for f in page]}
        if token:
            out["nextPageToken"] = token
        return web.json_response(out)

    # ----- Batch API ---------------------------------------------------------------------
    async def create(self, model: str, body: bytes) -> dict[str, Any]:
        """batchGenerateContent (dispatched by GeminiEmulator after its key check)."""
        batch = _load_json(body).get("batch")
        batch = batch if isinstance(batch, dict) else {}
        config = _get(batch, "inputConfig", "input_config")
        config = config if isinstance(config, dict) else {}
        file_name = _get(config, "fileName", "file_name")
        if file_name:
            data = self._file(str(file_name)).data
            lines = (await asyncio.to_thread(parse_jsonl, data)
                     if len(data) > THREAD_DECODE_BYTES else parse_jsonl(data))
        elif "requests" in config:
            if len(body) > MAX_REQUEST_BYTES:
                raise ApiError(400, MSG_TOO_LARGE)
            data, lines = body, _inline_lines(config["requests"])
        else:
            raise ApiError(400, MSG_NO_BATCH_INPUT)
        if not lines:
            raise ApiError(400, MSG_EMPTY_BATCH)
        return self._new_job(model, batch, lines, file_name, len(data)).operation()

    def _new_job(self, model: str, batch: dict[str, Any], lines: list[_Line],
                 file_name: Any, input_bytes: int) -> BatchJob:
        name = f"batches/{_new_id(36)}"
        src = f"files/{_short_id(str(file_name), 'files')}" if file_name else None
        display = str(_get(batch, "displayName", "display_name") or "")
        job = BatchJob(name, model.removeprefix("models/"), display, lines, src, input_bytes)
        self.jobs[name] = job
        self.stats.batch_jobs_created += 1
        self.stats.batch_requests += len(lines)
        self.stats.requests_per_job.append(len(lines))
        return job

    def _job(self, name: str) -> BatchJob:
        job = self.jobs.get(f"batches/{_short_id(name, 'batches')}")
        if job is None:
            raise ApiError(404, "Requested entity was not found.")
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
            parsed: list[_GenerateRequest | ApiError] = []
            if self.end_state == SUCCEEDED:
                parsed = (await asyncio.to_thread(self._parse_lines, job)
                          if job.input_bytes > THREAD_DECODE_BYTES else self._parse_lines(job))
            self._finish(job, parsed, self.end_state, version)

    @staticmethod
    def _due(job: BatchJob, polls: int, poll_limit: int | None,
             seconds: float | None) -> bool:
        by_polls = poll_limit is not None and polls > poll_limit
        by_time = seconds is not None and time.monotonic() - job.since >= seconds
        return by_polls or by_time

    def _parse_lines(self, job: BatchJob) -> list[_GenerateRequest | ApiError]:
        """Parse every request (decodes images; safe in a worker thread)."""
        out: list[_GenerateRequest | ApiError] = []
        for line in job.lines:
            try:
                if line.error is not None or line.request is None:
                    raise line.error or ApiError(400)
                out.append(parse_payload(job.model, line.request, self))
            except ApiError as err:
                out.append(err)
        return out

    def _answer(self, parsed: _GenerateRequest | ApiError) -> dict[str, Any]:
        """``{"response": ...}`` or ``{"error": ...}`` for one parsed request; applies the
        emulator's per-image scripts (fail:CODE, block, safety, ...; no sleeps or faults)."""
        if isinstance(parsed, ApiError):
            return {"error": parsed.body()["error"]}
        behaviour = self._emu._scripts.get(parsed.images[0].sha256) if parsed.images else None
        try:
            self._emu._fail_if_due(behaviour, faults=False)
        except ApiError as err:
            return {"error": err.body()["error"]}
        return {"response": build_response(parsed, behaviour.kind if behaviour else None)}

    def _finish(self, job: BatchJob, parsed: list[_GenerateRequest | ApiError], state: str,
                version: str) -> None:
        """End ``job`` in ``state``; SUCCEEDED answers every request and stores results."""
        if state == SUCCEEDED:
            job.results = [self._entry(line, self._answer(p))
                           for line, p in zip(job.lines, parsed, strict=True)]
            if job.src_file is not None:
                job.result_file = self._store_results(job, job.results, version).name
        elif state == FAILED:
            job.error = ApiError(500, MSG_BATCH_FAILED).body()["error"]
        job.enter(state)

    @staticmethod
    def _entry(line: _Line, answer: dict[str, Any]) -> dict[str, Any]:
        if line.metadata is not None:
            return {**answer, "metadata": line.metadata}
        return {"key": line.key, **answer} if line.key is not None else answer

    def _store_results(self, job: BatchJob, results: Iterable[dict[str, Any]],
                       version: str) -> StoredFile:
        name = f"files/batch-{_short_id(job.name, 'batches')}"
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in results).encode()
        base = f"{self._emu.base_url}/{version}/{name}"
        stored = StoredFile(name, data, "application/jsonl", f"{job.display_name} responses",
                            base, "GENERATED", f"{base}:download?alt=media")
        self.files[name] = stored
        return stored

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
        page, token = _page(list(self.jobs.values()), request.query)
        out: dict[str, Any] = {"operations": [j.operation() for j in page]}
        if token:
            out["nextPageToken"] = token
        return web.json_response(out)

    # ----- control endpoints -------------------------------------------------------------
    async def _handle_control(self, request: web.Request) -> web.Response:
        """GET /_emulator/batch: settings, stats (with files_live), jobs and files."""
        stats = {**self.stats.to_dict(), "files_live": self.files_live}
        jobs = [{"name": j.name, "state": j.state, "requests": len(j.lines), "polls": j.polls,
                 "result_file": j.result_file} for j in self.jobs.values()]
        files = [{"name": f.name, "mimeType": f.mime_type, "sizeBytes": len(f.data),
                  "source": f.source} for f in self.files.values()]
        return web.json_response({"settings": self.settings(), "stats": stats, "jobs": jobs,
                                  "files": files})

    async def _handle_configure(self, request: web.Request) -> web.Response:
        """POST /_emulator/batch {"pending_polls": 0, ...}: change settings."""
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            return web.json_response(self.configure(**changes))
        except (ValueError, TypeError) as exc:
            return web.json_response(ApiError(400, str(exc)).body(), status=400)

    async def _handle_force(self, request: web.Request) -> web.Response:
        """POST /_emulator/batch/force {"name": "batches/..", "state": "EXPIRED"}."""
        try:
            payload = await request.json()
            job = self.force(str(payload["name"]), str(payload["state"]))
        except (ValueError, TypeError, KeyError) as exc:
            return web.json_response(ApiError(400, str(exc)).body(), status=400)
        except ApiError as err:
            return web.json_response(err.body(), status=err.code)
        return web.json_response(job.operation())


def _state_name(state: str) -> str:
    """Normalise a state: EXPIRED, JOB_STATE_EXPIRED, BATCH_STATE_EXPIRED -> BATCH_STATE_EXPIRED."""
    bare = str(state).upper().removeprefix("JOB_STATE_").removeprefix("BATCH_STATE_")
    return f"BATCH_STATE_{bare}"
