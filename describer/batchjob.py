"""Gemini Batch API mode: ``describe-images batch submit | status | fetch | cancel``.

``submit`` runs the same sources → fetch → prepare stages as the online mode, writes JSONL
request files (``{"key", "request"}``, media inline, or by Files API URI when larger than
the inline limit), uploads each with the Files API and creates a job with
``client.aio.batches.create``. Inputs past one file's limit (2 GB, Gemini's limit for a batch
input file) or ``max_requests`` are split into several jobs under one local record, kept in
``$DESCRIBER_HOME/jobs`` (default ``~/.describer/jobs``): the jobs, every key's source and
media info, and the items that failed before submission. ``fetch`` downloads the result
files and writes the online mode's record schema, one record per source, per-key errors
included. Batch prices are half the interactive ones.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import secrets as random_ids
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from google import genai
from google.genai import types

from .config import MEDIA_RESOLUTIONS, Config
from .describe import Answer, gemini_errors, interpret, upload
from .errors import ConfigError, ErrorType, ItemError, ItemFailure, redact, secrets
from .output import Progress, Tally, open_output
from .pipeline import connect, load
from .prepare import ImageInfo, Prepared
from .records import Result
from .retries import call_with_retries
from .runner import bounded_map
from .sources import Source, SourceReader, SourceStats, fingerprint
from .throttle import ByteBudget, Lease

#: Gemini's limit for one batch input file (ai.google.dev/gemini-api/docs/batch-mode).
MAX_FILE_BYTES = 2_000_000_000
FINAL_STATES = frozenset(
    {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
)


def jobs_dir() -> Path:
    """Where local job records live: ``$DESCRIBER_HOME/jobs``, default ``~/.describer/jobs``."""
    home = Path(os.environ.get("DESCRIBER_HOME", "~/.describer")).expanduser()
    return home / "jobs"


@dataclass
class JobPart:
    """One Gemini batch job: its name (``batches/...``), input file, size and last state."""

    name: str
    input_file: str
    requests: int
    bytes: int
    state: str = "JOB_STATE_PENDING"
    result_file: str | None = None


@dataclass
class JobRecord:
    """The local record of one submission, saved as ``<id>.json`` beside ``<id>.keys.jsonl``
    (one ``{"key", "source", "image", "original", "file"}`` line per submitted item) and
    ``<id>.errors.jsonl`` (records of items that failed before submission)."""

    id: str
    created: str
    model: str
    prompt: str
    parts: list[JobPart] = field(default_factory=list)
    submitted: int = 0
    failed_before: int = 0
    skipped: int = 0  # folder entries that were not of a --media kind

    @classmethod
    def new(cls, config: Config) -> JobRecord:
        """A fresh record with a sortable id like ``20261121-120501-3f2a``."""
        now = dt.datetime.now(dt.UTC)
        job_id = f"{now:%Y%m%d-%H%M%S}-{random_ids.token_hex(2)}"
        return cls(job_id, now.isoformat(timespec="seconds"), config.model, config.prompt)

    def path(self, suffix: str) -> Path:
        """``<jobs dir>/<id><suffix>``."""
        return jobs_dir() / f"{self.id}{suffix}"

    def save(self) -> None:
        """Write the record atomically."""
        jobs_dir().mkdir(parents=True, exist_ok=True)
        tmp = self.path(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, self.path(".json"))

    @classmethod
    def load(cls, job: str) -> JobRecord:
        """The record named by its id or by one of its Gemini job names.

        Raises :class:`ConfigError` when there is no such record.
        """
        for path in _record_paths(job):
            data = json.loads(path.read_text())
            record = cls(**{k: v for k, v in data.items() if k != "parts"})
            record.parts = [JobPart(**part) for part in data["parts"]]
            if job in (record.id, *(part.name for part in record.parts)):
                return record
        raise ConfigError(f"no batch job {job!r} in {jobs_dir()} (see: describe-images batch list)")

    @property
    def state(self) -> str:
        """One state for the whole record: RUNNING or PENDING while any part is, else the
        final states of its parts joined with ``/`` (one when they agree)."""
        states = {part.state for part in self.parts} or {"JOB_STATE_SUCCEEDED"}
        for waiting in ("JOB_STATE_RUNNING", "JOB_STATE_PENDING"):
            if waiting in states:
                return waiting
        return "/".join(sorted(states))

    @property
    def done(self) -> bool:
        """True when every part reached a final state."""
        return all(part.state in FINAL_STATES for part in self.parts)


def _record_paths(job: str) -> Iterator[Path]:
    direct = jobs_dir() / f"{job}.json"
    if direct.exists():
        yield direct
        return
    yield from sorted(jobs_dir().glob("*.json"), reverse=True) if jobs_dir().exists() else []


def list_records() -> list[JobRecord]:
    """Every local job record, newest first."""
    paths = sorted(jobs_dir().glob("*.json"), reverse=True) if jobs_dir().exists() else []
    return [JobRecord.load(path.stem) for path in paths]


# ----- submit ---------------------------------------------------------------------------------


async def submit(
    sources: Sequence[str],
    config: Config,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_requests: int = 1_000_000,
) -> JobRecord:
    """Prepare every source and submit batch jobs for them; the saved local record.

    Raises :class:`ConfigError` for whole-run problems (no credentials, upload refused).
    """
    record = JobRecord.new(config)
    jobs_dir().mkdir(parents=True, exist_ok=True)
    reader = SourceReader(config.follow_symlinks, media=config.media)
    async with connect(config) as (session, client):
        writer = _RequestWriter(record, client, config, max_file_bytes, max_requests)
        with open(record.path(".errors.jsonl"), "w") as errors, writer:
            async for source, outcome, lease in _loaded(reader.iter(sources), session, config):
                if isinstance(outcome, Prepared):
                    await writer.add(source, outcome)
                    await lease.release()
                else:
                    errors.write(Result(source.ref, config.model, config.prompt, error=outcome)
                                 .to_line())  # fmt: skip
                    record.failed_before += 1
            await writer.finish()
    record.skipped = reader.stats.skipped
    record.save()
    return record


async def _loaded(
    sources: Iterator[Source], session: aiohttp.ClientSession, config: Config
) -> AsyncIterator[tuple[Source, Prepared | ItemError, Lease]]:
    """Each source loaded (or its error), with its lease on the byte budget: the caller
    releases it once the bytes are written out."""
    hidden = secrets(config.api_key)
    budget = ByteBudget(config.byte_budget)

    async def one(source: Source) -> tuple[Source, Prepared | ItemError, Lease]:
        lease = budget.lease()
        try:
            return source, await load(source, session, config, lease), lease
        except ItemFailure as failure:
            await lease.release()
            return source, redact(failure.error, hidden), lease

    async for item in bounded_map(sources, one, config.window):
        yield item


class _RequestWriter:
    """Writes request lines into part files; uploads each full part and creates its job."""

    def __init__(
        self,
        record: JobRecord,
        client: genai.Client,
        config: Config,
        max_bytes: int,
        max_requests: int,
    ) -> None:
        self._record, self._client, self._config = record, client, config
        self._max_bytes, self._max_requests = max_bytes, max_requests
        self._keys = open(record.path(".keys.jsonl"), "w")  # noqa: SIM115 - closed in __exit__
        self._part: Any = None
        self._part_path: Path | None = None
        self._part_requests = 0
        self._part_bytes = 0

    def __enter__(self) -> _RequestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._keys.close()
        if self._part is not None:
            self._part.close()

    async def add(self, source: Source, prepared: Prepared) -> None:
        """Add one item's request (uploading its media first when over the inline limit)."""
        key = f"k{self._record.submitted:09d}"
        file_name, part = await self._media(prepared)
        line = json.dumps({"key": key, "request": request_body(part, self._config)}) + "\n"
        data = line.encode()
        if self._part is not None and (
            self._part_bytes + len(data) > self._max_bytes
            or self._part_requests >= self._max_requests
        ):
            await self._submit_part()
        self._open_part()
        self._part.write(data)
        self._part_bytes += len(data)
        self._part_requests += 1
        self._record.submitted += 1
        entry = {"key": key, "source": source.ref, "image": prepared.image.to_json(),
                 "original": prepared.original.to_json() if prepared.original else None,
                 "file": file_name}  # fmt: skip
        self._keys.write(json.dumps(entry) + "\n")

    async def finish(self) -> None:
        """Submit the last part."""
        if self._part is not None and self._part_requests:
            await self._submit_part()

    async def _media(self, prepared: Prepared) -> tuple[str | None, dict[str, Any]]:
        mime = prepared.image.mime_type
        if prepared.image.bytes <= self._config.inline_limit:
            data = base64.b64encode(prepared.data).decode("ascii")
            return None, {"inlineData": {"mimeType": mime, "data": data}}
        uploaded = await self._retried(lambda: upload(self._client, prepared))
        return uploaded.name, {"fileData": {"fileUri": uploaded.uri, "mimeType": mime}}

    def _open_part(self) -> None:
        if self._part is None:
            self._part_path = self._record.path(f".part{len(self._record.parts)}.jsonl")
            self._part = open(self._part_path, "wb")  # noqa: SIM115 - closed in _submit_part
            self._part_bytes = self._part_requests = 0

    async def _submit_part(self) -> None:
        assert self._part is not None and self._part_path is not None
        self._part.close()
        self._part = None
        path = self._part_path
        settings = types.UploadFileConfig(mime_type="jsonl", display_name=path.name)
        uploaded = await self._retried(lambda: _upload_file(self._client, path, settings))
        job = await self._retried(lambda: _create_job(self._client, self._config, uploaded, path))
        self._record.parts.append(
            JobPart(
                job.name or "",
                uploaded.name or "",
                self._part_requests,
                self._part_bytes,
                _state(job),
            )
        )
        self._record.save()
        path.unlink()  # the uploaded copy is the one that counts

    async def _retried(self, call: Any) -> Any:
        try:
            return await call_with_retries(call, self._config.max_attempts, self._config.retry_wait)
        except ItemFailure as failure:
            message = redact(failure.error, secrets(self._config.api_key)).message
            raise ConfigError(f"batch submission failed: {message}") from None


