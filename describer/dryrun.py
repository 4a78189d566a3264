"""``describe --dry-run``: what a describe run would cost, from its sources alone. Nothing is
downloaded, no model is called (so no key is needed), nothing is written.

The sources are read as a run reads them (:class:`~describer.sources.SourceReader`: lists,
folders, files, stdin; repeats dropped; with ``-o FILE`` the sources it already describes
are skipped). Input tokens per item are :func:`describer.limits.estimate_tokens`'s: on
Gemini 3 an image costs a fixed number of tokens per media resolution, known without the
image; on Gemini 2.5 and older it follows the size, read from a local file's header (Pillow
opens lazily: nothing is decoded) and assumed for a URL (``limits.tokens.ASSUMED_IMAGE_SIZE``). The
output is an assumption (:func:`describer.cost.assumed_output`) and is labelled as one.
Examples and ``--context`` documents are counted the same way (local files read, URLs
assumed images) and priced as a run would send them: from one context cache (cached
price plus storage) or inline (:mod:`describer.context.plan`); the Batch API inline.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from PIL import Image

from .config import DEFAULT_SERVICE_TIER, Config, model_family
from .context.examples import read_examples
from .context.plan import inline_reason, ttl_text, with_ttl
from .cost import AssumedOutput, assumed_output, context_cache_costs, describe_cost, estimate
from .errors import ConfigError, ItemFailure
from .formats import RASTER, SNIFF_BYTES, Format, accepted, sniff
from .limits import estimate_tokens, request_tokens
from .limits.tokens import (
    ASSUMED_IMAGE_SIZE,
    GEMINI3_DEFAULT_RESOLUTION,
    RESOLUTION_IMAGE_TOKENS,
    request_resolution,
)
from .model import Media, Source, SourceKind
from .prepare import plan  # importing prepare also lets Pillow open HEIC/HEIF headers
from .resume import scan
from .sources import SourceReader, SourceStats, classify
from .tables.columns import journal_of

HEAD = "describer: dry run: "


@dataclass
class DryRun:
    """What a describe run of some sources would send, counted without sending anything.

    ``files`` and ``urls``: the items that would reach the model, by where their bytes are;
    ``input_tokens``: their estimated input (media and text); ``would_fail``: sources that
    would get an error record before any call (neither a URL nor a path, not of a
    ``--media`` kind, a header that cannot be read); ``output``: the output assumed per
    item; ``sources``: what reading the sources counted (skipped, duplicates, resumed).
    """

    config: Config
    output: AssumedOutput
    files: int = 0
    urls: int = 0
    input_tokens: int = 0
    would_fail: int = 0
    sources: SourceStats = field(default_factory=SourceStats)
    shared_tokens: int = 0  # examples and --context documents, sent with every item

    @property
    def timed(self) -> Config:
        """The run's config with the context cache's TTL a run of these items would set
        (``--cache-ttl``, else their estimated length: :func:`describer.context.plan.run_ttl`)."""
        return with_ttl(self.config, self.items)

    @property
    def cached(self) -> bool:
        """Whether a run would send the shared part from a context cache."""
        reason = inline_reason(self.timed, self.shared_tokens, self.items)
        return self.shared_tokens > 0 and reason is None

    def _input(self, batch: bool) -> tuple[int, int, float]:
        """(input tokens, of them cached, USD of cache storage) of the run: the Batch API
        gets the shared part inline."""
        total = self.input_tokens + self.items * self.shared_tokens
        if batch or not self.cached:
            return total, 0, 0.0
        costs = context_cache_costs(self.config.model, self.shared_tokens, self.items,
                                    (self.timed.cache_ttl or 0) / 3600)  # fmt: skip
        return total, self.items * self.shared_tokens, costs.storage if costs else 0.0

    @property
    def items(self) -> int:
        """Items that would reach the model."""
        return self.files + self.urls

    def cost(self, tier: str = DEFAULT_SERVICE_TIER, batch: bool = False) -> float | None:
        """Estimated USD of the run at ``tier``'s prices (or the Batch API's with ``batch``);
        None when the model has no price in :mod:`describer.cost`."""
        output = self.items * self.output.total
        total, cached, storage = self._input(batch)
        dollars = estimate(self.config.model, total, output, batch, cached_tokens=cached,
                           tier=tier)  # fmt: skip
        return None if dollars is None else dollars + storage

    def lines(self) -> list[str]:
        """What to print on stderr: the counts, the input estimate and its basis, the output
        assumption, then the estimated cost at standard prices, with ``--service-tier flex``
        and with ``batch submit``, each marked when it is what this command would use."""
        out, model = self.output, self.config.model
        total_out = self.items * out.total

        def price(label: str, tier: str = DEFAULT_SERVICE_TIER, batch: bool = False) -> str:
            chosen = not batch and tier == self.config.service_tier
            total, cached, storage = self._input(batch)
            cost = describe_cost(model, total, total_out, batch, cached, tier, storage)
            return f"{HEAD}{label}{' (this command)' if chosen else ''}: {cost}"

        return [
            HEAD + self._counts(),
            f"{HEAD}est. {self.input_tokens:,} input tokens: {self._basis()}",
            *self._shared(),
            f"{HEAD}assumes {out.answer} answer + {out.thinking} thinking output tokens per "
            f"item (--thinking {self.config.thinking}), {total_out:,} in all: an assumption, "
            "as the output is known only after the call and Gemini publishes no thinking "
            "counts per level",
            price("standard"),
            price("--service-tier flex", "flex"),
            price("batch submit", batch=True),
        ]

    def _shared(self) -> list[str]:
        """The line on examples and documents: their tokens, and the cache's arithmetic."""
        tokens, items, config = self.shared_tokens, self.items, self.timed
        if not tokens:
            return []
        head = (f"{HEAD}examples and --context: ~{tokens:,} tokens with each of "
                f"{_plural(items, 'item')} ({items * tokens:,} in all)")
        reason = inline_reason(config, tokens, items)
        costs = context_cache_costs(config.model, tokens, items, (config.cache_ttl or 0) / 3600,
                                    config.service_tier)  # fmt: skip
        if reason is not None or costs is None:
            return [f"{head}, sent inline{reason or ''}; batch submit: inline"]
        return [f"{head}, from one context cache: saves ${costs.saved:.4f} of input against "
                f"inline for ${costs.storage:.4f} of storage ({tokens:,} tokens x "
                f"{ttl_text(costs.hours * 3600)}), net ${costs.net:.4f}; batch submit: inline"]

    def _counts(self) -> str:
        noun = "image" if self.config.media == {"image"} else "item"
        taken = "images" if noun == "image" else "/".join(sorted(self.config.media))
        where = f"{_plural(self.files, 'file')}, {_plural(self.urls, 'URL')}"
        parts = [f"{_plural(self.items, noun)} to describe ({where})",
                 f"{self.sources.skipped} skipped (not {taken})"]  # fmt: skip
        if self.would_fail:
            parts.append(f"{self.would_fail} would fail before any call (not a path or URL, "
                         f"not {taken}, or unreadable)")  # fmt: skip
        if self.sources.duplicates:
            parts.append(f"{self.sources.duplicates} duplicates")
        if self.sources.already_done:
            parts.append(f"{self.sources.already_done} already described in "
                         f"{self.config.output} (not counted)")  # fmt: skip
        return ", ".join(parts) + "; nothing was downloaded, sent or written"

    def _basis(self) -> str:
        """Where the input estimate comes from, e.g. "the prompt's text plus 1,120 tokens an
        image at the model's default media resolution"."""
        config = self.config
        basis = "the prompt's text plus "
        if model_family(config.model) == "3":
            level = config.media_resolution or GEMINI3_DEFAULT_RESOLUTION
            why = (f"--media-resolution {config.media_resolution}" if config.media_resolution
                   else "the model's default media resolution")  # fmt: skip
            return basis + f"{RESOLUTION_IMAGE_TOKENS[level]:,} tokens an image at {why}"
        if config.media_resolution:
            level = config.media_resolution
            return basis + f"{RESOLUTION_IMAGE_TOKENS[level]:,} tokens an image at {level}"
        basis += "258 tokens per 768-px tile of an image (sizes read from file headers"
        if self.urls:
            width, height = _scaled(ASSUMED_IMAGE_SIZE, config.max_side)
            tokens = estimate_tokens(Media("image/jpeg", width, height, 0), "")
            basis += f"; URLs are not downloaded: each assumed {width}x{height}, {tokens:,} tokens"
        return basis + ")"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


