"""The ``describe-images`` command: parse options into a :class:`Config` and call ``run``.

``describe-images SOURCE...`` describes (the default command); ``embed FILE`` adds embeddings
to an earlier output; ``search FILE QUERY`` searches it; ``batch submit|status|fetch|cancel``
uses Gemini's Batch API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .config import (
    DEFAULT_EMBED_MODEL,
    DEFAULT_MAX_BYTES,
    DEFAULT_MODEL,
    DEFAULT_PROMPT,
    INLINE_LIMIT_BYTES,
    MEDIA_KINDS,
    Config,
)
from .errors import ConfigError
from .run import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, run

if TYPE_CHECKING:
    from .batchjob import JobRecord
    from .search import Hit

# The embed, search and batch modules (numpy among them) are imported by their commands only:
# describe, the command run most, starts ~0.15 s sooner.
F = TypeVar("F", bound=Callable[..., Any])
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}
HELP = {"help_option_names": ["-h", "--help"]}


class ByteSize(click.ParamType):
    """A size in bytes: ``50000000``, ``50MB``, ``48MiB``."""

    name = "size"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        match = _SIZE.match(str(value))
        if not match:
            self.fail(f"{value!r} is not a size like 50MB or 52428800", param, ctx)
        unit = (match.group(2) or "").lower().removesuffix("b")
        return int(float(match.group(1)) * _UNITS[unit])


class MediaKinds(click.ParamType):
    """A comma-separated subset of image, pdf, audio, video."""

    name = "kinds"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> frozenset[str]:
        if isinstance(value, frozenset):
            return value
        kinds = frozenset(k.strip().lower() for k in str(value).split(",") if k.strip())
        if not kinds or kinds - set(MEDIA_KINDS):
            self.fail(f"{value!r}: choose from {', '.join(MEDIA_KINDS)}", param, ctx)
        return kinds


class DefaultGroup(click.Group):
    """A group whose first argument, when it names no subcommand, goes to ``describe``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["describe", *args]
        return super().parse_args(ctx, args)


def _options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


model_options = _options(
    click.option("-p", "--prompt", default=DEFAULT_PROMPT, show_default=True,
                 help="What to ask about each image."),
    click.option("-m", "--model", envvar="DESCRIBER_MODEL", default=DEFAULT_MODEL,
                 show_default=True, help="Gemini model (env DESCRIBER_MODEL)."),
    click.option("--system-instruction", help="System instruction sent with every request."),
    click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature."),
    click.option("--max-output-tokens", type=click.IntRange(min=1), help="Cap on answer tokens."),
    click.option("--media-resolution", type=click.Choice(["low", "medium", "high"]),
                 help="Gemini's media_resolution: tokens per image (Gemini 3: 280, 560, 1120)."),
)  # fmt: skip

input_options = _options(
    click.option("-c", "--concurrency", type=click.IntRange(min=1), default=16, show_default=True,
                 help="Items in flight through download and describe."),
    click.option("--prefetch", type=click.IntRange(min=0),
                 help="Downloads allowed ahead of the model side [default: concurrency/2]."),
    click.option("--media", type=MediaKinds(), default="image", show_default=True,
                 help="What to take, comma-separated: image, pdf, audio, video."),
    click.option("--max-side", type=click.IntRange(min=16), metavar="PX",
                 help="Downscale images whose longer side exceeds PX before upload."),
    click.option("--max-bytes", type=ByteSize(), default=DEFAULT_MAX_BYTES, show_default=True,
                 help="Largest download or file accepted (e.g. 50MB)."),
    click.option("--inline-limit", type=ByteSize(), default=INLINE_LIMIT_BYTES, show_default=True,
                 help="Media larger than this go by the Files API (uploaded, then deleted)."),
    click.option("--memory-budget", type=ByteSize(),
                 help="Media bytes held in flight; bigger images wait their turn; 0: no limit "
                      "[default: 1.75 MiB per --concurrency slot, 28 MiB at 16]."),
    click.option("--download-timeout", type=click.FloatRange(min=0, min_open=True), default=60.0,
                 show_default=True, help="Seconds allowed for one download."),
    click.option("--max-redirects", type=click.IntRange(min=0), default=5, show_default=True),
    click.option("--follow-symlinks", is_flag=True, help="Follow symlinks that leave a folder."),
)  # fmt: skip

connection_options = _options(
    click.option("--base-url",
                 help="Gemini endpoint (default: GOOGLE_GEMINI_BASE_URL, else Google's)."),
    click.option("--max-attempts", type=click.IntRange(min=1), default=5, show_default=True,
                 help="Tries per download and per model call (408, 429, 5xx, timeouts)."),
    click.option("--retry-wait", type=click.FloatRange(min=0), default=1.0, show_default=True,
                 help="First backoff in seconds; doubles per try (jittered, at most 60)."),
    click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=180.0,
                 show_default=True, help="Seconds allowed for one model call."),
)  # fmt: skip

