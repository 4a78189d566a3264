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
    PDF = "application/pdf"
    WAV = "audio/wav"
    MP3 = "audio/mp3"
    AIFF = "audio/aiff"
    AAC = "audio/aac"
    OGG = "audio/ogg"
    FLAC = "audio/flac"
    MP4 = "video/mp4"
    MOV = "video/mov"
    WEBM = "video/webm"
    AVI = "video/avi"
    MPEG = "video/mpeg"
    FLV = "video/x-flv"
    WMV = "video/wmv"
    THREE_GP = "video/3gpp"


#: Gemini takes these image formats as they are (ai.google.dev/gemini-api/docs/image-understanding).
NATIVE = frozenset({Format.JPEG, Format.PNG, Format.WEBP, Format.HEIC, Format.HEIF})
#: Raster formats Pillow reads that are converted before upload.
CONVERTIBLE = frozenset({Format.GIF, Format.BMP, Format.TIFF})
RASTER = NATIVE | CONVERTIBLE
#: Documents, audio and video Gemini takes as they are (ai.google.dev/gemini-api/docs:
#: document-processing, audio, video-understanding).
AUDIO = frozenset({Format.WAV, Format.MP3, Format.AIFF, Format.AAC, Format.OGG, Format.FLAC})
VIDEO = frozenset({Format.MP4, Format.MOV, Format.WEBM, Format.AVI, Format.MPEG, Format.FLV,
                   Format.WMV, Format.THREE_GP})  # fmt: skip
#: ``--media`` kinds and the formats each one takes.
MEDIA_KINDS: dict[str, frozenset[Format]] = {
    "image": RASTER,
    "pdf": frozenset({Format.PDF}),
    "audio": AUDIO,
    "video": VIDEO,
}


def kind_of(fmt: Format) -> str | None:
    """The ``--media`` kind a format belongs to (``image``, ``pdf``, ``audio``, ``video``)."""
    return next((kind for kind, formats in MEDIA_KINDS.items() if fmt in formats), None)


def accepted(kinds: frozenset[str]) -> frozenset[Format]:
    """The formats taken under ``--media kinds``."""
    return frozenset().union(*(MEDIA_KINDS[kind] for kind in kinds))

#: Bytes of a file's head that :func:`sniff` needs.
SNIFF_BYTES = 512

_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"heif"}


def sniff(head: bytes) -> Format | None:
    """The format of data starting with ``head`` (at least 32 bytes when available), or None."""
    for check in (_sniff_image, _sniff_container, _sniff_audio_video):
        fmt = check(head)
        if fmt is not None:
            return fmt
    return Format.SVG if _looks_like_svg(head) else None


def _sniff_image(head: bytes) -> Format | None:
    if head.startswith(b"\xff\xd8\xff"):
        return Format.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Format.PNG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Format.GIF
    if head[:2] == b"BM" and len(head) >= 26:
        return Format.BMP
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return Format.TIFF
    if head.startswith(b"%PDF-"):
        return Format.PDF
    return None


_RIFF = {b"WEBP": Format.WEBP, b"WAVE": Format.WAV, b"AVI ": Format.AVI}
_MAGIC = {
    b"OggS": Format.OGG, b"fLaC": Format.FLAC, b"\x1aE\xdf\xa3": Format.WEBM,
    b"\x00\x00\x01\xba": Format.MPEG, b"\x00\x00\x01\xb3": Format.MPEG,
    b"0&\xb2u": Format.WMV, b"ID3\x02": Format.MP3, b"ID3\x03": Format.MP3,
    b"ID3\x04": Format.MP3,
}  # fmt: skip


def _sniff_container(head: bytes) -> Format | None:
    if head[:4] == b"RIFF":
        return _RIFF.get(head[8:12])
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return Format.AIFF
    if head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    return _MAGIC.get(head[:4])


def _sniff_audio_video(head: bytes) -> Format | None:
    if head[:3] == b"FLV":
        return Format.FLV
    if len(head) >= 3 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] != 0xFE:
        # an MPEG audio frame sync (FF FE would be a UTF-16 byte order mark)
        return Format.AAC if head[1] & 0x06 == 0 else Format.MP3  # layer bits 00: ADTS AAC
    return None


_VIDEO_BRANDS = {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1",
                 b"M4V ", b"dash", b"mmp4", b"MSNV"}  # fmt: skip


def _sniff_ftyp(head: bytes) -> Format | None:
    major = head[8:12]
    brands = {major} | {head[i : i + 4] for i in range(16, min(len(head), 64), 4)}
    if brands & _HEIC_BRANDS:
        return Format.HEIC
    if brands & _HEIF_BRANDS:
        return Format.HEIF
    if major == b"qt  ":
        return Format.MOV
    if major.startswith((b"3gp", b"3g2")):
        return Format.THREE_GP
    return Format.MP4 if brands & _VIDEO_BRANDS else None


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
    size; HEIC/HEIF: top-level boxes within the data; PDF: ``%%EOF`` near the end. Converted
    image formats are decoded, which finds truncation there; audio and video are not checked.
    """
    checks = {
        Format.PDF: _pdf_complete,
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


def _pdf_complete(data: bytes) -> bool:
    return b"%%EOF" in data[-2048:]


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