async def dry_run(
    config: Config, sources: Sequence[str], stdin: IO[str] | None = None
) -> DryRun:
    """Read ``sources`` as :func:`describer.run` would and estimate what describing them
    would cost, in a worker thread; nothing is downloaded, sent or written. Raises
    :class:`ConfigError` when ``-o FILE`` exists but cannot be read or is not describer's
    (a real run would refuse it too)."""
    return await asyncio.to_thread(_scan, config, sources, stdin)


def _scan(config: Config, sources: Sequence[str], stdin: IO[str] | None) -> DryRun:
    """The dry run itself (blocking: it reads lists, folders and file headers)."""
    report = DryRun(config, assumed_output(config.model, config.thinking,
                                           config.max_output_tokens))  # fmt: skip
    reader = SourceReader.of(config, stdin, done=_done(config))
    for source in reader.iter(sources):
        media = _media_of(source, config)
        if media is None:
            report.would_fail += 1
            continue
        report.input_tokens += request_tokens(media, config)
        if source.kind is SourceKind.URL:
            report.urls += 1
        else:
            report.files += 1
    report.sources = reader.stats
    report.shared_tokens = _shared_tokens(config)
    return report


def _shared_tokens(config: Config) -> int:
    """Estimated tokens of the examples and ``--context`` documents (0 without any): local
    files read (images from their headers, PDFs by pages, text by size), URLs taken for
    images of :data:`ASSUMED_IMAGE_SIZE`; plus the system instruction and each example's
    prompt and answer."""
    pairs = list(config.examples)
    if config.examples_file is not None:
        pairs += read_examples(config.examples_file, config.schema is not None)
    if not pairs and not config.context:
        return 0
    documents = replace(config, media=frozenset({"image", "pdf"}))
    text = len(config.system_instruction or "")
    text += sum(len(answer) + len(config.prompt) for _, answer in pairs)
    media = [_media_of(classify(source), config) for source, _ in pairs]
    for path in config.context:
        found = _media_of(classify(path), documents)
        if found is None and os.path.isfile(path):
            text += os.path.getsize(path)
        media.append(found)
    resolution = request_resolution(config)
    return math.ceil(text / 4) + sum(estimate_tokens(m, "", resolution)
                                     for m in media if m is not None)


