"""Batch jobs as the Batch API reports them: states, request lines, Operation JSON.

A job's lines come from a JSONL input file (``{"key": str, "request":
GenerateContentRequest}`` per line) or from inline requests (``{"request", "metadata"}``);
a line that is not such an object becomes a 400 error for that line only. Results are
``{"key"|"metadata", "response": GenerateContentResponse}`` or ``{..., "error": {"code",
"message", "status"}}``, in input order (Batch API guide: each output line is a
GenerateContentResponse or a status object, keyed by the input line's key).

The Operation shape (``name``, ``metadata.{@type, model, displayName, createTime,
updateTime, endTime, batchStats, state, output}``, ``done``, ``response``, ``error``) is what
google-genai 3.4.0 reads: ``BATCH_STATE_X`` becomes ``JobState.JOB_STATE_X`` and
``metadata.output.responsesFile`` becomes ``job.dest.file_name`` (``batchStats`` and
``error`` are sent but not parsed by the SDK).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from .wire import MSG_INVALID_JSON, ApiError, now_stamp

BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = BATCH_TYPE + "Output"
PENDING, RUNNING = "BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"
SUCCEEDED, FAILED = "BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED"
CANCELLED, EXPIRED = "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED})


@dataclass
class Line:
    """One batch request: its key (file input) or metadata (inline), request or parse error."""

    key: str | None
    metadata: Any
    request: dict[str, Any] | None
    error: ApiError | None = None

    def result(self, answer: dict[str, Any]) -> dict[str, Any]:
        """This line's result entry: ``answer`` ({"response"} or {"error"}) with the line's
        key or metadata, as the Batch API writes it."""
        if self.metadata is not None:
            return {**answer, "metadata": self.metadata}
        return {"key": self.key, **answer} if self.key is not None else answer


@dataclass
class BatchJob:
    """One batch job and its state (``emu.batch.jobs[name]``).

    polls: batches.get calls so far; running_from: polls before RUNNING was first seen;
    since: time.monotonic() when the current state began; results: the result entries
    (``{"key"|"metadata", "response"|"error"}``) once SUCCEEDED; result_file: the Files API
    name of the results JSONL (file input only).
    """

    name: str
    model: str
    display_name: str
    lines: list[Line]
    src_file: str | None
    input_bytes: int
    state: str = PENDING
    polls: int = 0
    running_from: int = 0
    since: float = field(default_factory=time.monotonic)
    create_time: str = field(default_factory=now_stamp)
    update_time: str = ""
    end_time: str | None = None
    result_file: str | None = None
    results: list[dict[str, Any]] | None = None
    error: dict[str, Any] | None = None

    def enter(self, state: str) -> None:
        """Move to ``state`` now (sets update/end times)."""
        self.state, self.since, self.update_time = state, time.monotonic(), now_stamp()
        if state in TERMINAL:
            self.end_time = self.update_time

    def counts(self) -> dict[str, str]:
        """batchStats: request/successful/failed/pending counts (int64 -> strings)."""
        results = self.results or []
        failed = sum(1 for r in results if "error" in r)
        done = len(results)
        return {"requestCount": str(len(self.lines)), "successfulRequestCount": str(done - failed),
                "failedRequestCount": str(failed), "pendingRequestCount":
                str(0 if self.state in TERMINAL else len(self.lines) - done)}

    def output(self) -> dict[str, Any] | None:
        """GenerateContentBatchOutput once SUCCEEDED: responsesFile or inlinedResponses."""
        if self.state != SUCCEEDED:
            return None
        if self.result_file:
            return {"responsesFile": self.result_file}
        return {"inlinedResponses": {"inlinedResponses": self.results or []}}

    def operation(self) -> dict[str, Any]:
        """The long-running Operation Gemini answers for create / get / list."""
        meta: dict[str, Any] = {
            "@type": BATCH_TYPE, "model": f"models/{self.model}",
            "displayName": self.display_name, "createTime": self.create_time,
            "updateTime": self.update_time or self.create_time,
            "batchStats": self.counts(), "state": self.state, "name": self.name,
        }
        if self.src_file:
            meta["inputConfig"] = {"fileName": self.src_file}
        if self.end_time:
            meta["endTime"] = self.end_time
        op: dict[str, Any] = {"name": self.name, "metadata": meta}
        output = self.output()
        if output is not None:
            meta["output"] = output
            op["response"] = {"@type": OUTPUT_TYPE, **output}
        if self.state in TERMINAL:
            op["done"] = True
        if self.error is not None:
            op["error"] = self.error
        return op


def parse_jsonl(data: bytes) -> list[Line]:
    """Batch input lines ``{"key": str, "request": GenerateContentRequest}`` (blank lines
    skipped); a line that is not such a JSON object becomes a 400 line error."""
    lines: list[Line] = []
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            obj = None
        request = obj.get("request") if isinstance(obj, dict) else None
        key = obj.get("key") if isinstance(obj, dict) else None
        key = None if key is None else str(key)
        if isinstance(request, dict):
            lines.append(Line(key, None, request))
        else:
            lines.append(Line(key, None, None, ApiError(400, MSG_INVALID_JSON)))
    return lines


def inline_lines(requests: Any) -> list[Line]:
    """Inline ``{"requests": [{"request": ..., "metadata": ...}]}`` entries as lines."""
    items = requests.get("requests") if isinstance(requests, dict) else None
    lines: list[Line] = []
    for item in items if isinstance(items, list) else []:
        request = item.get("request") if isinstance(item, dict) else None
        metadata = item.get("metadata") if isinstance(item, dict) else None
        error = None if isinstance(request, dict) else ApiError(400, "Request is missing.")
        lines.append(Line(None, metadata, request if error is None else None, error))
    return lines


def state_name(state: str) -> str:
    """Normalise a state: EXPIRED, JOB_STATE_EXPIRED, BATCH_STATE_EXPIRED -> BATCH_STATE_EXPIRED."""
    bare = str(state).upper().removeprefix("JOB_STATE_").removeprefix("BATCH_STATE_")
    return f"BATCH_STATE_{bare}"
