"""``--schema`` end to end: the CLI or ``describe_main`` → google-genai → HTTP → the emulator.

Records gain ``data`` (the parsed answer, valid under the schema); the request carries
``responseMimeType`` and ``responseJsonSchema``, online and in Batch API request lines; an
answer that is not valid is asked once more, then kept as ``invalid_output``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_KEY, cli, describe_run
from imaging import jpeg, sha256
from jsonschema import validate
from pydantic import BaseModel, Field

from describer import Config, ConfigError, Result, schema_of
from describer.batch import MAX_FILE_BYTES, MAX_REQUESTS
from describer.cli.batch import fetch_main, submit_main
from describer.emulator import GeminiEmulator
from describer.emulator.answers import embedding_vector

#: llm's concise syntax as the issue writes it: ``tags: list of keywords`` is a string field
#: described "list of keywords" (llm has no list type).
CONCISE = "title, tags: list of keywords, people int"
CONCISE_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"},
                   "tags": {"type": "string", "description": "list of keywords"},
                   "people": {"type": "integer"}},
    "required": ["title", "tags", "people"],
}  # fmt: skip
#: A JSON Schema with snake_case names and an array, as catalogue tagging wants it.
CATALOGUE = {
    "type": "object",
    "properties": {"alt_text": {"type": "string"},
                   "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                   "contains_text": {"type": "boolean"}},
    "required": ["alt_text", "tags", "contains_text"],
}  # fmt: skip


class Place(BaseModel):
    city: str


class Photo(BaseModel):
    title: str = Field(description="a short title")
    tags: list[str]
    place: Place = Field(description="where it was taken")  # pydantic: $ref + description


@pytest.fixture
def threaded() -> Iterator[GeminiEmulator]:
    emu = GeminiEmulator()
    with emu.in_thread():
        yield emu


def _env(emulator: GeminiEmulator) -> dict[str, str]:
    return {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": emulator.base_url}


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_concise_schema_from_the_command_line(
    threaded: GeminiEmulator, write_files
) -> None:
    folder = write_files({f"{i}.jpg": jpeg(seed=i) for i in range(3)})
    done = cli([str(folder), "--schema", CONCISE, "--no-progress"], _env(threaded))
    assert done.returncode == 0, done.stderr
    records = _lines(done.stdout)
    assert len(records) == 3
    for record in records:
        assert record["error"] is None
        validate(record["data"], CONCISE_SCHEMA)
        assert json.loads(record["description"]) == record["data"]  # the raw text is kept
    for seen in threaded.stats.images:  # what Gemini was asked
        assert seen.generation_config["responseMimeType"] == "application/json"
        assert seen.generation_config["responseJsonSchema"] == CONCISE_SCHEMA


def test_json_schema_inline_and_from_a_file_keep_their_property_names(
    threaded: GeminiEmulator, write_files, tmp_path: Path
) -> None:
    folder = write_files({"a.jpg": jpeg(seed=1)})
    schema_file = tmp_path / "catalogue.schema.json"
    schema_file.write_text(json.dumps(CATALOGUE))
    for spec in (json.dumps(CATALOGUE), str(schema_file)):  # no cache: both reach the model
        done = cli([str(folder), "--schema", spec, "--no-cache"], _env(threaded))
        assert done.returncode == 0, done.stderr
        [record] = _lines(done.stdout)
        validate(record["data"], CATALOGUE)
        assert len(record["data"]["tags"]) >= 2
    assert [r.generation_config["responseJsonSchema"] for r in threaded.stats.images] == [
        CATALOGUE, CATALOGUE]  # alt_text and contains_text, not respelled altText


@pytest.mark.parametrize(("spec", "words"), [
    ("title, people integer", "unknown type 'integer' for field 'people'"),
    ("title, title", "field 'title' is given twice"),
    ("title, : no name", "has no name before ':'"),
    ('{"type": "object",', "inline JSON is not valid JSON"),
    ('{"type": "strin"}', "not a valid JSON Schema at $.type"),
    ("photo.schema.json", "no such file: photo.schema.json"),
    ("[1, 2]", "must be a JSON object (a JSON Schema)"),
])  # fmt: skip
def test_a_bad_schema_is_one_line_and_exit_2_before_anything_is_sent(
    threaded: GeminiEmulator, write_files, spec: str, words: str
) -> None:
    folder = write_files({"a.jpg": jpeg()})
    done = cli([str(folder), "--schema", spec], _env(threaded))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("describe-images: error: --schema") and words in done.stderr
    assert threaded.stats.generate_requests == 0


async def test_a_pydantic_model_in_the_library(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files
) -> None:
    folder = write_files({f"{i}.jpg": jpeg(seed=i) for i in range(2)})
    out = await describe_run(capsys, [str(folder)], schema=Photo)
    assert out.code == 0, out.stderr
    for record in out.records:
        Photo.model_validate(record["data"])  # the model itself accepts what came back
    sent = gemini_env.stats.images[0].generation_config["responseJsonSchema"]
    assert sent == schema_of(Photo) == Config(schema=Photo).schema
    assert sent["properties"]["place"] == {  # Gemini takes no keyword beside a $ref
        "anyOf": [{"$ref": "#/$defs/Place"}], "description": "where it was taken"}


async def test_an_invalid_answer_is_asked_once_more(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files
) -> None:
    good, once, never = jpeg(seed=0), jpeg(seed=1), jpeg(seed=2)
    gemini_env.script(sha256(once), "bad_json:1")
    gemini_env.script(sha256(never), "off_schema")
    folder = write_files({"good.jpg": good, "once.jpg": once, "never.jpg": never})
    out = await describe_run(capsys, [str(folder)], schema=CONCISE)
    records = {Path(r["source"]).name: r for r in out.records}
    calls = [r.sha256 for r in gemini_env.stats.images]
    assert (calls.count(sha256(good)), calls.count(sha256(once)), calls.count(sha256(never))) \
        == (1, 2, 2)  # one more call each for the invalid answers, no more
    assert records["good.jpg"]["attempts"] == 1
    fixed = records["once.jpg"]
    assert fixed["error"] is None and fixed["attempts"] == 2
    validate(fixed["data"], CONCISE_SCHEMA)
    alone = records["good.jpg"]["usage"]["thinking_tokens"]
    assert fixed["usage"]["thinking_tokens"] == 2 * alone  # both calls are billed and counted
    kept = records["never.jpg"]
    assert kept["error"] == {"type": "invalid_output", "message":
                             "the answer does not match the schema at $: 'title' is a required "
                             "property"}  # fmt: skip
    assert kept["data"] is None and kept["attempts"] == 2
    assert json.loads(kept["description"]).keys() == {"tags", "people"}  # raw text kept
    assert out.code == 1 and "2 described, 1 failed (1 invalid_output)" in out.stderr


async def test_prose_where_json_was_asked_is_invalid_output_with_the_parse_error(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files
) -> None:
    image = jpeg(seed=3)
    gemini_env.script(sha256(image), "bad_json")
    out = await describe_run(capsys, [str(write_files({"a.jpg": image}))], schema=CONCISE)
    [record] = out.records
    assert record["error"] == {"type": "invalid_output",
                               "message": "the answer is not JSON: Expecting value at character 0"}
    assert record["description"].startswith("A 320x240 JPEG image")  # the prose, kept
    assert record["attempts"] == 2


@pytest.fixture
def schema_host() -> Iterator[tuple[str, list[str]]]:
    """A server on its own thread answering every GET with ``{"type": "string"}``: its URL
    and the paths asked for. Not on the test's event loop, so a blocking fetch would
    succeed (and the test fail) instead of hanging."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = b'{"type": "string"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", asked
    server.shutdown()
    thread.join()


