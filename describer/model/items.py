"""The items stages pass along before a record is made: sources, media, tokens, answers,
and the typed errors a record can carry. (The record itself, :class:`~.records.Result`,
is in :mod:`.records`.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ErrorType(StrEnum):
    """The ``error.type`` values a record can carry (documented in the README)."""

    INVALID_SOURCE = "invalid_source"  # neither a URL nor an existing path; unsupported scheme
    HTTP_ERROR = "http_error"  # the image host answered 4xx/5xx
    DOWNLOAD_ERROR = "download_error"  # connection failed, redirect loop, broken transfer
    TIMEOUT = "timeout"  # download or model call took longer than its timeout
    TOO_LARGE = "too_large"  # over --max-bytes, over the inline limit, decompression bomb
    NOT_AN_IMAGE = "not_an_image"  # empty, HTML, text or unknown bytes
    UNSUPPORTED_FORMAT = "unsupported_format"  # a known format Gemini cannot take (e.g. SVG)
    CORRUPT_IMAGE = "corrupt_image"  # truncated or undecodable image data
    BLOCKED = "blocked"  # prompt or answer blocked by safety filters
    MAX_TOKENS = "max_tokens"  # answer cut at --max-output-tokens (partial text kept)
    EMPTY_RESPONSE = "empty_response"  # the model answered with no text
    INVALID_OUTPUT = "invalid_output"  # --schema: the answer is not JSON valid under it
    RATE_LIMITED = "rate_limited"  # 429 RESOURCE_EXHAUSTED from the API
    API_ERROR = "api_error"  # any other error from the Gemini API or the connection to it
    INTERNAL_ERROR = "internal_error"  # a bug in describer; logged with its traceback on stderr


@dataclass(frozen=True, slots=True)
class ItemError:
    """A per-item failure as written in the record: ``{"type": ..., "message": ...}``."""

    type: ErrorType
    message: str

    def to_json(self) -> dict[str, str]:
        """The JSON shape of ``error`` in a record."""
        return {"type": str(self.type), "message": self.message}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ItemError:
        """Read ``{"type", "message"}``; an unknown type reads as ``api_error``."""
        kind = data.get("type")
        known = kind in ErrorType._value2member_map_
        return cls(ErrorType(kind) if known else ErrorType.API_ERROR, str(data.get("message", "")))


class SourceKind(StrEnum):
    """What a source points at."""

    URL = "url"
    PATH = "path"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Source:
    """One item to describe.

    ``ref`` is the source as the user wrote it (the record's ``source``); ``location`` is the URL
    or the absolute path; for an ``INVALID`` source, ``problem`` says why. A table row
    (:mod:`describer.tables`) also carries ``id`` (its ``--id-col`` value as text: the
    record's ``id`` and its resume key) and ``meta`` (its ``--keep-cols``, JSON-safe values).
    """

    ref: str
    kind: SourceKind
    location: str
    problem: str | None = None
    id: str | None = None
    meta: Mapping[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True, slots=True)
class Media:
    """What was sent (or, as ``original``, what was downloaded): an image, PDF, audio or video.

    ``width``/``height`` are in pixels as displayed (EXIF orientation applied), ``None`` for
    documents, audio and video; ``bytes`` is the size of the encoded data; ``pages`` counts a
    PDF's ``/Type /Page`` objects (0 for other media). ``sent_as``, for what was sent:
    ``bytes`` (inline), ``file`` (a Files API upload) or ``url`` (the URL, for Gemini to
    fetch: ``bytes`` is then the size the server declared, 0 when it declared none).
    """

    mime_type: str
    width: int | None
    height: int | None
    bytes: int
    pages: int = 0
    sent_as: str | None = None

    @property
    def kind(self) -> str:
        """``image``, ``pdf``, ``audio`` or ``video``, from the MIME type."""
        if self.mime_type == "application/pdf":
            return "pdf"
        return self.mime_type.split("/", 1)[0]

    def to_json(self) -> dict[str, str | int | None]:
        """The JSON shape of ``image`` in a record (``pages`` only for PDFs)."""
        shape: dict[str, str | int | None] = {
            "mime_type": self.mime_type,
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
        }
        if self.kind == "pdf":
            shape["pages"] = self.pages
        if self.sent_as is not None:
            shape["sent_as"] = self.sent_as
        return shape

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Media:
        """Read what :meth:`to_json` wrote (extra keys such as ``original`` are ignored)."""
        return cls(data["mime_type"], data.get("width"), data.get("height"), data["bytes"],
                   data.get("pages", 0), data.get("sent_as"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Prepared:
    """Bytes ready for ``types.Part.from_bytes``; ``original`` is set when they were
    re-encoded. With ``url`` set (``--send url``), ``data`` is empty: the URL goes to Gemini
    as ``file_data``, and ``content`` names what it pointed at (the URL, its validators).
    """

    data: bytes
    media: Media
    original: Media | None = None
    url: str | None = None
    content: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call, from the response's ``usage_metadata``: ``input_tokens`` (prompt
    incl. media, cached ones included), ``output_tokens`` (answer plus thinking, as billed),
    ``thinking_tokens`` (``thoughts_token_count``, the part of ``output_tokens`` spent
    thinking) and ``cached_tokens`` (``cached_content_token_count``, the part of
    ``input_tokens`` read from a context cache, billed at the cached price)."""

    input_tokens: int
    output_tokens: int
    thinking_tokens: int = 0
    cached_tokens: int = 0

    def to_json(self) -> dict[str, int]:
        """The JSON shape of ``usage`` in a record."""
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "thinking_tokens": self.thinking_tokens, "cached_tokens": self.cached_tokens}

    def __add__(self, other: Usage) -> Usage:
        """The tokens of two calls together (an item asked twice: both are billed)."""
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens,
                     self.thinking_tokens + other.thinking_tokens,
                     self.cached_tokens + other.cached_tokens)  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Usage:
        """Read what :meth:`to_json` wrote (records older than thinking_tokens read 0)."""
        return cls(int(data.get("input_tokens", 0)), int(data.get("output_tokens", 0)),
                   int(data.get("thinking_tokens", 0)), int(data.get("cached_tokens", 0)))


@dataclass(frozen=True, slots=True)
class Answer:
    """What the model said about one item; ``error`` is set when there is no usable text
    (blocked, cut, empty) or when the call itself failed after its retries.

    ``attempts`` counts the model calls made; ``latency_ms`` is the wall time of the last
    (``None`` for Batch API answers and failed calls). ``data`` is the parsed answer when a
    ``--schema`` was asked for and the text is valid under it (describer.schema).
    """

    text: str | None
    finish_reason: str | None
    usage: Usage | None
    latency_ms: int | None
    error: ItemError | None = None
    attempts: int = 1
    data: Any = None

    @classmethod
    def failed(cls, error: ItemError, attempts: int) -> Answer:
        """No answer: the call failed ``attempts`` times, the last with ``error``."""
        return cls(None, None, None, None, error, attempts)
