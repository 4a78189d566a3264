"""``--send bytes|url|auto``: what goes to Gemini for a URL, end to end through google-genai
against the emulator, which fetches ``file_data`` URLs from the local image server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_KEY, cli, describe_run
from imaging import encode, gif, jpeg, photo, png16

from describer import Config
from describer.batch import MAX_FILE_BYTES, MAX_REQUESTS
from describer.cli.batch import fetch_main, submit_main
from describer.download import USER_AGENT
from describer.emulator import GeminiEmulator, ImageServer
from describer.send import PEEK_BYTES


@pytest.fixture
async def files(tmp_path: Path) -> Any:
    """An image server over a folder (its files honour Range requests)."""
    root = tmp_path / "served"
    root.mkdir()
    async with ImageServer(root) as server:
        yield server


def put(server: ImageServer, name: str, data: bytes) -> str:
    assert server.root is not None
    (server.root / name).write_bytes(data)
    return server.url(name)


def peeked(server: ImageServer, name: str, emulator: GeminiEmulator) -> int:
    """Body bytes describer itself took from the server for ``name``: all served, less
    what the emulator fetched."""
    return server.served[f"/files/{name}"] - emulator.stats.url_bytes_fetched


async def test_send_url_downloads_only_the_first_bytes_and_uploads_only_the_url(
    gemini_env: GeminiEmulator, files: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    data = jpeg(1200, 900)
    url = put(files, "big.jpg", data)
    outcome = await describe_run(capsys, [url], send="url", prompt="3 words")
    [record] = outcome.records
    assert record["error"] is None and "1200x900" in record["description"]
    assert record["image"]["sent_as"] == "url"
    assert record["image"]["bytes"] == len(data)  # from Content-Range
    stats = gemini_env.stats
    assert stats.url_parts == 1 and stats.image_bytes == 0
    assert stats.url_bytes_fetched == len(data)  # Gemini fetched it, not describer
    assert peeked(files, "big.jpg", gemini_env) == PEEK_BYTES
    assert stats.request_bytes < 2_000  # the URL and the prompt went up, not the image


async def test_send_bytes_is_the_default_and_sends_the_image_inline(
    gemini_env: GeminiEmulator, files: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    data = jpeg(640, 480)
    url = put(files, "a.jpg", data)
    [record] = (await describe_run(capsys, [url])).records
    assert record["image"]["sent_as"] == "bytes"
    assert gemini_env.stats.image_bytes == len(data) and gemini_env.stats.url_parts == 0


async def test_auto_sends_bytes_where_they_must_change_and_url_sends_an_error_record(
    gemini_env: GeminiEmulator, files: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = {name: put(files, name, body)
            for name, body in (("a.gif", gif()), ("deep.png", png16()), ("ok.jpg", jpeg()))}
    auto = (await describe_run(capsys, list(urls.values()), send="auto")).by_source()
    assert [auto[urls[n]]["image"]["sent_as"] for n in ("a.gif", "deep.png", "ok.jpg")] == [
        "bytes", "bytes", "url"]
    assert auto[urls["a.gif"]]["image"]["original"]["mime_type"] == "image/gif"
    assert all(r["error"] is None for r in auto.values())
    strict = (await describe_run(capsys, list(urls.values()), send="url")).by_source()
    for name in ("a.gif", "deep.png"):
        error = strict[urls[name]]["error"]
        assert error["type"] == "unsupported_format" and "--send auto" in error["message"]
    assert strict[urls["ok.jpg"]]["error"] is None


async def test_auto_with_max_side_sends_large_images_as_bytes_and_small_ones_as_urls(
    gemini_env: GeminiEmulator, files: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    big = put(files, "big.png", encode(photo(1600, 1000), "PNG"))
    small = put(files, "small.png", encode(photo(300, 200), "PNG"))
    records = (await describe_run(capsys, [big, small], send="auto", max_side=512)).by_source()
    assert records[big]["image"]["sent_as"] == "bytes"
    assert records[big]["image"]["width"] == 512  # downscaled before sending
    assert records[small]["image"]["sent_as"] == "url"
    assert gemini_env.stats.url_parts == 1


async def test_auto_sends_the_bytes_when_gemini_cannot_fetch_the_url(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    data = jpeg(400, 300)
    images.add_guarded("/guarded.jpg", data, user_agent=USER_AGENT)  # 403 to Gemini's fetcher
    url = images.url("/guarded.jpg")
    [record] = (await describe_run(capsys, [url], send="auto")).records
    assert record["error"] is None and "400x300" in record["description"]
    assert record["image"]["sent_as"] == "bytes"
    assert record["attempts"] == 2  # the URL refused with a 400, then the bytes
    assert gemini_env.stats.responses_by_status[400] == 1
    assert gemini_env.stats.image_bytes == len(data)
    [strict] = (await describe_run(capsys, [url], send="url", cache=False)).records
    assert strict["error"]["type"] == "api_error"
    assert strict["error"]["message"].startswith("400 INVALID_ARGUMENT: Cannot fetch")


async def test_a_server_that_ignores_the_range_is_cut_off_after_the_first_bytes(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    data = jpeg(1600, 1200, seed=3)
    images.add("/whole.jpg", data)  # added routes answer 200 with the whole body
    [record] = (await describe_run(capsys, [images.url("/whole.jpg")], send="url")).records
    assert record["error"] is None and record["image"]["sent_as"] == "url"
    assert record["image"]["bytes"] == len(data)  # from Content-Length
    assert gemini_env.stats.url_bytes_fetched == len(data)


async def test_bytes_that_say_nothing_are_taken_as_the_content_type_says(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    images.add("/odd", b"\0" * 2000, content_type="image/png")  # range ignored
    images.add("/odd-text", b"\0" * 2000, content_type="text/plain")
    records = (await describe_run(capsys, [images.url("/odd"), images.url("/odd-text")],
                                  send="url")).by_source()  # fmt: skip
    # sent on the Content-Type's word, so Gemini is the one that refuses the bytes
    assert records[images.url("/odd")]["error"]["message"].startswith("400 INVALID_ARGUMENT")
    assert records[images.url("/odd-text")]["error"]["type"] == "not_an_image"
    assert gemini_env.stats.generate_requests == 1 and images.hits["/odd"] == 2


async def test_an_unreachable_url_is_an_error_record_as_before(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = await describe_run(capsys, [images.url("/missing.jpg")], send="url")
    [record] = outcome.records
    assert record["error"]["type"] == "http_error" and "404" in record["error"]["message"]
    assert gemini_env.stats.generate_requests == 0


async def test_local_files_always_go_as_bytes(
    gemini_env: GeminiEmulator, write_files, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_files({"a.jpg": jpeg()})
    [record] = (await describe_run(capsys, [str(folder)], send="url")).records
    assert record["image"]["sent_as"] == "bytes" and gemini_env.stats.url_parts == 0


async def test_legacy_models_get_bytes_under_auto(
    gemini_env: GeminiEmulator, files: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = put(files, "a.jpg", jpeg())
    [record] = (await describe_run(capsys, [url], send="auto", model="gemini-2.0-flash")).records
    assert record["image"]["sent_as"] == "bytes" and gemini_env.stats.url_parts == 0


async def test_the_cache_keys_a_url_by_its_validators(
    gemini_env: GeminiEmulator, files: ImageServer, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    url = put(files, "a.jpg", jpeg(seed=1))
    first = (await describe_run(capsys, [url], send="url")).records[0]
    again = (await describe_run(capsys, [url], send="url")).records[0]
    assert first["cached"] is False and again["cached"] is True
    assert gemini_env.stats.generate_requests == 1
    put(files, "a.jpg", jpeg(330, 250, seed=2))  # the file behind the URL changed
    changed = (await describe_run(capsys, [url], send="url")).records[0]
    assert changed["cached"] is False and gemini_env.stats.generate_requests == 2


def test_send_url_with_max_side_is_a_clear_error() -> None:
    done = cli(["https://example.com/x.jpg", "--send", "url", "--max-side", "512"],
               {"GEMINI_API_KEY": TEST_KEY})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(
        "--max-side re-encodes the bytes, and --send url sends none: use --send auto")


async def test_batch_submit_send_url_sends_file_data_lines(
    gemini_env: GeminiEmulator, files: ImageServer, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    urls = [put(files, f"{i}.jpg", jpeg(640, 480, seed=i)) for i in range(3)]
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    out = tmp_path / "out.jsonl"
    config = Config(send="url", prompt="3 words", output=out)
    assert await submit_main((str(listing),), config, (MAX_FILE_BYTES, MAX_REQUESTS), None) == 0
    job = capsys.readouterr().out.strip()
    assert gemini_env.batch.stats.request_bytes < 600 * len(urls)  # the request file: no images
    await fetch_main(job, config, wait=0.0)
    records = {r["source"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(records) == set(urls)
    assert all(r["error"] is None and r["image"]["sent_as"] == "url" for r in records.values())
    assert gemini_env.batch.stats.url_parts == len(urls)


async def test_under_auto_a_broken_file_gemini_refuses_gets_the_download_error_type(
    gemini_env: GeminiEmulator, files: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = put(files, "cut.jpg", jpeg(800, 600)[:3000])  # its first 512 bytes look fine
    [record] = (await describe_run(capsys, [cut], send="auto")).records
    assert record["error"]["type"] == "corrupt_image"  # found once the bytes were fetched
    assert gemini_env.stats.responses_by_status == {400: 1}  # the URL Gemini refused


def test_an_image_of_unknown_size_is_estimated_as_full_hd_not_as_one_tile() -> None:
    from describer.limits import estimate_tokens
    from describer.model import Media

    unknown = Media("image/jpeg", None, None, 0, sent_as="url")  # a JPEG sent as its URL
    assert estimate_tokens(unknown, "") == 258 * 3 * 2  # 1920x1080: 3x2 tiles of 768 px
