"""Structured output: ``responseJsonSchema`` checked as Gemini checks it, and answered with
JSON that conforms to it.

Figures and where they come from (google-genai 3.4.0, ``GenerateContentConfig``, whose field
descriptions are the Gemini API's):

* ``response_json_schema`` needs ``response_mime_type`` ("If set, ``response_schema`` must
  be omitted, but ``response_mime_type`` is required"): a request without
  ``responseMimeType: application/json``, or with both ``responseSchema`` and
  ``responseJsonSchema`` ("Backend will throw error if both ... are set", types.py), is a
  400 INVALID_ARGUMENT;
* "If ``$ref`` is set on a sub-schema, no other properties, except for than those starting
  as a ``$``, may be set": such a schema is a 400 too;
* the keywords Gemini uses: ``$ref``/``$defs``, ``type``, ``format``, ``enum``, ``items``,
  ``prefixItems``, ``minItems``, ``maxItems``, ``minimum``, ``maximum``, ``anyOf``,
  ``oneOf``, ``properties``, ``required`` (and descriptive ones). The answer follows those
  and nothing else: a keyword Gemini does not use (``pattern``, ``minLength``,
  ``exclusiveMinimum``, ``const``) is not honoured, the harsher case for a client that
  validates (Google does not say what the model does with them).

The wording of the 400 messages is the emulator's (no captured answer quotes Google's).
The answer is a function of the schema and of the media's description (answers.py):
objects get every property, strings the description (the strings of an array its
keywords, one each; a fixed date for ``date``, ``date-time`` and ``time`` formats),
numbers and booleans a value drawn from the description's hash within
``minimum``/``maximum``, arrays ``max(1, minItems)`` items (at most ``maxItems``), enums
their first value, unions their first non-null choice.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from .wire import ApiError, get_field

MSG_NEEDS_JSON_MIME = ("* GenerateContentRequest.generation_config.response_mime_type: "
                       "must be application/json when response_json_schema is set")
MSG_BOTH_SCHEMAS = ("* GenerateContentRequest.generation_config: response_schema and "
                    "response_json_schema cannot both be set")
MSG_REF_SIBLINGS = ("* GenerateContentRequest.generation_config.response_json_schema: "
                    "a sub-schema with $ref may set no other property but $-keywords ({path})")
MSG_NOT_A_SCHEMA = ("* GenerateContentRequest.generation_config.response_json_schema: "
                    "must be a JSON object or boolean")
FORMATS = {"date-time": "2026-01-08T12:00:00Z", "date": "2026-01-08", "time": "12:00:00"}
MAX_DEPTH = 8  # nesting followed before a (cyclic) schema is answered with required fields only
_NOT_KEYWORDS = frozenset({"image", "with", "scene", "about", "document", "showing"})


def json_schema(generation_config: dict[str, Any]) -> Any:
    """The request's ``responseJsonSchema`` (either spelling), None when it has none."""
    return get_field(generation_config, "responseJsonSchema", "response_json_schema")


def check_request(generation_config: dict[str, Any]) -> None:
    """ApiError 400 for a ``responseJsonSchema`` that Gemini refuses (module docstring)."""
    schema = json_schema(generation_config)
    if schema is None:
        return
    if get_field(generation_config, "responseSchema", "response_schema") is not None:
        raise ApiError(400, MSG_BOTH_SCHEMAS)
    mime = get_field(generation_config, "responseMimeType", "response_mime_type")
    if str(mime or "").lower() != "application/json":
        raise ApiError(400, MSG_NEEDS_JSON_MIME)
    if not isinstance(schema, dict | bool):
        raise ApiError(400, MSG_NOT_A_SCHEMA)
    _check_refs(schema, "$")


def _check_refs(schema: Any, path: str) -> None:
    if isinstance(schema, list):
        for index, item in enumerate(schema):
            _check_refs(item, f"{path}[{index}]")
        return
    if not isinstance(schema, dict):
        return
    if isinstance(schema.get("$ref"), str) and any(not k.startswith("$") for k in schema):
        raise ApiError(400, MSG_REF_SIBLINGS.format(path=path))
    for key, value in schema.items():
        _check_refs(value, f"{path}.{key}")


