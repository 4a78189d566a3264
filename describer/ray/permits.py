"""A worker's side of the cluster's one quota: calls sent on permits from the keeper.

:class:`ClusterThrottle` is the :class:`~describer.limits.Throttle` of one worker (a Ray
actor): its concurrency slots and its 429 gate are its own, as in one process, but the pace
is the cluster's. A call waits for its worker's gate, then takes the next permit its worker
holds, asking the keeper (:class:`~describer.ray.keeper.QuotaKeeper`) for as many as there
are calls waiting (at most ``batch``) when it holds none; permit ``i`` of a grant is sent
``i * spacing`` seconds after the grant arrives. A 429 pauses this worker at once and is
told to the keeper, whose gate then holds back every other worker's next grant; a stop (a
per-day quota, ``--max-quota-wait``, ``--max-cost``) anywhere stops every worker at its next
grant. :class:`ClusterSpend` reports each call's cost to the keeper, which keeps
``--max-cost`` for the cluster.

``keeper`` is a Ray actor handle of a ``QuotaKeeper`` (its methods called ``.remote(...)``,
their results awaited); nothing here imports Ray.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..config import Config
from ..errors import ItemFailure
from ..limits import MIN_MARGIN_S, Permit, Throttle
from ..limits.spend import Spend
from ..model import Usage
from ..quotas import Quota
from .keeper import PERMIT_BATCH, Refusal, Report, Stop, Worker

#: A permit not used within this many seconds of its time is dropped, not sent late: under a
#: per-minute window, lateness up to the pacing margin (:data:`MIN_MARGIN_S`, and 2 s of a
#: minute) cannot put more calls in a window than the quota allows. Calls take permits only
#: when they are ready, so only a stalled event loop or a 429's pause makes a permit late.
LATE_S = MIN_MARGIN_S


class ClusterThrottle(Throttle):
    """One worker's throttle under the cluster's keeper (see the module docstring):
    ``config.concurrency`` calls at once, permits asked ``batch`` at most at a time;
    ``worker`` is who asks (told to the keeper, which counts workers and nodes)."""

    def __init__(
        self,
        keeper: Any,
        config: Config,
        batch: int = PERMIT_BATCH,
        on_quota: Callable[[Quota], None] | None = None,
        worker: Worker | None = None,
    ) -> None:
        super().__init__(config.concurrency, None, None, config.quota_window, on_quota)
        self.report = Report()  # told to the keeper with the next grant request
        self._keeper = keeper
        self._batch = max(1, batch)
        self._permits: deque[float] = deque()  # when each permit held may be used
        self._asking = asyncio.Lock()
        self._waiting = 0
        self._worker = worker

    async def flush(self) -> None:
        """Tell the keeper what is not yet told (the costs of the last calls)."""
        report, self.report = self.report, Report()
        if report:
            await self._keeper.report.remote(report)

    async def stopped(self) -> Stop | None:
        """Ask the keeper whether the run is stopped (one round trip); a stop is kept."""
        stop: Stop | None = await self._keeper.stopped.remote()
        if stop is not None:
            Throttle.stop(self, stop.quota, stop.reason)
        return stop

    def stop(self, quota: Quota, reason: str) -> None:
        """Stop this worker and, through the keeper, every other one."""
        self._keeper.stop.remote(Stop(quota, reason))
        super().stop(quota, reason)

    def correct_tokens(self, permit: Permit, actual_tokens: int) -> None:
        """Tokens used beyond the estimate are charged to the cluster's token pacer."""
        self.report.extra_tokens += max(0, actual_tokens - permit.reserved_tokens)

    async def _turn(self, tokens: int, count: int = 1) -> None:
        """Wait for this worker's gate, then for the time of the next permit; again if a
        429 closed the gate meanwhile (that permit is given up)."""
        while True:
            await self.gate.wait()
            delay = await self._permit(tokens) - time.monotonic()
            if delay > 0:
                await self.gate.sleep(delay)
            if self.gate.is_open:
                return
            self.gate.check()

    async def _permit(self, tokens: int) -> float:
        """The time (``time.monotonic``) of the next permit held, asking for more first
        when none is held. Raises :class:`QuotaExhausted` when the keeper says the run is
        stopped."""
        self._waiting += 1
        try:
            async with self._asking:
                while not self._fresh():
                    await self._ask(tokens)
                return self._permits.popleft()
        finally:
            self._waiting -= 1

    def _fresh(self) -> bool:
        """Whether a permit is held, late ones dropped first."""
        late = time.monotonic() - LATE_S
        while self._permits and self._permits[0] < late:
            self._permits.popleft()
        return bool(self._permits)

    async def _ask(self, tokens: int) -> None:
        report, self.report = self.report, Report()
        count = min(self._batch, self._waiting)
        grant = await self._keeper.grant.remote(count, tokens, report, self._worker)
        if grant.stopped is not None:
            Throttle.stop(self, grant.stopped.quota, grant.stopped.reason)
            self.gate.check()
        now = time.monotonic()
        self._permits.extend(now + i * grant.spacing for i in range(grant.count))

    def _refused(self, failure: ItemFailure, sent_at: float) -> None:
        """A 429 here: the keeper is told (every worker's next grant waits for its gate),
        and this worker pauses at once; the permits it holds are given up."""
        self._keeper.refused.remote(Refusal.of(failure, sent_at))
        self._permits.clear()
        super()._refused(failure, sent_at)


class ClusterSpend(Spend):
    """A worker's :class:`Spend`: ``--max-cost`` is kept by the keeper (it reserves each
    permit's estimated dollars when granting it); each call's estimate and usage are
    reported to it with the worker's next grant request (``throttle.report``)."""

    def __init__(self, config: Config, throttle: ClusterThrottle) -> None:
        super().__init__(replace(config, max_cost=None))
        self._throttle = throttle

    def settle(self, reserved: float, usage: Usage | None) -> None:
        """Settle locally and queue the settlement for the keeper."""
        super().settle(reserved, usage)
        self._throttle.report.settle(reserved, self.spent_on(usage))
