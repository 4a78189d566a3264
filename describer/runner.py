"""``run(config, sources)``: the describe command as one async library call.

It writes one record per source (stdout or ``-o FILE``, resumed) and shows progress on
stderr; it returns a :class:`RunReport` and leaves exit codes and the summary line to its
caller (the CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from . import gemini
from ._streams import closing
from .cache import open_cache
from .config import Config
from .context import open_context
from .errors import OutputError
from .limits.watch import QuotaWatch
from .model import Result
from .output import Indexer, Sink, open_sink, write_all
from .pipeline import describe_stream, item_counter
from .report import Progress, Tally
from .resume import Resume
from .sources import SourceReader, SourceStats
from .tables.columns import journal_of


@dataclass(frozen=True, slots=True)
class RunReport:
    """What a run did: its ``tally`` (records by outcome, tokens), what the sources stage
    counted (skipped, duplicates, resumed), and whether it was ``interrupted``."""

    tally: Tally
    sources: SourceStats
    interrupted: bool
    output_error: str | None = None  # the output could not take a record: the run stopped
    quota_stop: str | None = None  # a quota stopped the run: the line that says so
    context_line: str | None = None  # what the run's context cache did and saved (if one)

    @property
    def all_ok(self) -> bool:
        """True when every record was described (and embedded, when asked) and written."""
        return not (self.tally.failed or self.tally.embedding_failed or self.output_error)

    def summary(self) -> str:
        """The one-line summary for stderr (see :meth:`Tally.summary`)."""
        return self.tally.summary(self.sources, interrupted=self.interrupted)


async def run(
    config: Config,
    sources: Sequence[str],
    stdin: IO[str] | None = None,
    *,
    stop: asyncio.Event | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Describe ``sources`` and write one record per source; what happened.

    With ``-o FILE`` an earlier run's file is resumed: sources it already describes are
    skipped, new records are appended (``overwrite`` starts afresh). Setting ``stop`` takes
    no new sources (items in flight finish); cancelling the task stops at once, and the
    report says ``interrupted`` either way. At a per-day quota the run stops likewise, items
    refused or held back by it get no record (a rerun does them), and the report carries
    ``quota_stop``, one line for stderr. When the output cannot take a record (disk full),
    the run stops, the file is cut back to its last whole record, and the report carries
    ``output_error``. Notices and the progress bar go to ``progress`` (default: a bar on
    stderr when it is a terminal). Answers already paid for come from the result cache
    (``config.cache``; :mod:`describer.cache`). Raises :class:`ConfigError` for whole-run
    problems found before it starts (no credentials, a cache file or an output file that is
    not describer's, an output file that is locked).
    """
    stop = stop or asyncio.Event()
    progress = progress or Progress(config.progress)
    tally = Tally(model=config.model, media=config.media, tier=config.service_tier)
    watch = QuotaWatch(progress.write, stop)
    structured = config.schema is not None
    async with gemini.connect(config) as connection:
        with open_sink(
            config.output, config.overwrite, config.model, config.prompt, structured
        ) as sink:
            _report_resume(progress, sink.resume, config)
            count = item_counter(config, sources, sink.resume.done)
            async with open_context(config, connection, progress.write, count) as context, \
                    open_cache(config, context.digest) as cache:
                reader = SourceReader.of(config, stdin, done=sink.resume.done)
                results = describe_stream(
                    sources, config, reader=reader, stop=stop, connection=connection,
                    watch=watch, cache=cache, context=context,
                )  # fmt: skip
                with _index_writer(config) as index:
                    aborted, output_error = await _write(results, sink, tally, progress,
                                                         watch, index)  # fmt: skip
                line = await _quota_line(watch, tally, sources, sink, config)
    interrupted = aborted or (stop.is_set() and line is None)
    tally.storage_usd = context.storage_usd()
    report = context.report(tally.calls_with_cache)
    return RunReport(tally, reader.stats, interrupted, output_error, line, report)


async def _quota_line(
    watch: QuotaWatch, tally: Tally, sources: Sequence[str], sink: Sink, config: Config
) -> str | None:
    """The stop line when a per-day quota stopped the run (None otherwise). The sources
    still without a record are counted by reading the sources again (not stdin: it is read
    once, so then the count is not known)."""
    if watch.stopped is None:
        return None
    remaining = None
    if "-" not in sources:
        again = SourceReader.of(config, done=sink.resume.done)
        total = await asyncio.to_thread(lambda: sum(1 for _ in again.iter(sources)))
        remaining = max(0, total - tally.described - tally.failed)
    line = watch.stop_line(tally.described, remaining, resumable=config.output is not None)
    unembedded = tally.described - tally.embedded - tally.embedding_failed
    if config.embed and config.output is not None and unembedded > 0:
        journal = journal_of(config.output)  # a table's records are in its journal
        line += f"; {unembedded} described without an embedding: embed {journal} adds them"
    return line


async def _done(results: AsyncIterator[Result], watch: QuotaWatch) -> AsyncIterator[Result]:
    """``results`` without those a quota stop left not done."""
    async with closing(results):
        async for result in results:
            if result.source not in watch.not_done:
                yield result


async def _write(
    results: AsyncGenerator[Result, None],
    sink: Sink,
    tally: Tally,
    progress: Progress,
    watch: QuotaWatch,
    index: Indexer | None = None,
) -> tuple[bool, str | None]:
    """Write every result that is done; (cancelled, the output error that stopped the run).

    The stream is closed here, whatever happens, before the run's session is: closing the
    outer stage closes ``results`` and cancels the items in flight. (Left to the garbage
    collector, it would be closed later, concurrently with anything else closing it.)"""
    done = _done(results, watch)
    try:
        await write_all(done, sink, tally, progress, index)
    except asyncio.CancelledError:
        return True, None
    except OutputError as exc:
        return False, str(exc)
    finally:
        await done.aclose()  # closes results too: items still in flight are cancelled
        progress.close()
    return False, None


def _index_writer(config: Config) -> contextlib.AbstractContextManager[Any]:
    """With ``--embed`` and ``-o FILE`` or ``--index``, the run's index writer (its module is
    imported only then: FAISS and numpy stay out of plain describe runs); else None."""
    if not config.embed or (config.output is None and config.index is None):
        return contextlib.nullcontext(None)
    from .index import index_writer

    return index_writer(config, config.output, overwrite=config.overwrite)


def _report_resume(progress: Progress, resume: Resume, config: Config) -> None:
    if resume.torn:
        progress.write(f"describer: dropped a torn last line from {config.output}; redoing it")
    if resume.done:
        progress.write(
            f"describer: resuming {config.output}: {len(resume.done)} sources already "
            "described are skipped (--overwrite starts afresh)"
        )
    if resume.other_settings:
        progress.write(
            f"describer: warning: {config.output} has records made with another model, "
            "prompt or --schema setting; their sources are skipped too"
        )
