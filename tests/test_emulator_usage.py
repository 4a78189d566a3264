"""What the emulator bills and how it serves tiers, through the real google-genai client:
service tiers and flex sheds, implicit caching (cachedContentTokenCount), and thinking
that spends maxOutputTokens first."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import aiohttp
import pytest
import test_emulator_quota as with_clock
from google import genai
from google.genai import errors, types
from imaging import jpeg

from describer.emulator import GeminiEmulator
from describer.emulator.answers import THINKING_TOKENS
from describer.emulator.wire import MSG_EXHAUSTED, MSG_HIGH_DEMAND

#: The fake clock and the emulator and client fixtures built on it (test_emulator_quota).
FakeClock = with_clock.FakeClock
clock, emu, client = with_clock.clock, with_clock.emu, with_clock.client
LONG = "Reference notes on harbours, lighthouses and tides. " * 200  # 10,400 chars
SYSTEM = "be brief"


def image(seed: int = 0) -> types.Part:
    return types.Part.from_bytes(data=jpeg(64, 48, seed=seed), mime_type="image/jpeg")


async def generate(client: genai.Client, contents: list[Any], model: str = "gemini-x",
                   **config: Any) -> types.GenerateContentResponse:
    return await client.aio.models.generate_content(
        model=model, contents=contents,
        config=types.GenerateContentConfig(system_instruction=SYSTEM, **config))


async def post(emu: GeminiEmulator, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A raw generateContent call: (status, JSON answer)."""
    async with aiohttp.ClientSession() as s, s.post(
            f"{emu.base_url}/v1beta/models/gemini-x:generateContent", json=body,
            headers={"x-goog-api-key": "k"}) as r:
        return r.status, await r.json()


