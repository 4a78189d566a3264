"""Describe stage: one ``client.aio.models.generate_content`` call per prepared image.

The image goes first, then the prompt (as the Gemini docs advise for single-image prompts),
as ``types.Part.from_bytes`` with the bytes chosen by ``prepare``. The answer is read into
an :class:`Answer`: text, ``finish_reason``, usage, and an error for safety blocks,
``MAX_TOKENS`` cuts and empty answers.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import aiohttp
from google import genai
from google.genai import errors, types

from .config import MEDIA_RESOLUTIONS, Config
from .errors import ConfigError, ErrorType, ItemError, ItemFailure
from .prepare import Prepared
from .retries import call_with_retries, retry_delay

log = logging.getLogger("describer")
KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
NO_CREDENTIALS = (
    "no Gemini credentials: set GEMINI_API_KEY (or GOOGLE_API_KEY) to a key from "
    "https://aistudio.google.com/apikey, or for Vertex AI set GOOGLE_GENAI_USE_VERTEXAI=true "
    "with GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION"
)
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


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call: ``input_tokens`` (prompt incl. image), ``output_tokens``
    (answer plus any thinking tokens, as billed), from the response's ``usage_metadata``."""

    input_tokens: int
    output_tokens: int

    def to_json(self) -> dict[str, int]:
        """The JSON shape of ``usage`` in a record."""
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


@dataclass(frozen=True, slots=True)
class Answer:
    """What the model said about one image; ``error`` is set when there is no usable text."""

    text: str | None
    finish_reason: str | None
    usage: Usage | None
    latency_ms: int | None  # None for Batch API answers
    error: ItemError | None = None


def check_credentials(config: Config, env: Mapping[str, str] = os.environ) -> None:
    """Raise :class:`ConfigError` when neither an API key nor Vertex AI settings are present."""
    if config.api_key:
        return
    if env.get("GOOGLE_GENAI_USE_VERTEXAI", "").strip().lower() in ("1", "true", "yes"):
        if env.get("GOOGLE_API_KEY") or (
            env.get("GOOGLE_CLOUD_PROJECT") and env.get("GOOGLE_CLOUD_LOCATION")
        ):
            return
        raise ConfigError(
            "Vertex AI mode (GOOGLE_GENAI_USE_VERTEXAI) needs GOOGLE_CLOUD_PROJECT and "
            "GOOGLE_CLOUD_LOCATION, with application default credentials "
            "(gcloud auth application-default login)"
        )
    if not any(env.get(name) for name in KEY_VARIABLES):
        raise ConfigError(NO_CREDENTIALS)


def create_client(config: Config, session: aiohttp.ClientSession) -> genai.Client:
    """A google-genai client that sends over the run's ``session``.

    The endpoint is ``config.base_url``, else ``GOOGLE_GEMINI_BASE_URL``, else Google's. The
    SDK's own retries stay off (``attempts=1``): describer decides what is retried.
    """
    options = types.HttpOptions(
        base_url=config.base_url,
        timeout=int(config.request_timeout * 1000),  # milliseconds
        aiohttp_client=session,
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key=config.api_key, http_options=options)


def generation_config(config: Config) -> types.GenerateContentConfig | None:
    """The ``GenerateContentConfig`` shared by every call of a run, or None when no option is
    set: google-genai converts a config field by field on every call (a third of the CPU
    per small image), and with None it skips that."""
    resolution = MEDIA_RESOLUTIONS.get(config.media_resolution or "")
    settings = (config.system_instruction, config.temperature, config.max_output_tokens, resolution)
    if all(value is None for value in settings):
        return None
    return types.GenerateContentConfig(
        system_instruction=config.system_instruction,
        temperature=config.temperature,
        max_output_tokens=config.max_output_tokens,
        media_resolution=types.MediaResolution(resolution) if resolution else None,
    )


@asynccontextmanager
async def media_part(
    client: genai.Client, prepared: Prepared, config: Config
) -> AsyncIterator[types.Part]:
    """The part that carries the media: inline bytes up to ``config.inline_limit``, else a
    file uploaded with the Files API for the duration of the block and deleted after it.
    Raises :class:`ItemFailure` when the upload fails after its retries."""
    if prepared.image.bytes <= config.inline_limit:
        yield types.Part.from_bytes(data=prepared.data, mime_type=prepared.image.mime_type)
        return
    uploaded = await call_with_retries(
        lambda: upload(client, prepared), config.max_attempts, config.retry_wait
    )
    try:
        yield types.Part.from_uri(file_uri=uploaded.uri or "", mime_type=prepared.image.mime_type)
    finally:
        await _delete(client, uploaded.name or "")