embed_options = _options(
    click.option("--embed-model", default=DEFAULT_EMBED_MODEL, show_default=True,
                 help="Embedding model."),
    click.option("--embed-dim", type=click.IntRange(min=1),
                 help="Vector length (output_dimensionality) [default: the model's, 3072]."),
    click.option("--embed-batch-size", type=click.IntRange(1, 100), default=100, show_default=True,
                 help="Texts per embedding call (at most 100: Gemini API limit)."),
    click.option("--embed-timeout", type=click.FloatRange(min=0), default=2.0, show_default=True,
                 help="Seconds a partial batch waits for more descriptions."),
    click.option("--embed-rpm", type=click.IntRange(min=1),
                 help="Embedding calls per minute allowed by your quota."),
)  # fmt: skip

output_option = click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
    help="Write JSON lines here instead of stdout (resumed when it exists).",
)  # fmt: skip


@click.group(cls=DefaultGroup, context_settings=HELP)
def cli() -> None:
    """Describe images with Gemini, one JSON line per image; embed and search the results.

    describe-images SOURCE... runs the describe command (the default).
    """


@cli.command(context_settings=HELP)
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@model_options
@input_options
@click.option(
    "--rpm",
    type=click.IntRange(min=1),
    envvar="DESCRIBER_RPM",
    help="Requests per minute of your quota: paced so none is refused (env DESCRIBER_RPM).",
)
@click.option(
    "--tpm",
    type=click.IntRange(min=1),
    envvar="DESCRIBER_TPM",
    help="Input tokens per minute of your quota (env DESCRIBER_TPM).",
)
@connection_options
@output_option
@click.option("--overwrite", is_flag=True, help="Start -o FILE afresh instead of resuming it.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr [default: when stderr is a terminal].",
)
@click.option("--embed", is_flag=True, help="Add an embedding of each description.")
@embed_options
def describe(sources: tuple[str, ...], **options: Any) -> None:  # fmt: skip
    """Describe images: one JSON line per SOURCE item, as each completes.

    SOURCE is an image file, a folder (recursive), an http(s) URL, a text file of URLs or
    paths (one per line, # comments), or - to read such lines from stdin.

    Exit codes: 0 all described, 1 some failed, 2 usage or configuration error, 130 interrupted.
    """

    def start() -> Coroutine[Any, Any, int]:
        _check_arguments(sources)
        return run(Config(**options), sources)

    _exit(start)


@cli.command("embed", context_settings=HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@embed_options
@connection_options
def embed_command(file: Path, **options: Any) -> None:
    """Add embeddings to the described records of FILE (an earlier -o output), in place.

    Records that already have an embedding are skipped, so an interrupted run can be resumed.
    """
    _exit(lambda: _embed(file, Config(**options)))


@cli.command("search", context_settings=HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("query")
@click.option(
    "-k",
    "--top",
    "k",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="How many results.",
)
@connection_options
def search_command(file: Path, query: str, k: int, **options: Any) -> None:  # fmt: skip
    """Print the K images of FILE whose descriptions are closest in meaning to QUERY.

    A table on a terminal; JSON lines (source, score, description) otherwise.
    """
    _exit(lambda: _search(file, query, k, Config(**options)))


@cli.group("batch", context_settings=HELP)
def batch_group() -> None:
    """Gemini's Batch API: half the price, results within 24 hours.

    Jobs are recorded in $DESCRIBER_HOME/jobs (default ~/.describer/jobs), so status, fetch and
    cancel work from any later shell with the JOB id that submit prints.
    """


@batch_group.command("submit", context_settings=HELP)
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@model_options
@input_options
@connection_options
@click.option("--wait", is_flag=True, help="Poll until every job is final, then fetch (-o).")
@output_option
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds between status checks with --wait.",
)
@click.option(
    "--batch-max-bytes",
    type=ByteSize(),
    default=2_000_000_000,  # batchjob.MAX_FILE_BYTES, Gemini's limit per input file
    show_default=True,
    help="Largest request file per job (Gemini: 2 GB).",
)
@click.option(
    "--batch-max-requests",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Most requests per job.",
)
def batch_submit(
    sources: tuple[str, ...],
    wait: bool,
    poll_interval: float,
    batch_max_bytes: int,
    batch_max_requests: int,
    **options: Any,
) -> None:
    """Prepare SOURCE... and submit them as batch jobs; prints the JOB id on stdout."""

    def start() -> Coroutine[Any, Any, int]:
        _check_arguments(sources)
        config = Config(**options)
        limits = (batch_max_bytes, batch_max_requests)
        return _batch_submit(sources, config, limits, poll_interval if wait else None)

    _exit(start)


@batch_group.command("status", context_settings=HELP)
@click.argument("job")
@connection_options
def batch_status(job: str, **options: Any) -> None:
    """Show the state of JOB's batch jobs."""
    _exit(lambda: _batch_status(job, Config(**options)))


@batch_group.command("fetch", context_settings=HELP)
@click.argument("job")
@output_option
@click.option("--wait", is_flag=True, help="Poll until every job is final first.")
@click.option("--poll-interval", type=click.FloatRange(min=0), default=30.0, show_default=True)
@connection_options
def batch_fetch(job: str, wait: bool, poll_interval: float, **options: Any) -> None:
    """Write JOB's results as JSON lines, one record per source (errors included)."""
    _exit(lambda: _batch_fetch(job, Config(**options), poll_interval if wait else None))


@batch_group.command("cancel", context_settings=HELP)
@click.argument("job")
@connection_options
def batch_cancel(job: str, **options: Any) -> None:
    """Cancel JOB's unfinished batch jobs."""
    _exit(lambda: _batch_cancel(job, Config(**options)))


@batch_group.command("list", context_settings=HELP)
def batch_list() -> None:
    """List the local batch job records, newest first (states as last seen)."""
    from . import batchjob

    for record in batchjob.list_records():
        click.echo(f"{record.id}  {record.state:<22} {record.submitted:>8} items  {record.model}")


async def _embed(file: Path, config: Config) -> int:
    from .enrich import embed_file

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)  # finish batches in flight, keep the rest
    report = await embed_file(file, config, stop)
    click.echo(
        f"describer: {file}: {report.embedded} embedded, {report.failed} failed, "
        f"{report.already} already had one, {report.lines} lines",
        err=True,
    )
    if stop.is_set():
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if report.failed else EXIT_OK


