"""A local emulator of the Gemini REST API (generateContent, batchEmbedContents).

Tests and benchmarks point the real ``google-genai`` client at it with
``HttpOptions(base_url=emu.base_url)``; it speaks real HTTP, decodes the inline images it
receives with Pillow, and answers with deterministic, image-derived text, Google-shaped
usage metadata and Google-shaped errors (400, 403, 404, 429, 500, 503).

Figures and where they come from:

* 258 tokens per image when both sides are <= 384 px, else 258 per 768x768 tile:
  Gemini image token rule (ai.google.dev "Image understanding", token calculation).
* 4 characters per text token: Gemini's rule of thumb (ai.google.dev "Understand and count
  tokens").
* at most 100 requests per batchEmbedContents call, 3072 dimensions by default:
  Gemini API limit and gemini-embedding-001 default output size.
* 20 MiB (20,971,520 bytes) per request with inline data: Gemini API inline-data limit.
* 60 s sliding window for the requests-per-minute quota: Gemini rate limits are per minute.
* Error bodies and messages: modelled on real Gemini API answers (shape and wording).
"""

from __future__ import annotations

import array
import asyncio
import binascii
import dataclasses
import hashlib
import io
import json
import math
import random
import secrets
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pillow_heif
from aiohttp import web
from PIL import Image

from ._server import LoopbackServer

if TYPE_CHECKING:
    from describer.emulator.batch import BatchApi

pillow_heif.register_heif_opener()

IMAGE_TOKENS_PER_TILE = 258  # Gemini image token rule.
SMALL_IMAGE_MAX_SIDE = 384  # px; both sides <= this: one 258-token image (Gemini rule).
TILE_SIDE = 768  # px; larger images are cut into 768x768 tiles (Gemini rule).
CHARS_PER_TOKEN = 4  # Gemini's rule of thumb for text.
MAX_EMBED_BATCH = 100  # Gemini API limit per batchEmbedContents call.
DEFAULT_EMBED_DIM = 3072  # gemini-embedding-001 default output dimensionality.
MAX_REQUEST_BYTES = 20 * 1024 * 1024  # Gemini API limit for requests with inline data.
RPM_WINDOW_S = 60.0  # seconds; requests-per-minute quota window.
MAX_RECORDS = 200_000  # cap on stats.images / request_times / batch_sizes (memory bound).
THREAD_DECODE_BYTES = 64 * 1024  # bodies larger than this are parsed in a worker thread.
# Images up to this many bytes are decoded (JPEG at 1/8 scale); larger ones are checked
# structurally, keeping a 12 MP photo at a few ms instead of ~40 ms of entropy decoding.
FULL_DECODE_MAX_BYTES = 1_000_000
FULL_DECODE_MAX_PIXELS = 16_000_000  # non-JPEG images above this are checked structurally.

ALLOWED_MIME_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"}
)
_FORMAT_LABELS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "HEIF": "HEIF"}

MSG_BAD_IMAGE = (
    "Unable to process input image. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting"
)
MSG_NO_CONTENTS = "* GenerateContentRequest.contents: contents is not specified"
MSG_OVERLOADED = "The model is overloaded. Please try again later."
MSG_INTERNAL = (
    "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting"
)
MSG_INVALID = "Request contains an invalid argument."
MSG_NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
MSG_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. "
    "For more information on this error, head to: "
    "https://ai.google.dev/gemini-api/docs/rate-limits."
)
MSG_BATCH_TOO_BIG = (
    "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
)
MSG_NO_REQUESTS = "* BatchEmbedContentsRequest.requests: requests is not specified"
MSG_TOO_LARGE = "Request payload size exceeds the limit: 20971520 bytes."

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_DEFAULT_MESSAGES = {
    400: MSG_INVALID,
    404: "Requested entity was not found.",
    429: MSG_QUOTA,
    500: MSG_INTERNAL,
    503: MSG_OVERLOADED,
    504: "Deadline expired before operation could complete.",
}

