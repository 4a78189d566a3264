"""``--schema``: the JSON Schema a run's answers must follow, and checking answers against it.

A schema is given three ways, all turned into one JSON Schema dict by :func:`load_schema`:

- simonw/llm's concise syntax (:func:`concise`), e.g. ``'title, tags: list of keywords,
  people int'``: fields separated by commas, or by newlines when there is a newline (then
  descriptions may hold commas); each ``name [type][: description]``, the type one of
  ``str`` (default), ``int``, ``float``, ``bool``; every field required. As in llm, there
  is no list type: ``tags: list of keywords`` is a string field whose description says
  "list of keywords" (llm docs/schemas.md, "Concise LLM schema syntax"; llm/utils.py
  ``schema_dsl``). Arrays and nested objects take a JSON Schema;
- a JSON Schema, inline (text starting with ``{``) or as a path to a file;
- in the library, a pydantic model class (``Model.model_json_schema()``; see
  :func:`schema_of`).

Gemini takes it as ``response_json_schema`` with ``response_mime_type`` application/json
(describer.gemini.encoding). Gemini uses only some keywords (google-genai 3.4.0,
``GenerateContentConfig.response_json_schema``: ``$id``, ``$defs``, ``$ref``, ``$anchor``,
``type``, ``format``, ``title``, ``description``, ``enum``, ``items``, ``prefixItems``,
``minItems``, ``maxItems``, ``minimum``, ``maximum``, ``anyOf``, ``oneOf``, ``properties``,
``additionalProperties``, ``required``, ``propertyOrdering``) and allows nothing but
``$``-keywords beside a ``$ref``; pydantic puts ``description`` there, so such a ``$ref`` is
wrapped in an ``anyOf`` of one (:func:`gemini_compatible`), which means the same. Answers
are checked with the ``jsonschema`` package against the whole schema, keywords Gemini
ignores included (:class:`AnswerCheck`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .model import Answer, ErrorType, ItemError

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

JsonSchema = dict[str, Any]
#: The concise syntax's types and the JSON Schema types they stand for (as llm's).
CONCISE_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
#: Longest validation message kept in a record (the offending value is quoted in it).
MAX_MESSAGE = 300


def load_schema(spec: object) -> JsonSchema | None:
    """The JSON Schema ``spec`` stands for, checked and made Gemini-compatible: None for
    None; a dict as it is; a pydantic model class by its ``model_json_schema()``; a string
    by :func:`parse_spec`. Raises :class:`ConfigError` (one line, naming ``--schema``) for
    anything else, or for a schema that is not a valid JSON Schema object."""
    if spec is None:
        return None
    if isinstance(spec, str):
        schema = parse_spec(spec)
    elif isinstance(spec, type) and hasattr(spec, "model_json_schema"):
        schema = spec.model_json_schema()
    else:
        schema = spec
    if not isinstance(schema, dict):
        raise ConfigError("--schema must be a JSON object (a JSON Schema)")
    _check_schema(schema)
    return gemini_compatible(schema)


def schema_of(model: type) -> JsonSchema:
    """The JSON Schema of a pydantic model class, as ``Config(schema=...)`` holds it
    (``Config(schema=Model)`` does the same). Raises :class:`ConfigError`."""
    schema = load_schema(model)
    assert schema is not None
    return schema


def parse_spec(spec: str) -> JsonSchema:
    """A ``--schema SPEC``: inline JSON when it starts with ``{`` (or ``[``, to refuse a
    JSON array rather than read it as fields named ``[1`` and ``2]``); else the JSON file it
    names when that file exists; else llm's concise syntax (:func:`concise`). A word ending
    in ``.json`` that names no file is an error, not a field called ``x.json``. Raises
    :class:`ConfigError`."""
    text = spec.strip()
    if text.startswith(("{", "[")):
        return _json(text, "inline JSON")
    path = Path(text).expanduser()
    if _is_file(path, text):
        try:
            return _json(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--schema: cannot read {path}: {exc}") from None
    if text.endswith(".json") and not any(c in text for c in " ,:\n"):
        raise ConfigError(f"--schema: no such file: {text}")
    return concise(text)


def _is_file(path: Path, text: str) -> bool:
    """Whether ``text`` names a file; a long concise spec may be no possible file name
    (``ENAMETOOLONG``), which is an answer too."""
    try:
        return bool(text) and "\n" not in text and path.is_file()
    except (OSError, ValueError):
        return False


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--schema: {where} is not valid JSON: {exc}") from None


def concise(text: str) -> JsonSchema:
    """An object schema from llm's concise syntax (module docstring), e.g. ``'name, age int:
    their age'`` -> ``{"type": "object", "properties": {"name": {"type": "string"}, "age":
    {"type": "integer", "description": "their age"}}, "required": ["name", "age"]}``.
    Raises :class:`ConfigError` for no field, a field without a name, an unknown type or a
    repeated name."""
    separator = "\n" if "\n" in text else ","
    fields = [field.strip() for field in text.split(separator) if field.strip()]
    if not fields:
        raise ConfigError("--schema is empty: give fields such as 'title, people int'")
    properties: dict[str, dict[str, str]] = {}
    for field in fields:
        name, kind, description = _concise_field(field)
        if name in properties:
            raise ConfigError(f"--schema: field {name!r} is given twice")
        properties[name] = {"type": kind} | ({"description": description} if description else {})
    return {"type": "object", "properties": properties, "required": list(properties)}


def _concise_field(field: str) -> tuple[str, str, str]:
    """``name [type][: description]`` -> (name, JSON type, description)."""
    head, _, description = field.partition(":")
    words = head.split()
    if not words:
        raise ConfigError(f"--schema: field {field!r} has no name before ':'")
    kind = words[1] if len(words) > 1 else "str"
    if kind not in CONCISE_TYPES:
        raise ConfigError(
            f"--schema: unknown type {kind!r} for field {words[0]!r} (types: str, int, float, "
            "bool; a description goes after ':')"
        )
    return words[0], CONCISE_TYPES[kind], description.strip()


def _check_schema(schema: JsonSchema) -> None:
    """Raise :class:`ConfigError` when ``schema`` is not valid under its metaschema
    (``$schema``, else JSON Schema 2020-12)."""
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = exc.json_path if exc.path else "its top"
        raise ConfigError(
            f"--schema is not a valid JSON Schema at {where}: {_short(exc.message)}"
        ) from None


def gemini_compatible(schema: Any) -> Any:
    """``schema`` with every ``$ref`` that has other keywords beside it (pydantic's
    ``{"$ref": ..., "description": ...}``) rewritten as ``{"anyOf": [{"$ref": ...}], ...}``:
    the same schema, in the form Gemini accepts (module docstring). A new object; the
    argument is not changed."""
    if isinstance(schema, list):
        return [gemini_compatible(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: gemini_compatible(value) for key, value in schema.items()}
    ref = out.get("$ref")
    others = [key for key in out if not key.startswith("$")]
    if isinstance(ref, str) and others:
        kept = {key: value for key, value in out.items() if not key.startswith("$")}
        dollars = {key: value for key, value in out.items() if key.startswith("$")}
        dollars.pop("$ref")
        return dollars | {"anyOf": [{"$ref": ref}]} | kept
    return out


def field_names(schema: JsonSchema | None) -> list[str] | None:
    """The top-level property names of an object schema; None when it declares none."""
    properties = (schema or {}).get("properties")
    return list(properties) if isinstance(properties, dict) else None


class AnswerCheck:
    """Checks answers against one schema (its validator built once, for a whole run).

    Only references within the schema resolve: the validator's registry retrieves nothing
    (jsonschema's default would fetch a remote ``$ref`` over the network for every answer)."""

    def __init__(self, schema: JsonSchema) -> None:
        from jsonschema.validators import validator_for
        from referencing import Registry

        self._validator: Validator = validator_for(schema)(schema, registry=Registry())

    def check(self, answer: Answer) -> Answer:
        """``answer`` with ``data`` (the parsed object) when its text is JSON valid under
        the schema; else with an ``invalid_output`` error saying why (the raw text kept).
        An answer that already carries an error, or has no text, comes back as it is."""
        if answer.error is not None or answer.text is None:
            return answer
        data, problem = self.parse(answer.text)
        if problem is not None:
            return replace(answer, error=ItemError(ErrorType.INVALID_OUTPUT, problem))
        return replace(answer, data=data)

    def parse(self, text: str) -> tuple[Any, str | None]:
        """(the parsed value, None), or (None, why it is not JSON or not valid)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            return None, f"the answer is not JSON: {exc.msg} at character {exc.pos}"
        from jsonschema.exceptions import best_match
        from referencing.exceptions import Unresolvable

        try:
            error = best_match(self._validator.iter_errors(data))
        except Unresolvable as exc:
            return None, f"the schema's $ref cannot be resolved here: {_short(str(exc))}"
        if error is None:
            return data, None
        where, why = error.json_path, _short(error.message)
        return None, f"the answer does not match the schema at {where}: {why}"


def after_retry(first: Answer, second: Answer) -> Answer:
    """The answer kept after an ``invalid_output`` answer (``first``) was asked again
    (``second``, already checked): ``second`` when it has text (valid, or ``invalid_output``
    with its raw text), else ``first``; either way with the calls of both counted in
    ``attempts`` and their tokens in ``usage`` (both calls are billed)."""
    kept = second if second.text is not None else first
    usage = first.usage or second.usage
    if first.usage and second.usage:
        usage = first.usage + second.usage
    return replace(kept, attempts=first.attempts + second.attempts, usage=usage)


def field_text(data: Any, field: str) -> str | None:
    """The text to embed for ``data[field]`` (``--embed-field``): a string as it is, a list
    of strings joined with ", ", any other JSON value as JSON text; None when ``data`` is not
    an object, lacks the field, or it is null or empty."""
    if not isinstance(data, dict):
        return None
    value = data.get(field)
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ", ".join(value)
    return json.dumps(value, ensure_ascii=False)


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
