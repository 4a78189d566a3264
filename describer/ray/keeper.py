"""One quota for the whole cluster: the :class:`QuotaKeeper`, held by one named Ray actor.

The keeper holds the run's limits exactly as one process does, by holding the same objects:
a :class:`~describer.limits.Throttle` (the ``--rpm``/``--tpm`` pacers, the quotas learned
from 429s, the rate probe, the shared 429 gate and its shut for good at a per-day quota) and
a :class:`~describer.limits.spend.Spend` (``--max-cost``). Workers do not ask it once per
call: they ask for permits in batches (:meth:`QuotaKeeper.grant`), and a grant of ``n``
permits charges the pacers ``n`` calls' worth and says how far apart the worker is to send
them, so the cluster's calls are spaced as one process spaces its own.

The batch size trades round trips for reaction time. Each grant is one actor call (~1 ms on
one node, a network round trip across nodes): at 30,000 RPM, batches of 1 would be 500 calls
a second into one actor; batches of 8 are ~60. But permits already granted are spent even
after a 429 or a daily stop somewhere else: at most ``workers * batch`` calls go out after
the keeper learns of a stop, and a worker that asks for more permits than it has calls ready
leaves paced slots unused (the quota is under-used, never over-used). Workers therefore ask
for as many permits as they have calls waiting, at most :data:`PERMIT_BATCH`.

Nothing here imports Ray; :func:`describer.ray.cluster.start_keeper` runs it as an actor.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from ..config import Config
from ..errors import ItemFailure, QuotaExhausted
from ..limits import Permit, Throttle
from ..limits.spend import Spend
from ..model import ErrorType
from ..quotas import Quota

#: Permits a worker asks for at most in one grant (see the module docstring).
PERMIT_BATCH = 8
#: A worker as the keeper counts it: its Ray node's id and its process id.
Worker = tuple[str, int]
#: The quota a ``--max-cost`` stop is reported under (it is the run's own limit, not Gemini's).
MAX_COST = Quota("dollars", "run")


@dataclass(frozen=True, slots=True)
class Stop:
    """Why the cluster's run stopped: the ``quota`` spent (:data:`MAX_COST` for
    ``--max-cost``) and the ``reason``, one line."""

    quota: Quota
    reason: str

    def error(self) -> QuotaExhausted:
        """The stop as the exception a worker's calls raise."""
        return QuotaExhausted(self.quota, self.reason)


@dataclass(frozen=True, slots=True)
class Grant:
    """``count`` permits: the first may be sent at once, each next one ``spacing`` seconds
    after the one before; ``stopped``: the run is stopped (``count`` is then 0)."""

    count: int
    spacing: float = 0.0
    stopped: Stop | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A 429 a worker met: what its :class:`~describer.errors.ItemFailure` said, and
    ``age``, the seconds since its call was sent (clocks differ between nodes)."""

    quota: Quota | None
    quotas: tuple[Quota, ...]
    retry_after: float | None
    age: float

    @classmethod
    def of(cls, failure: ItemFailure, sent_at: float) -> Refusal:
        """The refusal of ``failure``, a call sent at ``sent_at`` (``time.monotonic``)."""
        age = time.monotonic() - sent_at
        return cls(failure.quota, failure.quotas, failure.retry_after, age)

    def failure(self) -> ItemFailure:
        """The 429 again, as the keeper's throttle reads it."""
        return ItemFailure(ErrorType.RATE_LIMITED, "429", retryable=True,
                           retry_after=self.retry_after, quota=self.quota,
                           quotas=self.quotas)  # fmt: skip


@dataclass(slots=True)
class Report:
    """What a worker tells the keeper with its next grant request: the finished calls'
    ``reserved`` dollars (their estimates, to release) and ``spent`` dollars (priced from
    their usage by the worker, which has the same prices), and ``extra_tokens``, input
    tokens used beyond the estimates. Sums, not one entry a call: a grant request is
    pickled, and a list of usages cost a worker ~5 % of its CPU (scripts/bench_ray.py)."""

    reserved: float = 0.0
    spent: float = 0.0
    extra_tokens: int = 0

    def settle(self, reserved: float, spent: float) -> None:
        """Add one finished call."""
        self.reserved += reserved
        self.spent += spent

    def __bool__(self) -> bool:
        """Whether there is anything to tell (settling no dollars changes nothing)."""
        return bool(self.reserved or self.spent or self.extra_tokens)


