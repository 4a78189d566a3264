"""Prepare stage: decide what bytes go to Gemini for one downloaded file.

PNG, JPEG, WEBP, HEIC and HEIF go as their original bytes (never re-encoded through a
``PIL.Image``: google-genai would re-encode those as PNG, several times larger). Other raster
formats Pillow reads (GIF's first frame, BMP, TIFF), 16-bit PNGs, CMYK JPEGs and images larger
than ``--max-side`` are re-encoded as JPEG (or PNG where there is transparency), with the EXIF
orientation applied. Size, dimensions and MIME type come from the header alone.
"""

from __future__ import annotations

import io
import re
import warnings

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ItemFailure
from .formats import (
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
_CONVERT_MODES = {"CMYK", "YCbCr", "LAB", "I", "I;16", "I;16B", "I;16L", "F", "1"}


def prepare(
    data: bytes, max_side: int | None = None, media: frozenset[str] = IMAGES_ONLY
) -> Prepared:
    """The bytes to send for ``data``, original when possible.

    ``media`` is the set of ``--media`` kinds taken (image, pdf, audio, video). Raises
    :class:`ItemFailure`: ``not_an_image`` (empty, HTML, text, unknown bytes),
    ``unsupported_format`` (SVG, or a kind not in ``media``), ``corrupt_image`` (truncated
    or undecodable), ``too_large`` (a decompression bomb).
    """
    fmt = _sniff(data, media)
    if fmt not in RASTER:
        return _pass_media(fmt, data)
    image = _open(data)
    info = Media(fmt.value, *_display_size(image), len(data))
    if not _can_pass_through(fmt, image, data, max_side):
        return _reencode(image, fmt, info, max_side)
    _check_complete(fmt, data)
    return Prepared(data, info)


def _sniff(data: bytes, media: frozenset[str]) -> Format:
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
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ItemFailure(ErrorType.TOO_LARGE, f"decompression bomb refused: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ItemFailure(ErrorType.CORRUPT_IMAGE, f"cannot read image header: {exc}") from None


def _display_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    if _orientation(image) in _ROTATING_ORIENTATIONS:
        return height, width
    return width, height


def _orientation(image: Image.Image) -> int:
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
    except Image.DecompressionBombError as exc:
        raise ItemFailure(ErrorType.TOO_LARGE, f"decompression bomb refused: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ItemFailure(ErrorType.CORRUPT_IMAGE, f"cannot decode {fmt.name}: {exc}") from None
    if max_side is not None:
        pixels.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    data, mime = _encode(pixels)
    sent = Media(mime, pixels.width, pixels.height, len(data))
    return Prepared(data, sent, original=info)


def _decode(image: Image.Image, max_side: int | None) -> Image.Image:
    """Decode the first frame, cheaply scaled where the codec allows, upright and 8-bit."""
    if max_side is not None and image.format == "JPEG":
        image.draft("RGB", (max_side, max_side))  # DCT scaling: no full-size decode
    image.load()
    upright = ImageOps.exif_transpose(image) or image
    return _to_8bit(upright)


def _to_8bit(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        scaled = image.convert("I").point(lambda value: value * (1 / 256))
        return scaled.convert("L")
    if image.mode == "F":
        return image.convert("L")
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
