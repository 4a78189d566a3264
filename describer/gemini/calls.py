"""Each google-genai call describer makes, one function apiece, raising only
:class:`~describer.errors.ItemFailure` (see :mod:`.failures`).

Model calls (``generate``, ``embed``), the Files API (media and request-file uploads,
downloads, deletes), context caches (create, extend, delete) and the Batch API (create,
get, cancel). Retries are the caller's.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from google import genai
from google.genai import types

from ..config import Config
from ..errors import ItemFailure
from ..model import Answer, ErrorType, Media, Prepared
from ..retries import call_with_retries
from .answers import interpret
from .encoding import item_contents
from .failures import gemini_errors

log = logging.getLogger("describer")
#: Seconds between polls of a file the Files API is still processing (videos take a while).
PROCESSING_POLL_S = 2.0


async def generate(
    client: genai.Client,
    part: types.Part,
    config: Config,
    settings: types.GenerateContentConfig | None,
    prefix: list[types.Content] | None = None,
) -> Answer:
    """Ask the model about one item given as ``part``, which goes before the prompt, after
    the shared turns of ``prefix`` (sent inline; None or empty: none, or they are in the
    context cache ``settings`` names). Raises :class:`ItemFailure` for API and transport
    errors (``rate_limited``, ``timeout``, ``api_error``); blocked or empty answers come
    back as an :class:`Answer` with ``error`` set, so their usage and finish_reason are
    kept."""
    started = time.perf_counter()
    contents = item_contents(prefix or [], part, config.prompt)
    with gemini_errors(f"Gemini did not answer within {config.call_timeout:g} s"):
        response = await client.aio.models.generate_content(
            model=config.model, contents=contents, config=settings  # type: ignore[arg-type]
        )
    latency_ms = round((time.perf_counter() - started) * 1000)
    return interpret(response, latency_ms, config.max_output_tokens)


def by_files_api(media: Media, config: Config) -> bool:
    """Whether ``media`` goes by the Files API: over ``config.inline_limit`` (else inline),
    for online calls and Batch API request lines alike."""
    return media.bytes > config.inline_limit


@asynccontextmanager
async def media_part(
    client: genai.Client, prepared: Prepared, config: Config
) -> AsyncIterator[types.Part]:
    """The part that carries the media: the URL for Gemini to fetch when ``prepared.url``
    is set (``file_data``), else inline bytes up to ``config.inline_limit``, else a file
    uploaded with the Files API for the duration of the block and deleted after it.
    Raises :class:`ItemFailure` when the upload fails after its retries."""
    mime = prepared.media.mime_type
    if prepared.url is not None:
        yield types.Part.from_uri(file_uri=prepared.url, mime_type=mime)
        return
    if not by_files_api(prepared.media, config):
        yield types.Part.from_bytes(data=prepared.data, mime_type=mime)
        return
    uploaded = await call_with_retries(
        lambda: upload_media(client, prepared), config.max_attempts, config.retry_wait
    )
    try:
        yield types.Part.from_uri(file_uri=uploaded.uri or "", mime_type=mime)
    finally:
        await delete_file(client, uploaded.name or "")


async def upload_media(client: genai.Client, prepared: Prepared) -> types.File:
    """Upload media with the Files API and wait until Gemini has processed it (state
    PROCESSING, polled every ``PROCESSING_POLL_S``). Raises :class:`ItemFailure`."""
    settings = types.UploadFileConfig(mime_type=prepared.media.mime_type)
    with gemini_errors("the Files API upload timed out"):
        uploaded = await client.aio.files.upload(file=io.BytesIO(prepared.data), config=settings)
        while uploaded.state == types.FileState.PROCESSING:
            await asyncio.sleep(PROCESSING_POLL_S)
            uploaded = await client.aio.files.get(name=uploaded.name or "")
    if uploaded.state == types.FileState.FAILED:
        raise ItemFailure(ErrorType.API_ERROR, "the Files API could not process the file")
    return uploaded


async def delete_file(client: genai.Client, name: str) -> None:
    """Delete an upload; a failure is logged, not raised (Gemini deletes uploads after 48
    hours anyway: ai.google.dev/gemini-api/docs/files)."""
    try:
        with gemini_errors("deleting the uploaded file timed out"):
            await client.aio.files.delete(name=name)
    except ItemFailure as failure:
        log.warning("could not delete uploaded %s: %s", name, failure.error.message)


async def embed(
    client: genai.Client, model: str, texts: list[str], task_type: str, dim: int | None
) -> list[list[float]]:
    """One vector per text, in order, of ``dim`` floats (None: the model's; 3072 for
    gemini-embedding-001); ``task_type`` such as ``RETRIEVAL_DOCUMENT``. At most 100 texts
    (Gemini's batchEmbedContents limit; the SDK does not split). Raises
    :class:`ItemFailure`, also when the answer does not hold one non-empty vector per text."""
    settings = types.EmbedContentConfig(task_type=task_type, output_dimensionality=dim)
    with gemini_errors("the embedding call timed out"):
        response = await client.aio.models.embed_content(
            model=model, contents=texts, config=settings
        )
    vectors = [list(e.values or []) for e in response.embeddings or []]
    if len(vectors) != len(texts) or not all(vectors):
        raise ItemFailure(ErrorType.API_ERROR, f"{len(vectors)} vectors for {len(texts)} texts")
    return vectors


async def create_cache(
    client: genai.Client, model: str, settings: types.CreateCachedContentConfig
) -> types.CachedContent:
    """Create a context cache (``caches.create``) of ``settings`` (from
    ``encoding.cache_config``). Raises :class:`ItemFailure` (a 400 for content under the
    model's minimum among them)."""
    with gemini_errors("creating the context cache timed out"):
        return await client.aio.caches.create(model=model, config=settings)


async def extend_cache(client: genai.Client, name: str, ttl_s: float) -> types.CachedContent:
    """Set a context cache to live ``ttl_s`` seconds from now (``caches.update``). Raises
    :class:`ItemFailure`."""
    settings = types.UpdateCachedContentConfig(ttl=f"{ttl_s:.0f}s")
    with gemini_errors("extending the context cache timed out"):
        return await client.aio.caches.update(name=name, config=settings)


async def delete_cache(client: genai.Client, name: str) -> None:
    """Delete a context cache (``caches.delete``). Raises :class:`ItemFailure`; a cache that
    is already gone is a 403 or 404 ``api_error`` (:func:`gone`)."""
    with gemini_errors("deleting the context cache timed out"):
        await client.aio.caches.delete(name=name)


async def upload_request_file(client: genai.Client, path: Path) -> types.File:
    """Upload a Batch API request file (JSONL, up to 2 GB: Batch API input-file limit)."""
    settings = types.UploadFileConfig(mime_type="jsonl", display_name=path.name)
    with gemini_errors("uploading the request file timed out"):
        return await client.aio.files.upload(file=str(path), config=settings)


async def download_file(client: genai.Client, name: str) -> bytes:
    """The bytes of a Files API file, e.g. a batch job's results."""
    with gemini_errors("downloading the batch results timed out"):
        return await client.aio.files.download(file=name)


async def create_batch(
    client: genai.Client, model: str, input_file: str, display_name: str
) -> types.BatchJob:
    """Create a Batch API job over an uploaded request file (``files/...``)."""
    settings = types.CreateBatchJobConfig(display_name=display_name)
    with gemini_errors("creating the batch job timed out"):
        return await client.aio.batches.create(model=model, src=input_file, config=settings)


async def get_batch(client: genai.Client, name: str) -> types.BatchJob:
    """A Batch API job (``batches/...``) as Gemini sees it now."""
    with gemini_errors("asking for the batch job timed out"):
        return await client.aio.batches.get(name=name)


async def cancel_batch(client: genai.Client, name: str) -> None:
    """Ask Gemini to cancel a Batch API job."""
    with gemini_errors("cancelling the batch job timed out"):
        await client.aio.batches.cancel(name=name)


def job_state(job: types.BatchJob) -> str:
    """A job's state name, e.g. ``JOB_STATE_RUNNING`` (PENDING when Gemini sent none)."""
    state = job.state
    return str(getattr(state, "value", state) or "JOB_STATE_PENDING")
