"""What the model is given: probes of inline or stored media bytes, with their token counts.

Images are checked with Pillow (plus pillow-heif); PDF, audio and video are not decoded but
counted. Figures and where they come from:

* Images Gemini accepts: PNG, JPEG, WEBP, HEIC, HEIF (Gemini "Image understanding").
* 258 tokens per image when both sides are <= 384 px, else 258 per 768x768 tile:
  Gemini image token rule (ai.google.dev "Image understanding", token calculation).
* Gemini 3 and later bill an image by ``mediaResolution``, whatever its size: 280 (LOW), 560
  (MEDIUM), 1120 (HIGH, and when none is given) tokens ("Media resolution", Token counts
  table). :func:`billed` applies it to models named ``gemini-N...`` with N >= 3; other names
  (older models, and names the emulator does not know, such as the tests' ``gemini-test``)
  keep the size rule above.
* 258 tokens per PDF page (Gemini "Document understanding"), 32 tokens per second of audio
  and 263 per second of video (Gemini "Understand and count tokens"). Durations are not
  decoded: the emulator assumes 16,000 bytes/s of audio (128 kbit/s) and 250,000 bytes/s
  of video (2 Mbit/s); PDF pages are counted as ``/Type /Page`` objects (at least 1).
* Cost of checking (emulator choices, not Gemini figures): images up to 1,000,000 bytes are
  decoded (JPEG at 1/8 scale); larger ones are checked structurally, keeping a 12 MP photo
  at a few ms instead of ~40 ms of entropy decoding.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import dataclass, replace
from typing import Any

import pillow_heif
from PIL import Image

from .wire import MSG_BAD_IMAGE, ApiError

pillow_heif.register_heif_opener()

IMAGE_TOKENS_PER_TILE = 258  # Gemini image token rule.
SMALL_IMAGE_MAX_SIDE = 384  # px; both sides <= this: one 258-token image (Gemini rule).
TILE_SIDE = 768  # px; larger images are cut into 768x768 tiles (Gemini rule).
PDF_PAGE_TOKENS = 258  # Gemini document understanding: 258 tokens per page.
AUDIO_TOKENS_PER_S = 32  # Gemini token counting: audio at 32 tokens per second.
VIDEO_TOKENS_PER_S = 263  # Gemini token counting: video at 263 tokens per second.
AUDIO_BYTES_PER_S = 16_000  # emulator assumption: 128 kbit/s audio.
VIDEO_BYTES_PER_S = 250_000  # emulator assumption: 2 Mbit/s video.
FULL_DECODE_MAX_BYTES = 1_000_000  # images up to this many bytes are decoded.
FULL_DECODE_MAX_PIXELS = 16_000_000  # non-JPEG images above this are checked structurally.

ALLOWED_MIME_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"}
)
MSG_NO_PAGES = "The document has no pages."
_FORMAT_LABELS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "HEIF": "HEIF"}
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")


@dataclass(frozen=True, slots=True)
class Media:
    """One probed image, PDF, audio or video part, as the model is given it.

    sha256: hex digest of the bytes; mime_type: as declared by the part; nbytes: size in
    bytes; label: JPEG | PNG | WEBP | HEIF | PDF | AUDIO | VIDEO; modality: the
    promptTokensDetails modality (IMAGE | DOCUMENT | AUDIO | VIDEO); tokens: prompt tokens;
    width/height: px (images; 0 otherwise); pages (PDF) / seconds (audio, video): 0 otherwise;
    source: how the bytes came: "inline" (inlineData or a Files API file) or "url" (a
    fileData URL the emulator fetched, urls.py).
    """

    sha256: str
    mime_type: str
    nbytes: int
    label: str
    modality: str
    tokens: int
    width: int = 0
    height: int = 0
    pages: int = 0
    seconds: int = 0
    source: str = "inline"


def image_tokens(width: int, height: int) -> int:
    """Prompt tokens for one image of width x height px.

    Gemini image token rule: 258 if both sides <= 384 px, else 258 per 768x768 tile,
    i.e. 258 * ceil(width / 768) * ceil(height / 768).
    """
    if width <= SMALL_IMAGE_MAX_SIDE and height <= SMALL_IMAGE_MAX_SIDE:
        return IMAGE_TOKENS_PER_TILE
    return IMAGE_TOKENS_PER_TILE * math.ceil(width / TILE_SIDE) * math.ceil(height / TILE_SIDE)


#: Image tokens on Gemini 3 and later by generationConfig.mediaResolution (media-resolution
#: page, "Token counts"); unspecified is HIGH's 1120.
RESOLUTION_IMAGE_TOKENS = {"MEDIA_RESOLUTION_LOW": 280, "MEDIA_RESOLUTION_MEDIUM": 560,
                           "MEDIA_RESOLUTION_HIGH": 1120}
DEFAULT_RESOLUTION_TOKENS = 1120
_GENERATION = re.compile(r"^(?:models/)?gemini-(\d+)")


def billed(media: list[Media], model: str, config: dict[str, Any]) -> list[Media]:
    """``media`` with each image's tokens as ``model`` bills them: per ``mediaResolution``
    of the generationConfig ``config`` on Gemini 3 and later (module docstring), else as
    probed (the size rule)."""
    found = _GENERATION.match(model)
    if found is None or int(found.group(1)) < 3:
        return media
    level = config.get("mediaResolution", config.get("media_resolution"))
    tokens = RESOLUTION_IMAGE_TOKENS.get(str(level), DEFAULT_RESOLUTION_TOKENS)
    return [replace(m, tokens=tokens) if m.modality == "IMAGE" else m for m in media]


def is_media_type(mime_type: str) -> bool:
    """True for the non-image types the emulator describes: PDF, audio/*, video/*."""
    return mime_type == "application/pdf" or mime_type.startswith(("audio/", "video/"))


def probe(data: bytes, mime_type: str) -> Media:
    """Any inline or stored part: PDF/audio/video by :func:`probe_media`, the rest by
    :func:`probe_image` (ApiError 400 as those raise)."""
    if is_media_type(mime_type):
        return probe_media(data, mime_type)
    return probe_image(data, mime_type)


def probe_image(data: bytes, mime_type: str) -> Media:
    """Check image bytes with Pillow (see :func:`_check_image`); return size, format, tokens.

    ApiError 400 "Unable to process input image..." if the MIME type is not one Gemini
    accepts (ALLOWED_MIME_TYPES) or the bytes are not a PNG/JPEG/WEBP/HEIF image.
    """
    if mime_type not in ALLOWED_MIME_TYPES:
        raise ApiError(400, MSG_BAD_IMAGE)
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            label = _FORMAT_LABELS.get(im.format or "")
            if label is not None:
                _check_image(im, data, label)
    except Exception as exc:  # Pillow raises many types for corrupt data.
        raise ApiError(400, MSG_BAD_IMAGE) from exc
    if label is None:
        raise ApiError(400, MSG_BAD_IMAGE)
    return Media(hashlib.sha256(data).hexdigest(), mime_type, len(data), label, "IMAGE",
                 image_tokens(width, height), width=width, height=height)


def _check_image(im: Image.Image, data: bytes, label: str) -> None:
    """Prove ``im`` decodes: fully if small, else structurally (keeps big images cheap).

    Small (<= FULL_DECODE_MAX_BYTES, and for non-JPEG <= FULL_DECODE_MAX_PIXELS): decoded,
    JPEG at 1/8 scale (draft mode), others in full. Large JPEG: an EOI marker must
    follow the scan data (catches truncation; FF D9 cannot occur inside entropy-coded data);
    large PNG: every chunk CRC is verified; large WEBP/HEIF: the container parse suffices.
    """
    width, height = im.size
    few_pixels = label == "JPEG" or width * height <= FULL_DECODE_MAX_PIXELS
    if len(data) <= FULL_DECODE_MAX_BYTES and few_pixels:
        if label == "JPEG":
            im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        im.load()
    elif label == "JPEG":
        scan_start = im.tile[0][2] if im.tile else len(data)
        if data.rfind(b"\xff\xd9") < scan_start:
            raise ValueError("JPEG data ends before its end-of-image marker")
    elif label == "PNG":
        im.verify()


def probe_media(data: bytes, mime_type: str) -> Media:
    """Count PDF / audio / video bytes (see the module docstring for the token figures).

    PDF: label PDF, modality DOCUMENT, ``pages`` (at least 1); ApiError 400 "The document
    has no pages." if the bytes do not start with ``%PDF-``. audio/* and video/*: label and
    modality AUDIO / VIDEO, ``seconds`` estimated from the size (at least 1).
    """
    digest = hashlib.sha256(data).hexdigest()
    if mime_type == "application/pdf":
        if not data.startswith(b"%PDF-"):
            raise ApiError(400, MSG_NO_PAGES)
        pages = max(1, len(_PDF_PAGE.findall(data)))
        return Media(digest, mime_type, len(data), "PDF", "DOCUMENT",
                     PDF_PAGE_TOKENS * pages, pages=pages)
    video = mime_type.startswith("video/")
    seconds = max(1, math.ceil(len(data) / (VIDEO_BYTES_PER_S if video else AUDIO_BYTES_PER_S)))
    kind = "VIDEO" if video else "AUDIO"
    per_second = VIDEO_TOKENS_PER_S if video else AUDIO_TOKENS_PER_S
    return Media(digest, mime_type, len(data), kind, kind, per_second * seconds, seconds=seconds)
