"""How a run's request settings are written: for online calls (google-genai types) and for
Batch API request files (the REST JSON of a ``GenerateContentRequest``), from one place.

Every request carries the media first, then the prompt, as the Gemini docs advise for
single-image prompts (ai.google.dev/gemini-api/docs/image-understanding). With a shared
context (``--context``, ``--example``: :mod:`describer.context`) that turn comes last,
after the shared turns (:func:`shared_contents`), which go either in each request or once
in a context cache that each request names (``cached_content``).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from google.genai import types

from ..config import DEFAULT_SERVICE_TIER, MEDIA_RESOLUTIONS, Config, model_family
from ..model import Prepared

if TYPE_CHECKING:
    from ..context.shared import SharedContext

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


def generation_config(
    config: Config, cache_name: str | None = None
) -> types.GenerateContentConfig | None:
    """The ``GenerateContentConfig`` shared by every call of a run, or None when no option is
    set: google-genai converts a config field by field on every call (a third of the CPU
    per small image), and with None it skips that.

    Online calls also carry ``service_tier`` when ``--service-tier`` is not standard
    (google-genai sends it as the request's top-level ``serviceTier``); under standard
    nothing is sent, the API's default. With ``cache_name`` (a context cache made with
    :func:`cache_config`) the calls name it as ``cached_content`` and leave the system
    instruction to it: Gemini refuses a request that sets both."""
    settings = generation_settings(config)
    if cache_name is not None:
        settings.pop("system_instruction", None)
        settings["cached_content"] = cache_name
    if config.service_tier != DEFAULT_SERVICE_TIER:
        settings["service_tier"] = config.service_tier
    return types.GenerateContentConfig(**settings) if settings else None


def shared_contents(shared: SharedContext, prompt: str) -> list[types.Content]:
    """The shared turns of every request, in order: the ``--context`` documents (text as
    text parts, each after a line naming it; PDFs and images as inline media), then for
    each example a user turn (its image, then ``prompt``) and a model turn (its answer).
    The documents share the first user turn with the first example. Empty for none."""
    turns: list[types.Content] = []
    for document in shared.documents:
        if document.prepared is not None:
            part = _inline(document.prepared)
        else:
            part = types.Part.from_text(text=f"Reference document {document.source}:\n"
                                             f"{document.text}")
        _add(turns, "user", [part])
    for example in shared.examples:
        _add(turns, "user", [_inline(example.prepared), types.Part.from_text(text=prompt)])
        _add(turns, "model", [types.Part.from_text(text=example.answer)])
    return turns


def item_contents(
    prefix: list[types.Content], part: types.Part, prompt: str
) -> list[types.Content] | list[types.Part | str]:
    """A request's contents: ``prefix`` (the shared turns sent inline; none under a context
    cache), then the item's own user turn, ``part`` and ``prompt``."""
    if not prefix:
        return [part, prompt]
    return [*prefix, types.Content(role="user", parts=[part, types.Part.from_text(text=prompt)])]


def cache_config(
    shared: SharedContext, config: Config, ttl_s: float, display_name: str
) -> types.CreateCachedContentConfig:
    """What ``caches.create`` is given for the run's shared part: the system instruction and
    :func:`shared_contents`, alive ``ttl_s`` seconds."""
    return types.CreateCachedContentConfig(
        contents=shared_contents(shared, config.prompt),
        system_instruction=shared.system_instruction, ttl=f"{ttl_s:.0f}s",
        display_name=display_name,
    )


def _inline(prepared: Prepared) -> types.Part:
    return types.Part.from_bytes(data=prepared.data, mime_type=prepared.media.mime_type)


def _add(turns: list[types.Content], role: str, parts: list[types.Part]) -> None:
    """Append ``parts`` as a turn of ``role``, joining the last turn when it has that role."""
    if turns and turns[-1].role == role:
        turns[-1].parts = [*(turns[-1].parts or []), *parts]
    else:
        turns.append(types.Content(role=role, parts=parts))


def shared_json(shared: SharedContext, prompt: str) -> list[dict[str, Any]]:
    """:func:`shared_contents` as REST JSON contents (for Batch API request lines)."""
    return [c.model_dump(mode="json", by_alias=True, exclude_none=True)
            for c in shared_contents(shared, prompt)]


def request_json(
    media: dict[str, Any], config: Config, prefix: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One ``GenerateContentRequest`` as REST JSON (a Batch API request line's ``request``):
    the shared turns ``prefix`` (from :func:`shared_json`: the Batch API is sent them in
    each request, not a context cache), then ``media`` (from :func:`inline_json` or
    :func:`file_json`) and the prompt, with the settings of :func:`generation_settings`. No
    service tier: the Batch API is a price of its own (half), which Flex does not lower
    further."""
    settings = generation_settings(config)
    body: dict[str, Any] = {
        "contents": [*(prefix or []),
                     {"role": "user", "parts": [media, {"text": config.prompt}]}],
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
