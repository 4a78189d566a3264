"""--service-tier flex: sent as the request's serviceTier only when chosen, priced at half in the
summary, a longer call timeout by default, sheds (503) retried; batch submit does not take it."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from conftest import TEST_KEY, cli
from imaging import jpeg, sha256
from tap import WireTap, cli_async

from describer import Config
from describer.config import DEFAULT_MODEL
from describer.cost import (
    assumed_output,
    describe_cost,
    discount,
    estimate,
    item_estimate,
)
from describer.emulator import GeminiEmulator
from describer.gemini import create_client


@pytest.fixture
async def tap(emulator: GeminiEmulator) -> AsyncIterator[WireTap]:
    """A recording proxy in front of the emulator."""
    async with WireTap(emulator.base_url) as wiretap:
        yield wiretap


def _env(tap: WireTap, **extra: str) -> dict[str, str]:
    return {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": tap.base_url, **extra}


def _records(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


def _dollars(summary: str) -> float:
    found = re.search(r"est\. \$([0-9.]+)", summary)
    assert found, summary
    return float(found.group(1))


@pytest.mark.parametrize(
    ("args", "env", "sent"),
    [
        (["--service-tier", "flex"], {}, "flex"),
        ([], {"DESCRIBER_SERVICE_TIER": "flex"}, "flex"),
        ([], {}, None),
        (["--service-tier", "standard"], {"DESCRIBER_SERVICE_TIER": "flex"}, None),
    ],
)
async def test_flex_is_sent_as_service_tier_only_when_chosen_and_priced_at_half(
    tap: WireTap, emulator: GeminiEmulator, write_files, args: list[str],
    env: dict[str, str], sent: str | None,
) -> None:  # fmt: skip
    folder = write_files({"a.jpg": jpeg(seed=1), "b.jpg": jpeg(seed=2)})
    done = await cli_async([str(folder), "--no-progress", *args], _env(tap, **env))
    assert done.returncode == 0, done.stderr
    records = _records(done.stdout)
    assert len(records) == 2 and emulator.stats.generate_requests == 2
    assert [body.get("serviceTier") for body in tap.bodies] == [sent, sent]
    assert all("serviceTier" not in body.get("generationConfig", {}) for body in tap.bodies)
    tokens_in = sum(r["usage"]["input_tokens"] for r in records)  # type: ignore[index]
    tokens_out = sum(r["usage"]["output_tokens"] for r in records)  # type: ignore[index]
    standard = estimate(DEFAULT_MODEL, tokens_in, tokens_out)
    assert standard is not None
    if sent == "flex":
        assert f"({DEFAULT_MODEL} at $0.75/$3.75 per 1M, flex -50%)" in done.stderr
        assert _dollars(done.stderr) == pytest.approx(standard / 2, abs=1e-4)
    else:
        assert "flex" not in done.stderr
        assert _dollars(done.stderr) == pytest.approx(standard, abs=1e-4)


async def test_a_shed_flex_call_is_retried_to_success(
    tap: WireTap, emulator: GeminiEmulator, write_files
) -> None:
    shed = jpeg(seed=3)
    emulator.script(sha256(shed), "fail:503:1")  # Flex sheds: 503 UNAVAILABLE once
    folder = write_files({"a.jpg": jpeg(seed=1), "shed.jpg": shed})
    args = [str(folder), "--service-tier", "flex", "--retry-wait", "0", "--no-progress"]
    done = await cli_async(args, _env(tap))
    assert done.returncode == 0, done.stderr
    attempts = {Path(str(r["source"])).name: r["attempts"] for r in _records(done.stdout)}
    assert attempts == {"a.jpg": 1, "shed.jpg": 2}
    assert emulator.stats.responses_by_status.get(503) == 1
    assert [body.get("serviceTier") for body in tap.bodies] == ["flex"] * 3  # the retry too
    assert "2 described, 0 failed" in done.stderr


def test_the_call_timeout_waits_out_flex_queueing_unless_told() -> None:
    assert Config().call_timeout == 180
    assert Config(service_tier="flex").call_timeout == 960  # 15 min queueing + 60 s
    assert Config(service_tier="flex", request_timeout=30).call_timeout == 30
    assert Config(request_timeout=5).call_timeout == 5


async def test_the_client_is_built_with_the_tiers_timeout() -> None:
    async with aiohttp.ClientSession() as session:
        for config, millis in [(Config(api_key="k"), 180_000),
                               (Config(api_key="k", service_tier="flex"), 960_000)]:  # fmt: skip
            client = create_client(config, session)
            assert client._api_client._http_options.timeout == millis  # google-genai 3.4


async def test_an_explicit_request_timeout_wins_under_flex(
    tap: WireTap, emulator: GeminiEmulator, write_files
) -> None:
    slow = jpeg(seed=4)
    emulator.script(sha256(slow), "slow:5")
    folder = write_files({"slow.jpg": slow})
    args = [str(folder), "--service-tier", "flex", "--request-timeout", "0.5",
            "--max-attempts", "1", "--no-progress"]  # fmt: skip
    done = await cli_async(args, _env(tap))
    assert done.returncode == 1, done.stderr
    records = _records(done.stdout)
    assert len(records) == 1, done.stderr
    [record] = records
    assert record["error"] == {"type": "timeout",
                               "message": "Gemini did not answer within 0.5 s"}  # fmt: skip


def test_batch_submit_refuses_a_service_tier_and_ignores_the_variable(
    write_files, tmp_path: Path
) -> None:
    folder = write_files({"a.jpg": jpeg()})
    done = cli(["batch", "submit", str(folder), "--service-tier", "flex"], {})
    assert done.returncode == 2
    assert "batch submit takes no --service-tier: the Batch API has its own price" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "describer-home").exists()  # nothing was prepared or recorded
    # A tier exported for describe is not read here: submit goes on to its own checks.
    unset = cli(["batch", "submit", str(folder)], {"DESCRIBER_SERVICE_TIER": "flex"})
    assert unset.returncode == 2 and "GEMINI_API_KEY" in unset.stderr


def test_flex_and_batch_prices_are_half_and_do_not_stack() -> None:
    day = dt.date(2026, 11, 22)
    assert estimate("gemini-3.8-flash", 1_000_000, 1_000_000, on=day, tier="flex") == (
        pytest.approx((0.75 + 3.75) / 2)
    )
    assert discount(batch=True) == discount(tier="flex") == 0.5
    with pytest.raises(ValueError, match="Batch API takes no service tier"):
        discount(batch=True, tier="flex")
    with pytest.raises(ValueError, match="unknown service tier"):
        discount(tier="priority")
    assert describe_cost("gemini-3.8-flash", 0, 0).endswith("per 1M)")
    assert describe_cost("gemini-3.8-flash", 0, 0, batch=True).endswith(", Batch API -50%)")
    assert describe_cost("gemini-3.8-flash", 0, 0, tier="flex").endswith(", flex -50%)")


def test_an_items_estimate_is_its_input_plus_the_assumed_output() -> None:
    day = dt.date(2026, 11, 22)
    low = assumed_output("gemini-3.8-flash", "low")
    assert (low.answer, low.thinking) == (60, 220)
    assert assumed_output("gemini-2.0-flash", "high").thinking == 0  # 2.0 does not think
    capped = assumed_output("gemini-3.8-flash", "high", max_output_tokens=100)
    assert (capped.answer, capped.thinking) == (0, 100)  # thinking counts toward the cap
    one = item_estimate("gemini-3.8-flash", 1_148, "low", on=day)
    assert one == pytest.approx((1_148 * 0.75 + 280 * 3.75) / 1_000_000)
    assert item_estimate("gemini-3.8-flash", 1_148, "low", "flex", on=day) == (
        pytest.approx(one / 2)
    )
    assert item_estimate("no-such-model", 1_148, "low") is None
