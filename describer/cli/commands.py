"""The commands: ``describe`` (the default), ``embed FILE`` and ``search FILE QUERY``.

Each parses its options into one :class:`~describer.config.Config`, makes one library call,
prints its summary on stderr and returns the exit code. The embed and search modules (numpy
among them) are imported by their commands only: describe, the command run most, starts
sooner.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import IO, Any

import click
from click_default_group import DefaultGroup

from .. import __version__
from ..config import Config
from ..errors import ConfigError
from ..limits.watch import stop_line
from ..report import Progress
from ..runner import run
from .options import (
    HELP,
    cache_option,
    connection_options,
    context_cache_options,
    context_options,
    embed_options,
    index_option,
    input_options,
    limit_options,
    model_options,
    output_option,
    service_tier_option,
)
from .terminal import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_QUOTA,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    Interrupts,
    finish,
    print_hits,
    say,
)


@click.group(cls=DefaultGroup, default="describe", context_settings=HELP)
@click.version_option(__version__, "--version", prog_name="describe-images")
def cli() -> None:
    """Describe images with Gemini, one JSON line per image; embed and search the results.

    describe-images SOURCE... runs the describe command (the default).
    """


@cli.command(context_settings=HELP)
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@model_options
@context_options
@context_cache_options
@service_tier_option
@input_options
@limit_options
@connection_options
@output_option
@click.option("--overwrite", is_flag=True, help="Start -o FILE afresh instead of resuming it.")
@cache_option
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: when stderr is a terminal].")
@click.option("--embed", is_flag=True,
              help="Add an embedding of each description (and, with -o FILE or --index, "
                   "into the vector index that search reads).")
@embed_options
@index_option
@click.option("--dry-run", is_flag=True,
              help="Count the items and estimate the cost (standard, flex, batch) on stderr; "
                   "nothing is downloaded, sent or written, no key needed.")
def describe(sources: tuple[str, ...], dry_run: bool, **options: Any) -> None:  # fmt: skip
    """Describe images: one JSON line per SOURCE item, as each completes.

    SOURCE is an image file, a folder (recursive), an http(s) URL, a text file of URLs or
    paths (one per line, # comments), - to read such lines from stdin, or a table (.csv,
    .tsv, .parquet, .jsonl: one source a row, see --url-col). -o FILE.parquet or FILE.csv
    writes that table, from a JSONL journal beside it (FILE.parquet.journal.jsonl).

    Exit codes: 0 all described (or --dry-run done), 1 some failed, 2 usage or
    configuration error, 3 stopped at a daily quota (rerun later to continue), 130
    interrupted.
    """

    def start() -> Coroutine[Any, Any, int]:
        check_arguments(sources)
        if options["embed_field"] and not options["embed"]:
            raise ConfigError("--embed-field chooses what --embed embeds: give --embed too")
        config = Config(**options)
        return dry_run_main(config, sources) if dry_run else describe_main(config, sources)

    finish(start)


async def dry_run_main(
    config: Config, sources: Sequence[str], stdin: IO[str] | None = None
) -> int:
    """``describe --dry-run``: the estimate's lines on stderr, nothing on stdout; exit 0.
    Raises :class:`ConfigError` when ``-o FILE`` exists and is not describer's."""
    from ..dryrun import dry_run

    report = await dry_run(config, sources, stdin)
    for line in report.lines():
        say(line)
    return EXIT_OK


async def describe_main(
    config: Config, sources: Sequence[str], stdin: IO[str] | None = None
) -> int:
    """The describe command's body: run, print the summary on stderr; the exit code.
    Raises :class:`ConfigError` for whole-run problems."""
    progress = Progress(config.progress)
    with Interrupts(progress.write) as interrupts:
        report = await run(config, sources, stdin, stop=interrupts.stop, progress=progress)
    if report.output_error:
        say(f"describe-images: error: {report.output_error}; stopped")
    if report.quota_stop:
        say(report.quota_stop)
    say(report.summary())
    if report.context_line:
        say(report.context_line)
    if report.output_error:
        return EXIT_USAGE
    if report.quota_stop:
        return EXIT_QUOTA
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if report.all_ok else EXIT_SOME_FAILED


