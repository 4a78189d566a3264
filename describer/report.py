"""What a run tells the person at the terminal, on stderr: the progress bar, notices, and the
summary line (counts, tokens, estimated cost, rate)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from tqdm import tqdm

from .config import DEFAULT_SERVICE_TIER
from .cost import describe_cost
from .model import Result
from .sources import SourceStats


@dataclass
class Tally:
    """Running totals for the summary line. Tokens, and so the cost, are those of this
    run's model calls: a record with ``cached: true`` (an answer paid for before) counts in
    ``described`` and ``from_cache``, and its usage is not counted again."""

    described: int = 0
    from_cache: int = 0  # described records whose answer came from the result cache
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0  # answer plus thinking, as billed
    thinking_tokens: int = 0
    cached_tokens: int = 0
    calls_with_cache: int = 0  # records whose calls read a context cache (cached_tokens > 0)
    storage_usd: float = 0.0  # the run's context cache storage, added to the estimate
    embedded: int = 0
    embedding_failed: int = 0
    model: str = ""
    batch: bool = False  # Batch API prices (half)
    tier: str = DEFAULT_SERVICE_TIER  # the --service-tier whose prices apply (flex: half)
    media: frozenset[str] = frozenset({"image"})  # the --media kinds taken, for the wording
    started: float = field(default_factory=time.perf_counter)

    def add(self, result: Result) -> None:
        """Count one record (the usage of a ``cached`` one is not billed again)."""
        if result.error is None:
            self.described += 1
        else:
            self.failed += 1
            self.errors[str(result.error.type)] += 1
        if result.cached:
            self.from_cache += 1
        elif result.usage is not None:
            self.input_tokens += result.usage.input_tokens
            self.output_tokens += result.usage.output_tokens
            self.thinking_tokens += result.usage.thinking_tokens
            self.cached_tokens += result.usage.cached_tokens
            self.calls_with_cache += result.usage.cached_tokens > 0
        if result.embedding is not None:
            self.embedded += 1
        if result.embedding_error is not None:
            self.embedding_failed += 1

    def summary(self, sources: SourceStats, interrupted: bool = False) -> str:
        """One line: described (those from the cache named), failed (by type), skipped,
        tokens and cost of this run's calls, elapsed, rate (images/s, or items/s when
        ``media`` takes more than images)."""
        elapsed = time.perf_counter() - self.started
        done = self.described + self.failed
        failed = f"{self.failed} failed"
        if self.errors:
            failed += " (" + ", ".join(f"{n} {kind}" for kind, n in self.errors.most_common()) + ")"
        noun = "images" if self.media == {"image"} else "items"
        kinds = "/".join(sorted(self.media, key=("image", "pdf", "audio", "video").index))
        taken = "images" if noun == "images" else kinds
        described = f"{self.described} described"
        if self.from_cache:
            described += f" ({self.from_cache} from cache)"
        parts = [described, failed, f"{sources.skipped} skipped (not {taken})"]
        if sources.duplicates:
            parts.append(f"{sources.duplicates} duplicates")
        if sources.already_done:
            parts.append(f"{sources.already_done} already described (resumed)")
        if sources.symlinks_skipped:
            parts.append(f"{sources.symlinks_skipped} symlinks outside the folder not followed")
        if self.embedded or self.embedding_failed:
            parts.append(f"{self.embedded} embedded, {self.embedding_failed} embeddings failed")
        parts.append(self._tokens())
        if self.model:
            parts.append(describe_cost(self.model, self.input_tokens, self.output_tokens,
                                       self.batch, self.cached_tokens, self.tier,
                                       self.storage_usd))  # fmt: skip
        rate = done / elapsed if elapsed > 0 else 0.0
        parts.append(f"{elapsed:.1f} s, {rate:.1f} {noun}/s")
        head = "describer: interrupted: " if interrupted else "describer: "
        return head + ", ".join(parts)


    def _tokens(self) -> str:
        cached = f" ({self.cached_tokens:,} cached)" if self.cached_tokens else ""
        thinking = f" ({self.thinking_tokens:,} thinking)" if self.thinking_tokens else ""
        return (f"tokens {self.input_tokens:,} in{cached} / {self.output_tokens:,} out"
                f"{thinking}")  # fmt: skip


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
