"""Every 429 read for its quota; a per-day quota stops the run cleanly and a rerun resumes."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import describe_run
from google import genai
from google.genai import errors, types
from imaging import jpeg

from describer import Config
from describer.cli.commands import embed_main
from describer.emulator import GeminiEmulator, ImageServer
from describer.gemini.failures import api_failure
from describer.limits.watch import QuotaWatch
from describer.quotas import UNKNOWN, Quota, quotas, until_reset

METRIC_PREFIX = "generativelanguage.googleapis.com/"
MINUTE_BODY: dict[str, Any] = {
    "error": {
        "code": 429,
        "status": "RESOURCE_EXHAUSTED",
        "message": (
            "You exceeded your current quota, please check your plan and billing details. For "
            "more information on this error, head to: https://ai.google.dev/gemini-api/docs/"
            "rate-limits.\n* Quota exceeded for metric: generativelanguage.googleapis.com/"
            "generate_content_free_tier_requests, limit: 10, model: gemini-2.5-flash\n"
            "Please retry in 41.599174853s."
        ),
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": f"{METRIC_PREFIX}generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                        "quotaValue": "10",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "41s"},
        ],
    }
}


def _body(
    violations: list[dict[str, Any]],
    retry: str | None = "41s",
    message: str = "You exceeded your current quota.",
) -> dict[str, Any]:
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations}
    ]
    if retry:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry})
    return {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "message": message,
            "details": details,
        }
    }


def _violation(quota_id: str, metric: str, value: str, model: str) -> dict[str, Any]:
    return {
        "quotaMetric": f"generativelanguage.googleapis.com/{metric}",
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": value,
    }


TOKENS = _violation(
    "GenerateContentInputTokensPerModelPerMinute-FreeTier",
    "generate_content_free_tier_input_token_count",
    "250000",
    "gemini-2.5-flash",
)
DAY = _violation(
    "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
    "generate_content_free_tier_requests",
    "250",
    "gemini-2.5-flash",
)


def test_a_per_minute_request_quota_is_read_with_its_limit_model_and_delay() -> None:
    failure = api_failure(errors.ClientError(429, MINUTE_BODY))
    assert failure.quota == Quota(
        "requests",
        "minute",
        10,
        "gemini-2.5-flash",
        "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
    )
    assert failure.retry_after == 41.0 and failure.retryable
    assert failure.quota.describe() == "10 requests per minute for gemini-2.5-flash"


def test_a_token_quota_and_a_day_quota_in_one_429_count_as_the_day() -> None:
    body = _body([TOKENS, DAY], retry="7s")
    assert [(q.kind, q.period, q.limit) for q in quotas(body)] == [
        ("tokens", "minute", 250000),
        ("requests", "day", 250),
    ]
    failure = api_failure(errors.ClientError(429, body))
    assert failure.quota is not None and failure.quota.daily and failure.quota.limit == 250
    assert failure.retry_after == 7.0  # short, as Google's is: it says nothing of the day


def test_a_429_without_retry_info_takes_the_delay_and_limit_from_its_message() -> None:
    error = dict(MINUTE_BODY["error"])
    del error["details"]
    failure = api_failure(errors.ClientError(429, {"error": error}))
    assert failure.retry_after == pytest.approx(41.599174853)
    assert failure.quota == Quota("requests", "minute", 10, "gemini-2.5-flash")


def test_a_bare_429_is_an_unknown_per_minute_quota() -> None:
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "message": "Resource has been exhausted (e.g. check quota).",
        }
    }
    failure = api_failure(errors.ClientError(429, body))
    assert failure.quota == UNKNOWN and not failure.quota.daily
    assert failure.retry_after is None and failure.retryable


def test_the_day_resets_at_midnight_pacific_daylight_time_or_not() -> None:
    summer = datetime(2026, 7, 1, 6, 30, tzinfo=UTC)  # 23:30 PDT (UTC-7)
    winter = datetime(2026, 1, 1, 6, 30, tzinfo=UTC)  # 22:30 PST (UTC-8)
    assert until_reset(summer) == timedelta(minutes=30)
    assert until_reset(winter) == timedelta(hours=1, minutes=30)


def _serve(images: ImageServer, count: int) -> list[str]:
    for i in range(count):
        images.add(f"/{i}.jpg", jpeg(48, 48, seed=i))
    return [images.url(f"/{i}.jpg") for i in range(count)]


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_spent_daily_quota_stops_the_run_and_a_rerun_after_midnight_does_the_rest(
    gemini_env: GeminiEmulator,
    images: ImageServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    gemini_env.configure(rpd=20, latency=(0.01, 0.03))
    urls, out = _serve(images, 60), tmp_path / "out.jsonl"
    options = {"output": out, "concurrency": 4, "retry_wait": 0.01}
    async with asyncio.timeout(30):  # a run that spins on the quota would never end
        first = await describe_run(capsys, urls, **options)
    assert first.code == 3
    records = _records(out)
    assert len(records) == 20 and all(r["error"] is None for r in records)
    stats = gemini_env.stats
    # 20 admitted, the first daily 429, then at most the calls already at the model.
    assert stats.day_limited >= 1 and stats.generate_requests - 21 <= 4
    assert "daily quota spent (20 requests per day for " in first.stderr
    assert "20 described, 40 remain; rerun the same command to continue" in first.stderr
    assert "-o FILE" not in first.stderr
    assert first.stderr.count("describer: learned quota: 20 requests per day") == 1

    gemini_env.reset_day()
    gemini_env.reset_stats()
    gemini_env.configure(rpd=None)
    second = await describe_run(capsys, urls, **options)
    assert second.code == 0 and gemini_env.stats.generate_requests == 40
    records = _records(out)
    assert sorted(r["source"] for r in records) == sorted(urls)
    assert all(r["error"] is None for r in records)


async def test_without_an_output_file_the_stop_line_says_how_to_make_a_rerun_resume(
    gemini_env: GeminiEmulator,
    images: ImageServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gemini_env.configure(rpd=2)
    out = await describe_run(capsys, _serve(images, 5), concurrency=1, retry_wait=0.01)
    assert out.code == 3 and len(out.records) == 2
    stop = [line for line in out.stderr.splitlines() if "daily quota spent" in line]
    assert len(stop) == 1 and stop[0].endswith("(-o FILE makes a rerun resume)")
    assert "2 described, 3 remain" in stop[0]


async def test_a_quota_that_refuses_past_max_quota_wait_stops_the_run_and_loses_nothing(
    gemini_env: GeminiEmulator,
    images: ImageServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # A daily quota whose 429s say nothing: it reads as a per-minute quota of unknown limit,
    # so only --max-quota-wait keeps the run from waiting on it for ever.
    gemini_env.configure(rpd=5, bare_429=True)
    urls, out = _serve(images, 12), tmp_path / "out.jsonl"
    options = {"output": out, "concurrency": 2, "max_quota_wait": 2.0, "max_attempts": 1}
    async with asyncio.timeout(30):
        first = await describe_run(capsys, urls, **options)
    assert first.code == 3
    records = _records(out)
    assert len(records) == 5 and all(r["error"] is None for r in records)  # none failed
    stop = [line for line in first.stderr.splitlines() if "stopped:" in line]
    assert stop == [
        "describer: stopped: calls were refused for 2 s by a quota (an unknown "
        "number of requests per minute; --max-quota-wait 2 s); 5 described, 7 remain; "
        "rerun the same command to continue"
    ]

    gemini_env.reset_day()
    gemini_env.reset_stats()
    gemini_env.configure(rpd=None)
    second = await describe_run(capsys, urls, **options)
    assert second.code == 0 and gemini_env.stats.generate_requests == 7
    assert sorted(r["source"] for r in _records(out)) == sorted(urls)


async def test_a_per_minute_quota_is_learned_from_its_first_429_and_paced_to(
    gemini_env: GeminiEmulator,
    images: ImageServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 2 requests per 0.5 s window standing in for Gemini's minute, on both sides; no --rpm.
    gemini_env.configure(rpm=2, quota_window=0.5)
    out = await describe_run(
        capsys, _serve(images, 8), concurrency=4, max_attempts=1, quota_window=0.5
    )
    assert out.code == 0 and len(out.records) == 8
    assert gemini_env.stats.rate_limited == 1  # the first 429 taught the limit; none after
    line = "describer: learned quota: 2 requests per minute for gemini-3.8-flash; pacing calls"
    assert out.stderr.count("learned quota") == 1 and line in out.stderr
    times = sorted(gemini_env.stats.request_times)
    admitted_gaps = [b - a for a, b in itertools.pairwise(times[3:])]
    assert min(admitted_gaps) >= 0.25  # paced: one request per 0.5 s / 2, none bunched


def test_each_quota_is_told_once() -> None:
    lines: list[str] = []
    watch = QuotaWatch(lines.append, asyncio.Event())
    quota = Quota("requests", "minute", 10, "gemini-x", "GenerateRequestsPerMinute")
    for _ in range(3):
        watch.learned(quota)
    watch.learned(Quota("tokens", "minute", 1000, "gemini-x"))
    assert lines == [
        "describer: learned quota: 10 requests per minute for gemini-x; pacing calls to it",
        "describer: learned quota: 1000 input tokens per minute for gemini-x; pacing calls to it",
    ]


async def _refused(emu: GeminiEmulator) -> errors.ClientError:
    """The SDK's error for a generate request the emulator refuses (after one admitted)."""
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=emu.base_url))
    part = types.Part.from_bytes(data=jpeg(32, 32), mime_type="image/jpeg")
    try:
        await client.aio.models.generate_content(model="gemini-x", contents=[part, "describe"])
        with pytest.raises(errors.ClientError) as info:
            await client.aio.models.generate_content(model="gemini-x", contents=[part, "d"])
    finally:
        await client.aio.aclose()
    return info.value


