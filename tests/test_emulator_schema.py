"""The emulator's structured output, through the real google-genai client over HTTP: answers
valid under the ``responseJsonSchema`` it was sent, Gemini's 400s for schemas it refuses, and
the scripted ``bad_json`` / ``off_schema`` answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google import genai
from google.genai import errors, types
from imaging import jpeg, sha256
from jsonschema import validate

from describer.emulator import GeminiEmulator

PHOTO = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "description": "a short title"},
        "alt_text": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 5},
        "people": {"type": "integer", "minimum": 0, "maximum": 3},
        "score": {"type": "number", "minimum": 7.25},
        "contains_text": {"type": "boolean"},
        "mood": {"type": "string", "enum": ["calm", "busy"]},
        "taken": {"type": "string", "format": "date"},
        "note": {"anyOf": [{"type": "null"}, {"type": "string"}]},
        "place": {"$ref": "#/$defs/Place"},
        "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}]},
    },
    "required": ["title", "alt_text", "tags", "people", "contains_text", "place"],
    "$defs": {
        "Place": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "near": {"$ref": "#/$defs/Place"}},
            "required": ["city"],
        }
    },
}


async def _ask(client: genai.Client, image: bytes, **config: Any) -> types.GenerateContentResponse:
    return await client.aio.models.generate_content(
        model="gemini-3.8-flash",
        contents=[types.Part.from_bytes(data=image, mime_type="image/jpeg"), "describe"],
        config=types.GenerateContentConfig(**config),
    )


async def test_answers_are_json_valid_under_the_schema_sent(client: genai.Client) -> None:
    answers = []
    for seed in range(4):
        response = await _ask(client, jpeg(seed=seed), response_mime_type="application/json",
                              response_json_schema=PHOTO)
        data = json.loads(response.text or "")
        validate(data, PHOTO)  # the jsonschema package, not the emulator's own reading
        answers.append(data)
    first = answers[0]
    assert first["title"].startswith("A 320x240 JPEG image of")  # made from the description
    assert 3 <= len(first["tags"]) <= 5 and first["mood"] == "calm"
    assert first["note"] is not None and first["place"]["city"]  # cyclic $ref: followed
    assert len({a["title"] for a in answers}) == 4  # each image its own answer
    assert answers == [json.loads((await _ask(
        client, jpeg(seed=s), response_mime_type="application/json", response_json_schema=PHOTO,
    )).text or "") for s in range(4)]  # deterministic


@pytest.mark.parametrize(("config", "words"), [
    ({"response_json_schema": {"type": "object"}}, "response_mime_type"),
    ({"response_mime_type": "text/plain", "response_json_schema": {"type": "object"}},
     "response_mime_type"),
    ({"response_mime_type": "application/json", "response_json_schema": {"type": "object"},
      "response_schema": {"type": "OBJECT"}}, "cannot both be set"),
    ({"response_mime_type": "application/json", "response_json_schema": {
        "type": "object", "$defs": {"P": {"type": "string"}},
        "properties": {"p": {"$ref": "#/$defs/P", "description": "pydantic puts it here"}}}},
     "$.properties.p"),
])  # fmt: skip
async def test_schemas_gemini_refuses_are_400_invalid_argument(
    client: genai.Client, emulator: GeminiEmulator, config: dict[str, Any], words: str
) -> None:
    with pytest.raises(errors.ClientError) as refused:
        await _ask(client, jpeg(), **config)
    assert refused.value.code == 400 and refused.value.status == "INVALID_ARGUMENT"
    assert words in (refused.value.message or "")


async def test_bad_json_and_off_schema_scripts(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    prose, broken = jpeg(seed=1), jpeg(seed=2)
    emulator.script(sha256(prose), "bad_json:1")
    emulator.script(sha256(broken), "off_schema")
    settings = {"response_mime_type": "application/json", "response_json_schema": PHOTO}
    with pytest.raises(json.JSONDecodeError):
        json.loads((await _ask(client, prose, **settings)).text or "")
    validate(json.loads((await _ask(client, prose, **settings)).text or ""), PHOTO)  # then fine
    for _ in range(2):  # without a count: every time
        data = json.loads((await _ask(client, broken, **settings)).text or "")
        assert "title" not in data and "alt_text" in data  # the first required one is gone