async def _upload_file(
    client: genai.Client, path: Path, settings: types.UploadFileConfig
) -> types.File:
    with gemini_errors("uploading the request file timed out"):
        return await client.aio.files.upload(file=str(path), config=settings)


async def _create_job(
    client: genai.Client, config: Config, uploaded: types.File, path: Path
) -> types.BatchJob:
    settings = types.CreateBatchJobConfig(display_name=f"describer {path.stem}")
    with gemini_errors("creating the batch job timed out"):
        return await client.aio.batches.create(
            model=config.model, src=uploaded.name or "", config=settings
        )


def request_body(media: dict[str, Any], config: Config) -> dict[str, Any]:
    """One ``GenerateContentRequest`` as JSON: media first, then the prompt; the run's
    generation settings."""
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [media, {"text": config.prompt}]}],
    }
    generation: dict[str, Any] = {}
    if config.temperature is not None:
        generation["temperature"] = config.temperature
    if config.max_output_tokens is not None:
        generation["maxOutputTokens"] = config.max_output_tokens
    if config.media_resolution:
        generation["mediaResolution"] = MEDIA_RESOLUTIONS[config.media_resolution]
    if generation:
        body["generationConfig"] = generation
    if config.system_instruction:
        body["systemInstruction"] = {"parts": [{"text": config.system_instruction}]}
    return body