_ADJECTIVES = (
    "calm", "busy", "quiet", "windswept", "sunlit", "misty", "crowded", "empty",
    "rustic", "modern", "weathered", "vivid", "faded", "serene", "cluttered", "tidy",
)
_COLOURS = (
    "amber", "teal", "crimson", "ochre", "slate", "emerald", "ivory", "indigo",
    "copper", "olive", "rose", "charcoal", "golden", "silver", "violet", "sand-coloured",
)
_SUBJECTS = (
    "harbour", "forest path", "city street", "kitchen", "mountain lake", "market stall",
    "library", "garden", "railway platform", "beach", "workshop", "living room",
    "bridge", "meadow", "rooftop", "courtyard", "desert road", "river bank", "office",
    "farmyard", "cathedral", "playground", "snowfield", "vineyard", "lighthouse",
    "bakery", "greenhouse", "parking lot", "canal", "classroom", "stadium", "orchard",
)
_TIMES = (
    "at dusk", "at dawn", "at noon", "at night", "in morning light", "in the rain",
    "under heavy cloud", "in fog", "in late afternoon", "under a clear sky", "in snow",
    "in golden hour", "under streetlights", "in soft shade", "in harsh sunlight", "at twilight",
)
_DETAILS = (
    "a red bicycle", "two people talking", "a sleeping cat", "stacked wooden crates",
    "a flock of birds", "a parked van", "potted plants", "a hand-painted sign",
    "puddles on the ground", "a wooden bench", "distant hills", "string lights",
    "an open window", "scattered leaves", "a striped awning", "a small dog",
)

_SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
]
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


