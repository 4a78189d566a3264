"""Input tokens of a request before it is sent, for ``--tpm`` pacing (corrected from usage)."""

from __future__ import annotations

import math

from ..config import Config, model_family
from ..model import Media

#: Tokens per image at each --media-resolution on Gemini 3 models
#: (ai.google.dev/gemini-api/docs/media-resolution, token counts table).
RESOLUTION_IMAGE_TOKENS = {"low": 280, "medium": 560, "high": 1120}
#: ``--media-resolution`` taken on Gemini 3 when none is given: Gemini 3's token table gives
#: an image 1120 tokens at ``MEDIA_RESOLUTION_UNSPECIFIED`` (the default), the same as at
#: ``high`` (ai.google.dev/gemini-api/docs/media-resolution, "Token counts").
GEMINI3_DEFAULT_RESOLUTION = "high"


#: Size assumed for an image whose size is not known before it is sent (a URL in a dry run,
#: or sent as a URL with its header past the first bytes), where image tokens follow the size
#: (Gemini 2.5 and older): 1920x1080 (Full HD, a common size for photos on the web): 3x2
#: tiles of 768 px, 1,548 tokens.
ASSUMED_IMAGE_SIZE = (1920, 1080)


def request_tokens(media: Media, config: Config) -> int:
    """Input tokens of one request of this run before it is sent (for ``--tpm``,
    ``--max-cost`` and ``--dry-run``): :func:`estimate_tokens` of the prompt and system
    instruction, at ``--media-resolution``, or on Gemini 3 without one at the model's default
    (``GEMINI3_DEFAULT_RESOLUTION``)."""
    text = config.prompt + (config.system_instruction or "")
    return estimate_tokens(media, text, request_resolution(config))


def request_resolution(config: Config) -> str | None:
    """The ``--media-resolution`` whose token budget an image of this run costs: the one
    given, else on Gemini 3 the model's default (``GEMINI3_DEFAULT_RESOLUTION``), else None
    (tokens by tiles)."""
    if config.media_resolution is None and model_family(config.model) == "3":
        return GEMINI3_DEFAULT_RESOLUTION
    return config.media_resolution


def estimate_tokens(media: Media, text: str, resolution: str | None = None) -> int:
    """Input tokens of one request before it is sent, for ``--tpm`` pacing (then corrected).

    Images: 258 tokens with both sides at most 384 px, else 258 per 768x768 tile
    (ai.google.dev/gemini-api/docs/tokens), or the ``--media-resolution`` budget; an image
    of unknown size is taken to be :data:`ASSUMED_IMAGE_SIZE`. PDFs: 258
    per page (pages counted from ``/Type /Page``). Audio: 32 tokens per second, video about
    300, with the duration guessed from the size (128 kbit/s audio, 2 Mbit/s video). Text:
    about one token per 4 characters.
    """
    return _media_tokens(media, resolution) + math.ceil(len(text) / 4)


def _media_tokens(media: Media, resolution: str | None) -> int:
    kind = media.mime_type.split("/")[0]
    width, height = media.width, media.height
    if kind == "image" and (width is None or height is None):
        width, height = ASSUMED_IMAGE_SIZE
    if width is not None and height is not None:
        if resolution:
            return RESOLUTION_IMAGE_TOKENS[resolution]
        if width <= 384 and height <= 384:
            return 258
        return 258 * math.ceil(width / 768) * math.ceil(height / 768)
    if kind == "audio":
        return math.ceil(media.bytes / 16_000 * 32)
    if kind == "video":
        return math.ceil(media.bytes / 250_000 * 300)
    return 258 * max(1, media.pages)
