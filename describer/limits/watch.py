"""What a run learns from its 429s: each quota once on stderr, and the stop at a per-day quota.

Gemini names the quota behind a 429 (:mod:`describer.quotas`). Each one with a known limit is
told once ("learned quota: 10 requests per minute for gemini-2.5-flash"). A per-day quota
stops the run: no new items are taken, nothing more is sent (the throttle's gate is shut),
and items whose call was refused or held back are not done — no record is written for them,
so a rerun with the same ``-o FILE`` does them after midnight Pacific.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from ..quotas import Quota, hours_minutes, until_reset


class QuotaWatch:
    """One run's quota notices and per-day stop. ``notify`` shows one line on stderr;
    ``stop`` is the run's stop event (set at the first per-day quota)."""

    def __init__(self, notify: Callable[[str], None], stop: asyncio.Event) -> None:
        self._notify = notify
        self._stop = stop
        self._told: set[Quota] = set()
        self.daily: Quota | None = None
        self.not_done: set[str] = set()  # sources refused or held back by the daily quota

    def learned(self, quota: Quota) -> None:
        """Tell a quota with a known limit, once per quota per run; a per-day one stops
        the run (no new items are taken)."""
        if quota.limit is not None and quota not in self._told:
            self._told.add(quota)
            self._notify(f"describer: learned quota: {quota.describe()}")
        if quota.daily:
            self.daily = self.daily or quota
            self._stop.set()

    def exhausted(self, quota: Quota, source: str) -> None:
        """``source`` was refused or held back by the per-day ``quota``: stop the run and
        leave ``source`` without a record."""
        self.daily = self.daily or quota
        self.not_done.add(source)
        self._stop.set()

    def stop_line(self, described: int, remaining: int | None, resumable: bool) -> str:
        """The one line that says why the run stopped and what to do (see :func:`stop_line`)."""
        assert self.daily is not None
        return stop_line(self.daily, f"{described} described", remaining, resumable)


def stop_line(
    quota: Quota, done: str, remaining: int | None, resumable: bool, now: datetime | None = None
) -> str:
    """Why a run stopped at the per-day ``quota`` and what to do: ``done`` says what was
    done (``"20 described"``), ``remaining`` how many are left (None: not known, e.g.
    sources read from stdin); ``resumable`` is False without ``-o FILE``."""
    wait = hours_minutes(until_reset(now or datetime.now(UTC)))
    rest = "the rest remain" if remaining is None else f"{remaining} remain"
    line = (
        f"describer: stopped: daily quota spent ({quota.describe()}); it resets at "
        f"midnight Pacific, in {wait}; {done}, {rest}; rerun the same command to continue"
    )
    return line if resumable else line + " (-o FILE makes a rerun resume)"
