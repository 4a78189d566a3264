"""What reaches Gemini for each kind of input, and one error record per bad input."""

from __future__ import annotations

import io

import pytest
from conftest import describe_run
from imaging import (
    cmyk_jpeg,
    decompression_bomb,
    exif_rotated_jpeg,
    gif,
    jpeg,
    photo,
    png16,
    sha256,
)
from PIL import Image, ImageStat

from describer.emulator import GeminiEmulator, ImageServer
from describer.prepare import prepare


def _sent(emulator: GeminiEmulator) -> dict[str, object]:
    """The one image the emulator received, as its record."""
    assert len(emulator.stats.images) == 1
    return emulator.stats.images[0].to_dict()


async def test_max_side_downscales_jpeg_before_upload(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    big = jpeg(2000, 1500)
    images.add("/big.jpg", big)
    out = await describe_run(capsys, [images.url("/big.jpg")], max_side=512)
    sent = _sent(gemini_env)
    assert (sent["width"], sent["height"], sent["mime_type"]) == (512, 384, "image/jpeg")
    record = out.records[0]
    assert record["image"]["width"] == 512 and record["image"]["bytes"] == sent["bytes"]
    assert record["image"]["original"] == {
        "mime_type": "image/jpeg", "width": 2000, "height": 1500, "bytes": len(big)
    }
    assert sent["bytes"] < len(big) / 4


async def test_small_images_pass_through_max_side_untouched(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    small = jpeg(300, 200)
    images.add("/small.jpg", small)
    out = await describe_run(capsys, [images.url("/small.jpg")], max_side=512)
    assert _sent(gemini_env)["sha256"] == sha256(small)
    assert out.records[0]["image"]["original"] is None


@pytest.mark.parametrize(
    ("make", "sent_mime", "size"),
    [
        (gif, "image/jpeg", (160, 120)),
        (cmyk_jpeg, "image/jpeg", (200, 150)),
        (png16, "image/jpeg", (120, 90)),
        (lambda: _encode(photo(64, 48), "BMP"), "image/jpeg", (64, 48)),
        (lambda: _encode(photo(64, 48).convert("RGBA"), "TIFF"), "image/png", (64, 48)),
    ],
    ids=["gif", "cmyk", "16-bit", "bmp", "tiff-alpha"],
)
async def test_formats_gemini_cannot_take_are_converted(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str],
    make, sent_mime: str, size: tuple[int, int],
) -> None:
    data = make()
    images.add("/x", data, content_type="application/octet-stream")
    out = await describe_run(capsys, [images.url("/x")])
    assert out.code == 0
    sent = _sent(gemini_env)
    assert (sent["mime_type"], (sent["width"], sent["height"])) == (sent_mime, size)
    assert out.records[0]["image"]["original"]["bytes"] == len(data)


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    sent = prepare(png16())
    expected = photo(120, 90).convert("L")
    with Image.open(io.BytesIO(sent.data)) as got:
        mean_sent = ImageStat.Stat(got.convert("L")).mean[0]
    assert abs(mean_sent - ImageStat.Stat(expected).mean[0]) < 3  # clipping gives ~255


async def test_exif_orientation_applied_when_reencoding(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    rotated = exif_rotated_jpeg(300, 200)  # stored 300x200, shown 200x300
    images.add("/r.jpg", rotated)
    out = await describe_run(capsys, [images.url("/r.jpg")], max_side=150)
    sent = _sent(gemini_env)
    assert (sent["width"], sent["height"]) == (100, 150)  # upright, then scaled
    assert out.records[0]["image"]["original"]["width"] == 200


async def test_exif_rotated_jpeg_passes_through_with_displayed_size(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    rotated = exif_rotated_jpeg(300, 200)
    images.add("/r.jpg", rotated)
    out = await describe_run(capsys, [images.url("/r.jpg")])
    assert _sent(gemini_env)["sha256"] == sha256(rotated)
    assert (out.records[0]["image"]["width"], out.records[0]["image"]["height"]) == (200, 300)


async def test_each_bad_input_is_one_error_record_and_the_run_goes_on(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str],
    write_files,
) -> None:
    good = jpeg(seed=3)
    whole = jpeg(400, 300, seed=4)
    images.add("/good.jpg", good)
    images.add("/missing.jpg", b"not found", status=404, content_type="text/plain")
    images.add("/html.jpg", b"<!DOCTYPE html><html><body>Login</body></html>")
    images.add("/truncated.jpg", whole[: len(whole) // 2])
    images.add("/empty.jpg", b"")
    images.add("/svg.jpg", b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
    images.add_endless("/endless.jpg")
    images.add_redirect("/loop1", "/loop2")
    images.add_redirect("/loop2", "/loop1")
    images.add("/bomb.png", decompression_bomb(), content_type="image/png")
    folder = write_files({"text.jpg": b"just some notes\n"})
    expected = {
        images.url("/missing.jpg"): "http_error",
        images.url("/html.jpg"): "not_an_image",
        images.url("/truncated.jpg"): "corrupt_image",
        images.url("/empty.jpg"): "not_an_image",
        images.url("/svg.jpg"): "unsupported_format",
        images.url("/endless.jpg"): "too_large",
        images.url("/loop1"): "download_error",
        images.url("/bomb.png"): "too_large",
        str(folder / "text.jpg"): "not_an_image",
        "ftp://example.com/a.jpg": "invalid_source",
    }
    sources = [*expected, images.url("/good.jpg")]
    out = await describe_run(capsys, sources, max_bytes=2_000_000)
    assert out.code == 1
    got = out.by_source()
    assert set(got) == set(sources)
    assert {s: got[s]["error"]["type"] for s in expected} == expected
    assert all(got[s]["error"]["message"] and got[s]["description"] is None for s in expected)
    assert got[images.url("/good.jpg")]["error"] is None
    assert gemini_env.stats.generate_requests == 1  # nothing bad was sent to Gemini
    assert f"1 described, {len(expected)} failed" in out.stderr


async def test_timeouts_are_error_records(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    images.add_hang("/hang.jpg")
    images.add("/ok.jpg", jpeg())
    out = await describe_run(
        capsys, [images.url("/hang.jpg"), images.url("/ok.jpg")], download_timeout=0.3,
        max_attempts=2, retry_wait=0.01,
    )
    got = out.by_source()
    assert got[images.url("/hang.jpg")]["error"]["type"] == "timeout"
    assert got[images.url("/ok.jpg")]["error"] is None


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


async def test_heic_goes_as_its_original_bytes(
    gemini_env: GeminiEmulator, images: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    heic = _encode(photo(64, 48), "HEIF")  # pillow-heif writes the "heic" brand
    images.add("/p", heic, content_type="application/octet-stream")
    out = await describe_run(capsys, [images.url("/p")])
    sent = _sent(gemini_env)
    assert (sent["mime_type"], sent["sha256"]) == ("image/heic", sha256(heic))
    assert out.records[0]["image"] == {
        "mime_type": "image/heic", "width": 64, "height": 48, "bytes": len(heic),
        "sent_as": "bytes", "original": None
    }