async def upload(client: genai.Client, prepared: Prepared) -> types.File:
    """Upload media with the Files API and wait until Gemini has processed it (videos take a
    while: state PROCESSING, polled every 2 s). Raises :class:`ItemFailure`."""
    settings = types.UploadFileConfig(mime_type=prepared.image.mime_type)
    with gemini_errors("the Files API upload timed out"):
        uploaded = await client.aio.files.upload(file=io.BytesIO(prepared.data), config=settings)
        while uploaded.state == types.FileState.PROCESSING:
            await asyncio.sleep(2)
            uploaded = await client.aio.files.get(name=uploaded.name or "")
    if uploaded.state == types.FileState.FAILED:
        raise ItemFailure(ErrorType.API_ERROR, "the Files API could not process the file")
    return uploaded


async def _delete(client: genai.Client, name: str) -> None:
    try:
        with gemini_errors("deleting the uploaded file timed out"):
            await client.aio.files.delete(name=name)
    except ItemFailure as failure:  # Gemini deletes uploads after 48 hours anyway
        log.warning("could not delete uploaded %s: %s", name, failure.error.message)


async def describe_image(
    client: genai.Client,
    part: types.Part,
    config: Config,
    settings: types.GenerateContentConfig | None,
) -> Answer:
    """Ask the model about one image (or other media) given as ``part``, which goes before the
    prompt. Raises :class:`ItemFailure` for API and transport errors (``rate_limited``,
    ``timeout``, ``api_error``); blocked or empty answers come back as an :class:`Answer` with
    ``error`` set, so their usage and finish_reason are kept."""
    started = time.perf_counter()
    with gemini_errors(f"Gemini did not answer within {config.request_timeout:g} s"):
        response = await client.aio.models.generate_content(
            model=config.model, contents=[part, config.prompt], config=settings
        )
    latency_ms = round((time.perf_counter() - started) * 1000)
    return interpret(response, latency_ms, config.max_output_tokens)


@contextmanager
def gemini_errors(timeout_message: str) -> Iterator[None]:
    """Turn what a google-genai call raises into :class:`ItemFailure`: API errors by
    :func:`api_failure`, timeouts (``timeout``) and connection errors (``api_error``), both
    retryable."""
    try:
        yield
    except errors.APIError as exc:
        raise api_failure(exc) from None
    except TimeoutError:
        raise ItemFailure(ErrorType.TIMEOUT, timeout_message, retryable=True) from None
    except aiohttp.ClientError as exc:
        message = f"connection to Gemini failed: {type(exc).__name__}: {exc}"
        raise ItemFailure(ErrorType.API_ERROR, message, retryable=True) from None


def api_failure(exc: errors.APIError) -> ItemFailure:
    """The record error for an API error: ``rate_limited`` (429), ``timeout`` (408, 504),
    otherwise ``api_error``; the message is ``"<code> <STATUS>: <Google's message>"``.

    408, 429 and 5xx are retryable, after the ``RetryInfo.retryDelay`` when Gemini gives one;
    400 INVALID_ARGUMENT, 401/403 and 404 are not.
    """
    message = f"{exc.code} {exc.status or ''}: {exc.message or ''}".replace("  ", " ").strip()
    retryable = exc.code in (408, 429) or exc.code >= 500
    delay = retry_delay(exc.details)
    if exc.code == 429:
        kind = ErrorType.RATE_LIMITED
    elif exc.code in (408, 504):
        kind = ErrorType.TIMEOUT
    else:
        kind = ErrorType.API_ERROR
    return ItemFailure(kind, message, retryable=retryable, retry_after=delay)


def interpret(
    response: types.GenerateContentResponse,
    latency_ms: int | None,
    max_output_tokens: int | None = None,
) -> Answer:
    """Read text, finish_reason and usage from a response, and name what went wrong if
    anything: ``blocked``, ``max_tokens`` (partial text kept) or ``empty_response``."""
    usage = _usage(response.usage_metadata)
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = _name(feedback.block_reason)
        detail = f" ({feedback.block_reason_message})" if feedback.block_reason_message else ""
        error = ItemError(ErrorType.BLOCKED, f"prompt blocked: {reason}{detail}")
        return Answer(None, reason, usage, latency_ms, error)
    if not response.candidates:
        error = ItemError(ErrorType.EMPTY_RESPONSE, "the answer has no candidates")
        return Answer(None, None, usage, latency_ms, error)
    candidate = response.candidates[0]
    finish = _name(candidate.finish_reason) if candidate.finish_reason else None
    text = _text(candidate) or None
    return Answer(text, finish, usage, latency_ms, _answer_error(text, finish, max_output_tokens))


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
    output = (metadata.candidates_token_count or 0) + (metadata.thoughts_token_count or 0)
    return Usage(metadata.prompt_token_count or 0, output)


def _name(value: object) -> str:
    return str(getattr(value, "value", value))
