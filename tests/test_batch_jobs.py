"""Gemini's 100 concurrent batch jobs: the emulator refuses the next.

Through the real google-genai client against the emulator. Jobs move on when polled (the
emulator's default: PENDING, RUNNING, then SUCCEEDED on the third get): no sleeps.
"""

from __future__ import annotations

import pytest
from google import genai
from google.genai import errors, types
from imaging import jpeg

from describer.emulator import GeminiEmulator
from describer.emulator.wire import MSG_QUOTA


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
