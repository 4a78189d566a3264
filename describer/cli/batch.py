"""``describe-images batch submit | status | fetch | cancel | list``: Gemini's Batch API.

Each command opens one connection (one HTTP session) and makes its library calls over it.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import click

from .. import gemini
from ..config import Config
from ..errors import ConfigError
from ..output import open_sink, write_all
from ..report import Tally
from ..sources import SourceStats
from .commands import check_arguments, cli
from .options import (
    HELP,
    ByteSize,
    connection_options,
    context_options,
    input_options,
    model_options,
    output_option,
    refuse_service_tier,
)
from .terminal import EXIT_OK, EXIT_SOME_FAILED, finish, say

if TYPE_CHECKING:
    from ..batch import JobRecord

#: Gemini's limit for one batch input file (ai.google.dev/gemini-api/docs/batch-mode);
#: the same figure as ``describer.batch.MAX_FILE_BYTES``, not imported so that describe
#: starts without the batch modules.
MAX_FILE_BYTES = 2_000_000_000
#: Gemini's limit of concurrent batch jobs per project (Batch API "rate limits"); the same
#: figure as ``describer.batch.MAX_CONCURRENT_JOBS``, not imported for the same reason.
MAX_CONCURRENT_JOBS = 100


@cli.group("batch", context_settings=HELP)
def batch_group() -> None:
    """Gemini's Batch API: half the price, results within 24 hours.

    Jobs are recorded in $DESCRIBER_HOME/jobs (default ~/.describer/jobs), so status, fetch and
    cancel work from any later shell with the JOB id that submit prints.
    """


@batch_group.command("submit", context_settings=HELP)
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@model_options
@context_options
@refuse_service_tier
@input_options
@connection_options
@click.option("--wait", is_flag=True, help="Poll until every job is final, then fetch (-o).")
@output_option
@click.option("--poll-interval", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds between status checks with --wait, and while a job waits for "
                   "--batch-max-jobs.")
@click.option("--batch-max-bytes", type=ByteSize(), default=MAX_FILE_BYTES, show_default=True,
              help="Largest request file per job (Gemini: 2 GB).")
@click.option("--batch-max-requests", type=click.IntRange(min=1), default=1_000_000,
              show_default=True, help="Most requests per job.")
@click.option("--batch-max-jobs", type=click.IntRange(min=1), default=MAX_CONCURRENT_JOBS,
              show_default=True,
              help="Most jobs of this submission unfinished at once; the next waits "
                   "(Gemini: 100 concurrent batch jobs).")
def batch_submit(
    sources: tuple[str, ...], wait: bool, poll_interval: float, batch_max_bytes: int,
    batch_max_requests: int, batch_max_jobs: int, **options: Any,
) -> None:  # fmt: skip
    """Prepare SOURCE... and submit them as batch jobs; prints the JOB id on stdout."""

    def start() -> Coroutine[Any, Any, int]:
        check_arguments(sources)
        config = Config(**options)
        limits = (batch_max_bytes, batch_max_requests)
        return submit_main(sources, config, limits, poll_interval if wait else None,
                           batch_max_jobs, poll_interval)

    finish(start)


@batch_group.command("status", context_settings=HELP)
@click.argument("job")
@connection_options
def batch_status(job: str, **options: Any) -> None:
    """Show the state of JOB's batch jobs."""
    finish(lambda: status_main(job, Config(**options)))


@batch_group.command("fetch", context_settings=HELP)
@click.argument("job")
@output_option
@click.option("--wait", is_flag=True, help="Poll until every job is final first.")
@click.option("--poll-interval", type=click.FloatRange(min=0), default=30.0, show_default=True)
@connection_options
def batch_fetch(job: str, wait: bool, poll_interval: float, **options: Any) -> None:
    """Write JOB's results as JSON lines, one record per source (errors included)."""
    finish(lambda: fetch_main(job, Config(**options), poll_interval if wait else None))


@batch_group.command("cancel", context_settings=HELP)
@click.argument("job")
@connection_options
def batch_cancel(job: str, **options: Any) -> None:
    """Cancel JOB's unfinished batch jobs."""
    finish(lambda: cancel_main(job, Config(**options)))


