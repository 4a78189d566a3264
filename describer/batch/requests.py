"""``batch submit``: sources → download → prepare, as online, then JSONL request files.

Each request line is ``{"key", "request"}`` with the media inline, or by Files API URI when
larger than the inline limit, and the settings of online calls (one encoding:
:mod:`describer.gemini.encoding`). Inputs past one file's limit (2 GB, Gemini's limit for a
batch input file) or ``max_requests`` are split into several jobs under one local record.
Files are encoded and written in a worker thread, never on the event loop. At most
``max_jobs`` of a submission's jobs are unfinished at once (Gemini's 100 concurrent batch
jobs): a part waits for one to finish before its job is created, and reading further items
waits with it.

A submission that fails part-way keeps what was submitted: once an upload or a job creation
fails after its retries, nothing more is sent; the items of the part that could not be sent,
and every later item, become ``api_error`` records "not submitted: <reason>" in the errors
file (their uploaded media are deleted), so ``batch fetch`` reports them as never sent. When
no job was created at all, every local file of the submission is removed and
:class:`ConfigError` says so: no record is left that no job backs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from .. import gemini
from .._streams import bounded_map
from ..config import Config
from ..context import load_shared
from ..errors import ConfigError, ItemFailure, redact
from ..limits import ByteBudget, Lease
from ..model import ErrorType, ItemError, Media, Prepared, Result, Source
from ..pipeline import failed, internal_error, load, with_row
from ..sources import SourceReader
from .jobs import create_job, retried, wait_for_room
from .store import JobRecord, jobs_dir

log = logging.getLogger("describer")
#: Gemini's limit for one batch input file (ai.google.dev/gemini-api/docs/batch-mode).
MAX_FILE_BYTES = 2_000_000_000
#: Requests per job unless ``--batch-max-requests`` says otherwise.
MAX_REQUESTS = 1_000_000
#: Gemini's limit of concurrent batch jobs per project (ai.google.dev/gemini-api/docs/
#: batch-mode, "rate limits": concurrent batch requests 100); the 101st create is a 429.
#: A submission keeps at most this many of its jobs unfinished unless ``--batch-max-jobs``
#: says otherwise.
MAX_CONCURRENT_JOBS = 100
#: Seconds between refreshes of the jobs' states while a part waits for room.
POLL_INTERVAL = 30.0


async def submit(
    sources: Sequence[str],
    config: Config,
    connection: gemini.Connection,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_requests: int = MAX_REQUESTS,
    max_jobs: int = MAX_CONCURRENT_JOBS,
    poll_interval: float = POLL_INTERVAL,
) -> JobRecord:
    """Prepare every source and submit batch jobs for them; the saved local record. Items
    that fail before submission are kept as records in the job's errors file, and so are
    items not sent because an upload or job creation failed part-way (``record.failure``
    says why, ``record.not_submitted`` how many). Examples and ``--context`` documents go
    in every request line (no context cache: see ``describer.context``).

    Each job holds at most ``max_file_bytes`` bytes of request lines and ``max_requests``
    requests. Before a job is created, fewer than ``max_jobs`` (default 100, Gemini's limit
    of concurrent batch jobs: :data:`MAX_CONCURRENT_JOBS`) of this submission's jobs must be
    unfinished; while that many are, their states are refreshed every ``poll_interval``
    seconds (:func:`~.jobs.wait_for_room`), said once on stderr.

    Raises :class:`ConfigError` when no job could be created (the local files are removed
    first), or when the submission stops otherwise before its first job exists.
    """
    record = JobRecord.new(config)
    shared = await load_shared(config, connection.session)
    prefix = None if shared.empty else gemini.shared_json(shared, config.prompt)
    jobs_dir().mkdir(parents=True, exist_ok=True)
    reader = SourceReader.of(config)
    try:
        with RequestFiles(record, connection, config, max_file_bytes, max_requests,
                          prefix, (max_jobs, poll_interval)) as files:
            async for source, outcome, lease in _loaded(reader.iter(sources), connection, config):
                if isinstance(outcome, Prepared):
                    await files.add(source, outcome)
                else:
                    await files.add_failure(with_row(failed(source.ref, config, outcome), source))
                await lease.release()
            await files.finish()
    except BaseException:  # Ctrl-C, a bug: keep the jobs created visible, or remove all
        _stopped(record)
        raise
    if record.failure and not record.parts:
        _remove_local_files(record)
        raise ConfigError(f"{record.failure} (nothing was submitted: no job was created)")
    record.skipped = reader.stats.skipped
    record.save()
    return record


def _stopped(record: JobRecord) -> None:
    """A submission stopped by an exception: with no job, remove its files; else drop the
    open part's file, save the record (its keys past the jobs' requests are reported "not
    submitted" by fetch) and log the JOB id on stderr."""
    if not record.parts:
        _remove_local_files(record)
        return
    for path in jobs_dir().glob(f"{record.id}.part*.jsonl"):
        path.unlink(missing_ok=True)  # parts with a job were deleted once uploaded
    record.failure = record.failure or "interrupted before every request was sent"
    sent = sum(part.requests for part in record.parts)
    record.not_submitted += record.submitted - sent
    record.submitted = sent
    record.save()
    log.warning(
        "batch %s: %s; its %d job(s) stand (describe-images batch status %s)",
        record.id, record.failure, len(record.parts), record.id,
    )  # fmt: skip


