"""Files API and Batch API of the Gemini emulator, through the real google-genai client.

The async client runs in the test's event loop next to the emulator; the sync client runs
in a worker thread (``asyncio.to_thread``) so the emulator's loop keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types
from imaging import jpeg, sha256

from describer.emulator import GeminiEmulator
from describer.emulator.media import AUDIO_TOKENS_PER_S, VIDEO_BYTES_PER_S, VIDEO_TOKENS_PER_S

PDF_2_PAGES = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
               b"2 0 obj << /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >> endobj\n"
               b"3 0 obj << /Type /Page /Parent 2 0 R >> endobj\n"
               b"4 0 obj << /Type /Page /Parent 2 0 R >> endobj\n"
               b"trailer << /Root 1 0 R >>\n%%EOF\n")
JobState = types.JobState


async def upload(client: genai.Client, data: bytes, mime: str, name: str = "") -> types.File:
    """files.upload of in-memory bytes with the async client."""
    return await client.aio.files.upload(
        file=io.BytesIO(data), config=types.UploadFileConfig(mime_type=mime, display_name=name))


async def ask(client: genai.Client, part: types.Part) -> types.GenerateContentResponse:
    """generate_content with one media part and the prompt "describe"."""
    return await client.aio.models.generate_content(model="gemini-x",
                                                     contents=[part, "describe"])


def batch_line(key: str, image: bytes) -> str:
    """One JSONL batch request line in the shape the project writes (snake_case fields)."""
    return json.dumps({"key": key, "request": {
        "contents": [{"role": "user", "parts": [
            {"inline_data": {"mime_type": "image/jpeg",
                             "data": base64.b64encode(image).decode()}},
            {"text": "prompt"}]}],
        "generation_config": {"temperature": 0.2}}})


async def jsonl_job(client: genai.Client, images: dict[str, bytes]) -> types.BatchJob:
    """Upload a JSONL of one request per image (keyed) and create a batch job from it."""
    data = "\n".join(batch_line(k, v) for k, v in images.items()).encode()
    src = await upload(client, data, "jsonl", "requests")
    return await client.aio.batches.create(
        model="gemini-x", src=src.name or "", config=types.CreateBatchJobConfig(
            display_name="describe-job"))


async def poll(client: genai.Client, job: types.BatchJob, times: int) -> list[JobState | None]:
    """States seen by ``times`` batches.get calls."""
    return [(await client.aio.batches.get(name=job.name or "")).state for _ in range(times)]


def result_lines(data: bytes) -> dict[str, dict[str, Any]]:
    """Result JSONL keyed by ``key``."""
    rows = [json.loads(line) for line in data.decode().splitlines()]
    return {row["key"]: row for row in rows}


async def test_upload_get_list_download_delete_then_403(emulator: GeminiEmulator,
                                                       client: genai.Client) -> None:
    data = jpeg(200, 150, seed=1)
    f = await upload(client, data, "image/jpeg", "holiday")
    assert f.name and f.name.startswith("files/") and len(f.name) == len("files/") + 12
    assert (f.mime_type, f.size_bytes, f.display_name) == ("image/jpeg", len(data), "holiday")
    assert f.state == types.FileState.ACTIVE and f.source == types.FileSource.UPLOADED
    assert f.uri == f"{emulator.base_url}/v1/{f.name}"
    got = await client.aio.files.get(name=f.name)
    assert (got.name, got.size_bytes, got.uri) == (f.name, len(data), f.uri)
    assert f.name in [x.name async for x in await client.aio.files.list()]
    assert await client.aio.files.download(file=f.name) == data
    await client.aio.files.delete(name=f.name)
    with pytest.raises(errors.ClientError) as info:
        await client.aio.files.get(name=f.name)
    assert (info.value.code, info.value.status) == (403, "PERMISSION_DENIED")
    assert "may not exist" in (info.value.message or "")
    s = emulator.files.stats
    assert (s.files_uploaded, s.file_bytes_uploaded, s.files_downloaded) == (1, len(data), 1)
    assert (s.files_deleted, emulator.files.live, s.upload_chunks) == (1, 0, 1)


async def test_sync_upload_from_path_in_two_chunks_then_video_answer(
        emulator: GeminiEmulator, client: genai.Client, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"  # mime type guessed from the suffix: video/mp4
    clip.write_bytes(b"\0" * (8 * 1024 * 1024 + 100))  # the SDK sends 8 MiB chunks

    def run() -> tuple[types.File, types.GenerateContentResponse]:
        f = client.files.upload(file=clip)
        part = types.Part.from_uri(file_uri=f.uri or "", mime_type=f.mime_type or "")
        return f, client.models.generate_content(model="gemini-x", contents=[part, "what?"])

    f, resp = await asyncio.to_thread(run)
    assert (f.mime_type, f.size_bytes) == ("video/mp4", clip.stat().st_size)
    assert emulator.files.stats.upload_chunks == 2
    assert resp.text and resp.text.startswith("A video of about 34 s (video/mp4)")
    seconds = math.ceil(clip.stat().st_size / VIDEO_BYTES_PER_S)
    assert resp.usage_metadata and resp.usage_metadata.prompt_tokens_details
    video = resp.usage_metadata.prompt_tokens_details[0]
    assert (video.modality, video.token_count) == (types.MediaModality.VIDEO,
                                                   VIDEO_TOKENS_PER_S * seconds)


async def test_file_uri_parts_jpeg_and_pdf_like_inline(emulator: GeminiEmulator,
                                                       client: genai.Client) -> None:
    image = jpeg(800, 600, seed=2)
    f = await upload(client, image, "image/jpeg")
    by_uri = await ask(client, types.Part.from_uri(file_uri=f.uri or "", mime_type="image/jpeg"))
    inline = await ask(client, types.Part.from_bytes(data=image, mime_type="image/jpeg"))
    assert by_uri.text == inline.text and by_uri.text and "800x600 JPEG" in by_uri.text
    assert by_uri.usage_metadata and inline.usage_metadata
    assert by_uri.usage_metadata.prompt_token_count == inline.usage_metadata.prompt_token_count
    pdf = await upload(client, PDF_2_PAGES, "application/pdf")
    doc = await ask(client, types.Part.from_uri(file_uri=pdf.uri or "",
                                                mime_type="application/pdf"))
    assert doc.text and doc.text.startswith("A 2-page PDF document (")
    assert doc.usage_metadata and doc.usage_metadata.prompt_token_count == 2 * 258 + 2
    again = await ask(client, types.Part.from_bytes(data=PDF_2_PAGES, mime_type="application/pdf"))
    assert again.text == doc.text
    assert emulator.files.stats.file_parts == 2 and emulator.stats.images[0].sha256 == sha256(
        image)


async def test_inline_audio_accepted_bad_pdf_and_deleted_file_rejected(
        emulator: GeminiEmulator, client: genai.Client) -> None:
    audio = await ask(client, types.Part.from_bytes(data=b"ID3" + b"\1" * 40_000,
                                                    mime_type="audio/mpeg"))
    assert audio.text and audio.text.startswith("An audio recording of about 3 s")
    assert audio.usage_metadata and audio.usage_metadata.prompt_tokens_details
    assert audio.usage_metadata.prompt_tokens_details[0].token_count == 3 * AUDIO_TOKENS_PER_S
    with pytest.raises(errors.ClientError) as bad:
        await ask(client, types.Part.from_bytes(data=b"not a pdf", mime_type="application/pdf"))
    assert bad.value.code == 400
    f = await upload(client, jpeg(seed=3), "image/jpeg")
    await client.aio.files.delete(name=f.name or "")
    part = types.Part.from_uri(file_uri=f.uri or "", mime_type="image/jpeg")
    with pytest.raises(errors.ClientError) as gone:
        await ask(client, part)
    assert gone.value.code == 403
    emulator.files.configure(missing_file_status=400)
    with pytest.raises(errors.ClientError) as gone400:
        await ask(client, part)
    assert (gone400.value.code, gone400.value.status) == (400, "INVALID_ARGUMENT")


async def test_file_batch_pending_running_succeeded_with_one_error(
        emulator: GeminiEmulator, client: genai.Client) -> None:
    images = {"a": jpeg(seed=4), "b": jpeg(seed=5), "c": jpeg(seed=6)}
    assert len({sha256(v) for v in images.values()}) == 3
    emulator.script(sha256(images["b"]), "fail:400")
    job = await jsonl_job(client, images)
    assert job.name and job.name.startswith("batches/") and job.state == JobState.JOB_STATE_PENDING
    assert (job.display_name, job.model) == ("describe-job", "models/gemini-x")
    assert await poll(client, job, 3) == [JobState.JOB_STATE_PENDING, JobState.JOB_STATE_RUNNING,
                                          JobState.JOB_STATE_SUCCEEDED]
    done = await client.aio.batches.get(name=job.name)
    assert done.dest and done.dest.file_name and done.end_time is not None
    rows = result_lines(await client.aio.files.download(file=done.dest.file_name))
    assert list(rows) == ["a", "b", "c"]
    assert rows["b"]["error"] == {"code": 400, "message": "Request contains an invalid argument.",
                                  "status": "INVALID_ARGUMENT"}
    direct = await ask(client, types.Part.from_bytes(data=images["a"], mime_type="image/jpeg"))
    text = rows["a"]["response"]["candidates"][0]["content"]["parts"][0]["text"]
    assert text == direct.text and "response" in rows["c"]
    s = emulator.batch.stats
    assert (s.batch_jobs_created, s.requests_per_job, s.batch_polls) == (1, [3], 4)
    assert emulator.batch.jobs[job.name].operation()["metadata"]["batchStats"] == {
        "requestCount": "3", "successfulRequestCount": "2", "failedRequestCount": "1",
        "pendingRequestCount": "0"}


async def test_cancel_running_job_with_sync_client(emulator: GeminiEmulator,
                                                   client: genai.Client) -> None:
    job = await jsonl_job(client, {"only": jpeg(seed=7)})
    name = job.name or ""

    def run() -> list[types.BatchJob]:
        seen = [client.batches.get(name=name), client.batches.get(name=name)]
        client.batches.cancel(name=name)
        client.batches.cancel(name=name)  # a finished job: no-op
        return [*seen, client.batches.get(name=name)]

    states = [j.state for j in await asyncio.to_thread(run)]
    assert states == [JobState.JOB_STATE_PENDING, JobState.JOB_STATE_RUNNING,
                      JobState.JOB_STATE_CANCELLED]
    final = await client.aio.batches.get(name=name)
    assert final.state == JobState.JOB_STATE_CANCELLED and final.dest is None
    assert emulator.batch.stats.batch_cancels == 1


async def test_forced_and_configured_end_states(emulator: GeminiEmulator,
                                                client: genai.Client) -> None:
    failed = await jsonl_job(client, {"x": jpeg(seed=8)})
    emulator.batch.force(failed.name or "", "FAILED")
    got = await client.aio.batches.get(name=failed.name or "")
    assert got.state == JobState.JOB_STATE_FAILED and got.dest is None
    emulator.batch.configure(end_state="JOB_STATE_EXPIRED", pending_polls=0, running_polls=0)
    expired = await jsonl_job(client, {"y": jpeg(seed=9)})
    assert await poll(client, expired, 1) == [JobState.JOB_STATE_EXPIRED]
    third = await jsonl_job(client, {"z": jpeg(seed=10)})
    async with aiohttp.ClientSession() as http, http.post(
            f"{emulator.base_url}/_emulator/batch/force",
            json={"name": third.name, "state": "SUCCEEDED"}) as r:
        assert r.status == 200 and (await r.json())["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    done = await client.aio.batches.get(name=third.name or "")
    assert done.dest and done.dest.file_name
    rows = result_lines(await client.aio.files.download(file=done.dest.file_name))
    assert "response" in rows["z"]


async def test_inline_requests_and_time_driven_states(emulator: GeminiEmulator,
                                                      client: genai.Client) -> None:
    emulator.batch.configure(pending_polls=None, running_polls=None, pending_seconds=0.0,
                             running_seconds=0.0)
    bad = jpeg(seed=11)
    emulator.script(sha256(bad), "fail:500")
    requests = [types.InlinedRequest(
        contents=[types.Part.from_bytes(data=d, mime_type="image/jpeg"), "describe"],
        metadata={"key": k}) for k, d in (("good", jpeg(seed=12)), ("bad", bad))]
    job = await client.aio.batches.create(model="gemini-x", src=requests)
    done = await client.aio.batches.get(name=job.name or "")
    assert done.state == JobState.JOB_STATE_SUCCEEDED and done.dest
    good, failed = done.dest.inlined_responses or []
    assert good.metadata == {"key": "good"} and good.response and good.response.text
    assert failed.metadata == {"key": "bad"} and failed.error and failed.error.code == 500


async def test_batch_errors_list_delete_and_reset(emulator: GeminiEmulator,
                                                  client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as missing:
        await client.aio.batches.create(model="gemini-x", src="files/nosuchfile")
    assert missing.value.code == 403
    job = await jsonl_job(client, {"k": jpeg(seed=13)})
    assert [j.name async for j in await client.aio.batches.list()] == [job.name]
    await client.aio.batches.delete(name=job.name or "")
    with pytest.raises(errors.ClientError) as gone:
        await client.aio.batches.get(name=job.name or "")
    assert gone.value.code == 404
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{emulator.base_url}/upload/v1/files?upload_id=nope",
                             headers={"X-Goog-Upload-Command": "upload, finalize"}) as r:
            assert r.status == 404 and r.headers["X-Goog-Upload-Status"] == "final"
        async with http.get(f"{emulator.base_url}/_emulator/batch") as r:
            state = await r.json()
    assert state["stats"]["batch_deletes"] == 1 and state["stats"]["files_live"] == 1
    emulator.reset_stats()
    assert emulator.batch.stats.batch_jobs_created == 0 and emulator.files.live == 1
