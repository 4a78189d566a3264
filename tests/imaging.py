"""Small real images made with Pillow for the tests (no fixtures depend on ../shared)."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

from PIL import Image

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def sha256(data: bytes) -> str:
    """Hex sha256, as the emulator records it."""
    return hashlib.sha256(data).hexdigest()


def photo(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """An RGB image cut from a bundled photograph, different per ``seed``."""
    names = sorted(p for p in SAMPLES.glob("*.jpg"))
    with Image.open(names[seed % len(names)]) as base:
        image = base.convert("RGB").resize((width, height))
    image.paste((seed * 37 % 256, seed * 91 % 256, seed % 256), (0, 0, 4, 4))  # distinct bytes
    return image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """``image`` saved in ``fmt`` (a Pillow format name) as bytes."""
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def jpeg(width: int = 320, height: int = 240, seed: int = 0, **options: object) -> bytes:
    """A JPEG photo of the given size."""
    return encode(photo(width, height, seed), "JPEG", quality=85, **options)


def exif_rotated_jpeg(width: int = 300, height: int = 200) -> bytes:
    """A ``width``x``height`` JPEG whose EXIF orientation 6 says: rotate 90° clockwise."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg(width, height, exif=exif.tobytes())


def cmyk_jpeg(width: int = 200, height: int = 150) -> bytes:
    """A CMYK JPEG (as printers make them)."""
    return encode(photo(width, height).convert("CMYK"), "JPEG", quality=85)


def png16(width: int = 120, height: int = 90) -> bytes:
    """A 16-bit greyscale PNG."""
    grey = photo(width, height).convert("L")
    wide = grey.point(lambda v: v * 257, mode="I").convert("I;16")
    return encode(wide, "PNG")


def gif(width: int = 160, height: int = 120) -> bytes:
    """A two-frame palette GIF."""
    frames = [photo(width, height, s).convert("P") for s in (0, 1)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def decompression_bomb() -> bytes:
    """A ~1.6 gigapixel (40,000 x 40,000) greyscale PNG of a few hundred KB."""
    width = height = 40_000
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" + b"\x00" * (width // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(
        b"IEND", b""
    )


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)
