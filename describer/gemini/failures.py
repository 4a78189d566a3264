"""What a google-genai call raises, as :class:`~describer.errors.ItemFailure`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from google.genai import errors

from ..errors import ItemFailure
from ..model import ErrorType
from ..quotas import error_details, message_retry_delay, quotas, spent

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
#: What google-genai 3.4.0 raises for an HTTP 200 whose body is not JSON: generate_content
#: and embed_content call ``json.loads(response.body)`` themselves (models.py), so a bare
#: ``json.JSONDecodeError``; paths reading through ``HttpResponse.json`` raise
#: ``errors.UnknownApiResponseError`` (_api_client.py ``_load_json_from_response``).
_NOT_JSON = (json.JSONDecodeError, errors.UnknownApiResponseError)


@contextmanager
def gemini_errors(timeout_message: str) -> Iterator[None]:
    """Turn what a google-genai call raises into :class:`ItemFailure`: API errors by
    :func:`api_failure`; timeouts (``timeout``), connection errors and a 200 answer whose
    body is not JSON (``api_error``: a truncated or proxied answer, retried like a 5xx), all
    three retryable."""
    try:
        yield
    except errors.APIError as exc:
        raise api_failure(exc) from None
    except _NOT_JSON as exc:
        message = f"Gemini answered 200 with a body that is not JSON ({_not_json_detail(exc)})"
        raise ItemFailure(ErrorType.API_ERROR, message, retryable=True) from None
    except TimeoutError:
        raise ItemFailure(ErrorType.TIMEOUT, timeout_message, retryable=True) from None
    except aiohttp.ClientError as exc:
        message = f"connection to Gemini failed: {type(exc).__name__}: {exc}"
        raise ItemFailure(ErrorType.API_ERROR, message, retryable=True) from None


def _not_json_detail(exc: ValueError) -> str:
    """Where parsing stopped, without the body (which may be long, or hold anything)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at character {exc.pos}"
    return "the SDK could not parse it"


def api_failure(exc: errors.APIError) -> ItemFailure:
    """The record error for an API error: ``rate_limited`` (429), ``timeout`` (408, 504),
    otherwise ``api_error``; the message is ``"<code> <STATUS>: <Google's message>"``.

    408, 429 and 5xx are retryable, after the ``RetryInfo.retryDelay`` when Gemini gives one;
    400 INVALID_ARGUMENT, 401/403 and 404 are not. A 429 carries the quota it names
    (:func:`describer.quotas.spent`: a per-day one first); its delay falls back on the
    message's "Please retry in 41.6s." when there is no RetryInfo.
    """
    message = f"{exc.code} {exc.status or ''}: {exc.message or ''}".replace("  ", " ").strip()
    retryable = exc.code in (408, 429) or exc.code >= 500
    if exc.code == 429:
        kind = ErrorType.RATE_LIMITED
    elif exc.code in (408, 504):
        kind = ErrorType.TIMEOUT
    else:
        kind = ErrorType.API_ERROR
    delay = retry_delay(exc.details)
    if exc.code != 429:
        return ItemFailure(kind, message, retryable=retryable, retry_after=delay)
    if delay is None:
        delay = message_retry_delay(exc.details)
    return ItemFailure(kind, message, retryable=True, retry_after=delay,
                       quota=spent(exc.details), quotas=quotas(exc.details))  # fmt: skip


def retry_delay(error_body: Any) -> float | None:
    """Seconds from a Google error body's ``google.rpc.RetryInfo.retryDelay`` (e.g. ``"53s"``).

    ``error_body`` is the SDK's ``APIError.details``: ``{"error": {"details": [...]}}``.
    """
    for detail in error_details(error_body, "RetryInfo"):
        match = _DURATION.match(str(detail.get("retryDelay", "")))
        if match:
            return float(match.group(1))
    return None
