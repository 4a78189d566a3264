"""Sniff a file's real format from its first bytes, and check it is complete, without decoding.

Used by ``sources`` (which files of a folder are images) and ``prepare`` (what to send).
"""

from __future__ import annotations

import struct
from enum import StrEnum


class Format(StrEnum):
    """Formats recognised by their magic bytes; the value is the MIME type."""

    JPEG = "image/jpeg"
    PNG = "image/png"
    WEBP = "image/webp"
    HEIC = "image/heic"
    HEIF = "image/heif"
    GIF = "image/gif"
    BMP = "image/bmp"
    TIFF = "image/tiff"
    SVG = "image/svg+xml"


#: Gemini takes these image formats as they are (ai.google.dev/gemini-api/docs/image-understanding).
NATIVE = frozenset({Format.JPEG, Format.PNG, Format.WEBP, Format.HEIC, Format.HEIF})
#: Raster formats Pillow reads that are converted before upload.
CONVERTIBLE = frozenset({Format.GIF, Format.BMP, Format.TIFF})
RASTER = NATIVE | CONVERTIBLE

#: Bytes of a file's head that :func:`sniff` needs.
SNIFF_BYTES = 512

_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"heif"}


def sniff(head: bytes) -> Format | None:
    """The format of data starting with ``head`` (at least 32 bytes when available), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return Format.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Format.PNG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Format.WEBP
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Format.GIF
    if head[:2] == b"BM" and len(head) >= 26:
        return Format.BMP
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return Format.TIFF
    if head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    return Format.SVG if _looks_like_svg(head) else None


def _sniff_ftyp(head: bytes) -> Format | None:
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(len(head), 64), 4)}
    if brands & _HEIC_BRANDS:
        return Format.HEIC
    if brands & _HEIF_BRANDS:
        return Format.HEIF
    return None


def _looks_like_svg(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text)


def describe_unknown(head: bytes) -> str:
    """A human phrase for bytes that are not an image, e.g. ``"an HTML document"``."""
    if not head:
        return "an empty file (0 bytes)"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML document"
    if text.startswith(b"%pdf"):
        return "a PDF document"
    if text.startswith((b"{", b"[")):
        return "JSON or other text"
    if b"\x00" not in head[:256] and _is_utf8(head[:256]):
        return "text"
    return f"unrecognised binary data (starts {head[:8].hex(' ')})"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(data) - 3  # a multi-byte character cut at the end is fine
    return True


def is_complete(fmt: Format, data: bytes) -> bool:
    """Whether ``data`` holds a whole file of format ``fmt``, checked from its structure.

    JPEG: an EOI marker after the first start-of-scan; PNG: chunks up to IEND; WEBP: the RIFF
    size; HEIC/HEIF: top-level boxes within the data. Other formats are decoded when they
    are converted, which finds truncation there, so they return True.
    """
    checks = {
        Format.JPEG: _jpeg_complete,
        Format.PNG: _png_complete,
        Format.WEBP: _webp_complete,
        Format.HEIC: _bmff_complete,
        Format.HEIF: _bmff_complete,
    }
    check = checks.get(fmt)
    return True if check is None else check(data)


def _jpeg_complete(data: bytes) -> bool:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: entropy-coded data never holds FFD9 unescaped
            return data.find(b"\xff\xd9", pos) != -1
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        pos += 2 + length
    return False


def _png_complete(data: bytes) -> bool:
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            return False
        if kind == b"IEND":
            return True
        pos = end
    return False


def _webp_complete(data: bytes) -> bool:
    if len(data) < 12:
        return False
    (size,) = struct.unpack_from("<I", data, 4)
    return len(data) >= 8 + size


def _bmff_complete(data: bytes) -> bool:
    pos = 0
    while pos + 8 <= len(data):
        size, _kind = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            if pos + 16 > len(data):
                return False
            (size,) = struct.unpack_from(">Q", data, pos + 8)
        elif size == 0:  # box runs to the end of the file
            return True
        if size < 8 or pos + size > len(data):
            return False
        pos += size
    return pos == len(data)


def png_bit_depth(data: bytes) -> int:
    """Bits per sample of a PNG from its IHDR chunk (byte 24), or 8 when unreadable."""
    return data[24] if len(data) > 24 else 8
