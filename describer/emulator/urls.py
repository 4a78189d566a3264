"""``fileData`` parts that name an http(s) URL: fetched by the emulator, as Gemini does.

Since 2026-01-08 the Gemini API fetches public and pre-signed HTTP(S) URLs given as
``fileData: {fileUri: "https://...", mimeType}`` (google-genai
``types.Part.from_uri(file_uri=..., mime_type=...)``) itself, on every endpoint including
the Batch API, for Gemini 2.5 and later (Gemini API changelog 2026-01-08;
ai.google.dev/gemini-api/docs/file-input-methods, "External HTTP / Signed URLs": "ideal for
files up to 100MB"). Figures and where they come from:

* MAX_URL_BYTES, 100 MB per fetched file: that page. The emulator reads it as 100 * 2**20
  bytes and refuses a larger body (by Content-Length or as it streams in).
* MSG_URL_FETCH, the 400 INVALID_ARGUMENT for a URL Gemini cannot fetch: "Cannot fetch
  content from the provided URL", as users report it verbatim (maximhq/bifrost pull request
  #1989, 2026-03-08, intermittent 400s on signed GCS URLs). Google documents no message;
  the emulator gives this one for every failed fetch: connection refused or reset, a
  non-2xx answer, a timeout (FETCH_TIMEOUT_S, the emulator's choice; Google documents
  none), or a body over MAX_URL_BYTES.
* Bytes that arrive but are not an image Gemini accepts are answered like the same bytes
  inline (media.probe: 400 "Unable to process input image..."). What Gemini says then is
  undocumented; either way it is a 400 INVALID_ARGUMENT, which is what a client acts on.
* A missing ``mimeType`` is taken from the answer's Content-Type (the harsher reading
  would be a 400; Gemini's own behaviour here is undocumented).
* A fileUri of the Files API is not fetched but resolved as a stored file: one on
  generativelanguage.googleapis.com, or one under the emulator's own base URL (whose Files
  API hands out ``{base}/v1/files/ID`` URIs).
* Redirects are followed (aiohttp's default, at most 10): pre-signed URLs often redirect.

The fetch runs on the emulator's own aiohttp session, so URLs on 127.0.0.1 (the tests'
ImageServer) work; Gemini could of course never reach those.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import aiohttp

from .contents import FileParts, parts
from .media import Media, probe
from .wire import ApiError, get_field

MAX_URL_BYTES = 100 * 1024 * 1024  # Gemini: external URLs up to 100 MB per file.
MSG_URL_FETCH = "Cannot fetch content from the provided URL"
FETCH_TIMEOUT_S = 30.0  # emulator choice: Google documents no fetch timeout.
_CHUNK = 256 * 1024


FILES_API_HOST = "generativelanguage.googleapis.com"


def is_url(uri: Any, own_base: str = "") -> bool:
    """True for an http:// or https:// fileUri (any case) that is not a Files API URI
    (on FILES_API_HOST, or under ``own_base``, the emulator's base URL)."""
    if not isinstance(uri, str) or not uri[:8].lower().startswith(("http://", "https://")):
        return False
    host = uri.split("://", 1)[1].split("/", 1)[0].lower()
    return host != FILES_API_HOST and not (own_base and uri.startswith(own_base + "/"))


def _file_uri(part: dict[str, Any]) -> Any:
    file_data = get_field(part, "fileData", "file_data")
    return get_field(file_data, "fileUri", "file_uri") if isinstance(file_data, dict) else None


def url_uris(payload: Any, own_base: str = "") -> list[str]:
    """The distinct http(s) fileUris to fetch (:func:`is_url`) in a GenerateContentRequest
    dict's contents, in order."""
    contents = payload.get("contents") if isinstance(payload, dict) else None
    seen: dict[str, None] = {}
    for content in contents if isinstance(contents, list) else []:
        for part in parts(content):
            uri = _file_uri(part)
            if is_url(uri, own_base):
                seen[uri] = None
    return list(seen)


@dataclasses.dataclass(frozen=True, slots=True)
class Fetched:
    """One fetched URL: its body and the answer's Content-Type (without parameters)."""

    data: bytes
    content_type: str


async def fetch(session: aiohttp.ClientSession, uri: str) -> Fetched:
    """GET ``uri``; ApiError 400 MSG_URL_FETCH if it cannot be fetched (module docstring)."""
    try:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        async with session.get(uri, timeout=timeout) as resp:
            if not 200 <= resp.status < 300:
                raise ApiError(400, MSG_URL_FETCH)
            if (resp.content_length or 0) > MAX_URL_BYTES:
                raise ApiError(400, MSG_URL_FETCH)
            body = bytearray()
            async for chunk in resp.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > MAX_URL_BYTES:
                    raise ApiError(400, MSG_URL_FETCH)
            return Fetched(bytes(body), resp.content_type or "")
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        raise ApiError(400, MSG_URL_FETCH) from exc


async def fetch_all(session: aiohttp.ClientSession, uris: list[str]) -> dict[str, Fetched]:
    """Every URL fetched at once; the first failure's ApiError 400 (the rest are dropped)."""
    results = await asyncio.gather(*(fetch(session, u) for u in uris))
    return dict(zip(uris, results, strict=True))


async def fetch_each(session: aiohttp.ClientSession,
                     uris: list[str]) -> dict[str, Fetched | ApiError]:
    """Every URL fetched at once, each to its Fetched or its ApiError 400 (batch lines fail
    one by one)."""
    results = await asyncio.gather(*(fetch(session, u) for u in uris), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, ApiError):
            raise result
    return dict(zip(uris, results, strict=True))  # type: ignore[arg-type]


class UrlParts:
    """A FileParts resolving http(s) fileUris from ``fetched`` and the rest with ``files``.

    ``fetched`` maps each URL to its Fetched answer or the ApiError its fetch raised (raised
    again here). A URL part is probed like inline bytes under the part's mimeType (else the answer's
    Content-Type) and comes back with ``source="url"``.
    """

    def __init__(self, files: FileParts | None, fetched: dict[str, Fetched | ApiError],
                 own_base: str = "") -> None:
        self._files = files
        self._fetched = fetched
        self._own_base = own_base

    def file_part(self, file_data: dict[str, Any]) -> Media:
        uri = get_field(file_data, "fileUri", "file_uri")
        external = is_url(uri, self._own_base)
        got = self._fetched.get(uri) if external else None
        if got is None:
            if external or self._files is None:
                raise ApiError(400, MSG_URL_FETCH)
            return self._files.file_part(file_data)
        if isinstance(got, ApiError):
            raise got
        mime = str(get_field(file_data, "mimeType", "mime_type") or got.content_type)
        return dataclasses.replace(probe(got.data, mime), source="url")
