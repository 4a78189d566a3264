"""Output stage: one JSON line per record, on stdout or appended to ``-o FILE`` (resumed).

:func:`open_sink` opens where records go and reads what an earlier run left there;
:func:`write_all` is the one write loop, used by ``run`` and by ``batch fetch``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .errors import ConfigError
from .model import Result
from .report import Progress, Tally
from .sources import fingerprint


@dataclass
class Resume:
    """What an earlier run left in ``-o FILE``.

    ``done``: fingerprints of sources with a successful record (skipped this time);
    ``torn``: a torn last line (a killed run) was dropped;
    ``other_settings``: some kept records were made with another model or prompt.
    """

    done: set[bytes] = field(default_factory=set)
    torn: bool = False
    other_settings: bool = False


class Sink:
    """Where records go: stdout, or ``-o FILE`` appended to one whole line per write."""

    def __init__(self, stream: IO[str] | None, fd: int | None, resume: Resume) -> None:
        self.resume = resume
        self._stream = stream
        self._fd = fd

    def write(self, result: Result) -> None:
        """Write one record as one line, at once: flushed to stdout, or a single ``write(2)``
        to the file, so a killed run leaves at most one torn last line."""
        line = result.to_line()
        if self._fd is None:
            assert self._stream is not None
            self._stream.write(line)
            self._stream.flush()
            return
        data = memoryview(line.encode("utf-8", "surrogateescape"))
        while data:
            data = data[os.write(self._fd, data) :]

    def already_done(self, result: Result) -> bool:
        """Whether the file already holds a successful record for ``result.source``."""
        return fingerprint(result.source) in self.resume.done


@contextlib.contextmanager
def open_sink(
    path: Path | None, overwrite: bool = False, model: str = "", prompt: str = ""
) -> Iterator[Sink]:
    """Open the run's output: stdout, or ``path`` resumed (appended) unless ``overwrite``.

    Raises :class:`ConfigError` when the file cannot be read or written, or holds a line
    that is not a record (other than a torn last line, which is dropped).
    """
    if path is None:
        yield Sink(sys.stdout, None, Resume())
        return
    try:
        resume = Resume() if overwrite else scan_output(path, model, prompt)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_APPEND)
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    try:
        yield Sink(None, fd, resume)
    finally:
        os.close(fd)


def scan_output(path: Path, model: str = "", prompt: str = "") -> Resume:
    """Read an earlier run's records; truncate the file before a torn last line."""
    resume = Resume()
    if not path.exists():
        return resume
    kept_bytes = 0
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.endswith(b"\n"):
                resume.torn = True
                break
            _remember(resume, _parse(line, path, number), model, prompt)
            kept_bytes += len(line)
    if resume.torn:
        os.truncate(path, kept_bytes)
    return resume


def _parse(line: bytes, path: Path, number: int) -> dict[str, object]:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("source"), str):
        raise ConfigError(
            f"{path} line {number} is not a describer record; use --overwrite or another -o"
        )
    return record


def _remember(resume: Resume, record: dict[str, object], model: str, prompt: str) -> None:
    if record.get("error") is None:
        resume.done.add(fingerprint(str(record["source"])))
        if (model and record.get("model") != model) or (prompt and record.get("prompt") != prompt):
            resume.other_settings = True


async def write_all(
    results: AsyncIterable[Result], sink: Sink, tally: Tally, progress: Progress | None = None
) -> None:
    """Write each result as it comes (those already described in the sink are dropped),
    counting it in ``tally`` and on ``progress``."""
    async for result in results:
        if sink.already_done(result):
            continue
        sink.write(result)
        tally.add(result)
        if progress is not None:
            progress.update(tally)
