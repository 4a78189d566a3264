"""Stalls: a server that asks for a day's wait, and a model answer that is not JSON."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from conftest import describe_run
from imaging import jpeg, sha256

from describer.download import MAX_RETRY_AFTER_S, retry_after_header
from describer.emulator import GeminiEmulator, ImageServer
from describer.errors import ItemFailure
from describer.model import ErrorType
from describer.retries import call_with_retries

FAST_RETRY = {"retry_wait": 0.01}
#: A bound on a run that must not sleep (a hang guard, not a measurement).
PROMPT_S = 20


async def test_a_day_long_retry_after_fails_the_item_now(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    images.add("/busy.jpg", b"busy", status=503, content_type="text/plain",
               headers={"Retry-After": "86400"})
    images.add("/ok.jpg", jpeg(seed=1))
    sources = [images.url("/busy.jpg"), images.url("/ok.jpg")]
    async with asyncio.timeout(PROMPT_S):
        out = await describe_run(capsys, sources, max_attempts=3, **FAST_RETRY)
    got = out.by_source()
    assert got[sources[0]]["error"] == {
        "type": "http_error",
        "message": "HTTP 503 Service Unavailable; the server asked to retry after 86400 s, "
                   f"over the {MAX_RETRY_AFTER_S:g} s cap",
    }
    assert images.hits["/busy.jpg"] == 1
    assert got[sources[1]]["error"] is None
    assert out.code == 1


async def test_a_retry_after_date_beyond_the_cap_fails_the_item_now(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    tomorrow = format_datetime(datetime.now(UTC) + timedelta(days=1), usegmt=True)
    images.add("/busy.jpg", b"busy", status=429, content_type="text/plain",
               headers={"Retry-After": tomorrow})
    async with asyncio.timeout(PROMPT_S):
        out = await describe_run(capsys, [images.url("/busy.jpg")], max_attempts=3,
                                 **FAST_RETRY)
    error = out.records[0]["error"]
    assert error["type"] == "http_error"
    assert error["message"].startswith("HTTP 429 Too Many Requests; the server asked to retry")
    assert images.hits["/busy.jpg"] == 1


async def test_a_retry_after_within_the_cap_is_honoured(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    images.add_flaky("/flaky.jpg", jpeg(seed=2), failures=1, status=503,
                     headers={"Retry-After": "0"})
    out = await describe_run(capsys, [images.url("/flaky.jpg")], max_attempts=3, **FAST_RETRY)
    assert out.records[0]["error"] is None and images.hits["/flaky.jpg"] == 2


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_header("120", now) == 120.0
    assert retry_after_header("Wed, 01 Jan 2025 12:10:00 GMT", now) == 600.0
    assert retry_after_header("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0  # in the past
    assert retry_after_header("soon", now) is None
    assert retry_after_header(None, now) is None


async def test_a_non_json_200_is_retried_like_a_5xx(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    once, always = jpeg(seed=3), jpeg(seed=4)
    gemini_env.script(sha256(once), "garbage:1")
    gemini_env.script(sha256(always), "garbage")
    images.add("/once.jpg", once)
    images.add("/always.jpg", always)
    sources = [images.url("/once.jpg"), images.url("/always.jpg")]
    out = await describe_run(capsys, sources, max_attempts=3, **FAST_RETRY)
    got = out.by_source()
    assert got[sources[0]]["error"] is None and got[sources[0]]["attempts"] == 2
    error = got[sources[1]]["error"]
    assert error["type"] == "api_error"
    assert error["message"].startswith("Gemini answered 200 with a body that is not JSON")
    assert got[sources[1]]["attempts"] == 3
    assert gemini_env.stats.generate_requests == 2 + 3
    assert "Traceback" not in out.stderr and "internal_error" not in out.stderr


async def test_a_retry_bounded_by_max_asked_never_sleeps_on_a_longer_delay() -> None:
    calls: list[int] = []

    async def busy() -> None:
        calls.append(1)
        raise ItemFailure(ErrorType.HTTP_ERROR, "HTTP 503", retryable=True, retry_after=86400)

    async with asyncio.timeout(PROMPT_S):
        with pytest.raises(ItemFailure):
            await call_with_retries(busy, 5, 0.01, max_asked=MAX_RETRY_AFTER_S)
    assert len(calls) == 1