@dataclass(frozen=True)
class EmulatorSettings:
    """How the emulator behaves.

    latency: (low, high) seconds; each admitted generate request sleeps uniform(low, high),
        from an RNG seeded by ``seed``, after its body is read and its images decoded.
    rpm: requests accepted for generateContent per ``quota_window`` (a sliding window; Gemini
        documents RPM as "21 requests within a minute fail for an RPM of 20"); None = no quota.
    quota_window: seconds of that sliding window; 60 as at Gemini, shorter to make tests fast.
    fault_rate: fraction (0..1) of admitted generate requests answered with an injected 503
        UNAVAILABLE "The model is overloaded. Please try again later." (seeded RNG).
    seed: seeds three separate RNGs (generate latency, faults, embed latency), so changing
        one setting does not shift the others' sequences.
    require_key: answer 403 PERMISSION_DENIED when no ``x-goog-api-key`` / Bearer token is sent.
    embed_latency: (low, high) seconds slept per successful batchEmbedContents call.
    """

    latency: tuple[float, float] = (0.0, 0.0)
    rpm: int | None = None
    quota_window: float = RPM_WINDOW_S
    fault_rate: float = 0.0
    seed: int = 0
    require_key: bool = True
    embed_latency: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        for name in ("latency", "embed_latency"):
            low, high = (float(x) for x in getattr(self, name))
            if not 0.0 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high")
            object.__setattr__(self, name, (low, high))
        if self.rpm is not None and self.rpm < 1:
            raise ValueError("rpm must be None or >= 1")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the settings (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """What the model was given in one admitted generate request.

    sha256: hex digest of the first image's decoded bytes (None for text-only requests);
    mime_type: its declared MIME type; bytes: its decoded size in bytes; width/height: px;
    image_count: inline images in the request; model: model name from the URL;
    prompt: all text parts joined with newlines; system_instruction: its text ("" if none);
    generation_config: the request's generationConfig dict (shared, do not mutate);
    first_part_kind: "image" or "text", the kind of the first part (part order).
    Also readable as a mapping: ``record["sha256"]``.
    """

    sha256: str | None
    mime_type: str | None
    bytes: int
    width: int
    height: int
    image_count: int
    model: str
    prompt: str
    system_instruction: str
    generation_config: dict[str, Any]
    first_part_kind: str

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the record."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass
class EmulatorStats:
    """Counters since start or the last reset.

    generate_requests: generateContent calls received (including rejected ones);
    embed_requests: batchEmbedContents/embedContent calls received;
    responses_by_status: HTTP status -> count, API endpoints only;
    rate_limited: 429 answers; injected_faults: 503s from ``fault_rate``;
    request_bytes: HTTP body bytes received on API endpoints;
    image_bytes: decoded inline image bytes of admitted generate requests;
    in_flight / max_in_flight: generate requests being handled now / at most at once
    (covers reading, decoding and the latency sleep);
    batch_sizes: size of every batchEmbedContents call received (rejected ones too);
    images: one ImageRecord per admitted generate request (passed key, quota and decoding;
    includes those then failed by a script or fault);
    request_times: time.monotonic() of each generate request's arrival.
    The three lists keep at most MAX_RECORDS (200,000) entries; beyond that
    ``records_dropped`` counts what was not kept.
    """

    generate_requests: int = 0
    embed_requests: int = 0
    responses_by_status: dict[int, int] = field(default_factory=dict)
    rate_limited: int = 0
    injected_faults: int = 0
    request_bytes: int = 0
    image_bytes: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    images: list[ImageRecord] = field(default_factory=list)
    request_times: list[float] = field(default_factory=list)
    records_dropped: int = 0

    def reset(self) -> None:
        """Zero every counter in place, keeping ``in_flight`` (max_in_flight starts there)."""
        fresh = EmulatorStats(in_flight=self.in_flight, max_in_flight=self.in_flight)
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(fresh, f.name))

    def keep(self, target: list[Any], item: Any) -> None:
        """Append ``item`` to one of the record lists unless MAX_RECORDS is reached."""
        if len(target) < MAX_RECORDS:
            target.append(item)
        else:
            self.records_dropped += 1

    def to_dict(self, lists: bool = True) -> dict[str, Any]:
        """JSON-ready dict; ``lists=False`` leaves out images, request_times, batch_sizes."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["responses_by_status"] = {str(k): v for k, v in self.responses_by_status.items()}
        if lists:
            out["images"] = [r.to_dict() for r in self.images]
        else:
            for name in ("images", "request_times", "batch_sizes"):
                del out[name]
        return out


class ApiError(Exception):
    """A Google-style API error: ``{"error": {"code", "message", "status", "details"?}}``."""

    def __init__(self, code: int, message: str | None = None,
                 details: list[dict[str, Any]] | None = None) -> None:
        self.code = code
        self.message = message or _DEFAULT_MESSAGES.get(code, "Error.")
        self.details = details
        super().__init__(f"{code} {self.message}")

    def body(self) -> dict[str, Any]:
        """The JSON body Gemini sends for this error."""
        err: dict[str, Any] = {"code": self.code, "message": self.message,
                               "status": _STATUS_NAMES.get(self.code, "UNKNOWN")}
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}


@dataclass(slots=True)
class Behaviour:
    """A scripted per-image behaviour parsed from text (see ``parse_behaviour``)."""

    kind: str  # block | safety | empty | max_tokens | fail | slow
    status: int = 0
    remaining: int | None = None  # fail: failures left; None = always
    seconds: float = 0.0


def parse_behaviour(text: str) -> Behaviour:
    """Parse "block", "safety", "empty", "max_tokens", "fail:CODE[:N]" or "slow:SECONDS".

    fail:CODE:N fails the first N requests for the image with HTTP CODE (e.g. 503, 500,
    429), then answers normally; fail:CODE without N fails every time.
    """
    kind, _, rest = text.partition(":")
    if kind in ("block", "safety", "empty", "max_tokens") and not rest:
        return Behaviour(kind)
    try:
        if kind == "slow":
            seconds = float(rest)
            if seconds >= 0:
                return Behaviour("slow", seconds=seconds)
        if kind == "fail":
            code, _, count = rest.partition(":")
            if int(code) in _STATUS_NAMES:
                return Behaviour("fail", int(code), int(count) if count else None)
    except ValueError:
        pass
    raise ValueError(f"unknown behaviour {text!r}")


@dataclass(frozen=True, slots=True)
class _Image:
    sha256: str
    mime_type: str
    nbytes: int
    width: int
    height: int
    label: str  # JPEG | PNG | WEBP | HEIF (PDF | AUDIO | VIDEO: see batch.probe_media)
    tokens: int | None = None  # None: image_tokens(width, height)
    modality: str = "IMAGE"  # promptTokensDetails modality: IMAGE | DOCUMENT | AUDIO | VIDEO
    description: str | None = None  # None: describe(sha256, width, height, label)


class MediaSource(Protocol):
    """Resolves non-image inline data and ``fileData`` parts (batch.BatchApi)."""

    def probe(self, data: bytes, mime_type: str) -> _Image: ...

    def file_part(self, file_data: dict[str, Any]) -> _Image: ...


@dataclass(frozen=True, slots=True)
class _GenerateRequest:
    model: str
    images: list[_Image]
    texts: list[str]
    system_instruction: str
    generation_config: dict[str, Any]
    first_part_kind: str


def image_tokens(width: int, height: int) -> int:
    """Prompt tokens for one image of width x height px.

    Gemini image token rule: 258 if both sides <= 384 px, else 258 per 768x768 tile,
    i.e. 258 * ceil(width / 768) * ceil(height / 768).
    """
    if width <= SMALL_IMAGE_MAX_SIDE and height <= SMALL_IMAGE_MAX_SIDE:
        return IMAGE_TOKENS_PER_TILE
    return IMAGE_TOKENS_PER_TILE * math.ceil(width / TILE_SIDE) * math.ceil(height / TILE_SIDE)


def text_tokens(chars: int) -> int:
    """Tokens for ``chars`` characters of text: ceil(chars / 4), Gemini's rule of thumb."""
    return math.ceil(chars / CHARS_PER_TOKEN)