def _remove_local_files(record: JobRecord) -> None:
    """Delete every file of a submission that created no job (parts, keys, errors, record)."""
    for path in jobs_dir().glob(f"{record.id}.*"):
        path.unlink(missing_ok=True)


async def _loaded(
    sources: Iterator[Source], connection: gemini.Connection, config: Config
) -> AsyncIterator[tuple[Source, Prepared | ItemError, Lease]]:
    """Each source loaded (or its redacted error), with its lease on the byte budget: the
    caller releases it once the bytes are written out. A bug costs one ``internal_error``."""
    budget = ByteBudget(config.byte_budget)

    async def one(source: Source) -> tuple[Source, Prepared | ItemError, Lease]:
        lease = budget.lease()
        try:
            return source, await load(source, connection.session, config, lease), lease
        except ItemFailure as failure:
            return source, redact(failure.error, connection.hidden), lease
        except Exception as exc:
            return source, redact(internal_error(exc, source.ref), connection.hidden), lease

    async for item in bounded_map(sources, one, config.in_flight):
        yield item


class RequestFiles:
    """Writes request lines into part files, the keys file and the errors file of one
    record; creates a job for each full part, once fewer than ``jobs[0]`` of the record's
    jobs are unfinished (refreshed every ``jobs[1]`` seconds meanwhile). A context manager
    that closes the files."""

    def __init__(
        self,
        record: JobRecord,
        connection: gemini.Connection,
        config: Config,
        max_bytes: int,
        max_requests: int,
        prefix: list[dict[str, Any]] | None = None,
        jobs: tuple[int, float] = (MAX_CONCURRENT_JOBS, POLL_INTERVAL),
    ) -> None:
        self._record, self._connection, self._config = record, connection, config
        self._max_jobs, self._poll_interval = jobs
        self._told = False  # the wait for room was said on stderr
        self._prefix = prefix  # the shared turns, REST JSON, in every line
        self._max_bytes, self._max_requests = max_bytes, max_requests
        self._keys: IO[str] = open(record.path(".keys.jsonl"), "w")  # noqa: SIM115
        self._errors: IO[str] = open(record.path(".errors.jsonl"), "w")  # noqa: SIM115
        self._part: IO[bytes] | None = None
        self._part_path = Path()
        self._part_requests = self._part_bytes = 0
        self._keys_mark = 0  # where the keys of the open part start in the keys file

    def __enter__(self) -> RequestFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in (self._keys, self._errors, self._part):
            if handle is not None:
                handle.close()

    async def add(self, source: Source, prepared: Prepared) -> None:
        """Add one item's request (uploading its media first when over the inline limit);
        once the submission has failed, the item's "not submitted" record instead."""
        if self._record.failure is None:
            try:
                await self._add(source, prepared)
                return
            except ConfigError as error:
                await self._stop(str(error))
        await self._not_submitted(source.ref, prepared.media, prepared.original, _row(source))

    async def _add(self, source: Source, prepared: Prepared) -> None:
        key = f"k{self._record.submitted:09d}"
        file_name, part = await self._uploaded(prepared)
        data = await asyncio.to_thread(_request_line, key, prepared, part, self._config,
                                       self._prefix)
        if self._part is not None and (
            self._part_bytes + len(data) > self._max_bytes
            or self._part_requests >= self._max_requests
        ):
            try:
                await self._submit_part()
            except ConfigError:
                if file_name:
                    await gemini.delete_file(self._connection.client, file_name)
                raise
        entry = {"key": key, "source": source.ref, "image": prepared.media.to_json(),
                 "original": prepared.original.to_json() if prepared.original else None,
                 "file": file_name} | _row(source)  # fmt: skip
        await asyncio.to_thread(self._write, data, json.dumps(entry) + "\n")
        self._record.submitted += 1

    async def add_failure(self, result: Result) -> None:
        """Keep the record of an item that failed before submission."""
        await asyncio.to_thread(self._errors.write, result.to_line())
        self._record.failed_before += 1

    async def finish(self) -> None:
        """Submit the last part (its items are "not submitted" records if that fails)."""
        if self._record.failure is None and self._part is not None and self._part_requests:
            try:
                await self._submit_part()
            except ConfigError as error:
                await self._stop(str(error))

    async def _stop(self, reason: str) -> None:
        """The submission failed: send nothing more. The open part's items (the keys file
        past the last created job) become "not submitted" records and leave the keys file;
        their uploaded media are deleted; the part file is removed."""
        self._record.failure = reason
        if self._part is not None:
            await asyncio.to_thread(self._part.close)
            self._part = None
        self._part_path.unlink(missing_ok=True)
        self._keys.flush()
        with open(self._keys.name, "rb") as keys:
            keys.seek(self._keys_mark)
            while lines := await asyncio.to_thread(keys.readlines, 1 << 20):  # ~1 MB at a time
                for entry in (json.loads(line) for line in lines if line.strip()):
                    await self._unsent(entry)
        self._keys.seek(self._keys_mark)
        self._keys.truncate()
        self._record.submitted = sum(part.requests for part in self._record.parts)

    async def _unsent(self, entry: dict[str, Any]) -> None:
        """A keys-file entry of the part that could not be sent: its record, its upload gone."""
        original = Media.from_json(entry["original"]) if entry.get("original") else None
        await self._not_submitted(entry["source"], Media.from_json(entry["image"]), original, entry)
        if entry.get("file"):
            await gemini.delete_file(self._connection.client, entry["file"])

    async def _not_submitted(
        self, source: str, media: Media, original: Media | None, row: dict[str, Any]
    ) -> None:
        """The record of an item not sent; ``row``: its table row's ``id`` and ``meta``."""
        error = ItemError(ErrorType.API_ERROR, f"not submitted: {self._record.failure}")
        result = Result(source, self._record.model, self._record.prompt, error=error,
                        media=media, original=original, id=row.get("id"),
                        meta=row.get("meta"))  # fmt: skip
        await asyncio.to_thread(self._errors.write, result.to_line())
        self._record.not_submitted += 1

    async def _uploaded(self, prepared: Prepared) -> tuple[str | None, dict[str, Any] | None]:
        """A URL goes as it is (``--send url``/``auto``): (None, its ``fileData`` part);
        media over the inline limit go by the Files API: (file name, REST part); else
        (None, None) and the bytes go inline."""
        if prepared.url is not None:
            return None, gemini.file_json(prepared.url, prepared.media.mime_type)
        if not gemini.by_files_api(prepared.media, self._config):
            return None, None
        client = self._connection.client
        uploaded = await retried(
            lambda: gemini.upload_media(client, prepared), self._connection, self._config
        )
        return uploaded.name, gemini.file_json(uploaded.uri or "", prepared.media.mime_type)

    def _write(self, data: bytes, key_line: str) -> None:
        """In a worker thread: one request line to the open part (opened when needed)."""
        if self._part is None:
            self._part_path = self._record.path(f".part{len(self._record.parts)}.jsonl")
            self._part = open(self._part_path, "wb")  # noqa: SIM115 - closed in _submit_part
            self._part_bytes = self._part_requests = 0
        self._part.write(data)
        self._part_bytes += len(data)
        self._part_requests += 1
        self._keys.write(key_line)

    async def _submit_part(self) -> None:
        assert self._part is not None
        await asyncio.to_thread(self._part.close)
        self._part = None
        await self._wait_for_room()
        part = await create_job(
            self._connection, self._config, self._part_path, self._part_requests,
            self._part_bytes,
        )  # fmt: skip
        self._record.parts.append(part)
        self._record.save()
        self._part_path.unlink()  # the uploaded copy is the one that counts
        self._keys.flush()
        self._keys_mark = self._keys.tell()

    async def _wait_for_room(self) -> None:
        """Hold the open part's job until fewer than ``max_jobs`` of the record's jobs are
        unfinished; the first wait of the submission is said on stderr."""

        def say(unfinished: int) -> None:
            limit = ("Gemini's limit of concurrent batch jobs"
                     if self._max_jobs == MAX_CONCURRENT_JOBS else "--batch-max-jobs")
            log.warning("batch %s: %d job%s unfinished (%s); part %d waits for one to finish",
                        self._record.id, unfinished, "" if unfinished == 1 else "s", limit,
                        len(self._record.parts) + 1)

        self._told |= await wait_for_room(
            self._record, self._connection, self._config, self._max_jobs,
            self._poll_interval, None if self._told else say,
        )  # fmt: skip


def _request_line(
    key: str, prepared: Prepared, part: dict[str, Any] | None, config: Config,
    prefix: list[dict[str, Any]] | None = None,
) -> bytes:
    """One request line, encoded (in a worker thread: base64 of a 20 MB image takes a while):
    ``part`` is the uploaded media's REST part, or None to send ``prepared``'s bytes inline;
    ``prefix``: the shared turns before it."""
    media = part if part is not None else gemini.inline_json(prepared)
    line = {"key": key, "request": gemini.request_json(media, config, prefix)}
    return (json.dumps(line) + "\n").encode()


def _row(source: Source) -> dict[str, Any]:
    """A table row's ``id`` and ``meta``, as kept in the keys file (``{}`` for other sources)."""
    row = {"id": source.id, "meta": source.meta}
    return {key: value for key, value in row.items() if value is not None}