def instance(schema: Any, text: str) -> Any:
    """A JSON value valid under ``schema`` (its keywords Gemini uses), made from ``text``."""
    return _value(schema, text, schema, 0)


def off_schema(schema: Any, text: str) -> Any:
    """A JSON value that is not valid under ``schema``: :func:`instance` without its first
    required property, or, for a schema that requires none, a value of another type than
    the one asked for (for a schema that allows anything, a valid value after all)."""
    value = instance(schema, text)
    required = _resolve(schema, schema).get("required") if isinstance(schema, dict) else None
    if isinstance(value, dict) and required:
        value.pop(required[0], None)
        return value
    return 0 if isinstance(value, str) else text


def _value(schema: Any, text: str, root: Any, depth: int, item: int | None = None) -> Any:
    """The value for ``schema``; ``item``: its place in an array (strings: a keyword)."""
    if not isinstance(schema, dict):
        return text  # true, or {}: anything goes
    schema = _resolve(schema, root)
    for key in ("anyOf", "oneOf"):
        choices = schema.get(key)
        if isinstance(choices, list) and choices:
            usable = [c for c in choices if not (isinstance(c, dict) and c.get("type") == "null")]
            return _value((usable or choices)[0], text, root, depth + 1, item)
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = _kind(schema)
    if kind == "object":
        return _object(schema, text, root, depth)
    if kind == "array":
        return _array(schema, text, root, depth)
    if kind in ("integer", "number"):
        return _number(schema, text, kind)
    if kind == "boolean":
        return _draw(text) % 2 == 0
    if kind == "null":
        return None
    if schema.get("format") in FORMATS:
        return FORMATS[schema["format"]]
    return text if item is None else _keyword(text, item)


def _keyword(text: str, index: int) -> str:
    """The ``index``-th lower-case word of four letters or more of ``text`` (a description),
    cycling."""
    words = [w.strip(".,") for w in text.split()]
    keywords = [w for w in words if len(w) >= 4 and w.replace("-", "").isalpha()
                and w.islower() and w not in _NOT_KEYWORDS]
    return keywords[index % len(keywords)] if keywords else text


def _resolve(schema: dict[str, Any], root: Any) -> dict[str, Any]:
    """``schema``, or what its local ``$ref`` (``#/$defs/Name``, ``#``) points at."""
    seen = 0
    while isinstance(schema.get("$ref"), str) and seen < MAX_DEPTH:
        target: Any = root
        for step in schema["$ref"].removeprefix("#").strip("/").split("/"):
            if step:
                target = target.get(step.replace("~1", "/").replace("~0", "~"), {}) \
                    if isinstance(target, dict) else {}
        schema, seen = (target if isinstance(target, dict) else {}), seen + 1
    return schema


def _kind(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    return "array" if "items" in schema or "prefixItems" in schema else "string"


def _object(schema: dict[str, Any], text: str, root: Any, depth: int) -> dict[str, Any]:
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = [n for n in schema.get("required") or [] if isinstance(n, str)]
    names = list(properties) if depth < MAX_DEPTH else [n for n in properties if n in required]
    out = {name: _value(properties[name], text, root, depth + 1) for name in names}
    for name in required:
        out.setdefault(name, text)
    return out


def _array(schema: dict[str, Any], text: str, root: Any, depth: int) -> list[Any]:
    prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
    count = max(1, int(schema.get("minItems") or 0), len(prefix))
    if isinstance(schema.get("maxItems"), int):
        count = min(count, schema["maxItems"])
    items = [_value(sub, text, root, depth + 1, i) for i, sub in enumerate(prefix[:count])]
    more = schema.get("items", {})
    while len(items) < count and more is not False:
        items.append(_value(more, text, root, depth + 1, len(items)))
    return items


def _number(schema: dict[str, Any], text: str, kind: str) -> int | float:
    value: int | float = _draw(text) % 10 + 1
    if kind == "number":
        value += 0.5
    low, high = schema.get("minimum"), schema.get("maximum")
    if kind == "integer":  # the whole numbers within the bounds
        low = math.ceil(low) if isinstance(low, int | float) else None
        high = math.floor(high) if isinstance(high, int | float) else None
    if isinstance(low, int | float) and value < low:
        value = low
    if isinstance(high, int | float) and value > high:
        value = high
    return int(value) if kind == "integer" else value


def _draw(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
