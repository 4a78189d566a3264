"""The data every stage passes along: sources in, media, answers and results out.

Nothing here does I/O or imports a stage: ``sources`` makes :class:`Source`, ``prepare``
makes :class:`Prepared` (with its :class:`Media`), the Gemini adapter makes :class:`Answer`,
the pipeline and the Batch API results make :class:`Result`, and ``output`` writes it. Read
back (resume, ``batch fetch``), a record goes through :meth:`Result.from_json`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
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
    or the absolute path; for an ``INVALID`` source, ``problem`` says why.
    """

    ref: str
    kind: SourceKind
    location: str
    problem: str | None = None


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


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one source. Exactly one per distinct source of a run.

    ``description`` is the model's text (``None`` on failure; partial on ``max_tokens``);
    ``error`` is ``None`` on success. ``media`` describes the bytes sent (the record's
    ``image`` key), ``original`` the downloaded file when it was re-encoded. ``latency_ms`` is
    the wall time of the last model call; ``attempts`` counts model calls made (0 when the item
    failed before reaching Gemini). With ``--embed``: ``embedding`` (floats) and
    ``embedding_model``, or ``embedding_error``. With ``--schema`` (``structured``): ``data``,
    the answer parsed and valid under the schema (``None`` when the item failed, e.g. with
    ``invalid_output``; ``description`` keeps the raw text either way). ``cached``: the answer
    came from the result cache (:mod:`describer.cache`) or from an item of the same run with
    the same bytes, and no model call was made for this source: ``usage``, ``latency_ms`` and
    ``attempts`` are those of the call that made the answer, not billed again.
    """

    source: str
    model: str
    prompt: str
    description: str | None = None
    error: ItemError | None = None
    usage: Usage | None = None
    media: Media | None = None
    original: Media | None = None
    finish_reason: str | None = None
    latency_ms: int | None = None
    attempts: int = 0
    embedding: list[float] | None = None
    embedding_model: str | None = None  # set when an embedding was asked for
    embedding_error: ItemError | None = None
    data: Any = None
    structured: bool = False  # set when a schema was asked for: the record has ``data``
    cached: bool = False

    @property
    def ok(self) -> bool:
        """True when the source was described."""
        return self.error is None

    @classmethod
    def described(
        cls,
        source: str,
        model: str,
        prompt: str,
        answer: Answer,
        media: Media | None = None,
        original: Media | None = None,
    ) -> Result:
        """The record for a model answer (which may itself carry an error), about ``media``
        (re-encoded from ``original`` when that is set)."""
        return cls(
            source, model, prompt, answer.text, answer.error, answer.usage, media, original,
            answer.finish_reason, answer.latency_ms, answer.attempts, data=answer.data,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (the schema documented in the README)."""
        image = None
        if self.media is not None:
            image = self.media.to_json()
            image["original"] = self.original.to_json() if self.original else None
        return _source_json(self.source) | {
            "description": self.description,
            "error": self.error.to_json() if self.error else None,
            "model": self.model,
            "prompt": self.prompt,
            "usage": self.usage.to_json() if self.usage else None,
            "image": image,
            "finish_reason": self.finish_reason,
            "latency_ms": self.latency_ms,
            "attempts": self.attempts,
            "cached": self.cached,
        } | ({"data": self.data} if self.structured else {}) | self._embedding_json()

    def _embedding_json(self) -> dict[str, Any]:
        if self.embedding_model is None:
            return {}
        error = self.embedding_error.to_json() if self.embedding_error else None
        return {"embedding": self.embedding, "embedding_model": self.embedding_model,
                "embedding_error": error}  # fmt: skip

    def to_line(self) -> str:
        """The record as one line of JSON, newline included."""
        return json.dumps(self.to_json(), ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        """Read a record written by :meth:`to_json` (records older than ``cached`` read
        ``False``). Raises ``KeyError``/``TypeError``/``ValueError`` when ``data`` is not one
        (see :func:`is_record`)."""
        image = data.get("image")
        original = image.get("original") if isinstance(image, dict) else None
        return cls(
            record_source(data), str(data["model"]), str(data["prompt"]),
            data.get("description"), _optional(ItemError, data.get("error")),
            _optional(Usage, data.get("usage")), _optional(Media, image),
            _optional(Media, original), data.get("finish_reason"), data.get("latency_ms"),
            int(data.get("attempts", 0)), data.get("embedding"), data.get("embedding_model"),
            _optional(ItemError, data.get("embedding_error")), data.get("data"), "data" in data,
            cached=data.get("cached") is True,
        )  # fmt: skip


def _optional(kind: Any, data: Any) -> Any:
    return kind.from_json(data) if isinstance(data, dict) else None


def _source_json(source: str) -> dict[str, str]:
    """``{"source": ...}``, always valid UTF-8: a source that is not (a file name with byte
    0xFF, read with ``surrogateescape``) is written with its bad bytes escaped (``\\xff``) and
    its original bytes, base64-encoded, in ``source_bytes``."""
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:
        raw = source.encode("utf-8", "surrogateescape")
        text = raw.decode("utf-8", "backslashreplace")
        return {"source": text, "source_bytes": base64.b64encode(raw).decode("ascii")}
    return {"source": source}


def record_source(record: dict[str, Any]) -> str:
    """The source a record names, as the run that wrote it saw it: ``source_bytes`` decoded
    (``surrogateescape``, as Python reads file names) when present, else ``source``.
    Raises ``KeyError`` when the record has no ``source``."""
    raw = record.get("source_bytes")
    if isinstance(raw, str):
        try:
            return base64.b64decode(raw, validate=True).decode("utf-8", "surrogateescape")
        except (binascii.Error, ValueError):
            pass
    return str(record["source"])


#: Keys every describer record has had since the first release (README, "The JSONL schema"):
#: the positive mark by which an output file is recognised as describer's.
RECORD_KEYS = frozenset({"source", "description", "error", "model", "prompt", "usage"})


def is_record(data: object) -> bool:
    """Whether parsed JSON ``data`` is a describer record: an object with every key of
    :data:`RECORD_KEYS`, a string ``source`` and ``model``, and ``error`` null or an object."""
    return (
        isinstance(data, dict)
        and data.keys() >= RECORD_KEYS
        and isinstance(data["source"], str)
        and isinstance(data["model"], str)
        and (data["error"] is None or isinstance(data["error"], dict))
    )
