"""``batch fetch``: one :class:`~describer.model.Result` per source of a submission.

Answers come from the jobs' result files (``{"key", "response"}`` or ``{"key", "error"}``
lines, read through the same response reader as online calls), joined with the keys file
(source and media of each key); items that failed before submission come back from the
errors file through :meth:`Result.from_json`. A submission made with ``--schema`` has its
answers checked against it, as online (``data``, or ``invalid_output``: no second call is
made here). This module yields results only: writing them is the output stage's job.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

from .. import gemini
from ..model import ErrorType, ItemError, Media, Result
from ..schema import AnswerCheck
from .store import JobRecord, read_jsonl

#: The error of a key that no created job holds: its request was never sent.
NOT_SENT = "not submitted: the submission stopped before this request was sent"


async def results(record: JobRecord, connection: gemini.Connection) -> AsyncIterator[Result]:
    """One record per source of the submission: the answers of finished parts, per-key
    errors, the items that failed before submission, and errors for parts that did not
    succeed. ``record`` must be final as of its last refresh (its parts' states and result
    files are read from it). Deletes the media uploaded for the submission once read.
    Raises :class:`~describer.errors.ItemFailure` when a result file cannot be downloaded."""
    async for result in _results(record, connection):
        yield replace(result, structured=True) if record.schema is not None else result


async def _results(record: JobRecord, connection: gemini.Connection) -> AsyncIterator[Result]:
    answers: dict[str, dict[str, Any]] = {}
    part_errors: dict[int, str] = {}
    for index, part in enumerate(record.parts):
        if part.result_file:
            data = await gemini.download_file(connection.client, part.result_file)
            answers.update(_answer_lines(data))
        if part.state != "JOB_STATE_SUCCEEDED":
            part_errors[index] = f"batch job {part.name} ended {part.state}"
    for result in _keyed_results(record, answers, part_errors):
        yield result
    for name in _uploads(record):
        await gemini.delete_file(connection.client, name)
    for data in read_jsonl(record.path(".errors.jsonl")):
        yield Result.from_json(data)


def _answer_lines(data: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    for raw in data.splitlines():
        if raw.strip():
            line = json.loads(raw)
            yield str(line.get("key")), line


def _keyed_results(
    record: JobRecord, answers: dict[str, dict[str, Any]], part_errors: dict[int, str]
) -> Iterator[Result]:
    bounds = _part_bounds(record)
    part_errors = {**part_errors, len(bounds): NOT_SENT}
    check = AnswerCheck(record.schema) if record.schema is not None else None
    for entry in read_jsonl(record.path(".keys.jsonl")):
        part_error = part_errors.get(_part_of(entry["key"], bounds))
        result = _keyed_result(record, entry, answers.get(entry["key"]), part_error, check)
        yield replace(result, id=entry.get("id"), meta=entry.get("meta"))


def _part_bounds(record: JobRecord) -> list[int]:
    bounds, total = [], 0
    for part in record.parts:
        total += part.requests
        bounds.append(total)
    return bounds


def _part_of(key: str, bounds: list[int]) -> int:
    """The index of the part that holds ``key``; ``len(bounds)`` for a key past every part
    (a record written before submissions cleaned up after a failed part)."""
    number = int(key[1:])
    return next((i for i, end in enumerate(bounds) if number < end), len(bounds))


def _keyed_result(
    record: JobRecord,
    entry: dict[str, Any],
    line: dict[str, Any] | None,
    part_error: str | None,
    check: AnswerCheck | None,
) -> Result:
    media = Media.from_json(entry["image"])
    original = Media.from_json(entry["original"]) if entry.get("original") else None
    if line is None:
        message = part_error or "no answer for this key in the batch results"
        error = ItemError(ErrorType.API_ERROR, message)
        return Result(entry["source"], record.model, record.prompt, error=error, media=media,
                      original=original, attempts=0 if message == NOT_SENT else 1)  # fmt: skip
    if line.get("error"):
        return Result(entry["source"], record.model, record.prompt, error=_line_error(line),
                      media=media, original=original, attempts=1)  # fmt: skip
    answer = gemini.interpret_json(line.get("response") or {})
    if check is not None:
        answer = check.check(answer)
    return Result.described(entry["source"], record.model, record.prompt, answer, media, original)


def _line_error(line: dict[str, Any]) -> ItemError:
    error = line["error"]
    message = f"{error.get('code')} {error.get('status', '')}: {error.get('message', '')}"
    return ItemError(ErrorType.API_ERROR, message.replace("  ", " "))


def _uploads(record: JobRecord) -> Iterator[str]:
    for entry in read_jsonl(record.path(".keys.jsonl")):
        if entry.get("file"):
            yield entry["file"]
