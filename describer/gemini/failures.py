"""What a google-genai call raises, as :class:`~describer.errors.ItemFailure`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from google.genai import errors

from ..errors import ItemFailure
from ..model import ErrorType

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


@contextmanager
def gemini_errors(timeout_message: str) -> Iterator[None]:
    """Turn what a google-genai call raises into :class:`ItemFailure`: API errors by
    :func:`api_failure`, timeouts (``timeout``) and connection errors (``api_error``), both
    retryable."""
    try:
        yield
    except errors.APIError as exc:
        raise api_failure(exc) from None
    except TimeoutError:
        raise ItemFailure(ErrorType.TIMEOUT, timeout_message, retryable=True) from None
    except aiohttp.ClientError as exc:
        message = f"connection to Gemini failed: {type(exc).__name__}: {exc}"
        raise ItemFailure(ErrorType.API_ERROR, message, retryable=True) from None


def api_failure(exc: errors.APIError) -> ItemFailure:
    """The record error for an API error: ``rate_limited`` (429), ``timeout`` (408, 504),
    otherwise ``api_error``; the message is ``"<code> <STATUS>: <Google's message>"``.

    408, 429 and 5xx are retryable, after the ``RetryInfo.retryDelay`` when Gemini gives one;
    400 INVALID_ARGUMENT, 401/403 and 404 are not.
    """
    message = f"{exc.code} {exc.status or ''}: {exc.message or ''}".replace("  ", " ").strip()
    retryable = exc.code in (408, 429) or exc.code >= 500
    if exc.code == 429:
        kind = ErrorType.RATE_LIMITED
    elif exc.code in (408, 504):
        kind = ErrorType.TIMEOUT
    else:
        kind = ErrorType.API_ERROR
    return ItemFailure(kind, message, retryable=retryable, retry_after=retry_delay(exc.details))


def retry_delay(error_body: Any) -> float | None:
    """Seconds from a Google error body's ``google.rpc.RetryInfo.retryDelay`` (e.g. ``"53s"``).

    ``error_body`` is the SDK's ``APIError.details``: ``{"error": {"details": [...]}}``.
    """
    error = error_body.get("error", error_body) if isinstance(error_body, dict) else {}
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None