class QuotaKeeper:
    """The run's limits for ``workers`` workers of ``config.concurrency`` calls each.

    Async methods: in a Ray actor they run on the actor's one event loop, so a grant
    waiting for the pacer does not hold back a worker reporting a 429. Raises
    :class:`~describer.errors.ConfigError` as :class:`Spend` does (``--max-cost`` for a model
    without a price).
    """

    def __init__(self, config: Config, workers: int = 1) -> None:
        concurrency = max(1, workers) * config.concurrency
        self._throttle = Throttle(concurrency, config.rpm, config.tpm, config.quota_window)
        self._spend = Spend(config)
        self._cost_stop: Stop | None = None
        self.granted = 0  # permits granted so far
        self.grants = 0  # grant calls answered so far
        self.workers: set[Worker] = set()  # the workers that asked

    async def grant(
        self, count: int, tokens: int, report: Report | None = None, worker: Worker | None = None
    ) -> Grant:
        """Up to ``count`` permits for calls of ``tokens`` estimated input tokens each,
        once the pacers allow them (this waits); fewer when ``--max-cost`` leaves room for
        fewer; a stopped grant once the run is stopped. ``report`` is settled first;
        ``worker`` (its node's id and its process id) is counted."""
        if worker is not None:
            self.workers.add(worker)
        if report:
            self.report(report)
        reserved = self._reserve(count, tokens)
        if not reserved:
            return Grant(0, stopped=self.stopped())
        try:
            spacing = await self._throttle.admit(tokens, len(reserved))
        except QuotaExhausted:
            for dollars in reserved:
                self._spend.settle(dollars, None)
            return Grant(0, stopped=self.stopped())
        self.granted += len(reserved)
        self.grants += 1
        return Grant(len(reserved), spacing)

    def report(self, report: Report) -> None:
        """Settle finished calls' dollars and charge the token pacer for tokens used
        beyond the estimates."""
        self._spend.settle_dollars(report.reserved, report.spent)
        self._spend.reserved = max(0.0, self._spend.reserved)  # estimates differ per call
        if report.extra_tokens > 0:
            self._throttle.correct_tokens(Permit(0.0, 0), report.extra_tokens)

    def refused(self, refusal: Refusal) -> Stop | None:
        """A worker met a 429: the gate pauses, the quota is learned, a per-day quota (or a
        quota of 0) stops the run, as in one process. The stop, if the run is stopped."""
        sent_at = time.monotonic() - refusal.age
        with contextlib.suppress(QuotaExhausted):  # the gate is shut: stopped() says why
            self._throttle.refused(refusal.failure(), sent_at)
        return self.stopped()

    def stop(self, stop: Stop) -> None:
        """A worker stopped at a quota (429s past ``--max-quota-wait``): stop every one."""
        self._throttle.stop(stop.quota, stop.reason)

    def stopped(self) -> Stop | None:
        """Why the run is stopped, or None while it goes on."""
        gate = self._throttle.gate
        if gate.spent is not None:
            return Stop(gate.spent, gate.reason)
        return self._cost_stop

    def pace(self) -> dict[str, float | None]:
        """The requests and input tokens per minute the cluster is paced to now."""
        return {"rpm": self._throttle.rpm, "tpm": self._throttle.tpm}

    def counts(self) -> dict[str, int]:
        """Permits ``granted``, grant calls answered (``grants``), and the ``workers`` that
        asked and the ``nodes`` they are on, so far."""
        nodes = {node for node, _ in self.workers}
        return {"granted": self.granted, "grants": self.grants,
                "workers": len(self.workers), "nodes": len(nodes)}  # fmt: skip

    def _reserve(self, count: int, tokens: int) -> list[float]:
        """Reserve up to ``count`` calls' estimated dollars; their amounts. When none fit
        under ``--max-cost`` the run stops."""
        if self.stopped() is not None:
            return []
        reserved: list[float] = []
        try:
            for _ in range(count):
                reserved.append(self._spend.reserve(tokens))
        except QuotaExhausted as stop:
            if not reserved:
                self._cost_stop = Stop(MAX_COST, str(stop))
        return reserved