def describe(image_sha256: str, width: int, height: int, label: str) -> str:
    """Deterministic description of an image, chosen by its sha256 (hex) from fixed words.

    E.g. "A 512x600 JPEG image of a calm amber harbour at dusk, with a red bicycle.
    Scene 3f9a2c1b." - the trailing scene code (first 8 hex digits) makes different
    images' texts differ.
    """
    d = bytes.fromhex(image_sha256)
    return (
        f"A {width}x{height} {label} image of a {_ADJECTIVES[d[0] % 16]} "
        f"{_COLOURS[d[1] % 16]} {_SUBJECTS[d[2] % 32]} {_TIMES[d[3] % 16]}, "
        f"with {_DETAILS[d[4] % 16]}. Scene {image_sha256[:8]}."
    )


def embedding_vector(text: str, dimensions: int = DEFAULT_EMBED_DIM) -> list[float]:
    """Deterministic unit-norm vector of ``dimensions`` floats, a function of ``text`` only.

    Components are uniform int16 values from ``random.Random(first 8 bytes of
    sha256(text))``, divided by their Euclidean norm; a shorter vector is the normalised
    prefix of a longer one (like Matryoshka truncation).
    """
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    raw = array.array("h", random.Random(seed).randbytes(2 * dimensions))
    norm = math.hypot(*raw) or 1.0
    return [x / norm for x in raw]


def decode_base64(data: str) -> bytes:
    """Decode standard or URL-safe base64, with or without padding; ApiError 400 if invalid."""
    try:
        raw = data.strip().encode("ascii")
    except UnicodeEncodeError as exc:
        raise ApiError(400, MSG_BAD_IMAGE) from exc
    if b"-" in raw or b"_" in raw:
        raw = raw.translate(_URLSAFE_TO_STANDARD)
    raw += b"=" * (-len(raw) % 4)
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, MSG_BAD_IMAGE) from exc


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