# ----- service tiers and flex ---------------------------------------------------------
async def test_service_tiers_are_counted_and_echoed(emu: GeminiEmulator,
                                                    client: genai.Client) -> None:
    flex = await generate(client, [image(), "describe"], service_tier="flex")
    await generate(client, [image(), "describe"])
    await generate(client, [image(), "describe"], service_tier="standard")
    hello = {"contents": [{"parts": [{"text": "hi"}]}]}
    status, answer = await post(emu, {**hello, "service_tier": "FLEX"})  # the REST docs' spelling
    assert status == 200 and answer["usageMetadata"]["serviceTier"] == "flex"
    status, answer = await post(emu, {**hello, "serviceTier": "cheapest"})
    assert (status, answer["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert flex.text and emu.stats.service_tiers == {"flex": 2, "standard": 2}
    async with aiohttp.ClientSession() as s, s.get(f"{emu.base_url}/_emulator/stats",
                                                   params={"lists": "0"}) as r:
        assert (await r.json())["service_tiers"] == {"flex": 2, "standard": 2}


async def test_flex_sheds_answer_a_bare_429_by_default_or_a_503(emu: GeminiEmulator,
                                                                 client: genai.Client) -> None:
    emu.configure(flex_shed_rate=1.0)
    assert (await generate(client, [image(), "describe"])).text  # standard is never shed
    with pytest.raises(errors.ClientError) as info:
        await generate(client, [image(), "describe"], service_tier="flex")
    assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert info.value.message == MSG_EXHAUSTED and "details" not in info.value.details["error"]
    emu.configure(flex_shed_status=503)
    with pytest.raises(errors.ServerError) as served:
        await generate(client, [image(), "describe"], service_tier="flex")
    assert (served.value.code, served.value.status) == (503, "UNAVAILABLE")
    assert served.value.message == MSG_HIGH_DEMAND
    assert emu.stats.flex_shed == 2 and emu.stats.responses_by_status == {200: 1, 429: 1, 503: 1}


async def test_a_seeded_fraction_of_flex_requests_is_shed_after_the_flex_wait(
        emu: GeminiEmulator, client: genai.Client) -> None:
    emu.configure(flex_shed_rate=0.5, seed=3, flex_latency=(0.05, 0.05))
    started = asyncio.get_running_loop().time()
    outcomes = []
    for _ in range(10):
        try:
            outcomes.append(bool(await generate(client, ["hi"], service_tier="flex")))
        except errors.ClientError:
            outcomes.append(False)
    assert asyncio.get_running_loop().time() - started >= 10 * 0.05  # every one waited
    assert outcomes == [False, True, False, True, False, False, False, True, True, True]
    assert emu.stats.flex_shed == 5  # this seed's draws: 5 of 10


# ----- implicit caching ---------------------------------------------------------------
def cached(response: types.GenerateContentResponse) -> int | None:
    assert response.usage_metadata is not None
    return response.usage_metadata.cached_content_token_count


async def test_a_repeated_long_text_prefix_is_billed_as_cached_the_second_time(
        emu: GeminiEmulator, client: genai.Client, clock: FakeClock) -> None:
    prefix_tokens = math.ceil((len(SYSTEM) + len(LONG)) / 4)
    assert prefix_tokens >= 2048  # the Gemini 2.5 minimum
    model = "gemini-2.5-flash"
    first = await generate(client, [LONG, image(1)], model=model)
    second = await generate(client, [LONG, image(2)], model=model)  # same prefix, new image
    assert cached(first) is None and cached(second) == prefix_tokens
    assert second.usage_metadata and second.usage_metadata.cache_tokens_details
    assert second.usage_metadata.cache_tokens_details[0].token_count == prefix_tokens
    assert second.usage_metadata.prompt_token_count == first.usage_metadata.prompt_token_count
    media_first = await generate(client, [image(1), LONG], model=model)
    again = await generate(client, [image(1), LONG], model=model)
    assert cached(media_first) is None and cached(again) is None  # describer's order: no hit
    clock.advance(300)  # the entry is 300 s old: gone
    assert cached(await generate(client, [LONG, image(3)], model=model)) is None
    assert cached(await generate(client, [LONG, image(4)], model=model)) == prefix_tokens
    assert emu.stats.cached_tokens == 2 * prefix_tokens


async def test_the_minimum_prefix_is_the_models(emu: GeminiEmulator,
                                                client: genai.Client) -> None:
    """The same 2,600-token prefix: cached on Gemini 2.5 (2,048), not on Gemini 3 (4,096)
    nor on 2.0 (no implicit caching)."""
    for model, hit in (("gemini-2.5-pro", True), ("gemini-3.8-flash", False),
                       ("gemini-2.0-flash", False)):
        await generate(client, [LONG, image()], model=model)
        assert (cached(await generate(client, [LONG, image()], model=model)) is not None) is hit
    emu.configure(implicit_cache=False)
    assert cached(await generate(client, [LONG, image()], model="gemini-2.5-pro")) is None


async def test_an_explicit_cache_name_is_an_unknown_cache(emu: GeminiEmulator) -> None:
    status, answer = await post(emu, {"contents": [{"parts": [{"text": "hi"}]}],
                                      "cachedContent": "cachedContents/abc123"})
    assert (status, answer["error"]["status"]) == (403, "PERMISSION_DENIED")
    assert answer["error"]["message"] == "CachedContent not found (or permission denied)"


# ----- thinking against maxOutputTokens -----------------------------------------------
async def test_thinking_spends_max_output_tokens_first(client: genai.Client) -> None:
    medium = THINKING_TOKENS["MEDIUM"]  # what "gemini-x" thinks by default
    starved = await generate(client, [image(), "describe"], max_output_tokens=medium - 12)
    assert starved.candidates and starved.candidates[0].finish_reason == (
        types.FinishReason.MAX_TOKENS)
    assert starved.text is None and not (starved.candidates[0].content or types.Content()).parts
    usage = starved.usage_metadata
    assert usage and usage.thoughts_token_count == medium - 12
    assert usage.candidates_token_count is None
    assert usage.total_token_count == usage.prompt_token_count + medium - 12
    cut = await generate(client, [image(), "describe"], max_output_tokens=medium + 3)
    assert cut.candidates and cut.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert cut.text is not None and len(cut.text) == 3 * 4
    assert cut.usage_metadata and cut.usage_metadata.thoughts_token_count == medium
    assert cut.usage_metadata.candidates_token_count == 3
    room = await generate(client, [image(), "describe"], max_output_tokens=medium + 200)
    assert room.candidates and room.candidates[0].finish_reason == types.FinishReason.STOP


@pytest.mark.parametrize(("model", "resolution", "image_tokens"), [
    ("gemini-2.5-flash", None, 258 * 3 * 2),  # the size rule: 1600x1200 is 3x2 tiles
    ("gemini-3.8-flash", None, 1120),  # Gemini 3: per media resolution, HIGH by default
    ("gemini-3.8-flash", "MEDIA_RESOLUTION_LOW", 280),
    ("models/gemini-4-pro", "MEDIA_RESOLUTION_MEDIUM", 560),
])
async def test_gemini_3_bills_an_image_by_media_resolution_not_by_size(
    client: genai.Client, model: str, resolution: str | None, image_tokens: int
) -> None:
    part = types.Part.from_bytes(data=jpeg(1600, 1200), mime_type="image/jpeg")
    resp = await generate(client, [part, "3 words"], model=model.removeprefix("models/"),
                          media_resolution=resolution)
    text = math.ceil((len("3 words") + len(SYSTEM)) / 4)
    assert resp.usage_metadata is not None
    assert resp.usage_metadata.prompt_token_count == image_tokens + text
