"""--max-cost: the run stops taking items before its estimated spend would pass the limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import describe_run
from imaging import jpeg

from describer import Config
from describer.cost import estimate, item_estimate
from describer.emulator import GeminiEmulator, ImageServer
from describer.errors import ConfigError
from describer.limits import request_tokens
from describer.limits.spend import Spend
from describer.model import Media

LIMIT = 0.005  # US dollars: room for a handful of small images on gemini-3.8-flash


def _spent(records: list[dict[str, Any]], model: str) -> float:
    total = 0.0
    for record in records:
        usage = record["usage"]
        total += estimate(model, usage["input_tokens"], usage["output_tokens"]) or 0.0
    return total


async def test_max_cost_stops_before_the_next_call_would_pass_it_and_a_rerun_continues(
    gemini_env: GeminiEmulator,
    images: ImageServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    for i in range(20):
        images.add(f"/{i}.jpg", jpeg(48, 48, seed=i))
    urls, out = [images.url(f"/{i}.jpg") for i in range(20)], tmp_path / "out.jsonl"
    options: dict[str, Any] = {"output": out, "concurrency": 1, "max_cost": LIMIT}
    first = await describe_run(capsys, urls, **options)

    records = [json.loads(line) for line in out.read_text().splitlines()]
    model = Config().model
    assert first.code == 3 and 0 < len(records) < 20
    assert all(r["error"] is None for r in records)  # held back, not failed
    spent = _spent(records, model)
    tokens = request_tokens(Media("image/jpeg", 48, 48, 1), Config())
    one_more = item_estimate(model, tokens, Config().thinking)
    assert one_more is not None
    assert spent <= LIMIT < spent + one_more  # it stopped at the first call that would pass
    assert gemini_env.stats.generate_requests == len(records)  # nothing sent past the limit
    stop = [line for line in first.stderr.splitlines() if "stopped:" in line]
    assert len(stop) == 1 and stop[0].startswith("describer: stopped: --max-cost $0.005 reached")
    assert f"{len(records)} described, {20 - len(records)} remain" in stop[0]

    second = await describe_run(capsys, urls, **options)  # a rerun has a budget of its own
    after = [json.loads(line) for line in out.read_text().splitlines()]
    assert second.code in (0, 3) and len(after) > len(records)
    assert len({r["source"] for r in after}) == len(after)  # nothing described twice


def test_max_cost_needs_a_model_with_a_price() -> None:
    with pytest.raises(ConfigError, match="--max-cost needs a model with a price"):
        Spend(Config(model="gemini-unknown", max_cost=1.0))
