"""What a run learns from its 429s: each quota once on stderr, and the stop at a quota.

Gemini names the quota behind a 429 (:mod:`describer.quotas`). Each one with a known limit is
told once ("learned quota: 10 requests per minute for gemini-2.5-flash; pacing calls to
it"). A quota that stops the run (a per-day quota spent, a quota of 0, calls refused for
longer than ``--max-quota-wait``): no new items are taken, nothing more is sent (the
throttle's gate is shut), and items whose call was refused or held back are not done — no
record is written for them, so a rerun with the same ``-o FILE`` does them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from ..errors import QuotaExhausted
from ..quotas import Quota, hours_minutes, until_reset


class QuotaWatch:
    """One run's quota notices and quota stop. ``notify`` shows one line on stderr;
    ``stop`` is the run's stop event (set when a quota stops the run)."""

    def __init__(self, notify: Callable[[str], None], stop: asyncio.Event) -> None:
        self._notify = notify
        self._stop = stop
        self._told: set[Quota] = set()
        self.stopped: QuotaExhausted | None = None  # what stopped the run, if a quota did
        self.not_done: set[str] = set()  # sources refused or held back by that stop

    def learned(self, quota: Quota) -> None:
        """Tell a quota with a known limit, once per quota per run; a per-day one stops
        the run (no new items are taken)."""
        if quota.limit is not None and quota not in self._told:
            self._told.add(quota)
            pacing = "; pacing calls to it" if quota.limit and not quota.daily else ""
            self._notify(f"describer: learned quota: {quota.describe()}{pacing}")
        if quota.daily:
            spent = QuotaExhausted(quota, f"daily quota spent: {quota.describe()}")
            self.stopped = self.stopped or spent
            self._stop.set()

    def exhausted(self, stop: QuotaExhausted, source: str) -> None:
        """``source`` was refused or held back by the quota ``stop`` names: stop the run
        and leave ``source`` without a record."""
        self.stopped = self.stopped or stop
        self.not_done.add(source)
        self._stop.set()

    def stop_line(self, described: int, remaining: int | None, resumable: bool) -> str:
        """The one line that says why the run stopped and what to do (see :func:`stop_line`)."""
        assert self.stopped is not None
        stopped = self.stopped
        return stop_line(
            stopped.stop_quota, f"{described} described", remaining, resumable, str(stopped)
        )


def stop_line(
    quota: Quota | None,
    done: str,
    remaining: int | None,
    resumable: bool,
    reason: str = "",
    now: datetime | None = None,
) -> str:
    """Why a run stopped at ``quota`` and what to do: ``done`` says what was done (``"20
    described"``), ``remaining`` how many are left (None: not known, e.g. sources read from
    stdin); ``resumable`` is False without ``-o FILE``. A per-day quota says when it resets
    (midnight Pacific); any other stop (``quota`` None: ``--max-cost``) gives ``reason``."""
    rest = "the rest remain" if remaining is None else f"{remaining} remain"
    if quota is not None and quota.daily:
        wait = hours_minutes(until_reset(now or datetime.now(UTC)))
        why = f"daily quota spent ({quota.describe()}); it resets at midnight Pacific, in {wait}"
    else:
        why = reason
    line = f"describer: stopped: {why}; {done}, {rest}; rerun the same command to continue"
    return line if resumable else line + " (-o FILE makes a rerun resume)"
