"""The model's side: deterministic answers, token counts, usage metadata, embedding vectors.

Answers are a function of the request only (a media part's sha256 picks words from fixed
lists), so tests can predict them and two runs give the same text.

Figures and where they come from:

* 4 characters per text token: Gemini's rule of thumb (ai.google.dev "Understand and count
  tokens"); media tokens come from media.py.
* 3072 dimensions by default: gemini-embedding-001 default output size; shorter vectors are
  prefixes renormalised, like its Matryoshka truncation (``outputDimensionality``).
* Response shape (candidates, finishReason, promptFeedback, usageMetadata with
  promptTokensDetails per modality, modelVersion, responseId): the GenerateContentResponse
  of the Gemini REST API.
"""

from __future__ import annotations

import array
import hashlib
import json
import math
import random
import secrets
from typing import Any

from .contents import GenerateRequest
from .media import Media
from .structured import instance, json_schema, off_schema
from .wire import get_field

CHARS_PER_TOKEN = 4  # Gemini's rule of thumb for text.
DEFAULT_EMBED_DIM = 3072  # gemini-embedding-001 default output dimensionality.

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
_TOPICS = ("a quarterly budget", "a train timetable", "a research paper", "a recipe",
           "a user manual", "a rental contract", "a museum guide", "a school report")
_SOUNDS = ("a person speaking", "piano music", "birdsong", "street traffic",
           "a phone conversation", "rain on a roof", "a lecture", "a crowd cheering")
_SCENES = ("a city street", "a beach at dusk", "a kitchen", "a football match",
           "a mountain trail", "an office meeting", "a birthday party", "a train journey")

_SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
]


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


def describe_media(item: Media) -> str:
    """Deterministic description of any probed part: images by :func:`describe`; e.g.
    "A 2-page PDF document (512 bytes) about a recipe. Document 3f9a2c1b.", "A video of
    about 34 s (video/mp4) showing ...", "An audio recording of about 3 s (audio/mpeg) ..."."""
    pick, code = bytes.fromhex(item.sha256)[0] % 8, item.sha256[:8]
    if item.label == "PDF":
        return (f"A {item.pages}-page PDF document ({item.nbytes} bytes) about "
                f"{_TOPICS[pick]}. Document {code}.")
    if item.label == "VIDEO":
        return (f"A video of about {item.seconds} s ({item.mime_type}) showing "
                f"{_SCENES[pick]}. Video {code}.")
    if item.label == "AUDIO":
        return (f"An audio recording of about {item.seconds} s ({item.mime_type}) with "
                f"{_SOUNDS[pick]}. Recording {code}.")
    return describe(item.sha256, item.width, item.height, item.label)


def answer_text(req: GenerateRequest, shape: str | None = None) -> str:
    """The full answer text for ``req`` (before any max-token truncation): the description;
    with a ``responseJsonSchema``, JSON valid under it (structured.instance), or for the
    scripted shapes ``bad_json`` the description as prose (not JSON) and ``off_schema``
    JSON that is not valid under it (structured.off_schema)."""
    text = _description(req)
    schema = json_schema(req.generation_config)
    if schema is None or shape == "bad_json":
        return text
    value = off_schema(schema, text) if shape == "off_schema" else instance(schema, text)
    return json.dumps(value, ensure_ascii=False)


def _description(req: GenerateRequest) -> str:
    focus = req.focus
    if not focus:
        digest = hashlib.sha256("\n".join(req.texts).encode()).hexdigest()
        chars = sum(len(t) for t in req.texts)
        return f"A text-only request of {chars} characters. Scene {digest[:8]}."
    text = describe_media(focus[0])
    if len(focus) > 1:
        text += f" Plus {len(focus) - 1} more image(s)."
    return text