async def test_a_remote_ref_is_not_fetched_to_check_an_answer(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files,
    schema_host: tuple[str, list[str]],
) -> None:
    host, asked = schema_host
    schema = {"type": "object", "properties": {"place": {"$ref": f"{host}/place.json"}},
              "required": ["place"]}  # were the $ref fetched, every answer would be valid
    out = await describe_run(capsys, [str(write_files({"a.jpg": jpeg()}))], schema=schema)
    [record] = out.records
    assert record["error"]["type"] == "invalid_output"
    assert "$ref cannot be resolved here" in record["error"]["message"]
    assert asked == []  # nothing was fetched


async def test_an_answer_cut_at_max_tokens_is_not_asked_again(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files
) -> None:
    folder = write_files({"a.jpg": jpeg()})
    out = await describe_run(capsys, [str(folder)], schema=CONCISE, max_output_tokens=140)
    [record] = out.records
    assert record["error"]["type"] == "max_tokens" and record["data"] is None
    assert record["attempts"] == 1 and gemini_env.stats.generate_requests == 1


async def test_every_record_of_a_schema_run_has_data_and_others_do_not(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files
) -> None:
    folder = write_files({"a.jpg": jpeg(), "broken.jpg": jpeg()[:900]})
    out = await describe_run(capsys, [str(folder)], schema=CONCISE)
    by_name = {Path(r["source"]).name: r for r in out.records}
    assert by_name["broken.jpg"]["error"]["type"] == "corrupt_image"
    assert by_name["broken.jpg"]["data"] is None  # the key is there, null
    plain = await describe_run(capsys, [str(folder)])
    assert all("data" not in record for record in plain.records)
    record = by_name["a.jpg"]
    assert Result.from_json(record).to_json() == record  # read back as written


async def test_embed_field_embeds_that_field_else_the_raw_text(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files, tmp_path: Path
) -> None:
    folder = write_files({"a.jpg": jpeg(seed=4)})
    options = {"schema": json.dumps(CATALOGUE), "embed": True, "embed_dim": 8}
    [field] = (await describe_run(capsys, [str(folder)], embed_field="alt_text", **options)).records
    [raw] = (await describe_run(capsys, [str(folder)], **options)).records
    assert field["embedding"] == pytest.approx(embedding_vector(field["data"]["alt_text"], 8))
    assert raw["embedding"] == pytest.approx(embedding_vector(raw["description"], 8))
    assert field["embedding"] != raw["embedding"]  # the field alone, not the JSON text


