"""Output stage: JSON lines on stdout or ``-o FILE``; progress and the summary on stderr."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tqdm import tqdm

from .cost import describe_cost
from .errors import ConfigError
from .records import Result
from .sources import SourceStats, fingerprint


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


class Output:
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


@contextlib.contextmanager
def open_output(
    path: Path | None, overwrite: bool = False, model: str = "", prompt: str = ""
) -> Iterator[Output]:
    """Open the run's output: stdout, or ``path`` resumed (appended) unless ``overwrite``.

    Raises :class:`ConfigError` when the file cannot be read or written, or holds a line
    that is not a record (other than a torn last line, which is dropped).
    """
    if path is None:
        yield Output(sys.stdout, None, Resume())
        return
    try:
        resume = Resume() if overwrite else scan_output(path, model, prompt)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_APPEND)
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    try:
        yield Output(None, fd, resume)
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


@dataclass
class Tally:
    """Running totals for the summary line."""

    described: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    embedded: int = 0
    embedding_failed: int = 0
    model: str = ""
    batch: bool = False  # Batch API prices (half)
    started: float = field(default_factory=time.perf_counter)

    def add(self, result: Result) -> None:
        """Count one record."""
        if result.error is None:
            self.described += 1
        else:
            self.failed += 1
            self.errors[str(result.error.type)] += 1
        if result.usage is not None:
            self.input_tokens += result.usage.input_tokens
            self.output_tokens += result.usage.output_tokens
        if result.embedding is not None:
            self.embedded += 1
        if result.embedding_error is not None:
            self.embedding_failed += 1

    def summary(self, sources: SourceStats, interrupted: bool = False) -> str:
        """One line: described, failed (by type), skipped, tokens, elapsed, images/s."""
        elapsed = time.perf_counter() - self.started
        done = self.described + self.failed
        failed = f"{self.failed} failed"
        if self.errors:
            failed += " (" + ", ".join(f"{n} {kind}" for kind, n in self.errors.most_common()) + ")"
        parts = [f"{self.described} described", failed, f"{sources.skipped} skipped (not images)"]
        if sources.duplicates:
            parts.append(f"{sources.duplicates} duplicates")
        if sources.already_done:
            parts.append(f"{sources.already_done} already described (resumed)")
        if sources.symlinks_skipped:
            parts.append(f"{sources.symlinks_skipped} symlinks outside the folder not followed")
        if self.embedded or self.embedding_failed:
            parts.append(f"{self.embedded} embedded, {self.embedding_failed} embeddings failed")
        parts.append(f"tokens {self.input_tokens:,} in / {self.output_tokens:,} out")
        if self.model:
            cost = describe_cost(self.model, self.input_tokens, self.output_tokens, self.batch)
            parts.append(cost)
        parts.append(f"{elapsed:.1f} s, {done / elapsed if elapsed > 0 else 0.0:.1f} images/s")
        head = "describer: interrupted: " if interrupted else "describer: "
        return head + ", ".join(parts)


class Progress:
    """A tqdm bar on stderr, or nothing when disabled (stderr not a terminal by default)."""

    def __init__(self, enabled: bool | None) -> None:
        show = sys.stderr.isatty() if enabled is None else enabled
        self._bar = tqdm(unit="img", file=sys.stderr, dynamic_ncols=True) if show else None

    def update(self, tally: Tally) -> None:
        """Advance by one finished item."""
        if self._bar is not None:
            self._bar.set_postfix(failed=tally.failed, refresh=False)
            self._bar.update(1)

    def write(self, line: str) -> None:
        """Print a line on stderr without breaking the bar."""
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()
