"""Output stage: JSON lines on stdout or ``-o FILE``; progress and the summary on stderr."""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tqdm import tqdm

from .errors import ConfigError
from .records import Result
from .sources import SourceStats


@contextlib.contextmanager
def open_output(path: Path | None) -> Iterator[IO[str]]:
    """The stream records go to: ``path`` (created or truncated) or stdout.

    Raises :class:`ConfigError` when the file cannot be opened for writing.
    """
    if path is None:
        yield sys.stdout
        return
    try:
        stream = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    with stream:
        yield stream


def write_record(stream: IO[str], result: Result) -> None:
    """Write one record as one line and flush it, so readers see it at once."""
    stream.write(result.to_line())
    stream.flush()


@dataclass
class Tally:
    """Running totals for the summary line."""

    described: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
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
        if sources.symlinks_skipped:
            parts.append(f"{sources.symlinks_skipped} symlinks outside the folder not followed")
        parts.append(f"tokens {self.input_tokens:,} in / {self.output_tokens:,} out")
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
