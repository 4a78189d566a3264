"""``describe-images ray SOURCE_TABLE -o OUT_DIR``: a table described on Ray Data.

Reads the table with Ray Data (Parquet, CSV, TSV, JSONL, or a list of URLs/paths one a
line), drops the rows whose key OUT_DIR's journals already describe (resume), describes the
rest on ``--workers`` actors under one quota (:mod:`describer.ray`), then makes OUT_DIR's
Parquet shards from its journals. Without ``--address`` (or ``RAY_ADDRESS``) it starts a
local Ray of its own, even when a cluster runs on the machine. Ray is
imported here only when the command runs.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..config import Config
from ..errors import ConfigError
from ..tables.reading import TABLE_SUFFIXES
from .commands import cli
from .options import (
    HELP,
    cache_option,
    connection_options,
    embed_options,
    input_options,
    limit_options,
    model_options,
    service_tier_option,
)
from .terminal import EXIT_OK, EXIT_QUOTA, EXIT_SOME_FAILED, finish, say

#: Ray Data blocks per worker the table is read into, so that every worker has work.
BLOCKS_PER_WORKER = 4


@dataclass(frozen=True, slots=True)
class RaySettings:
    """The command's Ray options: ``address`` (None: a local Ray), ``workers``,
    ``batch_rows`` (rows per batch and journal), ``permit_batch``."""

    address: str | None
    workers: int
    batch_rows: int
    permit_batch: int


@cli.command("ray", context_settings=HELP)
@click.argument("table", metavar="SOURCE_TABLE")
@click.option("-o", "--output", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the Parquet shards and the batch journals (resumed when it "
                   "exists; on a cluster, a folder every node sees).")
@click.option("--address", envvar="RAY_ADDRESS",
              help="Ray cluster to join: HOST:PORT of its head (the driver on a node of the "
                   "cluster), ray://HOST:10001 (Ray Client), or auto [default: $RAY_ADDRESS, "
                   "else start a local Ray].")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Actors describing at once, each with --concurrency calls.")
@click.option("--batch-rows", type=click.IntRange(min=1), default=256, show_default=True,
              help="Rows per batch (one journal file each).")
@click.option("--permit-batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="Permits a worker asks the quota keeper for at once.")
@click.option("--embed", is_flag=True,
              help="Add an embedding of each description (its calls under one embedding "
                   "quota for the cluster, --embed-rpm).")
@embed_options
@model_options
@service_tier_option
@input_options
@limit_options
@connection_options
@cache_option
def ray_command(table: str, out_dir: Path, address: str | None, workers: int,
                batch_rows: int, permit_batch: int, **options: Any) -> None:  # fmt: skip
    """Describe SOURCE_TABLE on Ray Data: Parquet shards in OUT_DIR, one quota for all.

    SOURCE_TABLE is a .parquet, .csv, .tsv or .jsonl table (see --url-col, --id-col), or
    a list of URLs or paths, one a line. Rows already described in OUT_DIR are skipped.

    Exit codes: 0 all described, 1 some failed, 2 usage or configuration error, 3 stopped
    at a quota or --max-cost (rerun to continue), 130 interrupted.
    """
    settings = RaySettings(address, workers, batch_rows, permit_batch)

    def start() -> Coroutine[Any, Any, int]:
        return ray_main(table, out_dir, Config(**options), settings)

    finish(start)


async def ray_main(table: str, out_dir: Path, config: Config, settings: RaySettings) -> int:
    """The ray command's body (blocking: Ray's calls are); the exit code. Raises
    :class:`ConfigError` when Ray is not installed, the table cannot be read, or OUT_DIR
    holds a journal that is not describer's."""
    try:
        import ray
    except ImportError:
        raise ConfigError("describe-images ray needs Ray: pip install 'describer[ray]'") from None
    from ..ray.cluster import (
        connect,
        describe_dataset,
        embed_limits,
        end_keeper,
        keeper_pace,
        keeper_stop,
        start_keeper,
    )
    from ..ray.shards import done_keys, journal_dir, write_shards

    out_dir.mkdir(parents=True, exist_ok=True)
    done = done_keys(out_dir)
    started = time.monotonic()
    ours = connect(settings.address, settings.workers)
    ray.data.DataContext.get_current().enable_progress_bars = bool(config.progress)
    keeper = start_keeper(config, settings.workers)
    embed_keeper = start_keeper(embed_limits(config), settings.workers) if config.embed else None
    try:
        ds = read_table(table, config, settings.workers * BLOCKS_PER_WORKER)
        if done:
            ds = ds.map_batches(drop_done, fn_kwargs={"done": done, "config": config},
                                batch_format="pyarrow")  # fmt: skip
        out = describe_dataset(ds, config, workers=settings.workers, keeper=keeper,
                               embed_keeper=embed_keeper,
                               journal_dir=journal_dir(out_dir), batch_size=settings.batch_rows,
                               permit_batch=settings.permit_batch)  # fmt: skip
        counts = Counter[str]()
        # whole blocks, not select_columns: a projection is one more task per block, and
        # its worker processes compete with the actors for the CPUs
        for batch in out.iter_batches(batch_format="pyarrow", batch_size=None):
            counts.update(batch.column("error_type").to_pylist())
        stop, reach = keeper_stop(keeper), keeper_pace(keeper)
    finally:
        for name in (keeper, embed_keeper):
            if name is not None:
                end_keeper(name)
    # Ray's shutdown waits on each of its processes to exit (1.3 s on 2 cores); the shards
    # need no Ray, so they are written meanwhile
    closing = threading.Thread(target=ray.shutdown if ours else _nothing, name="ray-shutdown")
    closing.start()
    try:
        shards = write_shards(out_dir)
    finally:
        closing.join()
    seconds = time.monotonic() - started
    return _report(counts, len(done), shards, stop, out_dir, seconds, reach)


