"""Tests of the Gemini emulator through the real google-genai client over HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pillow_heif
import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

from describer.emulator import EmulatorSettings, GeminiEmulator, ImageServer, media
from describer.emulator.answers import THINKING_TOKENS
from describer.emulator.media import image_tokens
from describer.emulator.wire import MSG_BAD_IMAGE

pillow_heif.register_heif_opener()  # lets Pillow save HEIF test images


def make_image(width: int, height: int, shade: int = 0, fmt: str = "JPEG") -> bytes:
    """A small gradient image of width x height px encoded as ``fmt`` (JPEG, PNG, ...)."""
    im = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    im.paste((shade % 256, 90, 160), (0, 0, max(1, width // 4), max(1, height // 4)))
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
async def emu() -> AsyncIterator[GeminiEmulator]:
    async with GeminiEmulator(EmulatorSettings()) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: GeminiEmulator) -> AsyncIterator[genai.Client]:
    c = genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=emu.base_url))
    yield c
    await c.aio.aclose()


async def describe(client: genai.Client, data: bytes, mime: str = "image/jpeg",
                   **config: object) -> types.GenerateContentResponse:
    return await client.aio.models.generate_content(
        model="gemini-x",
        contents=[types.Part.from_bytes(data=data, mime_type=mime), "describe"],
        config=types.GenerateContentConfig(system_instruction="be brief", **config),
    )


async def test_jpeg_described_with_tile_token_rule(emu: GeminiEmulator,
                                                   client: genai.Client) -> None:
    data = make_image(1000, 872)
    resp = await describe(client, data, temperature=0.2)
    assert resp.text is not None
    assert "JPEG" in resp.text and "1000x872" in resp.text
    usage = resp.usage_metadata
    assert usage is not None
    text_tokens = math.ceil((len("describe") + len("be brief")) / 4)
    assert image_tokens(1000, 872) == 258 * 2 * 2
    assert usage.prompt_token_count == 258 * 2 * 2 + text_tokens
    assert usage.candidates_token_count == math.ceil(len(resp.text) / 4)
    # no thinking level named: the emulator's Gemini 3 default (MEDIUM) thinks, billed as output
    assert usage.thoughts_token_count == THINKING_TOKENS["MEDIUM"]
    assert usage.total_token_count == (
        usage.prompt_token_count + usage.candidates_token_count + usage.thoughts_token_count
    )
    assert resp.candidates and resp.candidates[0].finish_reason == types.FinishReason.STOP
    again = await describe(client, data)
    other = await describe(client, make_image(1000, 872, shade=1))
    assert again.text == resp.text and other.text != resp.text
    rec = emu.stats.images[0]
    assert (rec.sha256, rec.width, rec.height, rec.mime_type) == (sha(data), 1000, 872,
                                                                  "image/jpeg")
    assert rec.prompt == "describe" and rec.system_instruction == "be brief"
    assert rec.first_part_kind == "image" and rec.generation_config["temperature"] == 0.2
    assert emu.stats.image_bytes == 2 * len(data) + len(make_image(1000, 872, shade=1))


async def test_small_png_is_one_tile_and_max_output_tokens_truncates(
        client: genai.Client) -> None:
    no_thinking = types.ThinkingConfig(thinking_level=types.ThinkingLevel.MINIMAL)
    resp = await describe(client, make_image(300, 200, fmt="PNG"), "image/png",
                          max_output_tokens=3, thinking_config=no_thinking)  # all 3 for text
    assert resp.usage_metadata is not None and resp.candidates
    assert resp.usage_metadata.prompt_token_count == 258 + 4
    assert resp.text is not None and len(resp.text) == 12
    assert resp.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


async def test_standard_and_urlsafe_base64_both_accepted(emu: GeminiEmulator,
                                                         client: genai.Client) -> None:
    data = make_image(64, 48)
    standard = base64.b64encode(data).decode()
    assert standard != base64.urlsafe_b64encode(data).decode()  # alphabets really differ
    body = {"contents": [{"role": "user", "parts": [
        {"text": "describe"}, {"inlineData": {"mimeType": "image/jpeg", "data": standard}}]}]}
    async with aiohttp.ClientSession() as s, s.post(
            f"{emu.base_url}/v1beta/models/gemini-x:generateContent", json=body,
            headers={"x-goog-api-key": "k"}) as r:
        assert r.status == 200
        raw = await r.json()
    sdk = await describe(client, data)  # the SDK sends URL-safe base64
    assert raw["candidates"][0]["content"]["parts"][0]["text"] == sdk.text
    assert [i.sha256 for i in emu.stats.images] == [sha(data), sha(data)]
    assert emu.stats.images[0].first_part_kind == "text"


async def test_undecodable_image_is_gemini_400(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as info:
        await describe(client, b"definitely not a jpeg")
    assert info.value.code == 400 and info.value.status == "INVALID_ARGUMENT"
    assert info.value.message == MSG_BAD_IMAGE
    with pytest.raises(errors.ClientError):
        await describe(client, make_image(8, 8), mime="image/gif")


@pytest.mark.parametrize(("fmt", "mime", "label"), [
    ("PNG", "image/png", "PNG"), ("WEBP", "image/webp", "WEBP"), ("HEIF", "image/heic", "HEIF")])
async def test_other_formats_accepted(client: genai.Client, fmt: str, mime: str,
                                      label: str) -> None:
    resp = await describe(client, make_image(66, 34, fmt=fmt), mime)
    assert resp.text and f"66x34 {label}" in resp.text


@pytest.mark.parametrize("full_decode_max", [10_000_000, 0])
async def test_truncated_images_rejected_in_both_check_modes(
        client: genai.Client, monkeypatch: pytest.MonkeyPatch, full_decode_max: int) -> None:
    monkeypatch.setattr(media, "FULL_DECODE_MAX_BYTES", full_decode_max)
    jpeg, png = make_image(200, 100, fmt="JPEG"), make_image(200, 100, fmt="PNG")
    assert (await describe(client, jpeg)).text
    assert (await describe(client, png, "image/png")).text
    for data, mime in ((jpeg[: len(jpeg) - 40], "image/jpeg"), (png[:-30], "image/png")):
        with pytest.raises(errors.ClientError) as info:
            await describe(client, data, mime)
        assert info.value.message == MSG_BAD_IMAGE


async def test_missing_key_is_403_and_no_contents_is_400(emu: GeminiEmulator) -> None:
    url = f"{emu.base_url}/v1/models/gemini-x:generateContent"
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json={"contents": []}) as r:
            assert r.status == 403
            assert (await r.json())["error"]["status"] == "PERMISSION_DENIED"
        async with s.post(url, json={"contents": []}, headers={"x-goog-api-key": "k"}) as r:
            err = (await r.json())["error"]
        assert (r.status, err["status"]) == (400, "INVALID_ARGUMENT")
        assert err["message"] == "* GenerateContentRequest.contents: contents is not specified"
        async with s.post(url.replace(":generateContent", ":nope"), json={},
                          headers={"x-goog-api-key": "k"}) as r:
            assert r.status == 404
    assert emu.stats.responses_by_status == {403: 1, 400: 1, 404: 1}


async def test_suspended_script_echoes_the_header_key_like_gemini(
        emu: GeminiEmulator, client: genai.Client) -> None:
    data = make_image(44, 44)
    emu.script(sha(data), "suspended")
    with pytest.raises(errors.ClientError) as info:
        await describe(client, data)  # google-genai sends the key as x-goog-api-key
    assert (info.value.code, info.value.status) == (403, "PERMISSION_DENIED")
    assert info.value.message == (
        "Permission denied: Consumer 'api_key:test-key' has been suspended.")
    detail = info.value.details["error"]["details"][0]
    assert (detail["reason"], detail["metadata"]["containerInfo"]) == (
        "CONSUMER_SUSPENDED", "api_key:test-key")
    emu.script_embed("suspended")
    with pytest.raises(errors.ClientError) as embed:
        await client.aio.models.embed_content(model="gemini-embedding-001", contents="x")
    assert "api_key:test-key" in (embed.value.message or "")


async def test_query_key_is_accepted_and_echoed_when_suspended(emu: GeminiEmulator) -> None:
    good, bad = make_image(45, 45), make_image(46, 46)
    emu.script(sha(bad), "suspended")
    url = f"{emu.base_url}/v1beta/models/gemini-x:generateContent"
    async with aiohttp.ClientSession() as s:
        for data, status in ((good, 200), (bad, 403)):
            body = {"contents": [{"parts": [{"inlineData": {
                "mimeType": "image/jpeg", "data": base64.b64encode(data).decode()}}]}]}
            async with s.post(url, params={"key": "query-key-1"}, json=body) as r:
                assert r.status == status
                answer = await r.json()
    assert "'api_key:query-key-1'" in answer["error"]["message"]
    assert "query-key-1" not in json.dumps(emu.stats.to_dict())


async def test_rpm_quota_gives_429_with_retry_info(emu: GeminiEmulator,
                                                   client: genai.Client) -> None:
    emu.configure(rpm=2)
    data = make_image(32, 32)
    await describe(client, data)
    await describe(client, data)
    with pytest.raises(errors.ClientError) as info:
        await describe(client, data)
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    details = info.value.details["error"]["details"]
    retry = [d for d in details if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry and retry[0]["retryDelay"] == "60s"
    assert emu.stats.rate_limited == 1 and emu.stats.generate_requests == 3
    assert len(emu.stats.images) == 2


@pytest.mark.parametrize("behaviour", ["block", "safety", "empty", "max_tokens"])
async def test_scripted_shapes_parse_through_sdk(emu: GeminiEmulator, client: genai.Client,
                                                 behaviour: str) -> None:
    data = make_image(40, 40)
    emu.script(sha(data), behaviour)
    resp = await describe(client, data)
    if behaviour == "block":
        assert resp.prompt_feedback is not None
        assert resp.prompt_feedback.block_reason == types.BlockedReason.SAFETY
        assert not resp.candidates
        return
    assert resp.candidates
    cand = resp.candidates[0]
    expected = {"safety": types.FinishReason.SAFETY, "empty": types.FinishReason.STOP,
                "max_tokens": types.FinishReason.MAX_TOKENS}[behaviour]
    assert cand.finish_reason == expected
    if behaviour == "max_tokens":
        assert resp.text and "40x40" in resp.text
    else:
        assert resp.text is None


async def test_fail_503_twice_then_success_via_control_endpoint(
        emu: GeminiEmulator, client: genai.Client) -> None:
    data = make_image(50, 50)
    async with aiohttp.ClientSession() as s, s.post(
            f"{emu.base_url}/_emulator/script",
            json={"sha256": sha(data), "behaviour": "fail:503:2"}) as r:
        assert r.status == 200
    for _ in range(2):
        with pytest.raises(errors.ServerError) as info:
            await describe(client, data)
        assert info.value.code == 503 and info.value.status == "UNAVAILABLE"
    assert (await describe(client, data)).text
    assert emu.stats.responses_by_status == {503: 2, 200: 1}


async def test_slow_and_fail_400_scripts_and_bad_script(emu: GeminiEmulator,
                                                        client: genai.Client) -> None:
    slow, bad = make_image(30, 30), make_image(31, 31)
    emu.script(sha(slow), "slow:0.15")
    emu.script(sha(bad), "fail:400")
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await describe(client, slow)).text
    assert loop.time() - started >= 0.15
    for _ in range(2):
        with pytest.raises(errors.ClientError) as info:
            await describe(client, bad)
        assert info.value.code == 400
    with pytest.raises(ValueError):
        emu.script(sha(bad), "explode")
    async with aiohttp.ClientSession() as s, s.post(
            f"{emu.base_url}/_emulator/script", json={"sha256": "ab", "behaviour": "x"}) as r:
        assert r.status == 400
    stats = emu.stats
    emu.reset_stats()
    assert stats is emu.stats and stats.generate_requests == 0 and stats.images == []


async def test_fault_rate_one_injects_503(emu: GeminiEmulator, client: genai.Client) -> None:
    emu.configure(fault_rate=1.0)
    with pytest.raises(errors.ServerError) as info:
        await describe(client, make_image(16, 16))
    assert info.value.message == "The model is overloaded. Please try again later."
    assert emu.stats.injected_faults == 1


async def test_embeddings_batch_limit_determinism_and_norm(emu: GeminiEmulator,
                                                           client: genai.Client) -> None:
    texts = [f"text {i}" for i in range(250)]
    cfg = types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT", output_dimensionality=8)
    with pytest.raises(errors.ClientError) as info:
        await client.aio.models.embed_content(model="gemini-embedding-001", contents=texts,
                                              config=cfg)
    assert info.value.code == 400
    assert info.value.message == (
        "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch")
    first = await client.aio.models.embed_content(
        model="gemini-embedding-001", contents=texts[:100], config=cfg)
    second = await client.aio.models.embed_content(
        model="gemini-embedding-001", contents=[texts[5], "other"], config=cfg)
    assert first.embeddings and second.embeddings and len(first.embeddings) == 100
    vectors = [e.values or [] for e in first.embeddings]
    assert all(len(v) == 8 and math.isclose(math.hypot(*v), 1.0) for v in vectors)
    assert second.embeddings[0].values == vectors[5] != second.embeddings[1].values
    assert emu.stats.batch_sizes == [250, 100, 2] and emu.stats.embed_requests == 3
    full = await client.aio.models.embed_content(model="gemini-embedding-001", contents="x")
    assert full.embeddings and len(full.embeddings[0].values or []) == 3072


async def test_max_in_flight_counts_concurrent_requests(emu: GeminiEmulator,
                                                        client: genai.Client) -> None:
    emu.configure(latency=(0.2, 0.2))
    images = [make_image(20, 20, shade=i) for i in range(5)]
    results = await asyncio.gather(*(describe(client, d) for d in images))
    assert all(r.text for r in results)
    assert emu.stats.max_in_flight == 5 and emu.stats.in_flight == 0
    assert len(emu.stats.request_times) == 5


async def test_control_endpoints_stats_reset_config(emu: GeminiEmulator,
                                                    client: genai.Client) -> None:
    await describe(client, make_image(10, 10))
    async with aiohttp.ClientSession(base_url=emu.base_url) as s:
        async with s.get("/_emulator/stats") as r:
            stats = await r.json()
        assert stats["responses_by_status"] == {"200": 1} and len(stats["images"]) == 1
        async with s.post("/_emulator/config", json={"latency": [0, 0.01], "rpm": 7}) as r:
            assert (await r.json())["rpm"] == 7
        assert emu.settings.rpm == 7 and emu.settings.latency == (0.0, 0.01)
        async with s.post("/_emulator/config", json={"fault_rate": 2}) as r:
            assert r.status == 400
        async with s.post("/_emulator/reset") as r:
            assert r.status == 200
        async with s.get("/_emulator/stats", params={"lists": "0"}) as r:
            stats = await r.json()
    assert stats["generate_requests"] == 0 and "images" not in stats
    assert "test-key" not in json.dumps(emu.stats.to_dict())


def test_in_thread_and_sync_client() -> None:
    emulator = GeminiEmulator(EmulatorSettings(seed=3))
    with emulator.in_thread() as base_url:
        c = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=base_url))
        resp = c.models.generate_content(
            model="m", contents=[types.Part.from_bytes(data=make_image(9, 9),
                                                       mime_type="image/jpeg")])
        c.close()
    assert resp.text and "9x9 JPEG" in resp.text


def test_main_prints_url_and_exits_cleanly_on_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "describer.emulator", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        c = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=url))
        assert c.models.generate_content(model="m", contents="hi").text
        c.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=5)
    assert proc.returncode == 0 and "Traceback" not in err and "Gemini emulator on" in err


# ----- image server ---------------------------------------------------------------------
async def test_image_server_files_routes_redirect_404_flaky(tmp_path: Path) -> None:
    jpeg = make_image(12, 12)
    (tmp_path / "a.jpg").write_bytes(jpeg)
    async with ImageServer(tmp_path) as srv, aiohttp.ClientSession() as s:
        srv.add("/x.png", b"png!", content_type="image/png", headers={"X-Test": "1"})
        srv.add_redirect("/r", "/files/a.jpg")
        srv.add_flaky("/f.jpg", jpeg, failures=2, status=503)
        async with s.get(srv.url("a.jpg")) as r:
            assert (r.status, r.content_type, await r.read()) == (200, "image/jpeg", jpeg)
        async with s.get(srv.url("/x.png")) as r:
            assert (r.content_type, r.headers["X-Test"], await r.read()) == (
                "image/png", "1", b"png!")
        async with s.get(srv.url("/r")) as r:
            assert r.status == 200 and r.history[0].status == 302
        for path in ("/missing", "/files/../secret", "/files/nope.jpg"):
            async with s.get(srv.base_url + path) as r:
                assert r.status == 404
        statuses = []
        for _ in range(3):
            async with s.get(srv.url("/f.jpg")) as r:
                statuses.append(r.status)
        assert statuses == [503, 503, 200]
    assert srv.hits["/r"] == 1 and srv.hits["/files/a.jpg"] == 2 and srv.hits["/f.jpg"] == 3


async def test_image_server_hang_endless_slow_and_clean_shutdown() -> None:
    srv = ImageServer()
    await srv.start()
    srv.add_hang("/hang")
    srv.add_endless("/endless")
    srv.add_slow("/slow", b"ok", delay=0.1)
    async with aiohttp.ClientSession() as s:
        with pytest.raises(asyncio.TimeoutError):
            async with s.get(srv.url("/hang"), timeout=aiohttp.ClientTimeout(total=0.2)):
                pass
        async with s.get(srv.url("/endless")) as r:
            got = 0
            async for chunk in r.content.iter_chunked(65536):
                got += len(chunk)
                if got > 1_000_000:
                    break
        async with s.get(srv.url("/slow")) as r:
            assert await r.read() == b"ok"
        pending = asyncio.ensure_future(s.get(srv.url("/hang")))
        await srv.wait_for_hits("/hang", 2)  # the second /hang request is being handled
        loop = asyncio.get_running_loop()
        started = loop.time()
        await srv.stop()
        assert loop.time() - started < 2
        with pytest.raises(aiohttp.ClientError):
            await pending
    assert got > 1_000_000 and srv.hits["/hang"] == 2