@cli.command("embed", context_settings=HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@embed_options
@index_option
@connection_options
def embed_command(file: Path, **options: Any) -> None:
    """Add embeddings to the described records of FILE (an earlier -o output), in place,
    and to its vector index (FILE.index, or --index PATH), which search reads.

    Records that already have an embedding are skipped, so an interrupted run can be resumed;
    their vectors go into the index when it lacks them (a file from an earlier describer).

    Exit codes: 0 all embedded, 1 some failed, 2 usage or configuration error, 3 stopped at a
    daily quota (rerun later to continue), 130 interrupted.
    """
    finish(lambda: embed_main(file, Config(**options)))


async def embed_main(file: Path, config: Config) -> int:
    """The embed command's body. First Ctrl-C: batches in flight finish and the other lines
    are kept as they were; second: cancelled, the file is left untouched."""
    from ..enrich import embed_file

    with Interrupts(say, "batches") as interrupts:
        try:
            report = await embed_file(file, config, interrupts.stop)
        except asyncio.CancelledError:
            say(f"describer: interrupted: {file} left as it was")
            return EXIT_INTERRUPTED
    if report.quota is not None:
        done = f"{report.embedded} embedded"
        say(stop_line(report.quota, done, None, resumable=True, reason=report.quota_reason))
    without = ""
    if report.no_text and config.embed_field:
        without = f", {report.no_text} without data.{config.embed_field}"
    say(f"describer: {file}: {report.embedded} embedded, {report.failed} failed, "
        f"{report.already} already had one{without}, {report.lines} lines")  # fmt: skip
    if report.quota is not None:
        return EXIT_QUOTA
    if interrupts.stop.is_set():
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if report.failed else EXIT_OK


@cli.command("search", context_settings=HELP)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("query")
@click.option("-k", "--top", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many results.")
@click.option("--where", multiple=True, metavar="NAME=VALUE",
              help="Only records whose meta has NAME equal to VALUE (repeatable: all must hold).")
@index_option
@connection_options
def search_command(
    file: Path, query: str, k: int, where: tuple[str, ...], **options: Any
) -> None:  # fmt: skip
    """Print the K images of FILE whose descriptions are closest in meaning to QUERY.

    Reads FILE's vector index (FILE.index, or --index PATH), never FILE itself. A table on a
    terminal; JSON lines (source, score, description, and id and meta when the records have
    them) otherwise.
    """
    finish(lambda: search_main(file, query, k, Config(**options), where_pairs(where)))


def where_pairs(where: Sequence[str]) -> dict[str, str]:
    """``--where NAME=VALUE`` options as a dict. Raises :class:`ConfigError` for one without
    ``=``."""
    pairs = {}
    for item in where:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--where takes NAME=VALUE, not {item!r}")
        pairs[name] = value
    return pairs


async def search_main(
    file: Path, query: str, k: int, config: Config, where: dict[str, str] | None = None
) -> int:
    """The search command's body: the hits on stdout."""
    from ..search import open_index, search

    index = await asyncio.to_thread(open_index, file, config)
    try:
        hits = await search(index, query, k, config, where)
    finally:
        index.close()
    if sys.stdout.isatty():
        print_hits(hits)
    else:
        for hit in hits:
            click.echo(json.dumps(hit.to_json(), ensure_ascii=False))
    return EXIT_OK


def check_arguments(sources: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` for ``-`` given twice or with stdin closed, or a path that
    does not exist."""
    if sources.count("-") > 1:
        raise ConfigError("- (stdin) can be given once")
    if "-" in sources and (sys.stdin is None or sys.stdin.closed):
        raise ConfigError("- reads sources from stdin, but stdin is closed")
    for source in sources:
        if source != "-" and "://" not in source and not os.path.exists(source):
            raise ConfigError(f"no such file or folder: {source}")
