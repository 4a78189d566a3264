"""How a run's request settings are written: for online calls (google-genai types) and for
Batch API request files (the REST JSON of a ``GenerateContentRequest``), from one place.

Every request carries the media first, then the prompt, as the Gemini docs advise for
single-image prompts (ai.google.dev/gemini-api/docs/image-understanding).
"""

from __future__ import annotations

import base64
from typing import Any

from google.genai import types

from ..config import DEFAULT_SERVICE_TIER, MEDIA_RESOLUTIONS, Config, model_family
from ..model import Prepared

#: ``--thinking`` as a ``thinking_budget`` on Gemini 2.5 models, which take a budget, not a
#: level: 2.5 Flash takes 0-24576 tokens (ai.google.dev/gemini-api/docs/thinking, "Set
#: budgets"); ``low`` is a small fixed budget, ``high`` that maximum.
THINKING_BUDGETS = {"low": 1024, "medium": 8192, "high": 24576}
#: The MIME type a ``response_json_schema`` needs beside it (google-genai 3.4.0,
#: ``GenerateContentConfig.response_json_schema``: "response_mime_type is required").
JSON_MIME = "application/json"


def generation_settings(config: Config) -> dict[str, Any]:
    """The ``GenerateContentConfig`` fields the run's options set (snake_case, unset ones
    left out): ``system_instruction``, ``temperature``, ``max_output_tokens``,
    ``media_resolution`` (as the API's enum name, e.g. ``MEDIA_RESOLUTION_LOW``),
    ``thinking_config`` (see :func:`thinking_config`) and, with ``--schema``,
    ``response_mime_type`` (``application/json``) with ``response_json_schema`` (the JSON
    Schema, as it is: its property names are not respelled)."""
    settings = {
        "system_instruction": config.system_instruction,
        "temperature": config.temperature,
        "max_output_tokens": config.max_output_tokens,
        "media_resolution": MEDIA_RESOLUTIONS.get(config.media_resolution or ""),
        "thinking_config": thinking_config(config.model, config.thinking),
        "response_mime_type": JSON_MIME if config.schema is not None else None,
        "response_json_schema": config.schema,
    }
    return {name: value for name, value in settings.items() if value is not None}


def thinking_config(model: str, thinking: str) -> dict[str, Any] | None:
    """``ThinkingConfig`` fields for ``--thinking``: ``thinking_level`` (``LOW``, ``MEDIUM``,
    ``HIGH``) on Gemini 3 and later, a ``thinking_budget`` (:data:`THINKING_BUDGETS`) on
    Gemini 2.5; None for ``model`` (the model's own default) and for models that do not
    think (1.x, 2.0)."""
    family = model_family(model)
    if thinking == "model" or family == "legacy":
        return None
    if family == "2.5":
        return {"thinking_budget": THINKING_BUDGETS[thinking]}
    return {"thinking_level": thinking.upper()}


def generation_config(config: Config) -> types.GenerateContentConfig | None:
    """The ``GenerateContentConfig`` shared by every call of a run, or None when no option is
    set: google-genai converts a config field by field on every call (a third of the CPU
    per small image), and with None it skips that.

    Online calls also carry ``service_tier`` when ``--service-tier`` is not standard
    (google-genai sends it as the request's top-level ``serviceTier``); under standard
    nothing is sent, the API's default."""
    settings = generation_settings(config)
    if config.service_tier != DEFAULT_SERVICE_TIER:
        settings["service_tier"] = config.service_tier
    return types.GenerateContentConfig(**settings) if settings else None


def request_json(media: dict[str, Any], config: Config) -> dict[str, Any]:
    """One ``GenerateContentRequest`` as REST JSON (a Batch API request line's ``request``):
    ``media`` (from :func:`inline_json` or :func:`file_json`) first, then the prompt, with
    the settings of :func:`generation_settings`. No service tier: the Batch API is a price
    of its own (half), which Flex does not lower further."""
    settings = generation_settings(config)
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [media, {"text": config.prompt}]}],
    }
    system = settings.pop("system_instruction", None)
    if system is not None:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    schema = settings.pop("response_json_schema", None)
    if settings:
        body["generationConfig"] = _camel_keys(settings)
    if schema is not None:  # a schema's own keys (property names) keep their spelling
        body["generationConfig"]["responseJsonSchema"] = schema
    return body


def inline_json(prepared: Prepared) -> dict[str, Any]:
    """The REST part carrying ``prepared``'s bytes inline (standard base64)."""
    data = base64.b64encode(prepared.data).decode("ascii")
    return {"inlineData": {"mimeType": prepared.media.mime_type, "data": data}}


def file_json(uri: str, mime_type: str) -> dict[str, Any]:
    """The REST part pointing at a Files API upload."""
    return {"fileData": {"fileUri": uri, "mimeType": mime_type}}


def _camel_keys(settings: dict[str, Any]) -> dict[str, Any]:
    """The REST spelling of snake_case settings, nested objects included."""
    return {
        _camel(name): _camel_keys(value) if isinstance(value, dict) else value
        for name, value in settings.items()
    }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)
