"""Local records of Batch API submissions, in ``$DESCRIBER_HOME/jobs`` (default
``~/.describer/jobs``), so ``status``, ``fetch`` and ``cancel`` work from any later shell.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets as random_ids
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, describer_home
from ..errors import ConfigError

#: Batch job states after which nothing changes (google-genai ``types.JobState``).
FINAL_STATES = frozenset(
    {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
)


def jobs_dir() -> Path:
    """Where local job records live: ``$DESCRIBER_HOME/jobs``, default ``~/.describer/jobs``."""
    return describer_home() / "jobs"


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
    ``<id>.errors.jsonl`` (records of items that failed before submission, and of items not
    submitted because an upload or job creation failed part-way)."""

    id: str
    created: str
    model: str
    prompt: str
    parts: list[JobPart] = field(default_factory=list)
    submitted: int = 0
    failed_before: int = 0
    skipped: int = 0  # folder entries that were not of a --media kind
    not_submitted: int = 0  # items not sent because the submission failed part-way
    failure: str | None = None  # why it failed (the upload or job creation error), if it did
    schema: dict[str, Any] | None = None  # --schema's JSON Schema: fetch checks answers by it

    @classmethod
    def new(cls, config: Config) -> JobRecord:
        """A fresh record with a sortable id like ``20261121-120501-3f2a``."""
        now = dt.datetime.now(dt.UTC)
        job_id = f"{now:%Y%m%d-%H%M%S}-{random_ids.token_hex(2)}"
        return cls(job_id, now.isoformat(timespec="seconds"), config.model, config.prompt,
                   schema=config.schema)  # type: ignore[arg-type]

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
        return self.unfinished == 0

    @property
    def unfinished(self) -> int:
        """How many parts are not in a final state (PENDING or RUNNING as last seen)."""
        return sum(part.state not in FINAL_STATES for part in self.parts)


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


def leftovers() -> dict[str, list[Path]]:
    """Files in the jobs folder that no record names (a submission killed before its first
    job existed, or by a describer older than the clean-up of failed submissions): their
    files by submission id, newest first."""
    found: dict[str, list[Path]] = {}
    if jobs_dir().exists():
        for path in sorted(jobs_dir().iterdir(), reverse=True):
            job_id = path.name.split(".", 1)[0]
            if not (jobs_dir() / f"{job_id}.json").exists():
                found.setdefault(job_id, []).append(path)
    return found


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of a JSON-lines file (a record's keys or errors file), read lazily."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
