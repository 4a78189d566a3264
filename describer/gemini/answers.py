"""Reading a ``GenerateContentResponse``: text, ``finish_reason``, usage, and what went wrong."""

from __future__ import annotations

from typing import Any, get_args

from google.genai import types
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from ..model import Answer, ErrorType, ItemError, Usage

#: finish_reason values that mean the answer was withheld by a filter (types.FinishReason).
BLOCKING_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
        "LANGUAGE",
    }
)


def interpret(
    response: types.GenerateContentResponse,
    latency_ms: int | None,
    max_output_tokens: int | None = None,
    attempts: int = 1,
) -> Answer:
    """Read text, finish_reason and usage from a response, and name what went wrong if
    anything: ``blocked``, ``max_tokens`` (partial text kept) or ``empty_response``."""
    usage = _usage(response.usage_metadata)
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = _name(feedback.block_reason)
        detail = f" ({feedback.block_reason_message})" if feedback.block_reason_message else ""
        error = ItemError(ErrorType.BLOCKED, f"prompt blocked: {reason}{detail}")
        return Answer(None, reason, usage, latency_ms, error, attempts)
    if not response.candidates:
        error = ItemError(ErrorType.EMPTY_RESPONSE, "the answer has no candidates")
        return Answer(None, None, usage, latency_ms, error, attempts)
    candidate = response.candidates[0]
    finish = _name(candidate.finish_reason) if candidate.finish_reason else None
    text = _text(candidate) or None
    error = _answer_error(text, finish, max_output_tokens)
    return Answer(text, finish, usage, latency_ms, error, attempts)


def interpret_json(response: dict[str, Any]) -> Answer:
    """:func:`interpret` for a response given as REST JSON (a Batch API result line's
    ``response``); no latency. Fields this google-genai does not know are dropped, as its
    online path drops them: its types refuse unknown fields, and Gemini adds fields (e.g.
    ``usageMetadata.serviceTier``) before the SDK knows them."""
    known = _known(types.GenerateContentResponse, response)
    return interpret(types.GenerateContentResponse.model_validate(known), None)


def _known(model: type[BaseModel], data: Any) -> Any:
    """``data`` (REST JSON for ``model``) without the keys ``model`` does not declare, at
    every depth; values that are not objects are left as they are."""
    if not isinstance(data, dict):
        return data
    fields = {}
    for name, info in model.model_fields.items():
        fields[name] = fields[info.alias or to_camel(name)] = info.annotation
    return {key: _fit(fields[key], value) for key, value in data.items() if key in fields}


def _fit(annotation: Any, value: Any) -> Any:
    inner = _model_in(annotation)
    if inner is None:
        return value
    if isinstance(value, list):
        return [_known(inner, item) for item in value]
    return _known(inner, value)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (found := _model_in(arg)) is not None:
            return found
    return None


def _answer_error(text: str | None, finish: str | None, max_tokens: int | None) -> ItemError | None:
    if finish in BLOCKING_FINISH_REASONS:
        return ItemError(ErrorType.BLOCKED, f"answer blocked: finish_reason {finish}")
    if finish == "MAX_TOKENS":
        limit = f" ({max_tokens})" if max_tokens else ""
        kept = "partial text kept" if text else "no text before the cut"
        return ItemError(ErrorType.MAX_TOKENS, f"answer cut at max_output_tokens{limit}; {kept}")
    if not text:
        return ItemError(
            ErrorType.EMPTY_RESPONSE, f"no text in the answer (finish_reason {finish})"
        )
    return None


def _text(candidate: types.Candidate) -> str:
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    return "".join(part.text for part in parts if part.text and not part.thought).strip()


def _usage(metadata: types.GenerateContentResponseUsageMetadata | None) -> Usage | None:
    if metadata is None:
        return None
    thinking = metadata.thoughts_token_count or 0
    output = (metadata.candidates_token_count or 0) + thinking
    cached = metadata.cached_content_token_count or 0
    return Usage(metadata.prompt_token_count or 0, output, thinking, cached)


def _name(value: object) -> str:
    return str(getattr(value, "value", value))