# ----- status, cancel, fetch ------------------------------------------------------------------


async def refresh(record: JobRecord, config: Config) -> JobRecord:
    """Ask Gemini for the state of every unfinished part; save and return the record."""
    async with connect(config) as (_, client):
        for part in record.parts:
            if part.state not in FINAL_STATES:
                job = await _get_job(client, config, part.name)
                part.state = _state(job)
                part.result_file = job.dest.file_name if job.dest else None
    record.save()
    return record


async def cancel(record: JobRecord, config: Config) -> JobRecord:
    """Cancel every unfinished part; the refreshed record."""
    async with connect(config) as (_, client):
        for part in record.parts:
            if part.state not in FINAL_STATES:
                with gemini_errors("cancelling the batch job timed out"):
                    await client.aio.batches.cancel(name=part.name)
    return await refresh(record, config)


async def _get_job(client: genai.Client, config: Config, name: str) -> types.BatchJob:
    async def get() -> types.BatchJob:
        with gemini_errors("asking for the batch job timed out"):
            return await client.aio.batches.get(name=name)

    try:
        return await call_with_retries(get, config.max_attempts, config.retry_wait)
    except ItemFailure as failure:
        raise ConfigError(f"cannot get batch job {name}: {failure.error.message}") from None


def _state(job: types.BatchJob) -> str:
    state = job.state
    return str(getattr(state, "value", state) or "JOB_STATE_PENDING")


async def fetch(record: JobRecord, config: Config) -> AsyncIterator[Result]:
    """One record per source of the submission: the answers of finished parts, per-key
    errors, the items that failed before submission, and errors for parts that did not
    succeed. ``record`` must be final as of its last :func:`refresh` (its parts' states and
    result files are read from it). Deletes the media uploaded for the submission once read."""
    async with connect(config) as (_, client):
        answers: dict[str, dict[str, Any]] = {}
        part_errors: dict[str, str] = {}
        for index, part in enumerate(record.parts):
            await _collect(client, part, index, answers, part_errors)
        for result in _results(record, answers, part_errors):
            yield result
        await _delete_uploads(client, record)
    for data in _jsonl(record.path(".errors.jsonl")):
        yield _result_from_json(data)


