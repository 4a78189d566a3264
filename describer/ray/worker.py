"""The callable class Ray Data runs in each actor of the pool: describer's own pipeline over
one batch of rows at a time, under the cluster's quota.

Each actor holds one :class:`~describer.ray.permits.ClusterThrottle` and
:class:`~describer.ray.permits.ClusterSpend`, and one connection (one HTTP session), for all
its batches (Ray Data runs an async callable class's batches, up to 4 at once, on one event
loop per actor), and opens the result cache per batch. With a journal folder, every record
is written the moment it is made to the batch's own JSONL journal, ``<journal_dir>/<batch
digest>.jsonl`` (the digest of the batch's row keys, in order): a task Ray retries after its
actor died gets the same batch, resumes that journal (:func:`describer.output.open_sink`)
and describes only what is not in it, so nothing described is described (or billed) again.
The batch's rows are then made from the journal: one record per key, whichever attempt wrote
it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import gemini
from .._streams import closing
from ..cache import open_cache
from ..config import Config
from ..embed import Embedder, embed_results
from ..limits.watch import QuotaWatch
from ..model import Result, Source
from ..output import open_sink
from ..pipeline import Pipeline
from ..resume import recognised_lines
from .keeper import PERMIT_BATCH
from .permits import ClusterSpend, ClusterThrottle
from .rows import batch_sources, record_columns, record_key, row_key

log = logging.getLogger("describer")
Records = dict[bytes, dict[str, Any]]


class DescribeBatch:
    """``ray.data.Dataset.map_batches`` callable class: ``batch`` (a ``pyarrow.Table``) →
    the same table with the record columns (:mod:`describer.ray.rows`).

    ``keeper``: the name of the run's quota keeper actor in ``namespace`` (and
    ``embed_keeper``, the one of its embedding calls, with ``--embed``); ``journal_dir``:
    where batch journals go (a folder every node sees; None: records are kept in memory
    only, and a retried task describes its batch again); ``environ``: variables describer
    reads (``DESCRIBER_HOME``, API keys) set in the actor's process.
    """

    def __init__(
        self,
        config: Config,
        keeper: str,
        namespace: str | None = None,
        journal_dir: str | None = None,
        environ: dict[str, str] | None = None,
        permit_batch: int = PERMIT_BATCH,
        embed_keeper: str | None = None,
    ) -> None:
        import ray

        os.environ.update(environ or {})
        self._config = config
        self._keeper = ray.get_actor(keeper, namespace=namespace)
        self._embed_keeper = (None if embed_keeper is None
                              else ray.get_actor(embed_keeper, namespace=namespace))  # fmt: skip
        self._node = ray.get_runtime_context().get_node_id()
        self._journals = Path(journal_dir) if journal_dir else None
        self._permit_batch = permit_batch
        self._limits: tuple[ClusterThrottle, ClusterSpend] | None = None
        self._embed_throttle: ClusterThrottle | None = None
        self._connection: gemini.Connection | None = None
        self._connecting = asyncio.Lock()  # bound to the actor's loop at first use
        self._held = contextlib.AsyncExitStack()  # the connection, for the actor's life

    async def __call__(self, batch: Any) -> Any:
        sources = batch_sources(batch, self._config)
        limits = self._shared_limits()
        throttle = limits[0]
        stop = await throttle.stopped()
        records = await self._describe(sources, limits, describe=stop is None)
        await throttle.flush()
        stop = stop or await throttle.stopped()
        return record_columns(batch, sources, records, self._config,
                              stop.reason if stop else "")  # fmt: skip

    def _shared_limits(self) -> tuple[ClusterThrottle, ClusterSpend]:
        """This actor's throttle and spend, made on its event loop by the first batch."""
        if self._limits is None:
            worker = (self._node, os.getpid())
            throttle = ClusterThrottle(self._keeper, self._config, self._permit_batch,
                                       worker=worker)  # fmt: skip
            self._limits = (throttle, ClusterSpend(self._config, throttle))
            if self._embed_keeper is not None:
                self._embed_throttle = ClusterThrottle(
                    self._embed_keeper, self._config, self._permit_batch, worker=worker)
        return self._limits

    async def _describe(
        self, sources: list[Source], limits: tuple[ClusterThrottle, ClusterSpend],
        describe: bool = True,
    ) -> Records:
        """The batch's records by key: those its journal holds, and, when ``describe``, those
        made now for the rest."""
        todo = {row_key(source): source for source in sources}
        if self._journals is None:
            records: Records = {}
            if describe:
                await self._run(list(todo.values()), limits, lambda r: _keep(records, r))
            return records
        config = self._config
        path = self._journals / f"{batch_digest(todo)}.jsonl"
        structured = config.schema is not None
        with open_sink(path, False, config.model, config.prompt, structured) as sink:
            if describe:
                rest = [s for key, s in todo.items() if key not in sink.resume.done]
                await self._run(rest, limits, sink.write)
        return {record_key(record): record for record in journal_records(path)}

    async def _run(
        self,
        sources: list[Source],
        limits: tuple[ClusterThrottle, ClusterSpend],
        write: Callable[[Result], None],
    ) -> None:
        """Describe ``sources`` (embedding too with ``--embed``) and ``write`` each record
        that is done; those a quota stop refused or held back get none."""
        if not sources:
            return
        config = self._config
        stop = asyncio.Event()
        watch = QuotaWatch(log.warning, stop)
        connection = await self._connect()
        async with open_cache(config) as cache:
            pipeline = Pipeline(config, connection, watch, cache, limits=limits)
            results = pipeline.run(iter(sources), stop)
            if config.embed:
                embedder = Embedder(connection, config, throttle=self._embed_throttle)
                results = embed_results(results, embedder, config)
            async with closing(results) as stream:
                async for result in stream:
                    if result.source not in watch.not_done:
                        write(result)


    async def _connect(self) -> gemini.Connection:
        """The actor's one connection (HTTP session and google-genai client), made by its
        first batch and kept for the actor's life: a client per batch cost an SSL context
        each (google-genai makes one per client), ~4 % of an actor's time in
        scripts/bench_ray.py. Ray ends the actor's process with it."""
        async with self._connecting:
            if self._connection is None:
                self._connection = await self._held.enter_async_context(
                    gemini.connect(self._config))
        return self._connection


def batch_digest(keys: Iterator[bytes] | dict[bytes, Any]) -> str:
    """The name of a batch's journal: a digest of its row keys, in order (32 hex digits)."""
    digest = hashlib.blake2b(digest_size=16)
    for key in keys:
        digest.update(key)
    return digest.hexdigest()


def journal_records(path: Path) -> Iterator[dict[str, Any]]:
    """The whole records of a journal, in order (a torn last line left out)."""
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for _, record in recognised_lines(handle, path, "a batch journal of describer"):
            if record is not None:
                yield record


def _keep(records: Records, result: Result) -> None:
    record = result.to_json()
    records[record_key(record)] = record