def probe_image(data: bytes, mime_type: str) -> _Image:
    """Check image bytes with Pillow (see _check_image); return full size in px and format.

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
    return _Image(hashlib.sha256(data).hexdigest(), mime_type, len(data), width, height, label)


def _load_json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "Invalid JSON payload received.") from exc
    if not isinstance(payload, dict):
        raise ApiError(400, "Invalid JSON payload received. Expected an object.")
    return payload


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    """``obj[camel]`` or ``obj[snake]`` (the API accepts both spellings), else None."""
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return []
    return [p for p in content["parts"] if isinstance(p, dict)]


def _collect(contents: Any, media: MediaSource | None = None
             ) -> tuple[list[str], list[_Image], str]:
    """Texts, decoded images/media and the first part's kind from ``contents``.

    With ``media``, inline data goes through ``media.probe`` (images and PDF/audio/video)
    and ``fileData`` parts through ``media.file_part``; without it, as before.
    """
    texts: list[str] = []
    images: list[_Image] = []
    first = ""
    for content in contents if isinstance(contents, list) else []:
        for part in _parts(content):
            inline = _get(part, "inlineData", "inline_data")
            file_data = _get(part, "fileData", "file_data")
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
                first = first or "text"
            elif isinstance(inline, dict):
                data = decode_base64(str(inline.get("data", "")))
                mime = str(_get(inline, "mimeType", "mime_type"))
                images.append(media.probe(data, mime) if media else probe_image(data, mime))
                first = first or "image"
            elif isinstance(file_data, dict) and media is not None:
                images.append(media.file_part(file_data))
                first = first or "image"
    return texts, images, first


def parse_generate(model: str, body: bytes,
                   media: MediaSource | None = None) -> _GenerateRequest:
    """Parse and validate a generateContent body, decoding every inline image."""
    if len(body) > MAX_REQUEST_BYTES:
        raise ApiError(400, MSG_TOO_LARGE)
    return parse_payload(model, _load_json(body), media)


def parse_payload(model: str, payload: dict[str, Any],
                  media: MediaSource | None = None) -> _GenerateRequest:
    """Validate a parsed GenerateContentRequest dict (also one batch line's request)."""
    texts, images, first = _collect(payload.get("contents"), media)
    if not first:
        raise ApiError(400, MSG_NO_CONTENTS)
    system = _get(payload, "systemInstruction", "system_instruction")
    system_text = "\n".join(p["text"] for p in _parts(system) if isinstance(p.get("text"), str))
    config = _get(payload, "generationConfig", "generation_config")
    return _GenerateRequest(model, images, texts, system_text,
                            config if isinstance(config, dict) else {}, first)


def _media_tokens(items: list[_Image]) -> dict[str, int]:
    """Prompt tokens per modality (images: tile rule; other media: their own count)."""
    out: dict[str, int] = {}
    for i in items:
        tokens = image_tokens(i.width, i.height) if i.tokens is None else i.tokens
        out[i.modality] = out.get(i.modality, 0) + tokens
    return out


def _usage(media: dict[str, int], prompt_text: int, answer_tokens: int) -> dict[str, Any]:
    details = [{"modality": m, "tokenCount": n} for m, n in media.items() if n]
    details.append({"modality": "TEXT", "tokenCount": prompt_text})
    prompt = sum(media.values()) + prompt_text
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "totalTokenCount": prompt + answer_tokens,
        "promptTokensDetails": details,
    }
    if answer_tokens:
        usage["candidatesTokenCount"] = answer_tokens
    return usage


def _answer_text(req: _GenerateRequest) -> str:
    if not req.images:
        digest = hashlib.sha256("\n".join(req.texts).encode()).hexdigest()
        chars = sum(len(t) for t in req.texts)
        return f"A text-only request of {chars} characters. Scene {digest[:8]}."
    first = req.images[0]
    text = first.description or describe(first.sha256, first.width, first.height, first.label)
    if len(req.images) > 1:
        text += f" Plus {len(req.images) - 1} more image(s)."
    return text


def _candidate(req: _GenerateRequest, kind: str | None) -> tuple[dict[str, Any], int]:
    """The candidate dict for a normal or scripted answer, and its token count."""
    if kind == "safety":
        return {"finishReason": "SAFETY", "index": 0, "safetyRatings": _SAFETY_RATINGS}, 0
    if kind == "empty":
        return {"content": {"parts": [], "role": "model"}, "finishReason": "STOP",
                "index": 0}, 0
    text, reason = _answer_text(req), "STOP"
    limit = req.generation_config.get("maxOutputTokens",
                                      req.generation_config.get("max_output_tokens"))
    if kind == "max_tokens":
        text, reason = text[: max(1, len(text) // 2)], "MAX_TOKENS"
    if isinstance(limit, int) and text_tokens(len(text)) > limit:
        text, reason = text[: max(0, limit) * CHARS_PER_TOKEN], "MAX_TOKENS"
    candidate = {"content": {"parts": [{"text": text}], "role": "model"},
                 "finishReason": reason, "index": 0}
    return candidate, text_tokens(len(text))


def build_response(req: _GenerateRequest, kind: str | None) -> dict[str, Any]:
    """The generateContent answer for ``req``; ``kind`` is a scripted shape or None.

    usageMetadata: promptTokenCount = image tokens (Gemini tile rule, see image_tokens;
    PDF/audio/video: batch.probe_media)
    + ceil(chars of all text incl. system instruction / 4); candidatesTokenCount =
    ceil(len(answer) / 4); totalTokenCount their sum.
    """
    media = _media_tokens(req.images)
    txt = text_tokens(sum(len(t) for t in req.texts) + len(req.system_instruction))
    out: dict[str, Any] = {}
    if kind == "block":
        out["promptFeedback"] = {"blockReason": "SAFETY", "safetyRatings": _SAFETY_RATINGS}
        answer_tokens = 0
    else:
        candidate, answer_tokens = _candidate(req, kind)
        out["candidates"] = [candidate]
    out["usageMetadata"] = _usage(media, txt, answer_tokens)
    out["modelVersion"] = req.model
    out["responseId"] = secrets.token_urlsafe(16)
    return out


def quota_error(retry_delay_s: int) -> ApiError:
    """The 429 RESOURCE_EXHAUSTED error Gemini sends when the per-minute quota is spent."""
    return ApiError(429, MSG_QUOTA, [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        }]},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
        }]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_delay_s}s"},
    ])


