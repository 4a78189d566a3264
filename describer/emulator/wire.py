"""The Gemini API's wire format as the emulator speaks it: errors, JSON bodies, names, paging.

Error bodies are Google's ``{"error": {"code", "message", "status", "details"?}}`` with the
google.rpc.Code names (400 INVALID_ARGUMENT, 403 PERMISSION_DENIED, 404 NOT_FOUND, 429
RESOURCE_EXHAUSTED, 500 INTERNAL, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED). Messages are modelled
on real Gemini API answers (shape and wording); those with details:

* 429 quota: the message names the metric, limit and model and ends "Please retry in
  41.599174853s."; ``google.rpc.QuotaFailure`` (quotaMetric, quotaId
  ``GenerateRequestsPerMinutePerProjectPerModel-FreeTier`` or ``...PerDay...``,
  quotaDimensions location/model, quotaValue = the limit), ``google.rpc.Help`` and
  ``google.rpc.RetryInfo.retryDelay`` ("42s"), as in googleapis/python-genai#1875; or no
  details at all (python-genai#2065).
* 429 for a batch job past the concurrent jobs limit: the quota message with the Help link
  only (``batch_limit_error`` says why).
* 403 suspended key: "Permission denied: Consumer 'api_key:KEY' has been suspended." with a
  ``google.rpc.ErrorInfo`` (reason CONSUMER_SUSPENDED, domain googleapis.com, metadata
  service / consumer / containerInfo ``api_key:KEY``) and a ``google.rpc.LocalizedMessage``:
  Gemini echoes the caller's API key in the message and in the details. Seen verbatim in
  https://github.com/google/generative-ai-docs/issues/356 (key sent as ``?key=``) and
  https://github.com/continuedev/continue/issues/10902 (containerInfo, LocalizedMessage).

API keys arrive in the ``x-goog-api-key`` header (google-genai) or the ``key`` query parameter
(REST docs, curl examples); both are accepted, and OAuth ``Authorization: Bearer`` tokens too.
"""

from __future__ import annotations

import binascii
import json
import math
import secrets
import string
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

MSG_BAD_IMAGE = (
    "Unable to process input image. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting"
)
MSG_OVERLOADED = "The model is overloaded. Please try again later."
MSG_INTERNAL = (
    "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting"
)
MSG_INVALID = "Request contains an invalid argument."
MSG_INVALID_JSON = "Invalid JSON payload received."
MSG_NOT_FOUND = "Requested entity was not found."
MSG_NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
MSG_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. "
    "For more information on this error, head to: "
    "https://ai.google.dev/gemini-api/docs/rate-limits."
)
#: A bare 429 as Gemini words it (googleapis/python-genai#1299); the emulator's flex shed.
MSG_EXHAUSTED = "Resource has been exhausted (e.g. check quota)."
#: Gemini's 503 for a model short of capacity (discuss.ai.google.dev reports, 2026).
MSG_HIGH_DEMAND = ("This model is currently experiencing high demand. Spikes in demand are "
                   "usually temporary. Please try again later.")
MSG_SUSPENDED = "Permission denied: Consumer 'api_key:{key}' has been suspended."
SUSPENDED_CONSUMER = "projects/123456789012"  # an invented project number, fixed

DEFAULT_MESSAGES = {
    400: MSG_INVALID,
    404: MSG_NOT_FOUND,
    429: MSG_QUOTA,
    500: MSG_INTERNAL,
    503: MSG_OVERLOADED,
    504: "Deadline expired before operation could complete.",
}
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 10, 100  # Files / batches list: default 10, at most 100.

_ID_CHARS = string.ascii_lowercase + string.digits
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


class ApiError(Exception):
    """A Google-style API error: ``{"error": {"code", "message", "status", "details"?}}``.

    code: HTTP status; message: defaults to Gemini's wording for the code; details: the
    ``google.rpc`` detail objects (None: no ``details`` key, as in most Gemini errors);
    quota: for a quota 429, the QUOTAS key of the quota spent (not sent; for counting).
    """

    quota: str | None = None

    def __init__(self, code: int, message: str | None = None,
                 details: list[dict[str, Any]] | None = None) -> None:
        self.code = code
        self.message = message or DEFAULT_MESSAGES.get(code, "Error.")
        self.details = details
        super().__init__(f"{code} {self.message}")

    def body(self) -> dict[str, Any]:
        """The JSON body Gemini sends for this error."""
        err: dict[str, Any] = {"code": self.code, "message": self.message,
                               "status": STATUS_NAMES.get(self.code, "UNKNOWN")}
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}


