"""Error vocabulary: per-item failures are data, whole-run failures are exceptions.

An item that cannot be described becomes a :class:`describer.Result` whose ``error`` is an
:class:`ItemError` ``{"type", "message"}``; the run goes on. The ``type`` is one of
:class:`ErrorType`, a small documented vocabulary (README, "Error types").
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

#: Environment variables that may hold a key; their values never appear in any output.
SECRET_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


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
    """Raised inside a stage when one item fails; the pipeline turns it into a record.

    ``retryable`` marks transient failures (408, 429, 5xx, timeouts, connection errors);
    ``retry_after`` is the server's requested delay in seconds (Gemini's
    ``RetryInfo.retryDelay``, an HTTP ``Retry-After``), when it gave one.
    """

    def __init__(
        self,
        type_: ErrorType,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error = ItemError(type_, message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = 0  # model calls made for the item, set by the pipeline


class ConfigError(Exception):
    """A whole-run problem (no credentials, bad option, unreadable output): exit code 2."""


def secrets(api_key: str | None, env: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The key values of this run, to be scrubbed from messages (short values are ignored)."""
    values = [api_key, *(env.get(name) for name in SECRET_VARIABLES)]
    return tuple(v for v in values if v and len(v) >= 8)


def redact(error: ItemError, hidden: Iterable[str]) -> ItemError:
    """``error`` with every value in ``hidden`` replaced by ``[redacted]``."""
    message = error.message
    for value in hidden:
        message = message.replace(value, "[redacted]")
    return error if message == error.message else ItemError(error.type, message)
