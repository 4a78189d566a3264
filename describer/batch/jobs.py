"""Batch API jobs: create one per request file, refresh their states, cancel, wait."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from .. import gemini
from ..config import Config
from ..errors import ConfigError, ItemFailure, redact_text
from ..retries import call_with_retries
from .store import FINAL_STATES, JobPart, JobRecord

T = TypeVar("T")


async def create_job(
    connection: gemini.Connection, config: Config, path: Path, requests: int, size: int
) -> JobPart:
    """Upload the request file at ``path`` and create its batch job; the job's part record.
    Raises :class:`ConfigError` when either call fails after its retries (the uploaded
    request file is deleted when the job could not be created)."""
    client = connection.client
    uploaded = await retried(lambda: gemini.upload_request_file(client, path), connection, config)
    try:
        job = await retried(
            lambda: gemini.create_batch(
                client, config.model, uploaded.name or "", f"describer {path.stem}"
            ),
            connection, config,
        )  # fmt: skip
    except ConfigError:
        await gemini.delete_file(client, uploaded.name or "")
        raise
    return JobPart(job.name or "", uploaded.name or "", requests, size, gemini.job_state(job))


async def refresh(record: JobRecord, connection: gemini.Connection, config: Config) -> JobRecord:
    """Ask Gemini for the state of every unfinished part; save and return the record.
    Raises :class:`ConfigError` when a job cannot be read after its retries."""
    for part in record.parts:
        if part.state not in FINAL_STATES:
            job = await retried(
                lambda name=part.name: gemini.get_batch(connection.client, name),
                connection, config, f"cannot get batch job {part.name}",
            )  # fmt: skip
            part.state = gemini.job_state(job)
            part.result_file = job.dest.file_name if job.dest else None
    record.save()
    return record


async def wait_for_room(
    record: JobRecord,
    connection: gemini.Connection,
    config: Config,
    max_jobs: int,
    interval: float,
    on_wait: Callable[[int], None] | None = None,
) -> bool:
    """Return once fewer than ``max_jobs`` of ``record``'s parts are unfinished (not in
    :data:`FINAL_STATES`), so that one more job may be created: Gemini allows at most 100
    concurrent batch jobs per project (ai.google.dev/gemini-api/docs/batch-mode, "rate
    limits") and refuses the next with a 429. While ``max_jobs`` are unfinished, their states
    are refreshed (:func:`refresh`, which saves the record) every ``interval`` seconds, the
    first time at once; ``on_wait(unfinished)`` is called when the wait begins. Jobs of the
    project that ``record`` does not hold are not counted: their 429s go through job
    creation's retry policy. Returns True if it waited.

    Raises :class:`ConfigError` when a job cannot be read after its retries.
    """
    waited = False
    while (unfinished := record.unfinished) >= max_jobs:
        if waited:
            await asyncio.sleep(interval)
        elif on_wait is not None:
            on_wait(unfinished)
        waited = True
        await refresh(record, connection, config)
    return waited


async def cancel(record: JobRecord, connection: gemini.Connection, config: Config) -> JobRecord:
    """Cancel every unfinished part; the refreshed record."""
    for part in record.parts:
        if part.state not in FINAL_STATES:
            await retried(
                lambda name=part.name: gemini.cancel_batch(connection.client, name),
                connection, config, f"cannot cancel batch job {part.name}",
            )  # fmt: skip
    return await refresh(record, connection, config)


async def wait_until_done(
    record: JobRecord,
    connection: gemini.Connection,
    config: Config,
    interval: float,
    on_change: Callable[[JobRecord], None],
) -> JobRecord:
    """Poll every ``interval`` seconds until every part is final; ``on_change`` sees each
    change of state. Returns the final record."""
    last = ""
    while True:
        record = await refresh(record, connection, config)
        if record.state != last:
            on_change(record)
            last = record.state
        if record.done:
            return record
        await asyncio.sleep(interval)


async def retried(
    call: Callable[[], Awaitable[T]],
    connection: gemini.Connection,
    config: Config,
    what: str = "batch submission failed",
) -> T:
    """``await call()`` under the run's retry policy; a failure that outlasts it is a
    whole-run problem for a batch command: :class:`ConfigError` ``"<what>: <message>"``."""
    try:
        return await call_with_retries(call, config.max_attempts, config.retry_wait)
    except ItemFailure as failure:
        message = redact_text(failure.error.message, connection.hidden)
        raise ConfigError(f"{what}: {message}") from None