#: The quotas the emulator enforces, as Google names them in ``QuotaFailure`` violations:
#: (quotaMetric, quotaId). The generate request ones as seen in googleapis/python-genai#1875,
#: the input-token one in cline/cline#6058; the embedding one is modelled on them (no
#: captured per-day embedding 429 was at hand).
QUOTAS = {
    "rpm": ("generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
    "rpd": ("generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
    "tpm": ("generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
            "GenerateContentInputTokensPerModelPerMinute-FreeTier"),
    "embed_rpd": ("generativelanguage.googleapis.com/embed_content_free_tier_requests",
                  "EmbedContentRequestsPerDayPerProjectPerModel-FreeTier"),
    # named by analogy with the per-day id above (the per-minute id was not found published)
    "embed_rpm": ("generativelanguage.googleapis.com/embed_content_free_tier_requests",
                  "EmbedContentRequestsPerMinutePerProjectPerModel-FreeTier"),
}


#: The ``google.rpc.Help`` detail of Gemini's quota 429s (googleapis/python-genai#1875).
QUOTA_HELP: dict[str, Any] = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [{"description": "Learn more about Gemini API quotas",
               "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}],
}


def quota_error(retry_delay_s: float, quota: str = "rpm", limit: int | None = None,
                model: str = "gemini-2.5-flash", bare: bool = False) -> ApiError:
    """The 429 RESOURCE_EXHAUSTED Gemini sends when a quota is spent, as Google sends it.

    retry_delay_s: seconds until the quota admits a request again; the message says them
    exactly ("Please retry in 41.599174853s."), RetryInfo in whole seconds rounded up
    ("42s"). quota: a key of QUOTAS; limit: its value (quotaValue and "limit: N"); model:
    the model of the request (quotaDimensions.model). ``bare``: no details and no quota
    lines, as some 429s come (python-genai#2065).
    """
    if bare:
        err = ApiError(429, MSG_QUOTA)
        err.quota = quota
        return err
    metric, quota_id = QUOTAS[quota]
    shown = "" if limit is None else str(limit)
    message = (f"{MSG_QUOTA}\n* Quota exceeded for metric: {metric}, limit: {shown}, "
               f"model: {model}\nPlease retry in {retry_delay_s:.9f}s.")
    violation: dict[str, Any] = {"quotaMetric": metric, "quotaId": quota_id,
                                 "quotaDimensions": {"location": "global", "model": model}}
    if limit is not None:
        violation["quotaValue"] = shown
    err = ApiError(429, message, [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        QUOTA_HELP,
        {"@type": "type.googleapis.com/google.rpc.RetryInfo",
         "retryDelay": f"{math.ceil(retry_delay_s)}s"},
    ])
    err.quota = quota
    return err


def batch_limit_error() -> ApiError:
    """The 429 RESOURCE_EXHAUSTED for a batches.create past the concurrent batch jobs limit.

    Gemini documents the limit (100 concurrent batch requests, Batch API "rate limits") but
    not its answer, so this models the harsher case: Gemini's quota message and its Help
    link, as a 429 from the Batch API was seen (langchain4j/langchain4j#3942, CI log of
    2026-01), with no QuotaFailure naming the limit and no RetryInfo: the client learns
    neither which limit was hit nor when to try again.
    """
    return ApiError(429, MSG_QUOTA, [QUOTA_HELP])


def suspended_error(key: str) -> ApiError:
    """The 403 Gemini sends for a suspended API key; it quotes ``key`` three times.

    The message and the ErrorInfo/LocalizedMessage details follow the answers quoted in
    the module docstring (google/generative-ai-docs#356, continuedev/continue#10902).
    """
    message = MSG_SUSPENDED.format(key=key)
    return ApiError(403, message, [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "CONSUMER_SUSPENDED",
         "domain": "googleapis.com", "metadata": {
             "consumer": SUSPENDED_CONSUMER, "service": "generativelanguage.googleapis.com",
             "containerInfo": f"api_key:{key}"}},
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
         "message": message},
    ])


def error_response(err: ApiError) -> web.Response:
    """``err`` as an HTTP response: its JSON body with its status code."""
    return web.json_response(err.body(), status=err.code)


def load_json(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object; ApiError 400 otherwise."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, MSG_INVALID_JSON) from exc
    if not isinstance(payload, dict):
        raise ApiError(400, f"{MSG_INVALID_JSON} Expected an object.")
    return payload


def get_field(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    """``obj[camel]`` or ``obj[snake]`` (the API accepts both spellings), else None."""
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def decode_base64(data: str) -> bytes:
    """Decode standard or URL-safe base64, with or without padding.

    ApiError 400 "Unable to process input image..." (Gemini's answer) if it is not base64.
    """
    try:
        raw = data.strip().encode("ascii")
    except UnicodeEncodeError as exc:
        raise ApiError(400, MSG_BAD_IMAGE) from exc
    if b"-" in raw or b"_" in raw:
        raw = raw.translate(_URLSAFE_TO_STANDARD)
    raw += b"=" * (-len(raw) % 4)
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, MSG_BAD_IMAGE) from exc


# ----- credentials ---------------------------------------------------------------------
def request_key(request: web.Request) -> str | None:
    """The API key a request carries: ``x-goog-api-key`` header, else ``?key=``, else None."""
    return request.headers.get("x-goog-api-key") or request.query.get("key") or None


def require_key(request: web.Request, required: bool) -> None:
    """ApiError 403 PERMISSION_DENIED (MSG_NO_KEY) if ``required`` and the request carries
    neither an API key nor an ``Authorization: Bearer`` token."""
    if not required:
        return
    bearer = request.headers.get("Authorization", "").startswith("Bearer ")
    if not (request_key(request) or bearer):
        raise ApiError(403, MSG_NO_KEY)


# ----- routes --------------------------------------------------------------------------
class Counters(Protocol):
    """Per-surface HTTP counters (see stats.EmulatorStats, stats.BatchStats)."""

    request_bytes: int
    responses_by_status: dict[int, int]


def count_status(counters: Counters, status: int) -> None:
    """Add one answer with HTTP ``status`` to ``counters.responses_by_status``."""
    counts = counters.responses_by_status
    counts[status] = counts.get(status, 0) + 1


BodyHandler = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]
RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def api_route(handler: BodyHandler, counters: Counters,
              check_key: Callable[[web.Request], object] | None = None,
              upload: bool = False) -> RouteHandler:
    """Wrap ``handler(request, body)``: read and count the body, run ``check_key``, turn an
    ApiError into Google's JSON error (with ``X-Goog-Upload-Status: final`` if ``upload``),
    and count the answer's status."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()
            counters.request_bytes += len(body)
            if check_key is not None:
                check_key(request)
            response = await handler(request, body)
        except ApiError as err:
            response = error_response(err)
            if upload:
                response.headers["X-Goog-Upload-Status"] = "final"
        count_status(counters, response.status)
        return response

    return handle


# ----- resource names, times, pages -----------------------------------------------------
def stamp(moment: datetime) -> str:
    """RFC 3339 UTC timestamp with microseconds, e.g. 2025-01-01T00:00:00.000000Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_stamp() -> str:
    """The current time as :func:`stamp` writes it."""
    return stamp(datetime.now(UTC))


def new_id(length: int) -> str:
    """A random lowercase alphanumeric id (file ids: 12 chars, batch ids: 36, as at Google)."""
    return "".join(secrets.choice(_ID_CHARS) for _ in range(length))


def short_id(name: str, collection: str) -> str:
    """``files/abc`` / ``abc`` / ``https://host/v1/files/abc`` -> ``abc`` (collection "files")."""
    marker = f"{collection}/"
    return name.rsplit(marker, 1)[-1] if marker in name else name


def page(items: list[Any], query: Mapping[str, str]) -> tuple[list[Any], str | None]:
    """Offset paging: ``pageSize`` (default 10, at most 100) and ``pageToken`` (an offset).

    Returns the page and the next page token (None on the last page); ApiError 400 if
    either parameter is not an integer.
    """
    try:
        size = min(MAX_PAGE_SIZE, max(1, int(query.get("pageSize", DEFAULT_PAGE_SIZE))))
        start = max(0, int(query.get("pageToken") or 0))
    except ValueError as exc:
        raise ApiError(400, "Invalid page size or token.") from exc
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)
