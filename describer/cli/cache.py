"""``describe-images cache stats | clear``: the result cache (:mod:`describer.cache`);
``cache prune``: the Gemini context caches runs left behind (:mod:`describer.context.ledger`)."""

from __future__ import annotations

import click

from ..config import Config
from .commands import cli
from .options import HELP, connection_options
from .terminal import EXIT_OK, finish, say


@cli.group("cache", context_settings=HELP)
def cache_group() -> None:
    """The result cache: answers already paid for, by the bytes sent, model, prompt and
    settings, in $DESCRIBER_HOME/cache.sqlite3 (default ~/.describer/cache.sqlite3).

    A describe run takes its answers from there (records say "cached": true; no model call,
    nothing billed) and keeps its new ones; --no-cache does neither. (cache prune is about
    Gemini's context caches, not this one.)
    """


@cache_group.command("stats", context_settings=HELP)
def cache_stats() -> None:
    """Print the cache's path, entries and size on disk (file, -wal and -shm) on stdout."""

    async def body() -> int:
        from ..cache import stats

        found = stats()
        click.echo(f"path: {found.path}" + ("" if found.exists else " (not made yet)"))
        click.echo(f"entries: {found.entries}")
        click.echo(f"size: {found.bytes} bytes")
        return EXIT_OK

    finish(body)


@cache_group.command("clear", context_settings=HELP)
def cache_clear() -> None:
    """Remove every answer from the cache (other runs using it meanwhile are safe)."""

    async def body() -> int:
        from ..cache import cache_path, clear

        removed = clear()
        say(f"describer: cache cleared: {removed} entries removed from {cache_path()}")
        return EXIT_OK

    finish(body)


@cache_group.command("prune", context_settings=HELP)
@connection_options
def cache_prune(**options: object) -> None:
    """Delete the Gemini context caches that describer runs made and left behind (killed
    before they could delete them; kept in $DESCRIBER_HOME/context-caches.jsonl), on this
    endpoint, unless the run that made one is still running. A describe run does this too."""

    async def body() -> int:
        from .. import gemini
        from ..context.session import delete_orphans

        config = Config(**options)  # type: ignore[arg-type]
        async with gemini.connect(config) as connection:
            deleted = await delete_orphans(config, connection, say)
        say(f"describer: {deleted} context cache(s) deleted")
        return EXIT_OK

    finish(body)
