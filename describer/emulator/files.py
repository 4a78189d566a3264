"""Files API of the Gemini emulator (``emu.files``): resumable uploads, get, list, download,
delete, and the ``fileData`` parts that name a stored file.

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
* ``generateContent`` with ``Part.from_uri``: ``{"fileData": {"file_uri": ..., "mime_type":
  ...}}`` (camelCase key, snake_case fields).

Figures and where they come from:

* 2 GB per file (Files API limit; also the Batch API's input-file limit); files expire
  48 hours after upload (Files API: files are stored for 48 hours).
* A missing or deleted file answers 403 PERMISSION_DENIED "You do not have permission to
  access the File ID or it may not exist." as Gemini does (googleapis/python-genai#1218,
  google-gemini/deprecated-generative-ai-js#236); ``missing_file_status`` changes the code.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from .behaviour import Behaviour
from .media import Media, probe
from .stats import BatchStats
from .wire import ApiError, api_route, get_field, load_json, new_id, page, short_id, stamp

MAX_FILE_BYTES = 2 * 1024**3  # Files API: 2 GB per file (also the batch input-file limit).
FILE_TTL = timedelta(hours=48)  # Files API: files are stored for 48 hours.
_FILE_ID = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")


@dataclass
class StoredFile:
    """One file in the Files API store (bytes kept in memory).

    name: ``files/<id>``; uri: what File.uri says (``{base}/{v}/files/<id>``); source:
    UPLOADED or GENERATED (batch results); download_uri: set for generated files.
    """

    name: str
    data: bytes
    mime_type: str
    display_name: str
    uri: str
    source: str = "UPLOADED"
    download_uri: str | None = None
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        """The File resource as Gemini sends it (int64 sizeBytes as a string)."""
        out: dict[str, Any] = {
            "name": self.name, "mimeType": self.mime_type, "sizeBytes": str(len(self.data)),
            "createTime": stamp(self.created), "updateTime": stamp(self.created),
            "expirationTime": stamp(self.created + FILE_TTL),
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


class FilesApi:
    """Files API state and routes of one GeminiEmulator (``emu.files``).

    Python API for tests: ``files`` (name -> StoredFile), ``stats`` (BatchStats, shared with
    the Batch API), ``live``, ``add_file(data, mime)``, ``get(name)``, ``configure(**settings)``.
    Settings: ``missing_file_status``, the HTTP code for a missing/deleted file (403 as
    Gemini); ``fail_uploads_from``: None (default), or N to make the N-th upload start
    (1-based, counted since the emulator began) and every later one answer 503 UNAVAILABLE
    (Gemini's "The service is currently unavailable."), retries included, so a client's
    N-th upload fails for good; reset it to None to let uploads through again.
    ``base_url`` returns the emulator's URL (used in the ``uri`` of files added directly).
    """

    def __init__(self, behaviour: Behaviour, stats: BatchStats,
                 base_url: Callable[[], str]) -> None:
        self.files: dict[str, StoredFile] = {}
        self.stats = stats
        self.missing_file_status = 403
        self.fail_uploads_from: int | None = None
        self._upload_starts = 0
        self._behaviour = behaviour
        self._base_url = base_url
        self._uploads: dict[str, _Upload] = {}

    @property
    def live(self) -> int:
        """Files currently stored (uploaded and generated, not deleted)."""
        return len(self.files)

    # ----- Python control API ----------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The current settings as a dict."""
        return {"missing_file_status": self.missing_file_status,
                "fail_uploads_from": self.fail_uploads_from}

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Set settings by name (see class docstring); ValueError for an unknown name."""
        for key, value in changes.items():
            if key not in self.settings():
                raise ValueError(f"unknown files setting {key!r}")
            setattr(self, key, value)
        return self.settings()

    def add_file(self, data: bytes, mime_type: str, display_name: str = "") -> StoredFile:
        """Store a file directly (as if uploaded with API version v1) and return it."""
        name = f"files/{new_id(12)}"
        stored = StoredFile(name, bytes(data), mime_type, display_name,
                            f"{self._base_url()}/v1/{name}")
        return self.put(stored)

    def put(self, stored: StoredFile) -> StoredFile:
        """Store ``stored`` under its name (replacing any file of that name); return it."""
        self.files[stored.name] = stored
        return stored

    def get(self, name: str) -> StoredFile:
        """The file ``files/ID``, ``ID`` or ``.../files/ID`` (a URI) names; ApiError
        ``missing_file_status`` (403) "You do not have permission ..." if there is none."""
        file_id = short_id(name, "files")
        stored = self.files.get(f"files/{file_id}")
        if stored is None:
            raise ApiError(self.missing_file_status, f"You do not have permission to access "
                                                     f"the File {file_id} or it may not exist.")
        return stored

    def file_part(self, file_data: dict[str, Any]) -> Media:
        """A ``fileData`` part: the stored file's bytes, probed under the part's MIME type."""
        stored = self.get(str(get_field(file_data, "fileUri", "file_uri") or ""))
        self.stats.file_parts += 1
        mime = str(get_field(file_data, "mimeType", "mime_type") or stored.mime_type)
        return probe(stored.data, mime)

    # ----- routes ----------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        """Register the Files API routes on ``app``."""
        key = self._behaviour.check_key
        r = app.router
        r.add_post("/upload/{version}/files", api_route(self._upload, self.stats, upload=True))
        r.add_get("/{version}/files", api_route(self._list, self.stats, key))
        r.add_get("/{version}/files/{name}", api_route(self._get, self.stats, key))
        r.add_delete("/{version}/files/{name}", api_route(self._delete, self.stats, key))
        r.add_get("/download/{version}/files/{name}", api_route(self._get, self.stats, key))

    async def _upload(self, request: web.Request, body: bytes) -> web.Response:
        if "upload_id" in request.query:
            return self._upload_chunk(request, body)
        self._behaviour.check_key(request)
        self._upload_starts += 1
        if self.fail_uploads_from is not None and self._upload_starts >= self.fail_uploads_from:
            raise ApiError(503, "The service is currently unavailable.")
        return self._upload_start(request, body)

    def _upload_start(self, request: web.Request, body: bytes) -> web.Response:
        """``X-Goog-Upload-Command: start``: open a session, answer its URL in a header."""
        if request.headers.get("X-Goog-Upload-Protocol", "").lower() != "resumable":
            raise ApiError(400, "Only the resumable upload protocol is emulated.")
        meta = load_json(body).get("file") if body.strip() else None
        meta = meta if isinstance(meta, dict) else {}
        declared = request.headers.get("X-Goog-Upload-Header-Content-Length")
        size = int(declared) if declared and declared.isdigit() else None
        if size is not None and size > MAX_FILE_BYTES:
            raise ApiError(400, f"File size {size} exceeds the limit of {MAX_FILE_BYTES} bytes.")
        mime = (get_field(meta, "mimeType", "mime_type")
                or request.headers.get("X-Goog-Upload-Header-Content-Type") or "")
        base, version = f"{request.scheme}://{request.host}", request.match_info["version"]
        upload_id = new_id(24)
        self._uploads[upload_id] = _Upload(
            str(mime), str(get_field(meta, "displayName", "display_name") or ""), size,
            f"{base}/{version}", self._new_file_name(meta))
        self.stats.upload_sessions += 1
        url = f"{base}/upload/{version}/files?upload_id={upload_id}&upload_protocol=resumable"
        return web.Response(headers={"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"})

    def _new_file_name(self, meta: dict[str, Any]) -> str:
        wanted = meta.get("name")
        if not wanted:
            return f"files/{new_id(12)}"
        file_id = short_id(str(wanted), "files")
        if not _FILE_ID.fullmatch(file_id) or f"files/{file_id}" in self.files:
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
        stored = self.put(StoredFile(session.name, bytes(session.data), session.mime_type,
                                     session.display_name, f"{session.uri_base}/{session.name}"))
        self.stats.files_uploaded += 1
        self.stats.file_bytes_uploaded += len(stored.data)
        return stored

    async def _get(self, request: web.Request, body: bytes) -> web.Response:
        name = request.match_info["name"]
        if name.endswith(":download"):
            return self._download(name.removesuffix(":download"))
        return web.json_response(self.get(name).to_json())

    def _download(self, name: str) -> web.Response:
        stored = self.get(name)
        self.stats.files_downloaded += 1
        self.stats.file_bytes_downloaded += len(stored.data)
        ctype = stored.mime_type if "/" in stored.mime_type else "application/octet-stream"
        return web.Response(body=stored.data, content_type=ctype)

    async def _delete(self, request: web.Request, body: bytes) -> web.Response:
        stored = self.get(request.match_info["name"])
        del self.files[stored.name]
        self.stats.files_deleted += 1
        return web.json_response({})

    async def _list(self, request: web.Request, body: bytes) -> web.Response:
        items, token = page(list(self.files.values()), request.query)
        out: dict[str, Any] = {"files": [f.to_json() for f in items]}
        if token:
            out["nextPageToken"] = token
        return web.json_response(out)
