"""GenerateContentRequest bodies: contents, parts, inline data and ``fileData`` references.

Used by generateContent (models.py) and by every line of a batch job (batches.py). Field
names are accepted in camelCase and snake_case, as the API does (google-genai 3.4.0 writes
``inlineData.mime_type`` and ``fileData: {file_uri, mime_type}``).

Figures and where they come from:

* 20 MiB (20,971,520 bytes) per request with inline data: Gemini API inline-data limit.
* ``serviceTier``: a top-level field ("flex", "standard", "priority"; absent means
  standard: ai.google.dev/gemini-api/docs/flex-inference); google-genai 3.4.0 sends
  ``GenerateContentConfig(service_tier="flex")`` as ``"serviceTier": "flex"``, the REST
  example on that page ``"service_tier": "FLEX"``, so case is ignored. Another value is a
  400 INVALID_ARGUMENT, worded like Gemini's answer for a bad enum value.
* ``cachedContent`` (an explicit cache's name): read here and resolved by contexts.py
  (``cachedContents``); a name it does not hold (unknown, deleted or expired) is answered
  as Gemini answers one, 403 PERMISSION_DENIED "CachedContent not found (or permission
  denied)" (reported verbatim in public client code handling it, e.g. google/adk-python
  troubleshooting and a curl probe log of 2026-09-07). A Batch API line naming one is
  a 400 "Model ... does not support cached content with batch prediction.", as users
  report of Vertex AI's batch prediction (discuss.ai.google.dev, 2025); whether the
  Gemini API's Batch API reads explicit caches is not documented: the harsher case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .media import Media, billed, probe
from .structured import check_request
from .wire import ApiError, decode_base64, get_field, load_json

MAX_REQUEST_BYTES = 20 * 1024 * 1024  # Gemini API limit for requests with inline data.
THREAD_DECODE_BYTES = 64 * 1024  # bodies larger than this are parsed in a worker thread.
MSG_NO_CONTENTS = "* GenerateContentRequest.contents: contents is not specified"
MSG_TOO_LARGE = "Request payload size exceeds the limit: 20971520 bytes."
MSG_CACHE_NOT_FOUND = "CachedContent not found (or permission denied)"
MSG_BATCH_CACHE = "Model {model} does not support cached content with batch prediction."
SERVICE_TIERS = frozenset({"standard", "flex", "priority"})


class FileParts(Protocol):
    """Resolves ``fileData`` parts (files.FilesApi)."""

    def file_part(self, file_data: dict[str, Any]) -> Media:
        """The stored file a ``{"fileUri", "mimeType"}`` dict names, probed; ApiError if gone."""
        ...


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """A validated GenerateContentRequest.

    model: the model name from the URL; media: every image/PDF/audio/video part, in order;
    texts: every text part, in order; system_instruction: its text ("" if none);
    generation_config: the request's generationConfig dict ({} if none);
    first_part_kind: "image" (any media part) or "text", the kind of the first part;
    lead_texts: the text parts before the first media part (all of them if none);
    service_tier: "standard" (also for no serviceTier), "flex" or "priority";
    subject: the media of the last content (the turn being answered: few-shot examples
    come before it), which the answer describes and scripts key on (:attr:`focus`);
    cached_content: the ``cachedContent`` name the request reads ("" if none).
    """

    model: str
    media: list[Media]
    texts: list[str]
    system_instruction: str
    generation_config: dict[str, Any]
    first_part_kind: str
    lead_texts: tuple[str, ...] = ()
    service_tier: str = "standard"
    subject: tuple[Media, ...] = ()
    cached_content: str = ""

    @property
    def focus(self) -> list[Media]:
        """The media the answer is about: those of the last content, else every media part."""
        return list(self.subject) or self.media


def parts(content: Any) -> list[dict[str, Any]]:
    """The part dicts of one Content dict (a bare string is one text part)."""
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return []
    return [p for p in content["parts"] if isinstance(p, dict)]


def text_of(content: Any) -> str:
    """The text parts of one Content dict joined with newlines ("" if none)."""
    return "\n".join(p["text"] for p in parts(content) if isinstance(p.get("text"), str))


def _part(part: dict[str, Any], files: FileParts | None) -> Media | str | None:
    """One part as text, probed media, or None (a kind the emulator ignores)."""
    inline = get_field(part, "inlineData", "inline_data")
    file_data = get_field(part, "fileData", "file_data")
    if isinstance(part.get("text"), str):
        return str(part["text"])
    if isinstance(inline, dict):
        data = decode_base64(str(inline.get("data", "")))
        return probe(data, str(get_field(inline, "mimeType", "mime_type")))
    if isinstance(file_data, dict) and files is not None:
        return files.file_part(file_data)
    return None


def collect(contents: Any, files: FileParts | None = None
            ) -> tuple[list[str], list[Media], str, int]:
    """Texts, probed media, the first part's kind ("text", "image" or "") of ``contents``
    and how many texts come before the first media part (all of them if none does).
    (:func:`last_media` gives the media of the last content.)

    Inline data goes through media.probe (images and PDF/audio/video); ``fileData`` parts
    through ``files.file_part`` (ignored without ``files``). ApiError 400 for bad media.
    """
    texts: list[str] = []
    media: list[Media] = []
    first = ""
    lead: int | None = None
    for content in contents if isinstance(contents, list) else []:
        for part in parts(content):
            item = _part(part, files)
            if isinstance(item, str):
                texts.append(item)
                first = first or "text"
            elif item is not None:
                media.append(item)
                first = first or "image"
                lead = len(texts) if lead is None else lead
    return texts, media, first, len(texts) if lead is None else lead


def last_media(contents: Any, media: list[Media]) -> tuple[Media, ...]:
    """The media of the last content of ``contents``: the last ``n`` of ``media``, where
    ``n`` is how many media parts that content has (``media`` as :func:`collect` gave it)."""
    if not isinstance(contents, list) or not contents or not media:
        return ()
    count = sum(1 for p in parts(contents[-1]) if not isinstance(p.get("text"), str)
                and (get_field(p, "inlineData", "inline_data")
                     or get_field(p, "fileData", "file_data")))
    return tuple(media[len(media) - count:]) if count else ()


def parse_generate(model: str, body: bytes, files: FileParts | None = None) -> GenerateRequest:
    """Parse and validate a generateContent body, probing every inline or file part.

    ApiError 400: body over MAX_REQUEST_BYTES, not a JSON object, no contents, bad media,
    bad serviceTier, a responseJsonSchema Gemini refuses (structured.py). A
    ``cachedContent`` name is kept in ``cached_content`` for contexts.py to resolve.
    """
    if len(body) > MAX_REQUEST_BYTES:
        raise ApiError(400, MSG_TOO_LARGE)
    return parse_payload(model, load_json(body), files)


def parse_payload(model: str, payload: dict[str, Any], files: FileParts | None = None,
                  batch: bool = False) -> GenerateRequest:
    """Validate a parsed GenerateContentRequest dict (also one batch line's request:
    ``batch``, where a ``cachedContent`` is a 400, see the module docstring)."""
    cache = get_field(payload, "cachedContent", "cached_content")
    if cache and batch:
        raise ApiError(400, MSG_BATCH_CACHE.format(model=model))
    tier = service_tier(get_field(payload, "serviceTier", "service_tier"))
    contents = payload.get("contents")
    texts, media, first, lead = collect(contents, files)
    if not first:
        raise ApiError(400, MSG_NO_CONTENTS)
    system = text_of(get_field(payload, "systemInstruction", "system_instruction"))
    config = get_field(payload, "generationConfig", "generation_config")
    config = config if isinstance(config, dict) else {}
    check_request(config)
    media = billed(media, model, config)
    return GenerateRequest(model, media, texts, system, config, first, tuple(texts[:lead]), tier,
                           last_media(contents, media), str(cache or ""))


def service_tier(value: Any) -> str:
    """A request's serviceTier as "standard", "flex" or "priority" (None and
    "unspecified": standard; any case); ApiError 400 for another value."""
    if value is None:
        return "standard"
    tier = str(value).strip().lower().removeprefix("service_tier_")
    tier = "standard" if tier == "unspecified" else tier
    if tier not in SERVICE_TIERS:
        raise ApiError(400, f"Invalid value at 'service_tier' (ServiceTier), \"{value}\"")
    return tier