def test_embed_file_with_embed_field(threaded: GeminiEmulator, write_files, tmp_path: Path) -> None:
    folder = write_files({f"{i}.jpg": jpeg(seed=i) for i in range(2)})
    out = tmp_path / "out.jsonl"
    env = _env(threaded)
    described = cli([str(folder), "--schema", json.dumps(CATALOGUE), "-o", str(out)], env)
    assert described.returncode == 0, described.stderr
    with out.open("a") as old:  # a record of a run without --schema: nothing to embed there
        old.write(json.dumps({"source": "old.jpg", "description": "a dog", "error": None,
                              "model": "m", "prompt": "p", "usage": None}) + "\n")
    done = cli(["embed", str(out), "--embed-field", "tags", "--embed-dim", "8"], env)
    assert done.returncode == 0, done.stderr
    assert "2 embedded, 0 failed, 0 already had one, 1 without data.tags, 3 lines" in done.stderr
    records = _lines(out.read_text())
    for record in records[:2]:  # a list of strings is embedded as "a, b"
        text = ", ".join(record["data"]["tags"])
        assert record["embedding"] == pytest.approx(embedding_vector(text, 8))
    assert "embedding" not in records[2]


@pytest.mark.parametrize(("args", "words"), [
    (["--embed", "--embed-field", "alt_text"], "--embed-field names a field of the answers"),
    (["--embed", "--embed-field", "nope", "--schema", CONCISE],
     "--embed-field 'nope' is not a field of --schema (its fields: title, tags, people)"),
    (["--embed-field", "title", "--schema", CONCISE], "give --embed too"),
])  # fmt: skip
def test_embed_field_mistakes_are_usage_errors(
    threaded: GeminiEmulator, write_files, args: list[str], words: str
) -> None:
    done = cli([str(write_files({"a.jpg": jpeg()})), *args], _env(threaded))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and words in done.stderr
    assert threaded.stats.generate_requests == 0


async def test_batch_submit_carries_the_schema_and_fetch_checks_the_answers(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files, tmp_path: Path
) -> None:
    good, broken = jpeg(seed=5), jpeg(seed=6)
    gemini_env.script(sha256(broken), "off_schema")
    folder = write_files({"good.jpg": good, "broken.jpg": broken, "cut.jpg": good[:900]})
    config = Config(schema=json.dumps(CATALOGUE), output=tmp_path / "out.jsonl")
    assert await submit_main((str(folder),), config, (MAX_FILE_BYTES, MAX_REQUESTS), None) == 0
    job = capsys.readouterr().out.strip()
    fetch_config = Config(output=tmp_path / "out.jsonl")  # fetch is given no --schema
    assert await fetch_main(job, fetch_config, wait=0.0) == 1
    [sent] = gemini_env.batch.jobs.values()
    for line in sent.lines:
        generation = (line.request or {})["generationConfig"]
        assert generation["responseMimeType"] == "application/json"
        assert generation["responseJsonSchema"] == CATALOGUE
    records = {Path(r["source"]).name: r for r in _lines((tmp_path / "out.jsonl").read_text())}
    validate(records["good.jpg"]["data"], CATALOGUE)
    assert records["broken.jpg"]["error"]["type"] == "invalid_output"
    assert records["broken.jpg"]["attempts"] == 1  # no second call in a batch
    assert records["cut.jpg"]["error"]["type"] == "corrupt_image"
    assert all("data" in r for r in records.values())


def test_the_config_holds_one_schema_whatever_form_it_was_given_in(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(CONCISE_SCHEMA))
    assert Config(schema=CONCISE).schema == Config(schema=str(path)).schema == CONCISE_SCHEMA
    long = ", ".join(f"field{i} int: what field {i} holds in a sentence" for i in range(20))
    assert len(Config(schema=long).schema["required"]) == 20  # no file name is that long
    newline = Config(schema="title: the title, in words\npeople int").schema
    assert newline["properties"]["title"] == {"type": "string",
                                              "description": "the title, in words"}
    with pytest.raises(ConfigError, match="must be a JSON object"):
        Config(schema=[1, 2])  # type: ignore[arg-type]


async def test_resuming_a_file_described_without_the_schema_says_so(
    gemini_env: GeminiEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], write_files
) -> None:
    folder = write_files({"a.jpg": jpeg(seed=31)})
    out = tmp_path / "out.jsonl"
    warning = "has records made with another model, prompt or --schema setting"
    plain = await describe_run(capsys, [str(folder)], output=out)
    assert plain.code == 0 and warning not in plain.stderr
    same = await describe_run(capsys, [str(folder)], output=out)
    assert warning not in same.stderr  # same settings: a quiet resume
    with_schema = await describe_run(capsys, [str(folder)], output=out, schema="title")
    assert warning in with_schema.stderr  # its source is skipped, and the user is told