async def _search(file: Path, query: str, k: int, config: Config) -> int:
    from .search import load_corpus, search

    corpus = await asyncio.to_thread(load_corpus, file)
    hits = await search(corpus, query, k, config)
    if sys.stdout.isatty():
        _print_table(hits)
    else:
        for hit in hits:
            click.echo(json.dumps(hit.to_json(), ensure_ascii=False))
    return EXIT_OK


def _print_table(hits: list[Hit]) -> None:
    width = shutil.get_terminal_size().columns
    source_width = min(40, max((len(h.source) for h in hits), default=6))
    room = max(10, width - source_width - 18)
    click.echo(f"{'#':>3}  {'score':>6}  {'source':<{source_width}}  description")
    for rank, hit in enumerate(hits, start=1):
        text = (
            hit.description if len(hit.description) <= room else hit.description[: room - 1] + "…"
        )
        source = hit.source[-source_width:]
        click.echo(f"{rank:>3}  {hit.score:6.3f}  {source:<{source_width}}  {text}")


async def _batch_submit(
    sources: tuple[str, ...], config: Config, limits: tuple[int, int], wait: float | None
) -> int:
    from . import batchjob

    record = await batchjob.submit(sources, config, *limits)
    click.echo(record.id)
    click.echo(
        f"describer: batch {record.id}: {record.submitted} requests in {len(record.parts)} "
        f"job(s), {record.failed_before} failed before submission",
        err=True,
    )
    if wait is None:
        return EXIT_OK
    return await _batch_fetch(record.id, config, wait)


async def _batch_status(job: str, config: Config) -> int:
    from . import batchjob

    record = await batchjob.refresh(batchjob.JobRecord.load(job), config)
    click.echo(f"{record.id}: {record.state} ({record.submitted} requests)")
    for part in record.parts:
        click.echo(f"  {part.name}: {part.state} ({part.requests} requests, {part.bytes:,} bytes)")
    return EXIT_OK


async def _batch_fetch(job: str, config: Config, wait: float | None) -> int:
    from . import batchjob

    record = batchjob.JobRecord.load(job)
    if wait is not None:
        record = await batchjob.wait_until_done(record, config, wait, _report_state)
    return await batchjob.fetch_to(record, config)


async def _batch_cancel(job: str, config: Config) -> int:
    from . import batchjob

    record = await batchjob.cancel(batchjob.JobRecord.load(job), config)
    click.echo(f"{record.id}: {record.state}")
    return EXIT_OK


def _report_state(record: JobRecord) -> None:
    from . import batchjob

    finished = sum(part.state in batchjob.FINAL_STATES for part in record.parts)
    click.echo(
        f"describer: batch {record.id}: {record.state}, {finished}/{len(record.parts)} jobs final",
        err=True,
    )


def _exit(make: Callable[[], Coroutine[Any, Any, int]]) -> None:
    """Run a command's coroutine; turn whole-run problems into one line and exit code 2."""
    try:
        code = asyncio.run(make())
    except ConfigError as exc:
        click.echo(f"describe-images: error: {exc}", err=True)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    sys.exit(code)


def _check_arguments(sources: tuple[str, ...]) -> None:
    if sources.count("-") > 1:
        raise ConfigError("- (stdin) can be given once")
    for source in sources:
        if source != "-" and "://" not in source and not os.path.exists(source):
            raise ConfigError(f"no such file or folder: {source}")


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="describer: %(levelname)s: %(message)s")
    cli()
