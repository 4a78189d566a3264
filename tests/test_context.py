"""Examples, reference documents and the run's one context cache, end to end through
google-genai against the emulator: what the emulator received (caches made, calls naming
them, deletions), the records' usage, and the stderr lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import describe_run
from imaging import jpeg, sha256

from describer.emulator import GeminiEmulator

#: A style guide of ~5,000 tokens (4 characters a token): over gemini-3.8-flash's 4,096.
GUIDE = "Write captions in the catalogue's voice: plain, concrete, present tense. " * 270
SHORT_GUIDE = "Write plain captions."


@pytest.fixture
def photos(write_files) -> Path:
    return write_files({f"p{i}.jpg": jpeg(seed=i) for i in range(6)})


@pytest.fixture
def guide(tmp_path: Path) -> Path:
    path = tmp_path / "guide.md"
    path.write_text(GUIDE)
    return path


@pytest.fixture
def examples(write_files) -> list[tuple[str, str]]:
    folder = write_files({f"e{i}.jpg": jpeg(seed=100 + i) for i in range(2)}, "examples")
    return [(str(folder / "e0.jpg"), "A red bicycle by a wall."),
            (str(folder / "e1.jpg"), "Two mugs on a wooden table.")]


async def test_one_cache_is_made_read_by_every_call_and_deleted(
    gemini_env: GeminiEmulator, capsys, photos: Path, guide: Path, examples
) -> None:
    emu = gemini_env
    out = await describe_run(capsys, [str(photos)], context=(str(guide),), examples=examples,
                             cache=False)
    stats = emu.contexts.stats
    assert out.code == 0, out.stderr
    assert (stats.created, stats.deleted) == (1, 1)
    [(name, calls)] = stats.calls_by_cache.items()
    assert calls == 6
    tokens = {r["usage"]["cached_tokens"] for r in out.records}
    assert len(tokens) == 1 and tokens.pop() > 4096
    assert f"context cache {name}:" in out.stderr
    assert f"context cache {name}: 6 calls read its" in out.stderr and "; deleted" in out.stderr
    # each call sent only the item (the examples are in the cache) and was answered about it
    sent = {r.sha256 for r in emu.stats.images}
    assert sent == {sha256((photos / f"p{i}.jpg").read_bytes()) for i in range(6)}
    assert all(r.system_instruction == "" or r.image_count == 3 for r in emu.stats.images)
    assert not emu.contexts.caches


async def test_a_context_under_the_minimum_goes_inline_and_says_why(
    gemini_env: GeminiEmulator, capsys, photos: Path, tmp_path: Path, examples
) -> None:
    emu = gemini_env
    short = tmp_path / "short.md"
    short.write_text(SHORT_GUIDE)
    out = await describe_run(capsys, [str(photos)], context=(str(short),), examples=examples,
                             cache=False)
    assert out.code == 0
    assert (emu.contexts.stats.created, emu.contexts.stats.refused) == (0, 0)
    assert "sent inline with every request: under gemini-3.8-flash's minimum of 4,096" \
        in out.stderr
    # every request carried both example images before the item's
    assert {r.image_count for r in emu.stats.images} == {3}
    assert {r.sha256 for r in emu.stats.images} == \
        {sha256((photos / f"p{i}.jpg").read_bytes()) for i in range(6)}
    assert all(r["usage"]["cached_tokens"] == 0 for r in out.records)
    assert all(SHORT_GUIDE in r.prompt for r in emu.stats.images)


async def test_no_context_cache_sends_it_inline(
    gemini_env: GeminiEmulator, capsys, photos: Path, guide: Path, examples
) -> None:
    out = await describe_run(capsys, [str(photos)], context=(str(guide),), examples=examples,
                             context_cache=False, cache=False)
    assert gemini_env.contexts.stats.created == 0
    assert "(--no-context-cache)" in out.stderr
    assert all(GUIDE in r.prompt for r in gemini_env.stats.images)


async def test_too_few_items_to_pay_for_the_storage_go_inline(
    gemini_env: GeminiEmulator, capsys, write_files, guide: Path
) -> None:
    one = write_files({"only.jpg": jpeg(seed=9)}, "one")
    out = await describe_run(capsys, [str(one)], context=(str(guide),), cache=False,
                             cache_ttl=3600)  # an hour of storage for 1 item
    assert gemini_env.contexts.stats.created == 0
    assert "a context cache would cost $" in out.stderr and "on 1 items" in out.stderr


async def test_the_cache_is_deleted_when_a_daily_quota_stops_the_run(
    gemini_env: GeminiEmulator, capsys, photos: Path, guide: Path
) -> None:
    gemini_env.configure(rpd=3)
    out = await describe_run(capsys, [str(photos)], context=(str(guide),), concurrency=1,
                             cache=False)
    stats = gemini_env.contexts.stats
    assert out.code == 3
    assert (stats.created, stats.deleted) == (1, 1)
    assert sum(stats.calls_by_cache.values()) == 3


async def test_examples_change_the_result_cache_key_but_the_cache_name_does_not(
    gemini_env: GeminiEmulator, capsys, photos: Path, guide: Path, examples
) -> None:
    first = await describe_run(capsys, [str(photos)], context=(str(guide),))
    again = await describe_run(capsys, [str(photos)], context=(str(guide),))
    other = await describe_run(capsys, [str(photos)], context=(str(guide),),
                               examples=examples[:1])
    assert not any(r.get("cached") for r in first.records)
    assert all(r.get("cached") for r in again.records)  # a new cache, the same content
    assert not any(r.get("cached") for r in other.records)


def _example_lines(examples: list[tuple[str, str]]) -> str:
    good = {"source": examples[0][0], "description": examples[0][1], "error": None,
            "model": "m", "prompt": "p", "usage": None, "good": True}
    unmarked = dict(good, source=examples[1][0], good=None)
    return "".join(json.dumps(line) + "\n" for line in (good, unmarked))


async def test_examples_file_takes_records_marked_good(
    gemini_env: GeminiEmulator, capsys, photos: Path, examples, tmp_path: Path
) -> None:
    path = tmp_path / "examples.jsonl"
    path.write_text(_example_lines(examples))
    out = await describe_run(capsys, [str(photos)], examples_file=path, cache=False)
    assert out.code == 0
    assert {r.image_count for r in gemini_env.stats.images} == {2}  # one example, one item


async def test_an_example_answer_off_the_schema_is_refused(
    gemini_env: GeminiEmulator, capsys, photos: Path, examples
) -> None:
    from describer.errors import ConfigError

    with pytest.raises(ConfigError, match="not valid under --schema"):
        await describe_run(capsys, [str(photos)], examples=examples, schema="title, count int")
    assert gemini_env.stats.generate_requests == 0


async def test_the_library_counts_a_list_of_sources_too(
    gemini_env: GeminiEmulator, write_files, guide: Path
) -> None:
    from describer import Config, describe_stream

    one = write_files({"only.jpg": jpeg(seed=9)}, "one")
    config = Config(context=(str(guide),), cache=False, cache_ttl=3600)
    results = [r async for r in describe_stream([str(one)], config)]
    assert results[0].error is None
    assert gemini_env.contexts.stats.created == 0  # one item does not pay for an hour's storage
    assert GUIDE in gemini_env.stats.images[0].prompt


async def test_max_cost_counts_the_caches_storage(
    gemini_env: GeminiEmulator, capsys, photos: Path, guide: Path
) -> None:
    # each call reserves ~$0.0056 (the context at the input price) and settles at ~$0.0019
    # (an image billed at Gemini 3's 1,120 tokens): $0.012 would take 4 items, but only 1
    # after the cache's ~$0.005 of storage
    out = await describe_run(capsys, [str(photos)], context=(str(guide),), cache=False,
                             max_cost=0.012, concurrency=1, cache_ttl=3600)
    assert out.code == 3 and "--max-cost $0.012 reached" in out.stderr
    assert len(out.records) == 1
    assert gemini_env.contexts.stats.deleted == 1


async def test_without_cache_ttl_the_cache_lives_the_runs_estimated_length(
    gemini_env: GeminiEmulator, capsys, photos: Path, guide: Path
) -> None:
    out = await describe_run(capsys, [str(photos)], context=(str(guide),), cache=False)
    cached = out.records[0]["usage"]["cached_tokens"]
    assert cached > 0 and "tokens for 5 min, read by every call" in out.stderr
    # 6 items at -c 16 take seconds: the 5-minute floor, not Gemini's default hour
    assert gemini_env.contexts.stats.storage_token_seconds == pytest.approx(cached * 300)


async def test_the_items_are_counted_only_when_a_cache_could_be_made(
    gemini_env: GeminiEmulator, tmp_path: Path, guide: Path
) -> None:
    from describer import Config, gemini
    from describer.context.session import open_context

    note = tmp_path / "note.md"
    note.write_text("Say what the photo shows.")  # far under the 4,096-token minimum
    counted: list[int] = []

    def count(limit: int) -> int:
        counted.append(limit)
        return 6

    for path in (note, guide):
        config = Config(context=(str(path),), cache=False)
        async with gemini.connect(config) as connection, \
                open_context(config, connection, lambda line: None, count) as context:
            assert (context.cache is None) == (path == note)
    assert len(counted) == 1  # for the guide only: reading the input for nothing is not free