async def test_the_emulators_daily_429_is_googles_and_reads_as_a_day_quota(
    emulator: GeminiEmulator,
) -> None:
    emulator.configure(rpd=1)
    exc = await _refused(emulator)
    assert exc.code == 429 and "Please retry in 1.500000000s." in (exc.message or "")
    assert "limit: 1, model: gemini-x" in (exc.message or "")
    failure = api_failure(exc)
    assert failure.quota == Quota(
        "requests", "day", 1, "gemini-x", "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    )
    assert failure.retry_after == 2.0  # RetryInfo "2s": short, as Google's
    assert failure.quota.describe() == "1 request per day for gemini-x"
    assert emulator.stats.day_limited == 1 and emulator.stats.rate_limited == 1


async def test_the_emulators_bare_429_has_no_details_and_reads_as_unknown(
    emulator: GeminiEmulator,
) -> None:
    emulator.configure(rpm=1, bare_429=True)
    exc = await _refused(emulator)
    assert exc.code == 429 and "details" not in exc.details["error"]
    assert api_failure(exc).quota == UNKNOWN and emulator.stats.day_limited == 0


def _described(path: Path, count: int) -> None:
    lines = [
        json.dumps({"source": f"img{i}.jpg", "description": f"photo {i} of a red car",
                    "error": None, "model": "gemini-test", "prompt": "p", "usage": None})
        for i in range(count)
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


async def test_a_spent_daily_embedding_quota_stops_embed_file_and_a_rerun_finishes(
    gemini_env: GeminiEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "out.jsonl"
    _described(path, 10)
    gemini_env.configure(embed_rpd=3)  # 5 calls of 2 texts are needed
    config = Config(embed_dim=8, embed_batch_size=2, embed_timeout=5, concurrency=1)
    async with asyncio.timeout(30):
        code = await embed_main(path, config)
    stderr = capsys.readouterr().err
    records = _records(path)
    assert code == 3 and len(records) == 10
    assert sum(bool(r.get("embedding")) for r in records) == 6
    assert not any(r.get("embedding_error") for r in records)  # held back, not failed
    assert gemini_env.stats.embed_requests == 4  # three admitted, one refused, then none
    assert "daily quota spent (3 requests per day for gemini-embedding-001)" in stderr
    assert "6 embedded, the rest remain; rerun the same command to continue" in stderr

    gemini_env.reset_day()
    gemini_env.reset_stats()
    assert await embed_main(path, config) == 0
    assert gemini_env.stats.embed_requests == 2  # only the four texts left
    assert all(r.get("embedding") for r in _records(path))


async def test_describe_embed_stops_at_a_daily_embedding_quota_and_says_how_to_finish(
    gemini_env: GeminiEmulator,
    images: ImageServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    gemini_env.configure(embed_rpd=1)
    out = tmp_path / "out.jsonl"
    async with asyncio.timeout(30):
        run = await describe_run(
            capsys, _serve(images, 12), output=out, embed=True, embed_batch_size=2,
            embed_dim=8, concurrency=1,
        )  # fmt: skip
    records = _records(out)
    missing = [r for r in records if not r.get("embedding")]
    assert run.code == 3 and len(records) < 12 and missing
    assert not any(r["error"] or r.get("embedding_error") for r in records)
    assert f"; {len(missing)} described without an embedding: embed {out} adds them" in run.stderr
    gemini_env.reset_day()
    gemini_env.configure(embed_rpd=None)
    assert await embed_main(out, Config(embed_dim=8)) == 0
    assert all(r.get("embedding") for r in _records(out))
