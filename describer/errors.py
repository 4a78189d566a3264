"""Error vocabulary: per-item failures are data, whole-run failures are exceptions.

An item that cannot be described becomes a :class:`describer.Result` whose ``error`` is an
:class:`ItemError` ``{"type", "message"}``; the run goes on. The ``type`` is one of
:class:`ErrorType`, a small documented vocabulary (README, "Error types").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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


class ItemFailure(Exception):
    """Raised inside a stage when one item fails; the pipeline turns it into a record."""

    def __init__(self, type_: ErrorType, message: str) -> None:
        super().__init__(message)
        self.error = ItemError(type_, message)


class ConfigError(Exception):
    """A whole-run problem (no credentials, bad option, unreadable output): exit code 2."""