def _media_of(source: Source, config: Config) -> Media | None:
    """What ``source`` would be sent as, or None when it would fail before any call. A URL
    is taken to be an image of :data:`ASSUMED_IMAGE_SIZE` (its size matters on Gemini 2.5 and
    older only)."""
    if source.kind is SourceKind.URL:
        return Media("image/jpeg", *_scaled(ASSUMED_IMAGE_SIZE, config.max_side), 0)
    if source.kind is SourceKind.PATH:
        return _local_media(source.location, config)
    return None


def _local_media(path: str, config: Config) -> Media | None:
    """What a local file would be sent as, from its header (an image's size after
    ``--max-side``; a PDF's pages, which means reading it; audio and video by size), or None
    when it would fail before any call."""
    try:
        with open(path, "rb") as handle:
            fmt = sniff(handle.read(SNIFF_BYTES))
        if fmt is None or fmt not in accepted(config.media):
            return None
        if fmt in RASTER:
            with Image.open(path) as image:  # the header only: nothing is decoded
                size = image.size
            return Media(fmt.value, *_scaled(size, config.max_side), 0)
        if fmt is Format.PDF:
            ready = plan(Path(path).read_bytes(), media=config.media).ready
            return ready.media if ready is not None else None
        return Media(fmt.value, None, None, os.path.getsize(path))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, ItemFailure):
        return None


def _scaled(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """``size`` (width, height in px) shrunk as ``--max-side`` would shrink the image."""
    width, height = size
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _done(config: Config) -> set[bytes] | None:
    """The sources ``-o FILE`` already describes (skipped, as a run skips them), read without
    locking, creating or changing the file; None without ``-o``, with ``--overwrite``, or
    when the file does not exist yet."""
    path = config.output and journal_of(config.output)
    if path is None or config.overwrite or not path.exists():
        return None
    try:
        with open(path, "rb") as handle:
            return scan(handle, path, config.model, config.prompt).done
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