@batch_group.command("list", context_settings=HELP)
def batch_list() -> None:
    """List the local batch job records, newest first (states as last seen), then the files
    of submissions that left no record (no job was created for them)."""
    from ..batch import leftovers, list_records

    for record in list_records():
        unsent = f", {record.not_submitted} not submitted" if record.not_submitted else ""
        click.echo(
            f"{record.id}  {record.state:<22} {record.submitted:>8} items  {record.model}{unsent}"
        )
    for job_id, paths in leftovers().items():
        names = ", ".join(path.name for path in paths)
        click.echo(f"{job_id}  INCOMPLETE: no job was created; leftover files: {names}")


async def submit_main(
    sources: tuple[str, ...], config: Config, limits: tuple[int, int], wait: float | None,
    max_jobs: int = MAX_CONCURRENT_JOBS, poll_interval: float = 30.0,
) -> int:  # fmt: skip
    """``batch submit``: the JOB id on stdout whenever a job exists; with ``wait`` (seconds
    between polls), then ``batch fetch``. ``limits``: the most bytes and requests per job;
    ``max_jobs``: the most of the submission's jobs unfinished at once (Gemini allows 100
    concurrent batch jobs), their states refreshed every ``poll_interval`` seconds while a
    job waits. Exit 0; 1 when the submission failed part-way (the jobs created stand, the
    items not sent are "not submitted" records that fetch reports); with ``wait``, fetch's
    code. Raises :class:`ConfigError` (exit 2) when no job could be created."""
    from ..batch import submit

    async with gemini.connect(config) as connection:
        record = await submit(sources, config, connection, *limits, max_jobs, poll_interval)
        click.echo(record.id)
        summary = (f"describer: batch {record.id}: {record.submitted} requests in "
                   f"{len(record.parts)} job(s), {record.failed_before} failed before submission")
        if record.not_submitted:
            summary += f", {record.not_submitted} not submitted: {record.failure}"
        say(summary)
        if config.examples or config.examples_file or config.context:
            say(f"describer: batch {record.id}: the examples and --context documents are in "
                "every request (the Batch API is given no context cache), billed at the "
                "Batch API's input price with each")
        if wait is not None:
            return await _fetch(record, config, connection, wait)
        return EXIT_SOME_FAILED if record.not_submitted else EXIT_OK


async def status_main(job: str, config: Config) -> int:
    """``batch status``: the record's state and each job's."""
    from ..batch import JobRecord, refresh

    async with gemini.connect(config) as connection:
        record = await refresh(JobRecord.load(job), connection, config)
    click.echo(f"{record.id}: {record.state} ({record.submitted} requests)")
    for part in record.parts:
        click.echo(f"  {part.name}: {part.state} ({part.requests} requests, {part.bytes:,} bytes)")
    return EXIT_OK


async def fetch_main(job: str, config: Config, wait: float | None) -> int:
    """``batch fetch``: one record per source, written like the online mode's."""
    from ..batch import JobRecord

    async with gemini.connect(config) as connection:
        return await _fetch(JobRecord.load(job), config, connection, wait)


async def cancel_main(job: str, config: Config) -> int:
    """``batch cancel``: cancel, then show the refreshed state."""
    from ..batch import JobRecord, cancel

    async with gemini.connect(config) as connection:
        record = await cancel(JobRecord.load(job), connection, config)
    click.echo(f"{record.id}: {record.state}")
    return EXIT_OK


async def _fetch(
    record: JobRecord, config: Config, connection: gemini.Connection, wait: float | None
) -> int:
    from ..batch import refresh, results, wait_until_done

    if wait is not None:
        record = await wait_until_done(record, connection, config, wait, _report_state)
    elif not record.done:
        record = await refresh(record, connection, config)
    if not record.done:
        raise ConfigError(
            f"batch {record.id} is {record.state}; fetch it when it is final (or add --wait)"
        )
    tally = Tally(model=record.model, batch=True)
    with open_sink(config.output, config.overwrite, record.model, record.prompt) as sink:
        await write_all(results(record, connection), sink, tally)
    say(tally.summary(SourceStats(skipped=record.skipped)))
    return EXIT_SOME_FAILED if tally.failed else EXIT_OK


def _report_state(record: JobRecord) -> None:
    from ..batch import FINAL_STATES

    finished = sum(part.state in FINAL_STATES for part in record.parts)
    say(f"describer: batch {record.id}: {record.state}, {finished}/{len(record.parts)} jobs final")
