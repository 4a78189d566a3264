"""The emulator's quotas through the real google-genai client: requests per minute as a
sliding window or a token bucket, input tokens per minute, and bare 429s.

Time is a fake clock handed to the emulator, so a test steps through a quota window
without sleeping and every retryDelay is exact.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types
from imaging import jpeg

from describer.emulator import EmulatorSettings, GeminiEmulator
from describer.emulator.__main__ import build_parser, main, settings_from
from describer.emulator.quota import SlidingWindow, TokenBucket

TOKENS_PER_REQUEST = 258 + 2  # one <=384 px image + ceil(len("describe") / 4)
RPM_ID = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
TPM_ID = "GenerateContentInputTokensPerModelPerMinute-FreeTier"
TPM_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def emu(clock: FakeClock) -> AsyncIterator[GeminiEmulator]:
    async with GeminiEmulator(EmulatorSettings(), clock=clock) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: GeminiEmulator) -> AsyncIterator[genai.Client]:
    c = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=emu.base_url))
    yield c
    await c.aio.aclose()


async def ask(client: genai.Client, text: str | None = None) -> bool:
    """One generate request (an image and "describe", or ``text`` alone); True if answered,
    False if refused with a 429 (other errors propagate)."""
    contents: Any = [text] if text else [
        types.Part.from_bytes(data=jpeg(64, 48), mime_type="image/jpeg"), "describe"]
    try:
        await client.aio.models.generate_content(model="gemini-x", contents=contents)
    except errors.ClientError as exc:
        if exc.code != 429:
            raise
        return False
    return True


async def refusal(client: genai.Client) -> dict[str, Any]:
    """The error body of a generate request that must be refused with a 429."""
    with pytest.raises(errors.ClientError) as info:
        await client.aio.models.generate_content(
            model="gemini-x",
            contents=[types.Part.from_bytes(data=jpeg(64, 48), mime_type="image/jpeg"),
                      "describe"])
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    return info.value.details["error"]


def detail(error: dict[str, Any], kind: str) -> dict[str, Any]:
    """The one ``google.rpc.<kind>`` detail of an error body."""
    found = [d for d in error["details"] if d["@type"].endswith(f"google.rpc.{kind}")]
    assert len(found) == 1
    return found[0]


async def test_bucket_refuses_the_burst_plus_first_at_once_and_refills_one_per_60_over_rpm(
        emu: GeminiEmulator, client: genai.Client, clock: FakeClock) -> None:
    emu.configure(rpm=120, rpm_style="bucket")  # default burst: one second's worth, 2
    assert [await ask(client) for _ in range(3)] == [True, True, False]
    error = await refusal(client)
    violation = detail(error, "QuotaFailure")["violations"][0]
    assert (violation["quotaId"], violation["quotaValue"]) == (RPM_ID, "120")
    assert error["message"].endswith("Please retry in 0.500000000s.")  # 60/120 s to a token
    assert detail(error, "RetryInfo")["retryDelay"] == "1s"
    clock.advance(0.25)
    assert not await ask(client)  # half a token back is not a request
    clock.advance(0.25)
    assert [await ask(client), await ask(client)] == [True, False]  # one back, one taken
    assert emu.stats.rate_limited == 4 and len(emu.stats.images) == 3  # refused: not counted


async def test_bucket_burst_setting_and_window_style_admit_a_whole_minute_at_once(
        emu: GeminiEmulator, client: genai.Client, clock: FakeClock) -> None:
    emu.configure(rpm=4, rpm_style="bucket", burst=3)
    assert [await ask(client) for _ in range(4)] == [True, True, True, False]
    emu.configure(rpm_style="window")  # a new style starts afresh
    assert [await ask(client) for _ in range(5)] == [True] * 4 + [False]
    error = await refusal(client)
    assert detail(error, "RetryInfo")["retryDelay"] == "60s"
    clock.advance(59.5)
    assert detail(await refusal(client), "RetryInfo")["retryDelay"] == "1s"  # 0.5 s left
    clock.advance(0.5)
    assert [await ask(client) for _ in range(5)] == [True] * 4 + [False]


async def test_token_quota_answers_googles_token_429_and_gives_the_request_slot_back(
        emu: GeminiEmulator, client: genai.Client) -> None:
    emu.configure(tpm=3 * TOKENS_PER_REQUEST + 10, rpm=4)
    assert [await ask(client) for _ in range(3)] == [True] * 3
    error = await refusal(client)
    violation = detail(error, "QuotaFailure")["violations"][0]
    limit = 3 * TOKENS_PER_REQUEST + 10
    assert violation == {"quotaMetric": TPM_METRIC, "quotaId": TPM_ID,
                         "quotaDimensions": {"location": "global", "model": "gemini-x"},
                         "quotaValue": str(limit)}
    assert (f"* Quota exceeded for metric: {TPM_METRIC}, limit: {limit}, model: gemini-x\n"
            in error["message"])
    assert detail(error, "RetryInfo")["retryDelay"] == "60s"
    # the refused request gave its rpm slot back: a 3-token text request is the 4th of 4
    assert await ask(client, "hi, there!")
    assert not await ask(client, "hi")  # now rpm is spent
    assert emu.stats.token_limited == 1 and emu.stats.rate_limited == 2
    assert emu.behaviour.day_count == 4


@pytest.mark.parametrize("style", ["window", "bucket"])
async def test_a_request_larger_than_the_token_quota_is_refused_however_long_one_waits(
        emu: GeminiEmulator, client: genai.Client, clock: FakeClock, style: str) -> None:
    emu.configure(tpm=12_000, rpm_style=style, tpm_burst=TOKENS_PER_REQUEST - 1)
    if style == "window":
        emu.configure(tpm=TOKENS_PER_REQUEST - 1)
    for _ in range(2):
        error = await refusal(client)
        assert detail(error, "RetryInfo")["retryDelay"] == "60s"  # one whole window
        clock.advance(3600)
    assert await ask(client, "short")  # a small one still fits
    assert emu.stats.token_limited == 2


async def test_a_seeded_fraction_of_quota_429s_comes_bare(emu: GeminiEmulator) -> None:
    emu.configure(rpm=1, bare_fraction=0.3, seed=7)
    url = f"{emu.base_url}/v1beta/models/gemini-x:generateContent"
    body = {"contents": [{"parts": [{"text": "hello"}]}]}
    bare = []
    async with aiohttp.ClientSession(headers={"x-goog-api-key": "k"}) as session:
        for _ in range(41):
            async with session.post(url, json=body) as answer:
                if answer.status == 429:
                    bare.append("details" not in (await answer.json())["error"])
    assert len(bare) == 40 and sum(bare) == 12  # this seed's draws: 12 of 40 (0.3)
    emu.configure(bare_fraction=0.0, bare_429=True)
    async with aiohttp.ClientSession(headers={"x-goog-api-key": "k"}) as session, \
            session.post(url, json=body) as answer:
        error = (await answer.json())["error"]
    assert answer.status == 429 and "details" not in error and "limit:" not in error["message"]


async def test_stats_keep_when_the_first_per_day_429_was_answered(
        emu: GeminiEmulator, client: genai.Client) -> None:
    emu.configure(rpd=1)
    assert await ask(client) and emu.stats.first_day_limited_at is None
    before = time.monotonic()
    assert not await ask(client)
    first = emu.stats.first_day_limited_at
    assert first is not None and before <= first <= time.monotonic()
    assert not await ask(client)
    assert emu.stats.first_day_limited_at == first and emu.stats.day_limited == 2
    emu.reset_stats()
    assert emu.stats.first_day_limited_at is None


def test_limiters_count_amounts_with_explicit_times() -> None:
    window = SlidingWindow(limit=10, window=60)
    assert [window.take(0, 4), window.take(1, 4), window.take(2, 4)] == [0.0, 0.0, 60 - 2]
    window.give_back(1, 4)
    assert window.take(2, 4) == 0.0 and window.take(70, 11) == 60  # too big: never fits
    bucket = TokenBucket(limit=60, window=60, capacity=5, now=0)
    assert [bucket.take(0, 5), bucket.take(0, 1)] == [0.0, 1.0]  # one unit per second
    assert bucket.take(2.5, 3) == pytest.approx(0.5) and bucket.take(3, 3) == 0.0


@pytest.mark.parametrize("changes", [
    {"rpm_style": "leaky"}, {"burst": 0}, {"tpm": 0}, {"tpm_burst": -1},
    {"bare_fraction": 1.5}, {"flex_shed_rate": -0.1}, {"flex_shed_status": 500},
    {"flex_latency": (2.0, 1.0)}, {"quota_window": 0}, {"cache_ttl": -1},
])
def test_bad_settings_are_value_errors(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EmulatorSettings(**changes)


def test_command_line_flags_reach_the_settings() -> None:
    args = build_parser().parse_args([
        "--rpm", "30", "--rpm-style", "bucket", "--burst", "4", "--tpm", "6000",
        "--tpm-burst", "500", "--bare-fraction", "0.25", "--flex-latency", "60-900",
        "--flex-shed-rate", "0.1", "--flex-shed-status", "503", "--cache-ttl", "30",
        "--no-implicit-cache"])
    settings = settings_from(args)
    assert (settings.rpm_style, settings.rpm_capacity, settings.tpm_capacity) == ("bucket", 4, 500)
    assert (settings.bare_fraction, settings.flex_latency, settings.flex_shed_rate) == (
        0.25, (60.0, 900.0), 0.1)
    assert (settings.flex_shed_status, settings.cache_ttl, settings.implicit_cache) == (
        503, 30.0, False)
    with pytest.raises(SystemExit) as info:
        main(["--bare-fraction", "2"])
    assert info.value.code == 2


async def test_control_endpoint_takes_the_new_settings(emu: GeminiEmulator) -> None:
    async with aiohttp.ClientSession(base_url=emu.base_url) as s:
        async with s.post("/_emulator/config", json={
                "rpm_style": "bucket", "flex_latency": 0.5, "tpm": 900}) as r:
            assert r.status == 200 and (await r.json())["flex_latency"] == [0.5, 0.5]
        async with s.post("/_emulator/config", json={"rpm_style": "leaky"}) as r:
            assert r.status == 400
    assert (emu.settings.rpm_style, emu.settings.tpm) == ("bucket", 900)


async def test_embed_rpm_refuses_the_call_past_it_within_the_window_with_its_quota_id(
    emu: GeminiEmulator, client: genai.Client, clock: FakeClock
) -> None:
    emu.configure(embed_rpm=2)

    async def embed() -> None:
        await client.aio.models.embed_content(model="gemini-embedding-001", contents=["a"])

    await embed()
    await embed()
    with pytest.raises(errors.ClientError) as info:
        await embed()
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    failure = detail(info.value.details["error"], "QuotaFailure")
    assert failure["violations"][0]["quotaId"].startswith("EmbedContentRequestsPerMinute")
    clock.advance(60)
    await embed()  # the window moved on
    assert (emu.stats.embed_requests, emu.stats.rate_limited, emu.stats.day_limited) == (4, 1, 0)
