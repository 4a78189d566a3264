"""``describe_dataset``: describer over a Ray Data dataset, one quota for the cluster.

The quota keeper (:class:`~describer.ray.keeper.QuotaKeeper`) runs as one named Ray actor
(no CPU reserved: it only paces); the describing runs in an actor pool of ``workers``
actors (:class:`~describer.ray.worker.DescribeBatch`), each with ``config.concurrency``
calls at once.

Ray's own retries, and why: a pool actor that dies (its node lost, the process killed) is
restarted without limit (``max_restarts=-1``) and its tasks are retried without limit
(``max_task_retries=-1``). These are Ray Data's defaults for actor pools (Ray 2.60 sets them
unless ``map_batches`` is given others; passing them explicitly is deprecated there), and
they are safe here only because of the batch journals: a retried batch resumes its journal
and pays for nothing twice (:mod:`describer.ray.worker`; the test that kills an actor
mid-run holds both to it). A batch that raises (a bug; a
``ConfigError`` such as a missing column) is not retried by Ray (an application error) and
fails the dataset. The keeper restarts too; a restarted keeper starts its pacing afresh and
forgets learned quotas and a stop (the next 429 teaches it again).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import uuid
from dataclasses import replace
from typing import Any

from ..config import Config
from ..errors import ConfigError
from ..limits.spend import Spend
from .keeper import PERMIT_BATCH, QuotaKeeper, Stop
from .worker import DescribeBatch

log = logging.getLogger("describer")
#: Rows per batch given to an actor. Each batch is one journal file and one connection; a
#: batch much larger than ``concurrency + prefetch`` keeps the pipeline full to the end of
#: the batch, but a retried batch repeats its download of the journal's keys' rows only.
DEFAULT_BATCH_ROWS = 256
#: Batches an actor works on at once (each a task of its own: one block is one batch): the
#: next batch's downloads overlap the last calls of the one before, and its journal and
#: connection are opened meanwhile. They share the actor's concurrency slots and permits.
BATCHES_PER_ACTOR = 4
#: Logical CPUs each pool actor asks of Ray: describer's work is network-bound, and a whole
#: CPU per actor on a small machine starves Ray Data's read tasks (the job hangs).
WORKER_CPUS = 0.5
#: Seconds to wait for a cluster's address to take a connection before giving up (Ray's own
#: connect retries a closed port for many minutes: measured > 10 min with Ray 2.60).
REACH_S = 10.0
#: Environment variables describer reads that the actors get from the driver.
PASSED_ENVIRON = ("DESCRIBER_HOME", "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL")
#: Keeper actors this driver started, by name: a handle held here keeps the actor alive
#: for as long as the driver runs (an actor whose handles are all gone is ended by Ray).
_KEEPERS: dict[str, Any] = {}


def start_keeper(config: Config, workers: int, name: str | None = None) -> str:
    """Start the run's quota keeper actor for ``workers`` workers; its name. Raises
    :class:`~describer.errors.ConfigError` as :class:`~describer.limits.spend.Spend` does
    (checked here, so the actor's start is not waited for: the pool starts meanwhile)."""
    import ray

    Spend(config)
    name = name or f"describer-quota-{uuid.uuid4().hex[:12]}"
    actor = ray.remote(QuotaKeeper).options(
        name=name, num_cpus=0, max_restarts=-1, max_task_retries=-1
    )
    _KEEPERS[name] = actor.remote(config, workers)
    return name


def embed_limits(config: Config) -> Config:
    """The limits of a run's embedding calls as a keeper keeps them (:func:`start_keeper`):
    ``--embed-rpm`` as the pace, no token pace and no ``--max-cost`` (embeddings are not
    priced: the cost counts the describe calls)."""
    return replace(config, rpm=config.embed_rpm, tpm=None, max_cost=None)


def keeper_stop(name: str) -> Stop | None:
    """Why the run under keeper ``name`` stopped (None: it was not stopped)."""
    import ray

    return ray.get(_keeper(name).stopped.remote())


def keeper_pace(name: str) -> dict[str, Any]:
    """The keeper's pace now and its counts: ``rpm``, ``tpm``, ``granted``, ``grants``."""
    import ray

    handle = _keeper(name)
    pace = ray.get(handle.pace.remote())
    return pace | ray.get(handle.counts.remote())


def end_keeper(name: str) -> None:
    """End the keeper actor ``name`` (its run is over)."""
    import ray

    handle = _KEEPERS.pop(name, None)
    if handle is not None:
        ray.kill(handle)


def describe_dataset(
    ds: Any,
    config: Config,
    *,
    workers: int = 2,
    journal_dir: str | os.PathLike[str] | None = None,
    keeper: str | None = None,
    embed_keeper: str | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    permit_batch: int = PERMIT_BATCH,
    num_cpus: float = WORKER_CPUS,
) -> Any:
    """``ds`` (a ``ray.data.Dataset`` with a ``config.url_col`` column, and
    ``config.id_col`` when set) with each row's record as columns
    (:mod:`describer.ray.rows`), lazily, like any ``map_batches``.

    ``workers`` actors describe batches of ``batch_size`` rows under one quota: the keeper
    named ``keeper`` (else one is started, :func:`start_keeper`), asked for
    ``permit_batch`` permits at most at a time; with ``config.embed``, their embedding calls
    under a second keeper, ``embed_keeper`` (else one is started, :func:`embed_limits`).
    ``journal_dir``: where each batch's journal
    goes (a folder every node can write: retried tasks then pay for nothing twice); None
    keeps no journal. Requires ``ray.init`` (or a running cluster) and ``describer[ray]``.
    Raises :class:`~describer.errors.ConfigError` for examples or ``--context`` documents,
    which the workers do not send yet (refused rather than silently left out).
    """
    import ray

    if config.examples or config.examples_file or config.context:
        raise ConfigError("examples and --context are not sent by describer on Ray yet: "
                          "describe the table with describe-images instead")

    _check_room(ray.cluster_resources().get("CPU", 0.0), workers * num_cpus)
    name = keeper or start_keeper(config, workers)
    if config.embed and embed_keeper is None:
        embed_keeper = start_keeper(embed_limits(config), workers)
    environ = {k: os.environ[k] for k in PASSED_ENVIRON if k in os.environ}
    if journal_dir is not None:
        os.makedirs(journal_dir, exist_ok=True)
    kwargs = {
        "config": config, "keeper": name, "embed_keeper": embed_keeper,
        "namespace": ray.get_runtime_context().namespace,
        "journal_dir": None if journal_dir is None else os.fspath(journal_dir),
        "environ": environ, "permit_batch": permit_batch,
    }  # fmt: skip
    # one block a batch, streamed: a table read as one block (a Parquet file of one row
    # group) is spread over every actor, and a retried task is one batch
    ds = ds.repartition(target_num_rows_per_block=batch_size)
    return ds.map_batches(
        DescribeBatch, fn_constructor_kwargs=kwargs,
        compute=ray.data.ActorPoolStrategy(
            size=workers, max_tasks_in_flight_per_actor=BATCHES_PER_ACTOR,
            max_concurrent_calls_per_actor=BATCHES_PER_ACTOR),
        batch_size=batch_size,
        batch_format="pyarrow", num_cpus=num_cpus,
    )  # fmt: skip


def connect(address: str | None, workers: int) -> bool:
    """Join the Ray cluster at ``address`` (``HOST:PORT``, ``ray://HOST:PORT`` or
    ``auto``), or start a local Ray of its own for ``workers`` pool actors (None), unless
    this process already has Ray (a caller's ``ray.init``, left as it is); whether this call
    did it, and so is to end it (``ray.shutdown``). Raises
    :class:`~describer.errors.ConfigError` when the address does not answer within
    :data:`REACH_S` (Ray itself retries for many minutes) or Ray refuses to start."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        _reach(address)
    cpus = None if address else local_cpus(workers)
    try:
        # "local": a new Ray even when a cluster runs here (plain ray.init() would join it)
        ray.init(address=address or "local", num_cpus=cpus, include_dashboard=False,
                 logging_level="WARNING")  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ConfigError(f"cannot start or join {where}: {_first_line(exc)}") from None
    return True


def _reach(address: str) -> None:
    """Raise :class:`ConfigError` unless ``address``'s host takes a TCP connection (an
    address without a port, such as ``auto``, is left to Ray)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_S).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {reason}") from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def local_cpus(workers: int, num_cpus: float = WORKER_CPUS) -> int:
    """Logical CPUs to start a local Ray with: the machine's, plus the pool's own share, so
    the pool never takes the CPUs Ray Data's read and repartition tasks need (with every
    logical CPU held by actors, those tasks wait for ever and the dataset hangs)."""
    return (os.cpu_count() or 1) + math.ceil(workers * num_cpus)


def _check_room(cluster_cpus: float, pool_cpus: float) -> None:
    """Warn when the actor pool leaves less than one logical CPU for the dataset's tasks."""
    if cluster_cpus - pool_cpus < 1:
        log.warning(
            "the actor pool asks for %g of the cluster's %g logical CPUs: Ray Data's read "
            "tasks may never run (give fewer workers or num_cpus, or ray.init(num_cpus=...) "
            "more logical CPUs; describer's actors wait on the network, not the CPU)",
            pool_cpus, cluster_cpus,
        )


def _keeper(name: str) -> Any:
    import ray

    return _KEEPERS.get(name) or ray.get_actor(name)
