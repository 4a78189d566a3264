"""The emulator fetches fileData http(s) URLs as Gemini does, and caps its uplink reads."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from google import genai
from google.genai import errors, types

from describer.emulator import EmulatorSettings, GeminiEmulator, ImageServer, urls
from describer.emulator.__main__ import build_parser, settings_from
from describer.emulator.uplink import Uplink, parse_rate
from describer.emulator.wire import MSG_BAD_IMAGE
from tests.test_emulator import make_image, sha


@pytest.fixture
async def srv() -> AsyncIterator[ImageServer]:
    async with ImageServer() as server:
        yield server


async def from_uri(client: genai.Client, uri: str,
                   mime: str = "image/jpeg") -> types.GenerateContentResponse:
    return await client.aio.models.generate_content(
        model="gemini-x", contents=[types.Part.from_uri(file_uri=uri, mime_type=mime), "describe"])


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/a.jpg"


async def test_url_part_fetched_described_and_counted_apart(
        emulator: GeminiEmulator, client: genai.Client, srv: ImageServer) -> None:
    data = make_image(900, 500)
    srv.add("/a.jpg", data)
    resp = await from_uri(client, srv.url("/a.jpg"))
    assert resp.text is not None and "JPEG" in resp.text and "900x500" in resp.text
    assert srv.hits["/a.jpg"] == 1
    assert emulator.stats.url_parts == 1
    assert emulator.stats.url_bytes_fetched == len(data)
    assert emulator.stats.image_bytes == 0  # nothing inline
    assert emulator.stats.request_bytes < 1000  # only the URL went up
    record = emulator.stats.images[0]
    assert record.source == "url" and record.sha256 == sha(data) and record.bytes == len(data)


async def test_inline_part_still_counted_inline(emulator: GeminiEmulator,
                                                client: genai.Client) -> None:
    data = make_image(64, 64)
    await client.aio.models.generate_content(
        model="gemini-x", contents=[types.Part.from_bytes(data=data, mime_type="image/jpeg")])
    assert emulator.stats.image_bytes == len(data)
    assert emulator.stats.url_parts == 0 and emulator.stats.url_bytes_fetched == 0
    assert emulator.stats.images[0].source == "inline"


@pytest.mark.parametrize("route", ["refused", "404", "too_big", "endless"])
async def test_unfetchable_url_is_gemini_400(emulator: GeminiEmulator, client: genai.Client,
                                              srv: ImageServer, route: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urls, "MAX_URL_BYTES", 1_000_000)
    monkeypatch.setattr(urls, "FETCH_TIMEOUT_S", 600.0)  # the cap, not a timeout, must stop it
    srv.add("/gone.jpg", b"not here", status=404)
    srv.add("/big.jpg", make_image(16, 16) + b"\0" * 1_000_000)  # a JPEG, over the cap
    srv.add_endless("/endless.jpg")  # no Content-Length: the cap applies as it streams
    uri = {"refused": closed_port_url(), "404": srv.url("/gone.jpg"),
           "too_big": srv.url("/big.jpg"), "endless": srv.url("/endless.jpg")}[route]
    with pytest.raises(errors.ClientError) as info:
        await asyncio.wait_for(from_uri(client, uri), 60)  # liveness bound, not a timing
    assert info.value.code == 400 and info.value.status == "INVALID_ARGUMENT"
    assert info.value.message == urls.MSG_URL_FETCH
    assert emulator.stats.url_parts == 0 and not emulator.stats.images


async def test_url_that_is_not_an_image_is_400(client: genai.Client,
                                               srv: ImageServer) -> None:
    srv.add("/page.jpg", b"<html>hi</html>", content_type="text/html")
    with pytest.raises(errors.ClientError) as info:
        await from_uri(client, srv.url("/page.jpg"))
    assert info.value.code == 400 and info.value.message == MSG_BAD_IMAGE


class FakeStream:
    """Yields ``size`` bytes in reads of at most n bytes."""

    def __init__(self, size: int) -> None:
        self.left = size

    async def read(self, n: int = -1) -> bytes:
        take = min(n, self.left)
        self.left -= take
        return b"x" * take


async def test_uplink_reader_sleeps_to_hold_the_rate() -> None:
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    body = await Uplink(sleep, clock=lambda: 0.0).read(FakeStream(1_000_000), 250_000.0)
    assert len(body) == 1_000_000
    assert sum(sleeps) >= 1_000_000 / 250_000.0 - 1e-9


async def test_uplink_cap_applies_to_generate_over_http(emulator: GeminiEmulator,
                                                        client: genai.Client) -> None:
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    emulator.uplink.sleep, emulator.uplink.clock = sleep, lambda: 0.0
    emulator.configure(upload_bytes_per_s=parse_rate("100Mbit"))
    data = make_image(16, 16) + b"\0" * 1_000_000  # trailing bytes still make a JPEG
    await client.aio.models.generate_content(
        model="gemini-x", contents=[types.Part.from_bytes(data=data, mime_type="image/jpeg")])
    assert emulator.stats.request_bytes > 1_000_000
    assert sum(sleeps) >= emulator.stats.request_bytes / 12_500_000 - 1e-9
    assert emulator.stats.images[0].bytes == len(data)


def test_upload_rate_parsing_and_cli_flag() -> None:
    assert parse_rate("100Mbit") == 12_500_000
    assert parse_rate("12.5MB/s") == 12_500_000
    assert parse_rate("500kbit") == 62_500
    assert parse_rate("2000") == 2000
    for bad in ("fast", "0", "10 parsecs"):
        with pytest.raises(ValueError):
            parse_rate(bad)
    args = build_parser().parse_args(["--upload-rate", "100Mbit"])
    assert settings_from(args).upload_bytes_per_s == 12_500_000
    assert settings_from(build_parser().parse_args([])).upload_bytes_per_s is None
    with pytest.raises(ValueError):
        EmulatorSettings(upload_bytes_per_s=0)


async def test_batch_lines_fetch_urls_and_fail_one_by_one(emulator: GeminiEmulator,
                                                          client: genai.Client,
                                                          srv: ImageServer) -> None:
    emulator.batch.configure(pending_polls=None, running_polls=None, pending_seconds=0.0,
                        running_seconds=0.0)
    data = make_image(300, 200)
    srv.add("/ok.jpg", data)
    requests = [types.InlinedRequest(
        contents=[types.Part.from_uri(file_uri=uri, mime_type="image/jpeg"), "describe"],
        metadata={"key": k}) for k, uri in (("ok", srv.url("/ok.jpg")),
                                            ("gone", closed_port_url()))]
    job = await client.aio.batches.create(model="gemini-x", src=requests)
    done = await client.aio.batches.get(name=job.name or "")
    assert done.dest is not None
    ok, gone = done.dest.inlined_responses or []
    assert ok.response is not None and "300x200" in (ok.response.text or "")
    assert gone.error is not None and gone.error.code == 400
    assert gone.error.message == urls.MSG_URL_FETCH
    batch = emulator.batch.stats
    assert batch.url_parts == 1 and batch.url_bytes_fetched == len(data)
    assert srv.hits["/ok.jpg"] == 1
