"""The byte budget: media bytes held in flight, so memory does not follow image sizes.

An item's lease holds its downloaded bytes, then also its decoded pixels while it is
re-encoded (see :func:`describer.prepare.plan`), then the bytes it sends."""

from __future__ import annotations

import asyncio


class ByteBudget:
    """Bytes of media held in flight (downloaded, prepared, being sent), at most ``capacity``.

    Concurrency bounds items; this bounds their bytes, so a run of 12 MP photos holds no more
    memory than a run of thumbnails (google-genai holds about three times an image's size
    while it sends it). An item larger than the whole budget still goes, alone. ``None``:
    no limit.
    """

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity or None  # 0 means no limit too
        self.used = 0
        self._changed = asyncio.Condition()

    def lease(self) -> Lease:
        """A lease for one item, holding nothing yet."""
        return Lease(self)


class Lease:
    """One item's share of a :class:`ByteBudget`."""

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.held = 0

    async def reserve(self, size: int) -> None:
        """Hold ``size`` bytes (replacing what this lease held), waiting until they fit."""
        budget = self._budget
        async with budget._changed:
            budget.used -= self.held
            self.held = 0
            want = size if budget.capacity is None else min(size, budget.capacity)
            await budget._changed.wait_for(
                lambda: (
                    budget.capacity is None
                    or budget.used == 0
                    or budget.used + want <= budget.capacity
                )
            )
            budget.used += want
            self.held = want
            budget._changed.notify_all()

    def grow(self, size: int) -> None:
        """Hold at least ``size`` bytes now, without waiting (a body longer than announced)."""
        if size > self.held:
            self._budget.used += size - self.held
            self.held = size

    async def shrink(self, size: int) -> None:
        """Hold at most ``size`` bytes now, without waiting (decoded pixels freed)."""
        budget = self._budget
        async with budget._changed:
            if size < self.held:
                budget.used -= self.held - max(size, 0)
                self.held = max(size, 0)
                budget._changed.notify_all()

    async def release(self) -> None:
        """Give everything back."""
        budget = self._budget
        async with budget._changed:
            budget.used -= self.held
            self.held = 0
            budget._changed.notify_all()