def _candidate(req: GenerateRequest, shape: str | None,
               thoughts: int) -> tuple[dict[str, Any], int, int]:
    """The candidate dict for a normal or scripted answer, its answer tokens and the
    thinking tokens billed (cut to maxOutputTokens; see :func:`build_response`)."""
    if shape == "safety":
        return {"finishReason": "SAFETY", "index": 0, "safetyRatings": _SAFETY_RATINGS}, 0, thoughts
    if shape == "empty":
        return {"content": {"parts": [], "role": "model"}, "finishReason": "STOP",
                "index": 0}, 0, thoughts
    text, reason = answer_text(req, shape), "STOP"
    if shape == "max_tokens":
        text, reason = text[: max(1, len(text) // 2)], "MAX_TOKENS"
    limit = get_field(req.generation_config, "maxOutputTokens", "max_output_tokens")
    if isinstance(limit, int):
        thoughts = min(thoughts, max(0, limit))
        room = limit - thoughts
        if room <= 0:  # thinking spent it all: no text part at all (google/adk-python#1357)
            return {"content": {"role": "model"}, "finishReason": "MAX_TOKENS",
                    "index": 0}, 0, thoughts
        if text_tokens(len(text)) > room:
            text, reason = text[: room * CHARS_PER_TOKEN], "MAX_TOKENS"
    candidate = {"content": {"parts": [{"text": text}], "role": "model"},
                 "finishReason": reason, "index": 0}
    return candidate, text_tokens(len(text)), thoughts


#: Thinking tokens per request at each thinkingLevel (Gemini 3 models). The emulator's own
#: model, not Gemini's figures: Google documents the levels (LOW, MEDIUM, HIGH; Gemini 3.8
#: Flash thinks at MEDIUM unless told) and that thoughts are billed as output
#: (``thoughtsTokenCount``), not how many tokens each level spends on a caption.
THINKING_TOKENS = {"MINIMAL": 0, "LOW": 128, "MEDIUM": 512, "HIGH": 2048}
#: The level a Gemini 3 model thinks at when the request names none (Gemini 3.8 Flash
#: developer guide: default MEDIUM).
DEFAULT_THINKING_LEVEL = "MEDIUM"
#: Thinking tokens of a Gemini 2.5 model with a dynamic budget (-1 or none): the emulator's
#: model, capped by an explicit ``thinkingBudget``.
DYNAMIC_THINKING_TOKENS = 512


def thinking_tokens(model: str, generation_config: dict[str, Any]) -> int:
    """Thinking tokens this request spends: by ``thinkingConfig.thinkingLevel`` (default
    MEDIUM) on Gemini 3 and later, by ``thinkingBudget`` (default dynamic) on 2.5 models,
    none on older models. Both camelCase and snake_case keys are read."""
    config = get_field(generation_config, "thinkingConfig", "thinking_config") or {}
    if not isinstance(config, dict):
        config = {}
    name = model.removeprefix("models/")
    if name.startswith(("gemini-1", "gemini-2.0")):
        return 0
    if name.startswith("gemini-2.5"):
        budget = get_field(config, "thinkingBudget", "thinking_budget")
        if isinstance(budget, int) and budget >= 0:
            return min(budget, DYNAMIC_THINKING_TOKENS)
        return DYNAMIC_THINKING_TOKENS
    level = get_field(config, "thinkingLevel", "thinking_level") or DEFAULT_THINKING_LEVEL
    return THINKING_TOKENS.get(str(level).upper(), THINKING_TOKENS[DEFAULT_THINKING_LEVEL])


def usage(media: list[Media], prompt_text: int, answer_tokens: int, thoughts: int = 0,
          cached: int = 0, tier: str | None = None) -> dict[str, Any]:
    """usageMetadata: promptTokenCount = media tokens + ``prompt_text`` tokens (cached ones
    included, as Gemini counts them), one promptTokensDetails entry per modality (TEXT
    last), candidatesTokenCount if any, thoughtsTokenCount if any (counted in
    totalTokenCount, as Gemini does), cachedContentTokenCount and cacheTokensDetails (TEXT)
    if ``cached``, serviceTier if ``tier``."""
    by_modality: dict[str, int] = {}
    for item in media:
        by_modality[item.modality] = by_modality.get(item.modality, 0) + item.tokens
    details = [{"modality": m, "tokenCount": n} for m, n in by_modality.items() if n]
    details.append({"modality": "TEXT", "tokenCount": prompt_text})
    prompt = sum(by_modality.values()) + prompt_text
    out: dict[str, Any] = {
        "promptTokenCount": prompt,
        "totalTokenCount": prompt + answer_tokens + thoughts,
        "promptTokensDetails": details,
    }
    if answer_tokens:
        out["candidatesTokenCount"] = answer_tokens
    if thoughts:
        out["thoughtsTokenCount"] = thoughts
    if cached:
        out["cachedContentTokenCount"] = cached
        out["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if tier:
        out["serviceTier"] = tier
    return out


def prompt_tokens(req: GenerateRequest) -> int:
    """promptTokenCount of ``req``: its media tokens plus ceil(chars of every text part and
    the system instruction / 4)."""
    return sum(m.tokens for m in req.media) + _text_prompt_tokens(req)


def _text_prompt_tokens(req: GenerateRequest) -> int:
    return text_tokens(sum(len(t) for t in req.texts) + len(req.system_instruction))


def build_response(req: GenerateRequest, shape: str | None, cached: int = 0,
                   echo_tier: bool = False) -> dict[str, Any]:
    """The GenerateContentResponse dict for ``req``.

    shape: a scripted shape ("block": promptFeedback only; "safety": SAFETY finish, no
    content; "empty": no parts; "max_tokens": half the text, MAX_TOKENS; "bad_json" and
    "off_schema": see :func:`answer_text`) or None / any other value for a normal answer.
    cached: prompt tokens read from an implicit cache (caching.py). usageMetadata:
    promptTokenCount by :func:`prompt_tokens`; candidatesTokenCount = ceil(len(answer) /
    4); thoughtsTokenCount by
    :func:`thinking_tokens`; totalTokenCount their sum; with ``echo_tier``, serviceTier
    the request's ("standard" / "flex"), as a generateContent answer of 2026-09 carried it
    (``"serviceTier":"standard"`` in usageMetadata, a public curl probe log). Batch result
    lines carry it too: no captured line shows their usageMetadata, and a field the client's
    SDK does not know yet is the harsher case.

    Thinking counts against ``maxOutputTokens``, first: the answer gets what thinking left;
    none left gives a candidate with finishReason MAX_TOKENS and no parts, and
    thoughtsTokenCount = maxOutputTokens, as users report of Gemini 2.5 and later
    (googleapis/python-genai#626 and #811, langchain-ai/langchain-google#1020: thoughts
    256 of max_output_tokens 256, no text; google/adk-python#1357: the body, content
    ``{"role": "model"}`` with no parts, thoughtsTokenCount 2999); an answer cut short has
    finishReason MAX_TOKENS and its text truncated to what was left.
    """
    out: dict[str, Any] = {}
    thoughts = 0 if shape == "block" else thinking_tokens(req.model, req.generation_config)
    if shape == "block":
        out["promptFeedback"] = {"blockReason": "SAFETY", "safetyRatings": _SAFETY_RATINGS}
        answer_tokens = 0
    else:
        candidate, answer_tokens, thoughts = _candidate(req, shape, thoughts)
        out["candidates"] = [candidate]
    out["usageMetadata"] = usage(req.media, _text_prompt_tokens(req), answer_tokens, thoughts,
                                 cached, req.service_tier if echo_tier else None)
    out["modelVersion"] = req.model
    out["responseId"] = secrets.token_urlsafe(16)
    return out


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