def _nothing() -> None:
    return None


def _report(counts: Counter[str], skipped: int, shards: Any, stop: Any, out_dir: Path,
            seconds: float, reach: dict[str, Any]) -> int:  # fmt: skip
    """The summary lines on stderr; the exit code. ``reach``: the keeper's counts (the
    ``workers`` that asked it for permits, the ``nodes`` they ran on)."""
    from ..ray.rows import NOT_DONE

    rows = sum(counts.values())
    described, not_done = counts[None], counts[NOT_DONE]  # type: ignore[index]
    failed = rows - described - not_done
    say(f"describer: {rows} rows this run: {described} described, {failed} failed, "
        f"{not_done} not done, {skipped} skipped (done before); {out_dir}: {shards.rows} rows "
        f"in {shards.shards} shard(s), {shards.described} described; {seconds:.1f} s, "
        f"{rows / max(seconds, 1e-9):.1f} rows/s; {reach['workers']} worker(s) on "
        f"{reach['nodes']} node(s)")  # fmt: skip
    if stop is not None:
        say(f"describer: stopped: {stop.reason}; rerun the same command to continue")
        return EXIT_QUOTA
    return EXIT_SOME_FAILED if failed else EXIT_OK


def read_table(table: str, config: Config, blocks: int) -> Any:
    """``table`` as a Ray dataset, in about ``blocks`` blocks: a table by ``--input-format``
    or its name's ending, else a list (one source a line, blank lines and ``#`` comments
    skipped, in the column ``config.url_col``)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import ray

    suffix = Path(table).suffix.lower()
    fmt = config.input_format or TABLE_SUFFIXES.get(suffix, "list")
    if not Path(table).exists():
        raise ConfigError(f"{table}: no such file")
    if fmt == "parquet":
        # Ray Data's DataSourceV2 Parquet reader (the default from Ray 2.60) starts up to 32
        # FooterReader actors, each a process, for any read: on 2 cores that held the first
        # request back 2-2.5 s (scripts/bench_ray.py). The V1 reader reads the footers in
        # the driver (in tasks past a few hundred files) and starts no actors.
        ray.data.DataContext.get_current().use_datasource_v2 = False
        return ray.data.read_parquet(table, override_num_blocks=blocks)
    if fmt in ("csv", "tsv"):
        parse = pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")
        text = {c: pa.string() for c in (config.url_col, config.id_col) if c}
        convert = pacsv.ConvertOptions(column_types=text)
        return ray.data.read_csv(table, parse_options=parse, convert_options=convert,
                                 override_num_blocks=blocks)  # fmt: skip
    if fmt == "jsonl":
        return ray.data.read_json(table, lines=True, override_num_blocks=blocks)
    lines = ray.data.read_text(table, override_num_blocks=blocks)
    lines = lines.filter(lambda row: bool(row["text"].strip()) and
                         not row["text"].lstrip().startswith("#"))  # fmt: skip
    return lines.rename_columns({"text": config.url_col})


def drop_done(batch: Any, done: set[bytes], config: Config) -> Any:
    """``batch`` (a ``pyarrow.Table``) without the rows whose key is in ``done``."""
    import pyarrow as pa

    from ..ray.rows import batch_sources, row_key

    keep = [row_key(source) not in done for source in batch_sources(batch, config)]
    return batch.filter(pa.array(keep, type=pa.bool_()))
