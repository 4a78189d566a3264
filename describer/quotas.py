"""Which quota a Gemini 429 says was spent: ``google.rpc.QuotaFailure`` read into :class:`Quota`.

A 429 RESOURCE_EXHAUSTED body from the Gemini API carries (googleapis/python-genai#1875):

* ``google.rpc.QuotaFailure.violations[]``: ``quotaMetric`` (e.g.
  ``generativelanguage.googleapis.com/generate_content_free_tier_requests``), ``quotaId``
  (``GenerateRequestsPerMinutePerProjectPerModel-FreeTier``,
  ``GenerateContentInputTokensPerModelPerMinute-FreeTier``,
  ``GenerateRequestsPerDayPerProjectPerModel-FreeTier``), ``quotaDimensions.model`` and
  ``quotaValue`` (the limit, a string);
* ``google.rpc.RetryInfo.retryDelay`` (``"41s"``);
* a message ending ``"... limit: 10, model: gemini-2.5-flash\\nPlease retry in 41.599174853s."``,
  read when the details are missing.

Some 429s carry no details at all (python-genai#2065): read as an unknown per-minute quota.
Per-day quotas reset at midnight Pacific time (ai.google.dev/gemini-api/docs/rate-limits).
This module imports nothing of describer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

PACIFIC = ZoneInfo("America/Los_Angeles")
_LIMIT = re.compile(r"limit:\s*(\d+)")
_MODEL = re.compile(r"model:\s*([\w.\-]+)")
_RETRY_IN = re.compile(r"Please retry in (\d+(?:\.\d+)?)s")


@dataclass(frozen=True, slots=True)
class Quota:
    """One quota a 429 names.

    ``kind``: ``"requests"``, ``"tokens"`` (input tokens) or ``"unknown"`` (a bare 429);
    ``period``: ``"minute"`` or ``"day"``; ``limit``: the quota's value in ``kind`` per
    ``period`` (None when not given); ``model``: the model it counts (None when not given);
    ``quota_id``: Google's id, ``""`` when not given.
    """

    kind: str
    period: str
    limit: int | None = None
    model: str | None = None
    quota_id: str = ""

    @property
    def daily(self) -> bool:
        """Whether this quota is per day (spent until midnight Pacific)."""
        return self.period == "day"

    def describe(self) -> str:
        """E.g. ``"10 requests per minute for gemini-2.5-flash"`` (``"1 request"``)."""
        amount = "an unknown number of" if self.limit is None else str(self.limit)
        kind = "input tokens" if self.kind == "tokens" else "requests"
        if self.limit == 1:
            kind = kind[:-1]
        where = f" for {self.model}" if self.model else ""
        return f"{amount} {kind} per {self.period}{where}"


UNKNOWN = Quota("unknown", "minute")


def quotas(error_body: Any) -> tuple[Quota, ...]:
    """Every quota a 429's error body names (``APIError.details``: ``{"error": {...}}``):
    one per ``QuotaFailure`` violation, else one read from the message, else
    :data:`UNKNOWN` (a bare 429)."""
    error = _error(error_body)
    found = tuple(_violation(v) for v in _violations(error))
    if found:
        return found
    message = str(error.get("message") or "")
    limit, model = _LIMIT.search(message), _MODEL.search(message)
    if limit is None:
        return (UNKNOWN,)
    period = "day" if "per_day" in message or "PerDay" in message else "minute"
    kind = "tokens" if "token" in message.lower() else "requests"
    return (Quota(kind, period, int(limit.group(1)), model.group(1) if model else None),)


def spent(error_body: Any) -> Quota:
    """The quota that matters most in a 429: a per-day one if any is named (nothing more
    goes through until midnight Pacific), else the first."""
    found = quotas(error_body)
    return next((q for q in found if q.daily), found[0])


def message_retry_delay(error_body: Any) -> float | None:
    """Seconds from the message's "Please retry in 41.599174853s." (None when absent)."""
    match = _RETRY_IN.search(str(_error(error_body).get("message") or ""))
    return float(match.group(1)) if match else None


def until_reset(now: datetime) -> timedelta:
    """Time from ``now`` (timezone-aware) to the next midnight in America/Los_Angeles, when
    per-day quotas reset."""
    local = now.astimezone(PACIFIC)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), PACIFIC)
    return midnight - local


def hours_minutes(span: timedelta) -> str:
    """``"7 h 03 min"`` (rounded up to the minute)."""
    minutes = -(-int(span.total_seconds()) // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _error(error_body: Any) -> dict[str, Any]:
    if not isinstance(error_body, dict):
        return {}
    error = error_body.get("error", error_body)
    return error if isinstance(error, dict) else {}


def error_details(error_body: Any, kind: str) -> list[dict[str, Any]]:
    """The ``details`` entries of a Google error body (``APIError.details``: ``{"error":
    {"details": [...]}}``) whose ``@type`` ends with ``kind``, e.g. ``"RetryInfo"``."""
    details = _error(error_body).get("details")
    return [
        detail for detail in (details if isinstance(details, list) else [])
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith(kind)
    ]  # fmt: skip


def _violations(error: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for detail in error_details(error, "QuotaFailure"):
        out += [v for v in detail.get("violations") or [] if isinstance(v, dict)]
    return out


def _violation(violation: dict[str, Any]) -> Quota:
    quota_id = str(violation.get("quotaId") or "")
    text = f"{quota_id} {violation.get('quotaMetric') or ''}"
    period = "day" if "PerDay" in text or "per_day" in text else "minute"
    kind = "tokens" if "token" in text.lower() else "requests"
    value = str(violation.get("quotaValue") or "")
    dimensions = violation.get("quotaDimensions")
    model = dimensions.get("model") if isinstance(dimensions, dict) else None
    return Quota(kind, period, int(value) if value.isdigit() else None, model, quota_id)
