"""``run(config, sources)``: the whole command as one async call, returning the exit code."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from typing import IO

from .config import Config
from .describe import check_credentials
from .output import Progress, Resume, Tally, open_output
from .pipeline import describe
from .sources import SourceReader

#: Exit codes (README, "Exit codes").
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


async def run(config: Config, sources: Sequence[str], stdin: IO[str] | None = None) -> int:
    """Describe ``sources`` and write one record per source; the exit code.

    With ``-o FILE`` an earlier run's file is resumed: sources it already describes are
    skipped, new records are appended (``overwrite`` starts afresh). 0: every item described;
    1: some failed (their records are written); 130: interrupted (Ctrl-C). Raises
    :class:`ConfigError` (exit 2) for whole-run problems.
    """
    check_credentials(config)
    tally = Tally(model=config.model)
    with open_output(config.output, config.overwrite, config.model, config.prompt) as output:
        progress = Progress(config.progress)
        _report_resume(progress, output.resume, config)
        reader = SourceReader(
            config.follow_symlinks, stdin, done=output.resume.done, media=config.media
        )
        with _Interrupts(progress) as interrupts:
            try:
                async for result in describe(sources, config, reader=reader, stop=interrupts.stop):
                    output.write(result)
                    tally.add(result)
                    progress.update(tally)
            except asyncio.CancelledError:
                interrupts.aborted = True
        progress.close()
    progress.write(tally.summary(reader.stats, interrupted=interrupts.interrupted))
    if interrupts.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if tally.failed or tally.embedding_failed else EXIT_OK


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
            f"describer: warning: {config.output} has records made with another model or "
            "prompt; their sources are skipped too"
        )


class _Interrupts:
    """First Ctrl-C: take no new items, finish those in flight. Second: cancel them."""

    def __init__(self, progress: Progress) -> None:
        self.stop = asyncio.Event()
        self.aborted = False
        self._progress = progress
        self._task: asyncio.Task[object] | None = None

    @property
    def interrupted(self) -> bool:
        return self.stop.is_set() or self.aborted

    def __enter__(self) -> _Interrupts:
        self._task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    def _on_signal(self) -> None:
        if not self.stop.is_set():
            self.stop.set()
            self._progress.write(
                "describer: stopping: finishing items in flight (Ctrl-C again to cancel them)"
            )
        elif self._task is not None:
            self.aborted = True
            self._task.cancel()