def _error_response(err: ApiError) -> web.Response:
    return web.json_response(err.body(), status=err.code)


class _Interner:
    """Shares equal strings and generation configs between records (keeps memory small)."""

    def __init__(self) -> None:
        self._configs: dict[str, dict[str, Any]] = {}

    def config(self, config: dict[str, Any]) -> dict[str, Any]:
        key = json.dumps(config, sort_keys=True, default=str)
        if key not in self._configs and len(self._configs) < 1024:
            self._configs[key] = config
        return self._configs.get(key, config)

    def record(self, req: _GenerateRequest) -> ImageRecord:
        first = req.images[0] if req.images else None
        return ImageRecord(
            sha256=first.sha256 if first else None,
            mime_type=sys.intern(first.mime_type) if first else None,
            bytes=first.nbytes if first else 0,
            width=first.width if first else 0,
            height=first.height if first else 0,
            image_count=len(req.images),
            model=sys.intern(req.model),
            prompt=sys.intern("\n".join(req.texts)),
            system_instruction=sys.intern(req.system_instruction),
            generation_config=self.config(req.generation_config),
            first_part_kind=req.first_part_kind,
        )


class GeminiEmulator(LoopbackServer):
    """An aiohttp app emulating the Gemini REST API on 127.0.0.1 (see module docstring).

    Use ``async with GeminiEmulator(EmulatorSettings(...)) as emu:`` and point the client at
    ``emu.base_url`` (``http://127.0.0.1:PORT``), or ``await emu.start()`` /
    ``await emu.stop()``, or ``with emu.in_thread() as base_url:`` from synchronous code.

    Routes: ``POST /{version}/models/{model}:generateContent``, ``:batchEmbedContents``,
    ``:embedContent``; control: ``GET /_emulator/stats[?lists=0]``, ``POST /_emulator/reset``,
    ``GET|POST /_emulator/config``, ``POST /_emulator/script``; the Files and Batch API
    (uploads, ``:batchGenerateContent``, ``/_emulator/batch``) are in ``self.batch``
    (batch.BatchApi, see describer/emulator/batch.py).
    """

    site_options: ClassVar[dict[str, Any]] = {"backlog": 4096}

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or EmulatorSettings()
        self.stats = EmulatorStats()
        self._scripts: dict[str, Behaviour] = {}
        self._window: deque[float] = deque()
        self._interner = _Interner()
        self._reseed()
        self._handlers: dict[str, Callable[[str, bytes], Awaitable[dict[str, Any]]]] = {
            "generateContent": self._generate,
            "batchEmbedContents": self._batch_embed,
            "embedContent": self._embed_one,
        }
        self._embed_behaviour: Behaviour | None = None
        from describer.emulator.batch import BatchApi  # here: batch.py imports this module

        self.batch: BatchApi = BatchApi(self)  # Files + Batch API state and counters
        self._handlers["batchGenerateContent"] = self.batch.create
        self.app = self._make_app()

    # ----- lifecycle -------------------------------------------------------------------
    @contextmanager
    def in_thread(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Run the emulator on its own event loop in a daemon thread; yields ``base_url``."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="gemini-emulator", daemon=True)
        thread.start()
        try:
            yield asyncio.run_coroutine_threadsafe(self.start(host, port), loop).result()
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    # ----- Python control API --------------------------------------------------------------
    def script(self, sha256_hex: str, behaviour: str | None) -> None:
        """Script how requests whose first image has this sha256 are answered (None: clear).

        behaviour: "block", "safety", "empty", "max_tokens", "fail:503:N", "fail:500:N",
        "fail:400", "slow:SECONDS" (see parse_behaviour). ValueError if unknown.
        """
        if behaviour is None:
            self._scripts.pop(sha256_hex.lower(), None)
        else:
            self._scripts[sha256_hex.lower()] = parse_behaviour(behaviour)

    def clear_scripts(self) -> None:
        """Remove every scripted behaviour."""
        self._scripts.clear()

    def script_embed(self, behaviour: str | None) -> None:
        """Script every embedding call: "fail:CODE[:N]" (the first N calls, or all, fail with
        HTTP CODE); None clears it. Batch sizes are recorded either way."""
        self._embed_behaviour = parse_behaviour(behaviour) if behaviour else None

    def configure(self, **changes: Any) -> EmulatorSettings:
        """Replace some settings at run time (same names as EmulatorSettings); returns them.

        Changing ``seed`` re-seeds the latency and fault RNGs.
        """
        self.settings = dataclasses.replace(self.settings, **changes)
        if "seed" in changes:
            self._reseed()
        return self.settings

    def reset_stats(self) -> None:
        """Zero ``stats`` in place and empty the rpm window (in-flight requests stay counted).

        Scripts (and their remaining-failure counters) and settings are kept.
        """
        self.stats.reset()
        self.batch.stats.reset()
        self._window.clear()

    def _reseed(self) -> None:
        self._latency_rng = random.Random(f"{self.settings.seed}:latency")
        self._fault_rng = random.Random(f"{self.settings.seed}:faults")
        self._embed_rng = random.Random(f"{self.settings.seed}:embed")

    # ----- HTTP ------------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=4 * MAX_REQUEST_BYTES)
        app.router.add_post("/{version}/models/{rest}", self._handle_model)
        app.router.add_get("/_emulator/stats", self._handle_stats)
        app.router.add_post("/_emulator/reset", self._handle_reset)
        app.router.add_get("/_emulator/config", self._handle_get_config)
        app.router.add_post("/_emulator/config", self._handle_config)
        app.router.add_post("/_emulator/script", self._handle_script)
        self.batch.add_routes(app)
        return app

    async def _handle_model(self, request: web.Request) -> web.Response:
        model, _, action = request.match_info["rest"].rpartition(":")
        handler = self._handlers.get(action)
        generate = action == "generateContent"
        if action in ("batchEmbedContents", "embedContent"):
            self.stats.embed_requests += 1
        if generate:
            self.stats.generate_requests += 1
            self.stats.keep(self.stats.request_times, time.monotonic())
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            response = await self._dispatch(request, handler, model, action)
        finally:
            if generate:
                self.stats.in_flight -= 1
        counts = self.stats.responses_by_status
        counts[response.status] = counts.get(response.status, 0) + 1
        return response

    async def _dispatch(
        self,
        request: web.Request,
        handler: Callable[[str, bytes], Awaitable[dict[str, Any]]] | None,
        model: str,
        action: str,
    ) -> web.Response:
        try:
            body = await request.read()
            self.stats.request_bytes += len(body)
            if handler is None or not model:
                raise ApiError(404, f"Method {action!r} not found for models/{model}.")
            self._check_key(request)
            return web.json_response(await handler(model, body))
        except ApiError as err:
            if err.code == 429:
                self.stats.rate_limited += 1
            return _error_response(err)

    def _check_key(self, request: web.Request) -> None:
        if not self.settings.require_key:
            return
        bearer = request.headers.get("Authorization", "").startswith("Bearer ")
        if not (request.headers.get("x-goog-api-key") or bearer):
            raise ApiError(403, MSG_NO_KEY)

    # ----- generateContent --------------------------------------------------------------
    async def _generate(self, model: str, body: bytes) -> dict[str, Any]:
        self._admit()
        if len(body) > THREAD_DECODE_BYTES:
            req = await asyncio.to_thread(parse_generate, model, body, self.batch)
        else:
            req = parse_generate(model, body, self.batch)
        self.stats.image_bytes += sum(i.nbytes for i in req.images)
        self.stats.keep(self.stats.images, self._interner.record(req))
        behaviour = self._scripts.get(req.images[0].sha256) if req.images else None
        await self._sleep(behaviour)
        self._fail_if_due(behaviour)
        return build_response(req, behaviour.kind if behaviour else None)

    def _admit(self) -> None:
        """Apply the rpm quota: a sliding ``quota_window`` of admitted generate requests."""
        rpm = self.settings.rpm
        if rpm is None:
            return
        now = time.monotonic()
        window = self.settings.quota_window
        while self._window and now - self._window[0] >= window:
            self._window.popleft()
        if len(self._window) >= rpm:
            wait = self._window[0] + window - now
            raise quota_error(max(1, math.ceil(wait)))
        self._window.append(now)

    async def _sleep(self, behaviour: Behaviour | None) -> None:
        if behaviour is not None and behaviour.kind == "slow":
            delay = behaviour.seconds
        else:
            low, high = self.settings.latency
            delay = self._latency_rng.uniform(low, high) if high > 0 else 0.0
        if delay > 0:
            await asyncio.sleep(delay)

    def _fail_if_due(self, behaviour: Behaviour | None, faults: bool = True) -> None:
        if behaviour is not None and behaviour.kind == "fail":
            if behaviour.remaining is None:
                raise ApiError(behaviour.status)
            if behaviour.remaining > 0:
                behaviour.remaining -= 1
                raise ApiError(behaviour.status)
        rate = self.settings.fault_rate if faults else 0.0
        if rate > 0 and self._fault_rng.random() < rate:
            self.stats.injected_faults += 1
            raise ApiError(503, MSG_OVERLOADED)

    # ----- embeddings -------------------------------------------------------------------
    async def _batch_embed(self, model: str, body: bytes) -> dict[str, Any]:
        payload = _load_json(body)
        requests = payload.get("requests")
        if not isinstance(requests, list) or not requests:
            raise ApiError(400, MSG_NO_REQUESTS)
        self.stats.keep(self.stats.batch_sizes, len(requests))
        if len(requests) > MAX_EMBED_BATCH:
            raise ApiError(400, MSG_BATCH_TOO_BIG)
        if self._embed_behaviour is not None:
            self._fail_if_due(self._embed_behaviour, faults=False)
        vectors = [_embed_request(r) for r in requests]
        await self._embed_sleep()
        return {"embeddings": [{"values": v} for v in vectors]}

    async def _embed_one(self, model: str, body: bytes) -> dict[str, Any]:
        vector = _embed_request(_load_json(body))
        await self._embed_sleep()
        return {"embedding": {"values": vector}}

    async def _embed_sleep(self) -> None:
        low, high = self.settings.embed_latency
        if high > 0:
            await asyncio.sleep(self._embed_rng.uniform(low, high))

    # ----- control endpoints --------------------------------------------------------------
    async def _handle_stats(self, request: web.Request) -> web.Response:
        lists = request.query.get("lists", "1").lower() not in ("0", "false", "no")
        return web.json_response(self.stats.to_dict(lists=lists))

    async def _handle_reset(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.json_response({"ok": True})

    async def _handle_get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.settings.to_dict())

    async def _handle_config(self, request: web.Request) -> web.Response:
        names = {f.name for f in dataclasses.fields(EmulatorSettings)}
        try:
            changes = await request.json()
            if not isinstance(changes, dict) or set(changes) - names:
                raise ValueError(f"expected a JSON object with keys among {sorted(names)}")
            for key in ("latency", "embed_latency"):
                if isinstance(changes.get(key), int | float):
                    changes[key] = (changes[key], changes[key])
                elif key in changes:
                    changes[key] = tuple(changes[key])
            settings = self.configure(**changes)
        except (ValueError, TypeError) as exc:
            return web.json_response(ApiError(400, str(exc)).body(), status=400)
        return web.json_response(settings.to_dict())

    async def _handle_script(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
            self.script(str(payload["sha256"]), payload.get("behaviour"))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return web.json_response(ApiError(400, str(exc)).body(), status=400)
        return web.json_response({"ok": True})


def _embed_request(req: Any) -> list[float]:
    """The vector for one EmbedContentRequest dict (text of its content parts)."""
    if not isinstance(req, dict):
        raise ApiError(400, MSG_INVALID)
    text = "\n".join(p["text"] for p in _parts(req.get("content"))
                     if isinstance(p.get("text"), str))
    dim = _get(req, "outputDimensionality", "output_dimensionality") or DEFAULT_EMBED_DIM
    if not isinstance(dim, int) or not 1 <= dim <= DEFAULT_EMBED_DIM:
        raise ApiError(400, f"* EmbedContentRequest.output_dimensionality: must be in "
                            f"[1, {DEFAULT_EMBED_DIM}]")
    return embedding_vector(text, dim)
