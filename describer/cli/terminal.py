"""What the commands share at the terminal: exit codes, running a command's coroutine,
Ctrl-C handling, and the search results table."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..search import Hit

#: Exit codes (README, "Exit codes"): all done; some items failed (their records are
#: written); usage or whole-run error (one line on stderr); stopped at a per-day quota
#: (one line on stderr; rerun later to continue); interrupted (Ctrl-C).
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_QUOTA, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def finish(make: Callable[[], Coroutine[Any, Any, int]]) -> None:
    """Run a command's coroutine and exit with its code; a whole-run problem
    (:class:`ConfigError`) becomes one line on stderr and exit code 2."""
    try:
        code = asyncio.run(make())
    except ConfigError as exc:
        click.echo(f"describe-images: error: {exc}", err=True)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    sys.exit(code)


class Interrupts:
    """First Ctrl-C: set ``stop`` (take no new items, finish those in flight). Second:
    cancel the task that entered the block. ``say`` shows the notice on stderr."""

    def __init__(self, say: Callable[[str], None], what: str = "items") -> None:
        self.stop = asyncio.Event()
        self._say = say
        self._what = what
        self._task: asyncio.Task[Any] | None = None

    def __enter__(self) -> Interrupts:
        self._task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    def _on_signal(self) -> None:
        if not self.stop.is_set():
            self.stop.set()
            self._say(
                f"describer: stopping: finishing {self._what} in flight "
                "(Ctrl-C again to cancel them)"
            )
        elif self._task is not None:
            self._task.cancel()


def print_hits(hits: list[Hit]) -> None:
    """Search results as a table fitted to the terminal's width."""
    width = shutil.get_terminal_size().columns
    source_width = min(40, max((len(h.source) for h in hits), default=6))
    room = max(10, width - source_width - 18)
    click.echo(f"{'#':>3}  {'score':>6}  {'source':<{source_width}}  description")
    for rank, hit in enumerate(hits, start=1):
        text = hit.description
        if len(text) > room:
            text = text[: room - 1] + "…"
        source = hit.source[-source_width:]
        click.echo(f"{rank:>3}  {hit.score:6.3f}  {source:<{source_width}}  {text}")


def say(line: str) -> None:
    """One line on stderr."""
    click.echo(line, err=True)