async def _collect(
    client: genai.Client,
    part: JobPart,
    index: int,
    answers: dict[str, dict[str, Any]],
    part_errors: dict[str, str],
) -> None:
    if part.result_file:
        with gemini_errors("downloading the batch results timed out"):
            data = await client.aio.files.download(file=part.result_file)
        for raw in data.splitlines():
            if raw.strip():
                line = json.loads(raw)
                answers[str(line.get("key"))] = line
    if part.state != "JOB_STATE_SUCCEEDED":
        part_errors[str(index)] = f"batch job {part.name} ended {part.state}"


def _results(
    record: JobRecord, answers: dict[str, dict[str, Any]], part_errors: dict[str, str]
) -> Iterator[Result]:
    bounds = _part_bounds(record)
    for entry in _jsonl(record.path(".keys.jsonl")):
        line = answers.get(entry["key"])
        part_error = part_errors.get(str(_part_of(entry["key"], bounds)))
        yield _keyed_result(record, entry, line, part_error)


def _part_bounds(record: JobRecord) -> list[int]:
    bounds, total = [], 0
    for part in record.parts:
        total += part.requests
        bounds.append(total)
    return bounds


def _part_of(key: str, bounds: list[int]) -> int:
    number = int(key[1:])
    return next((i for i, end in enumerate(bounds) if number < end), len(bounds) - 1)


def _keyed_result(
    record: JobRecord, entry: dict[str, Any], line: dict[str, Any] | None, part_error: str | None
) -> Result:
    image = _info(entry["image"])
    original = _info(entry["original"]) if entry.get("original") else None
    base = Result(entry["source"], record.model, record.prompt, image=image, original=original)
    if line is None:
        message = part_error or "no answer for this key in the batch results"
        return _with_error(base, ItemError(ErrorType.API_ERROR, message))
    if line.get("error"):
        error = line["error"]
        message = f"{error.get('code')} {error.get('status', '')}: {error.get('message', '')}"
        return _with_error(base, ItemError(ErrorType.API_ERROR, message.replace("  ", " ")))
    response = types.GenerateContentResponse.model_validate(line.get("response") or {})
    answer: Answer = interpret(response, None)
    return Result.described(
        entry["source"], record.model, record.prompt, Prepared(b"", image, original), answer, 1
    )


def _with_error(result: Result, error: ItemError) -> Result:
    return replace(result, error=error, attempts=1)


def _info(data: dict[str, Any]) -> ImageInfo:
    return ImageInfo(data["mime_type"], data.get("width"), data.get("height"), data["bytes"],
                     data.get("pages", 0))  # fmt: skip


def _result_from_json(data: dict[str, Any]) -> Result:
    error = data.get("error") or {}
    item_error = ItemError(ErrorType(error.get("type", "api_error")), error.get("message", ""))
    return Result(data["source"], data["model"], data["prompt"], error=item_error)


async def _delete_uploads(client: genai.Client, record: JobRecord) -> None:
    for entry in _jsonl(record.path(".keys.jsonl")):
        name = entry.get("file")
        if name:
            try:
                with gemini_errors("deleting an uploaded file timed out"):
                    await client.aio.files.delete(name=name)
            except ItemFailure:
                pass  # Gemini deletes uploads after 48 hours anyway


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of a JSON-lines file, read lazily."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


async def wait_until_done(
    record: JobRecord, config: Config, interval: float, report: Callable[[JobRecord], None]
) -> JobRecord:
    """Poll every ``interval`` seconds until every part is final; ``report`` sees each change
    of state. Returns the final record."""
    last = ""
    while True:
        record = await refresh(record, config)
        if record.state != last:
            report(record)
            last = record.state
        if record.done:
            return record
        await asyncio.sleep(interval)


async def fetch_to(record: JobRecord, config: Config) -> int:
    """Write the submission's records to ``config.output`` (resumed like the online mode) or
    stdout; print the summary with Batch API prices. Exit code 0, or 1 when some failed.

    Raises :class:`ConfigError` while a part is not final yet.
    """
    if not record.done:
        record = await refresh(record, config)
    if not record.done:
        raise ConfigError(
            f"batch {record.id} is {record.state}; fetch it when it is final (or add --wait)"
        )
    tally = Tally(model=record.model, batch=True)
    with open_output(config.output, config.overwrite, record.model, record.prompt) as output:
        async for result in fetch(record, config):
            if fingerprint(result.source) not in output.resume.done:
                output.write(result)
                tally.add(result)
    Progress(False).write(tally.summary(SourceStats(skipped=record.skipped)))
    return 1 if tally.failed else 0
