"""Pacing under a quota: the pacer, the rate probe, the slow start and what a Throttle learns
from a 429, on fake clocks (no wall-clock timing)."""

from __future__ import annotations

import asyncio

import pytest

from describer.errors import ItemFailure, QuotaExhausted
from describer.limits import Throttle
from describer.limits.pacing import START_SPACING_S, START_SPREAD_S, Pacer, RateProbe, start_gap
from describer.model import ErrorType
from describer.quotas import UNKNOWN, Quota


class FakeClock:
    """Seconds that pass only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def test_the_pacer_lets_each_send_go_its_cost_after_the_one_before() -> None:
    clock = FakeClock()
    pacer = Pacer(clock)
    released: list[float] = []
    gap = 1.0

    async def send() -> None:
        await pacer.take(lambda: gap, clock.sleep)
        released.append(clock.now)

    await asyncio.gather(*(send() for _ in range(3)))
    gap = 3.0  # a rate learned meanwhile: read when the next send is released
    await send()
    pacer.defer(0.5)  # tokens used beyond the estimate push the next send later
    await send()
    assert released == [0.0, 1.0, 2.0, 3.0, 6.5]


def test_the_rate_probe_halves_once_per_burst_and_climbs_back_slowly() -> None:
    clock = FakeClock()
    probe = RateProbe(window=60.0, clock=clock)
    for _ in range(30):  # 30 sends in 10 s: 180 a minute
        probe.sent()
        clock.now += 1 / 3
    assert probe.rpm is None  # no 429 yet: not paced
    burst_sent_at = clock.now - 0.5
    probe.refused(burst_sent_at)
    assert probe.rpm == pytest.approx(90.0)  # half the rate measured
    probe.refused(burst_sent_at)  # the same burst: no second cut
    assert probe.rpm == pytest.approx(90.0)
    clock.now += 1
    probe.refused(clock.now)  # sent after the cut: cut again
    assert probe.rpm == pytest.approx(45.0)
    for _ in range(45):  # a minute of successes at 45 a minute adds about 10 a minute
        probe.sent()
        probe.succeeded()
    assert 54.0 < probe.rpm < 56.0  # type: ignore[operator]
    for _ in range(20):
        clock.now += 10
        probe.refused(clock.now)
    assert probe.rpm == RateProbe.MIN_RPM  # never below one a minute


def test_the_slow_start_halves_the_gap_each_wave_then_ends() -> None:
    gaps = [start_gap(sent, 4) for sent in range(0, 28, 4)]
    assert gaps == [START_SPACING_S / 2**wave for wave in range(6)] + [0.0]
    assert start_gap(0, 64) == START_SPREAD_S / 64  # a wide first wave is spread, not slowed


def _refusal(
    quota: Quota, retry_after: float | None = 0.0, also: tuple[Quota, ...] = ()
) -> ItemFailure:
    return ItemFailure(ErrorType.RATE_LIMITED, "429", retryable=True, retry_after=retry_after,
                       quota=quota, quotas=(quota, *also))  # fmt: skip


async def _refuse(throttle: Throttle, failure: ItemFailure) -> None:
    with pytest.raises(ItemFailure):
        async with throttle.permit(258):
            raise failure


async def test_a_throttle_paces_to_the_lowest_quota_a_429_names_and_never_above_the_users(
) -> None:
    seen: list[Quota] = []
    throttle = Throttle(concurrency=4, rpm=50, window=0.01, on_quota=seen.append)
    assert (throttle.rpm, throttle.tpm) == (50, None)
    requests = Quota("requests", "minute", 20, "m", "GenerateRequestsPerMinute")
    tokens = Quota("tokens", "minute", 5000, "m", "GenerateContentInputTokensPerModelPerMinute")
    await _refuse(throttle, _refusal(requests, also=(tokens,)))  # one 429, two violations
    await _refuse(throttle, _refusal(Quota("requests", "minute", 90, "m")))
    assert (throttle.rpm, throttle.tpm) == (20, 5000) and seen[:2] == [requests, tokens]


async def test_a_429_of_unknown_limit_cuts_the_probed_rate_instead() -> None:
    throttle = Throttle(concurrency=4, window=0.01)
    await _refuse(throttle, _refusal(UNKNOWN, retry_after=None))
    assert throttle.rpm is not None and throttle.learned_rpm is None


@pytest.mark.parametrize(
    ("quota", "reason"),
    [
        (Quota("requests", "day", 20, "m"), "daily quota spent: 20 requests per day for m"),
        (Quota("requests", "minute", 0, "m"), "no quota for this model: 0 requests per minute"),
    ],
)
async def test_a_daily_quota_or_a_quota_of_zero_stops_every_call(quota: Quota, reason: str) -> None:
    throttle = Throttle(concurrency=4, window=0.01)
    with pytest.raises(QuotaExhausted) as stopped:
        async with throttle.permit(258):
            raise _refusal(quota, retry_after=1.0)
    assert str(stopped.value).startswith(reason)
    with pytest.raises(QuotaExhausted):  # and nothing more is sent
        async with throttle.permit(258):
            pytest.fail("a call was let through after the stop")


async def test_give_up_stops_the_run_with_a_line_that_names_the_wait() -> None:
    throttle = Throttle(concurrency=4, window=0.01)
    stop = throttle.give_up(_refusal(UNKNOWN), 900.0)
    assert str(stop) == (
        "calls were refused for 15 min by a quota (an unknown number of requests per minute; "
        "--max-quota-wait 900 s)"
    )
    with pytest.raises(QuotaExhausted):
        async with throttle.permit(258):
            pytest.fail("a call was let through after the stop")
