"""Prepare stage: decide what bytes go to Gemini for one downloaded file.

PNG, JPEG, WEBP, HEIC and HEIF go as their original bytes (never re-encoded through a
``PIL.Image``: google-genai would re-encode those as PNG, several times larger). Other raster
formats Pillow reads (GIF's first frame, BMP, TIFF), 16-bit PNGs, CMYK JPEGs and images larger
than ``--max-side`` are re-encoded as JPEG (or PNG where there is transparency), with the EXIF
orientation applied. Size, dimensions and MIME type come from the header alone.
"""

from __future__ import annotations

import io
import math
import os
import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ItemFailure
from .formats import (
    CONVERTIBLE,
    NATIVE,
    RASTER,
    Format,
    describe_unknown,
    is_complete,
    kind_of,
    png_bit_depth,
)
from .formats import sniff as sniff_format
from .model import ErrorType, Media, Prepared

pillow_heif.register_heif_opener()
# Pillow's decompression-bomb guard stays on (Image.MAX_IMAGE_PIXELS): images over twice the
# limit raise, and are reported as too_large. The warning band below that is not an error.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)

IMAGES_ONLY = frozenset({"image"})
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_JPEG_QUALITY = 90
_ROTATING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
# Mode "1" is not here: a 1-bit PNG is a valid PNG and Gemini takes any valid PNG, so it
# passes through undecoded (no local memory; Gemini tiles it like any PNG of that size).
_CONVERT_MODES = {"CMYK", "YCbCr", "LAB", "I", "I;16", "I;16B", "I;16L", "F"}
#: Most pixels (width x height, as stored) an image may have: Pillow's own refusal threshold,
#: twice ``Image.MAX_IMAGE_PIXELS`` (2 x 89,478,485 = 178,956,970), above which Pillow raises
#: ``DecompressionBombError``. Decoded as RGB that is 716 MB. Larger images are ``too_large``.
MAX_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)
#: Decodes of more pixels than this (16.8 MP, 4096 x 4096: 64 MiB as RGB, which Pillow holds in
#: 4 bytes a pixel) run one at a time, across all threads. Pixels counted at the size actually
#: decoded: a JPEG scaled by ``draft`` for ``--max-side`` is small; a PNG has no such path.
LARGE_PIXELS = 1 << 24
#: Threads that run :func:`prepare` for the pipeline. Pillow's decoders release the GIL, so
#: more than the cores gains nothing; at least 2 so a large decode does not stall small ones;
#: at most 4, so decodes under ``LARGE_PIXELS`` hold at most 4 x 128 MiB.
PREPARE_WORKERS = min(4, max(2, os.cpu_count() or 1))
#: The pipeline's executor for :func:`prepare` (threads start on first use).
PREPARE_POOL = ThreadPoolExecutor(PREPARE_WORKERS, thread_name_prefix="describer-prepare")
#: Held around every decode of more than ``LARGE_PIXELS`` pixels.
LARGE_DECODE = threading.Lock()
#: Bytes a pixel takes in Pillow's memory, by mode (RGB, CMYK, I, F... take 4).
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}


@dataclass(frozen=True)
class Plan:
    """What :func:`prepare` will do with one file, read from its header alone."""

    fmt: Format
    decode_size: tuple[int, int] | None  # width, height decoded; None: sent undecoded
    decoded_bytes: int  # bytes of pixels held at once while decoding; 0 when undecoded
    ready: Prepared | None = None  # the bytes to send, when nothing is to be decoded

    @property
    def large(self) -> bool:
        """More than ``LARGE_PIXELS`` decoded: decoded one at a time."""
        return self.decode_size is not None and _area(self.decode_size) > LARGE_PIXELS


def prepare(
    data: bytes, max_side: int | None = None, media: frozenset[str] = IMAGES_ONLY
) -> Prepared:
    """The bytes to send for ``data``, original when possible.

    ``media`` is the set of ``--media`` kinds taken (image, pdf, audio, video). Raises
    :class:`ItemFailure`: ``not_an_image`` (empty, HTML, text, unknown bytes),
    ``unsupported_format`` (SVG, or a kind not in ``media``), ``corrupt_image`` (truncated
    or undecodable), ``too_large`` (a decompression bomb).
    """
    fmt = sniff_sendable(data, media)
    if fmt not in RASTER:
        return _pass_media(fmt, data)
    image = _open(data)
    if _can_pass_through(fmt, image, data, max_side):
        return _as_it_is(fmt, image, data)
    info = Media(fmt.value, *_display_size(image), len(data))
    _draft(image, max_side)
    if _area(image.size) > LARGE_PIXELS:  # the size decoded, after draft
        with LARGE_DECODE:
            return _reencode(image, fmt, info, max_side)
    return _reencode(image, fmt, info, max_side)


