"""Gemini's 100 concurrent batch jobs: the emulator refuses the next, ``batch submit`` waits.

End to end through the real google-genai client against the emulator. Jobs move on when
polled (the emulator's default: PENDING, RUNNING, then SUCCEEDED on the third get), so a
waiting submission makes room for its next job by refreshing its jobs' states: no sleeps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TEST_KEY, cli
from google import genai
from google.genai import errors, types
from imaging import jpeg

from describer import Config, gemini
from describer.batch import MAX_CONCURRENT_JOBS, MAX_FILE_BYTES, MAX_REQUESTS
from describer.batch import submit as describer_submit
from describer.cli.batch import fetch_main, submit_main
from describer.emulator import GeminiEmulator
from describer.emulator.wire import MSG_QUOTA
from describer.errors import ConfigError

WAITS = "waits for one to finish"  # the end of submit's line on stderr when a part waits


def _images(write_files, count: int) -> tuple[Path, list[str]]:
    """A folder of ``count`` small JPEGs and their sources."""
    names = [f"{i:02d}.jpg" for i in range(count)]
    folder = write_files({name: jpeg(64, 48, seed=i) for i, name in enumerate(names)})
    return folder, [str(folder / name) for name in names]


async def _inline_job(client: genai.Client, seed: int) -> types.BatchJob:
    """batches.create with one inline request (one image)."""
    request = types.InlinedRequest(
        contents=[types.Part.from_bytes(data=jpeg(seed=seed), mime_type="image/jpeg"), "say"])
    return await client.aio.batches.create(model="gemini-x", src=[request])


async def test_emulator_refuses_a_third_job_while_two_are_unfinished(
    emulator: GeminiEmulator, client: genai.Client
) -> None:
    assert emulator.batch.max_concurrent_jobs == 100  # Gemini's figure, by default
    emulator.batch.configure(max_concurrent_jobs=2)
    first = await _inline_job(client, 0)
    await _inline_job(client, 1)
    with pytest.raises(errors.ClientError) as refused:
        await _inline_job(client, 2)
    assert refused.value.code == 429 and refused.value.status == "RESOURCE_EXHAUSTED"
    assert refused.value.message == MSG_QUOTA
    details = refused.value.details["error"]["details"]
    assert [d["@type"] for d in details] == ["type.googleapis.com/google.rpc.Help"]  # no RetryInfo
    for _ in range(3):  # PENDING, RUNNING, SUCCEEDED: one slot free again
        await client.aio.batches.get(name=first.name or "")
    assert emulator.batch.unfinished() == 1
    await _inline_job(client, 3)
    stats = emulator.batch.stats
    assert (stats.batch_jobs_created, stats.batch_jobs_refused, stats.max_unfinished) == (3, 1, 2)
    with pytest.raises(ValueError, match="max_concurrent_jobs"):
        emulator.batch.configure(max_concurrent_jobs=-1)


async def test_submit_keeps_to_the_concurrent_jobs_limit_and_every_item_is_described(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture, write_files, tmp_path: Path,
) -> None:
    gemini_env.batch.configure(max_concurrent_jobs=2)
    folder, sources = _images(write_files, 5)
    out = tmp_path / "out.jsonl"
    # Retries without backoff: were the wait missing, the 429s would fail fast, not slowly.
    config = Config(output=out, max_attempts=2, retry_wait=0.0)
    code = await submit_main((str(folder),), config, (MAX_FILE_BYTES, 1), None,
                             max_jobs=2, poll_interval=0.0)
    submitted = capsys.readouterr()
    assert code == 0, submitted.err
    stats = gemini_env.batch.stats
    assert stats.requests_per_job == [1] * 5
    assert stats.max_unfinished == 2 and stats.batch_jobs_refused == 0
    assert 429 not in gemini_env.stats.responses_by_status
    job = submitted.out.strip()
    assert [r.getMessage() for r in caplog.records if WAITS in r.getMessage()] == [
        f"batch {job}: 2 jobs unfinished (--batch-max-jobs); part 3 {WAITS}"  # said once
    ]
    assert "5 requests in 5 job(s), 0 failed before submission" in submitted.err
    assert await fetch_main(job, config, wait=0.0) == 0
    records = {r["source"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(records) == set(sources)
    assert all(r["error"] is None and r["description"] for r in records.values())


def test_batch_max_jobs_on_the_command_line(write_files, tmp_path: Path) -> None:
    emulator = GeminiEmulator()
    emulator.batch.configure(max_concurrent_jobs=1)
    folder, sources = _images(write_files, 3)
    out = tmp_path / "out.jsonl"
    with emulator.in_thread():
        env = {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": emulator.base_url}
        done = cli(["batch", "submit", str(folder), "--batch-max-requests", "1",
                    "--batch-max-jobs", "1", "--poll-interval", "0", "--wait", "-o", str(out),
                    "--max-attempts", "2", "--retry-wait", "0"], env)
    assert done.returncode == 0, done.stderr
    assert "3 requests in 3 job(s)" in done.stderr
    [line] = [line for line in done.stderr.splitlines() if WAITS in line]  # said once
    assert line.endswith(f"1 job unfinished (--batch-max-jobs); part 2 {WAITS}")
    stats = emulator.batch.stats
    assert (stats.batch_jobs_created, stats.max_unfinished, stats.batch_jobs_refused) == (3, 1, 0)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["source"] for r in records) == sources
    assert all(r["error"] is None for r in records)


async def test_a_429_from_jobs_the_submission_does_not_hold_goes_through_the_retries(
    gemini_env: GeminiEmulator, client: genai.Client, write_files
) -> None:
    # Another job of the project takes the only slot: submit does not count it, so its own
    # create is refused, retried under the run's policy, and the submission fails as before.
    gemini_env.batch.configure(max_concurrent_jobs=1)
    await _inline_job(client, 9)
    folder, _ = _images(write_files, 2)
    config = Config(max_attempts=3, retry_wait=0.0)
    async with gemini.connect(config) as connection:
        with pytest.raises(ConfigError, match=r"429 RESOURCE_EXHAUSTED: You exceeded"):
            await describer_submit((str(folder),), config, connection, MAX_FILE_BYTES,
                                   MAX_REQUESTS, MAX_CONCURRENT_JOBS, 0.0)
    stats = gemini_env.batch.stats
    assert (stats.batch_jobs_created, stats.batch_jobs_refused) == (1, 3)
