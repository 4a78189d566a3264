"""The emulator's explicit context caches (cachedContents) through the real google-genai
client: create/get/update/delete/list, the 400 under the minimum, 404 and 403 for a cache
that is gone, expiry on the emulator's (fake) clock, cachedContentTokenCount, storage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from google import genai
from google.genai import errors, types
from imaging import jpeg
from test_emulator_quota import FakeClock

from describer.emulator import EmulatorSettings, GeminiEmulator

MODEL = "gemini-3.8-flash"
LONG = "Every caption names the subject first, then the setting. " * 300  # ~4,275 tokens


@dataclass
class Api:
    """An emulator on a fake clock, and a google-genai client pointed at it."""

    emu: GeminiEmulator
    client: genai.Client
    clock: FakeClock


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    clock = FakeClock()
    async with GeminiEmulator(EmulatorSettings(), clock=clock) as emu:
        client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=emu.base_url))
        yield Api(emu, client, clock)
        await client.aio.aclose()


async def _create(
    client: genai.Client, text: str = LONG, ttl: str = "600s"
) -> types.CachedContent:
    config = types.CreateCachedContentConfig(
        contents=[types.Content(role="user", parts=[types.Part.from_text(text=text)])],
        system_instruction="Be brief.", ttl=ttl)
    return await client.aio.caches.create(model=MODEL, config=config)


async def _ask(
    client: genai.Client, cache: str, **settings: object
) -> types.GenerateContentResponse:
    part = types.Part.from_bytes(data=jpeg(seed=3), mime_type="image/jpeg")
    config = types.GenerateContentConfig(cached_content=cache, **settings)  # type: ignore[arg-type]
    return await client.aio.models.generate_content(model=MODEL, contents=[part, "describe"],
                                                    config=config)


async def test_a_call_naming_a_cache_reads_its_tokens(api: Api) -> None:
    emu, client = api.emu, api.client
    cache = await _create(client)
    assert cache.usage_metadata and cache.usage_metadata.total_token_count
    tokens = cache.usage_metadata.total_token_count
    answer = await _ask(client, cache.name or "")
    usage = answer.usage_metadata
    assert usage is not None and usage.cached_content_token_count == tokens
    assert usage.prompt_token_count and usage.prompt_token_count > tokens  # cached ones included
    assert emu.contexts.stats.calls_by_cache == {cache.name: 1}
    assert emu.stats.images[-1].system_instruction == "Be brief."  # the cache's, read first


async def test_under_the_minimum_is_geminis_400(api: Api) -> None:
    emu, client = api.emu, api.client
    with pytest.raises(errors.ClientError) as raised:
        await _create(client, text="short")
    assert raised.value.code == 400
    assert "Cached content is too small. total_token_count=" in str(raised.value.message)
    assert "min_total_token_count=4096" in str(raised.value.message)
    assert emu.contexts.stats.refused == 1


async def test_a_cache_expires_on_the_emulators_clock(api: Api) -> None:
    emu, client, clock = api.emu, api.client, api.clock
    cache = await _create(client, ttl="600s")
    clock.now += 599
    await _ask(client, cache.name or "")
    clock.now += 1
    with pytest.raises(errors.ClientError) as generate:
        await _ask(client, cache.name or "")
    with pytest.raises(errors.ClientError) as get:
        await client.aio.caches.get(name=cache.name or "")
    assert (generate.value.code, get.value.code) == (403, 404)
    assert emu.contexts.stats.unknown_reads == 1
    assert emu.contexts.stats.storage_token_seconds == pytest.approx(
        (cache.usage_metadata.total_token_count or 0) * 600)


async def test_update_extends_and_delete_ends_it(api: Api) -> None:
    emu, client, clock = api.emu, api.client, api.clock
    cache = await _create(client, ttl="600s")
    clock.now += 500
    updated = await client.aio.caches.update(
        name=cache.name or "", config=types.UpdateCachedContentConfig(ttl="600s"))
    assert updated.expire_time and cache.expire_time and updated.expire_time > cache.expire_time
    clock.now += 400  # past the first expiry, within the second
    await _ask(client, cache.name or "")
    assert [c.name async for c in await client.aio.caches.list()] == [cache.name]
    await client.aio.caches.delete(name=cache.name or "")
    with pytest.raises(errors.ClientError) as again:
        await client.aio.caches.delete(name=cache.name or "")
    stats = emu.contexts.stats
    assert again.value.code == 404
    assert (stats.created, stats.updated, stats.deleted) == (1, 1, 1)
    tokens = cache.usage_metadata.total_token_count or 0
    assert stats.storage_token_seconds == pytest.approx(tokens * 1100)  # set to live 500 + 600


async def test_a_system_instruction_beside_a_cache_is_refused(api: Api) -> None:
    client = api.client
    cache = await _create(client)
    with pytest.raises(errors.ClientError) as raised:
        await _ask(client, cache.name or "", system_instruction="Be long.")
    assert raised.value.code == 400
    assert "CachedContent can not be used with GenerateContent request setting " \
           "system_instruction" in str(raised.value.message)