def plan(data: bytes, max_side: int | None = None, media: frozenset[str] = IMAGES_ONLY) -> Plan:
    """What :func:`prepare` will do with ``data``, from the header alone (nothing decoded).

    ``decoded_bytes`` is width x height x bytes a pixel in Pillow's memory (1 for 1-bit,
    grey and palette, 2 for 16-bit grey, 4 for the rest), at the size decoded (after a JPEG's
    ``draft``), counted once for the decoded frame, once more for an EXIF rotation and once
    more for the 8-bit copy when the mode is converted. When nothing is to be decoded (media
    that go as they are), ``ready`` already holds what :func:`prepare` would return, so the
    file is read once. Raises :class:`ItemFailure` as :func:`prepare` does for the header
    (``not_an_image``, ``unsupported_format``, ``corrupt_image``, ``too_large``), and for
    media sent as they are, for their content too.
    """
    fmt = sniff_sendable(data, media)
    if fmt not in RASTER:
        return Plan(fmt, None, 0, _pass_media(fmt, data))
    image = _open(data)
    if _can_pass_through(fmt, image, data, max_side):
        return Plan(fmt, None, 0, _as_it_is(fmt, image, data))
    mode = image.mode
    _draft(image, max_side)
    copies = [mode, *([mode] if _orientation(image) != 1 else []), _converted_mode(image)]
    area = _area(image.size)
    return Plan(fmt, image.size, sum(area * _PIXEL_BYTES.get(m, 4) for m in copies if m))


@dataclass(frozen=True)
class HeadCheck:
    """What the first bytes of a file say about sending it as it is (``--send url``):
    ``width``/``height`` as displayed when the header holds them (None when it lies past
    the bytes read, as a JPEG's often does behind its EXIF), and ``change``: why the bytes
    must be re-encoded first (a format or mode Gemini does not take, a side over
    ``--max-side``, or a size ``--max-side`` cannot be checked against), None when they
    can go as they are, as far as the header tells."""

    width: int | None
    height: int | None
    change: str | None


def check_head(fmt: Format, head: bytes, max_side: int | None = None) -> HeadCheck:
    """:class:`HeadCheck` of a file of format ``fmt`` whose first bytes are ``head``
    (nothing decoded; never raises)."""
    if fmt in CONVERTIBLE:
        return HeadCheck(None, None, f"{fmt.name} is re-encoded as Gemini does not take it")
    if fmt not in RASTER:
        return HeadCheck(None, None, None)
    try:
        image = Image.open(io.BytesIO(head))
        width, height = _display_size(image)
        mode = image.mode
    except Exception:  # the header goes on past ``head``: size and mode unknown
        change = f"its size is not in the first {len(head)} bytes" if max_side else None
        return HeadCheck(None, None, change)
    if mode in _CONVERT_MODES or (fmt is Format.PNG and png_bit_depth(head) > 8):
        return HeadCheck(width, height, f"{mode} {fmt.name} is re-encoded to 8-bit RGB")
    if max_side is not None and max(width, height) > max_side:
        return HeadCheck(width, height, f"{width}x{height} is over --max-side {max_side}")
    return HeadCheck(width, height, None)


def _as_it_is(fmt: Format, image: Image.Image, data: bytes) -> Prepared:
    """An image Gemini takes as it is: its original bytes, once checked complete."""
    _check_complete(fmt, data)
    return Prepared(data, Media(fmt.value, *_display_size(image), len(data)))


def _area(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def _draft(image: Image.Image, max_side: int | None) -> None:
    """Let a JPEG decode scaled down (DCT scaling, no full-size decode) for ``max_side``;
    ``image.size`` becomes the size decoded. Call once: a second draft undoes the first.

    The size asked for is the size the image is shrunk to (its longer side ``max_side``,
    aspect kept): Pillow's draft picks the largest reduction that is at least that size in
    both sides, so asking for a ``max_side`` square would keep a 4000x3000 photo at full
    size for 1536 (1500 < 1536), where 2000x1500 (a quarter of the pixels) covers
    1536x1152."""
    if max_side is not None and image.format == "JPEG":
        width, height = image.size  # as stored: orientation does not change the scale
        scale = min(1.0, max_side / max(width, height))
        image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))


def _converted_mode(image: Image.Image) -> str | None:
    """The mode :func:`_to_8bit` converts ``image`` to (None: kept as it is)."""
    mode = image.mode
    if mode in ("RGB", "L"):
        return None
    if mode in ("I;16", "I;16B", "I;16L", "I", "F", "1"):
        return "L"
    if mode == "P":
        return "RGBA" if "transparency" in image.info else "RGB"
    return "RGBA" if mode in ("RGBA", "LA", "PA") else "RGB"


