"""Thinking: every request names a level (default low), usage reports thinking and cached
tokens apart, and the cost counts thinking as output and cached input at the cached price."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import describe_run
from imaging import jpeg

from describer import Config
from describer.cost import estimate
from describer.emulator import GeminiEmulator, ImageServer
from describer.emulator.answers import THINKING_TOKENS
from describer.gemini import request_json
from describer.model import Usage


def _thinking(record: object) -> object:
    config = record.generation_config  # type: ignore[attr-defined]
    return config.get("thinkingConfig")


async def test_the_default_run_thinks_low_and_reports_thinking_tokens(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    images.add("/a.jpg", jpeg(seed=1))
    images.add("/b.jpg", jpeg(seed=2))
    out = await describe_run(capsys, [images.url("/a.jpg"), images.url("/b.jpg")])
    assert out.code == 0
    assert [_thinking(r) for r in gemini_env.stats.images] == [{"thinking_level": "LOW"}] * 2
    for record in out.records:
        usage = record["usage"]
        assert usage["thinking_tokens"] == THINKING_TOKENS["LOW"]
        assert usage["output_tokens"] > usage["thinking_tokens"]  # answer plus thinking
        assert usage["cached_tokens"] == 0
    assert f"({2 * THINKING_TOKENS['LOW']} thinking)" in out.stderr


async def test_thinking_model_sends_no_level_and_pays_the_models_default(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    images.add("/a.jpg", jpeg(seed=1))
    low = await describe_run(capsys, [images.url("/a.jpg")])
    default = await describe_run(capsys, [images.url("/a.jpg")], thinking="model")
    assert _thinking(gemini_env.stats.images[1]) is None
    assert default.records[0]["usage"]["thinking_tokens"] == THINKING_TOKENS["MEDIUM"]
    extra = THINKING_TOKENS["MEDIUM"] - THINKING_TOKENS["LOW"]
    assert default.records[0]["usage"]["output_tokens"] == (
        low.records[0]["usage"]["output_tokens"] + extra
    )


async def test_gemini_2_5_gets_a_thinking_budget(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    images.add("/a.jpg", jpeg(seed=1))
    await describe_run(capsys, [images.url("/a.jpg")], model="gemini-2.5-flash", thinking="high")
    assert _thinking(gemini_env.stats.images[0]) == {"thinking_budget": 24576}


def test_batch_request_lines_carry_the_same_thinking_level() -> None:
    body = request_json({"text": "x"}, Config(thinking="medium"))
    assert body["generationConfig"] == {"thinkingConfig": {"thinkingLevel": "MEDIUM"}}
    assert "generationConfig" not in request_json({"text": "x"}, Config(thinking="model"))


def test_cached_input_is_charged_at_the_cached_price_and_thinking_as_output() -> None:
    day = dt.date(2026, 11, 22)
    assert estimate("gemini-3.8-flash", 1_000_000, 0, on=day) == pytest.approx(0.75)
    cached = estimate("gemini-3.8-flash", 1_000_000, 0, on=day, cached_tokens=1_000_000)
    assert cached == pytest.approx(0.075)
    assert estimate("gemini-3.8-flash", 0, 1_000_000, on=day) == pytest.approx(3.75)


def test_usage_of_older_records_reads_zero_thinking() -> None:
    old = Usage.from_json({"input_tokens": 300, "output_tokens": 40})
    assert (old.thinking_tokens, old.cached_tokens) == (0, 0)