def sniff_sendable(data: bytes, media: frozenset[str]) -> Format:
    """The format of ``data`` (its first 512 bytes are enough) when it is media of a
    ``--media`` kind. Raises :class:`ItemFailure`: ``not_an_image`` (unknown bytes),
    ``unsupported_format`` (SVG, or a kind not in ``media``)."""
    fmt = sniff_format(data[:512])
    if fmt is None:
        raise ItemFailure(ErrorType.NOT_AN_IMAGE, f"not an image: {describe_unknown(data[:512])}")
    if fmt is Format.SVG:
        raise ItemFailure(
            ErrorType.UNSUPPORTED_FORMAT,
            "SVG is a vector format; Gemini takes PNG, JPEG, WEBP, HEIC or HEIF",
        )
    kind = kind_of(fmt)
    if kind not in media:
        raise ItemFailure(
            ErrorType.UNSUPPORTED_FORMAT, f"{fmt.value} is {kind}: add {kind} to --media to take it"
        )
    return fmt


def _pass_media(fmt: Format, data: bytes) -> Prepared:
    """Documents, audio and video go as they are."""
    _check_complete(fmt, data)
    pages = len(_PDF_PAGE.findall(data)) if fmt is Format.PDF else 0
    return Prepared(data, Media(fmt.value, None, None, len(data), pages))


def _check_complete(fmt: Format, data: bytes) -> None:
    if not is_complete(fmt, data):
        message = f"truncated {fmt.name} file ({len(data):,} bytes)"
        raise ItemFailure(ErrorType.CORRUPT_IMAGE, message)


def _open(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise _too_large(str(exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ItemFailure(ErrorType.CORRUPT_IMAGE, f"cannot read image header: {exc}") from None
    if _area(image.size) > MAX_PIXELS:
        raise _too_large(f"{_area(image.size)} pixels")
    return image


def _too_large(pillow_message: str) -> ItemFailure:
    """``too_large`` naming the pixel count (read from Pillow's refusal when it refused)."""
    found = re.search(r"(\d+) pixels", pillow_message)
    count = f"{int(found.group(1)):,} pixels" if found else pillow_message
    message = f"image too large: {count}, over the limit of {MAX_PIXELS:,} pixels"
    return ItemFailure(ErrorType.TOO_LARGE, message)


def _display_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    if _orientation(image) in _ROTATING_ORIENTATIONS:
        return height, width
    return width, height


def _orientation(image: Image.Image) -> int:
    if image.format == "PNG" and "exif" not in image.info:
        return 1  # no eXIf before the pixels; looking past them would decode them all
    try:
        return int(image.getexif().get(0x0112, 1))
    except (OSError, SyntaxError, ValueError, TypeError):
        return 1


def _can_pass_through(fmt: Format, image: Image.Image, data: bytes, max_side: int | None) -> bool:
    if fmt not in NATIVE or image.mode in _CONVERT_MODES:
        return False
    if fmt is Format.PNG and png_bit_depth(data) > 8:
        return False
    return max_side is None or max(image.size) <= max_side


def _reencode(image: Image.Image, fmt: Format, info: Media, max_side: int | None) -> Prepared:
    try:
        pixels = _decode(image, max_side)
        if pixels is not image:
            image.close()  # the full-size frame goes now, while LARGE_DECODE is still held
    except Image.DecompressionBombError as exc:
        raise _too_large(str(exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ItemFailure(ErrorType.CORRUPT_IMAGE, f"cannot decode {fmt.name}: {exc}") from None
    if max_side is not None:
        pixels.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    data, mime = _encode(pixels)
    sent = Media(mime, pixels.width, pixels.height, len(data))
    return Prepared(data, sent, original=info)


def _decode(image: Image.Image, max_side: int | None) -> Image.Image:
    """Decode the first frame (already drafted), upright and 8-bit."""
    image.load()
    upright = ImageOps.exif_transpose(image) or image
    return _to_8bit(upright)


def _to_8bit(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        scaled = image.convert("I").point(lambda value: value * (1 / 256))
        return scaled.convert("L")
    if image.mode in ("F", "1"):
        return image.convert("L")  # 1-bit as grey: 1 byte a pixel, not RGB's 4
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        return image.convert("RGBA")
    if image.mode in ("RGB", "L"):
        return image
    return image.convert("RGB")


def _encode(image: Image.Image) -> tuple[bytes, str]:
    out = io.BytesIO()
    if image.mode == "RGBA":
        image.save(out, format="PNG", compress_level=6)
        return out.getvalue(), Format.PNG.value
    image.save(out, format="JPEG", quality=_JPEG_QUALITY)
    return out.getvalue(), Format.JPEG.value
