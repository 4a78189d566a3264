"""describe --dry-run: counts the sources and prints the estimated cost at standard, flex and
Batch API prices on stderr; downloads nothing, calls no model, needs no key, writes nothing."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
from conftest import TEST_KEY
from imaging import SAMPLES, jpeg
from tap import cli_async

from describer.config import DEFAULT_MODEL, DEFAULT_PROMPT
from describer.cost import item_estimate
from describer.emulator import GeminiEmulator, ImageServer

#: Text tokens of a request with the default prompt, as limits.tokens counts them.
PROMPT_TOKENS = math.ceil(len(DEFAULT_PROMPT) / 4)


def _prices(stderr: str) -> dict[str, float]:
    """The three estimated prices a dry run prints, by label."""
    label = r"dry run: (standard|--service-tier flex|batch submit)[^:]*"
    found = re.findall(label + r": est\. \$([0-9.]+)", stderr)
    return {label: float(dollars) for label, dollars in found}


def _input_tokens(stderr: str) -> int:
    found = re.search(r"est\. ([0-9,]+) input tokens", stderr)
    assert found, stderr
    return int(found.group(1).replace(",", ""))


async def test_a_folder_is_counted_and_priced_three_ways_without_a_key(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    done = await cli_async([str(SAMPLES), "--dry-run", "-o", str(out)], {})  # no key at all
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and not out.exists()
    images = sum(1 for p in SAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
    assert f"{images} images to describe ({images} files, 0 URLs), 2 skipped" in done.stderr
    assert "assumes 60 answer + 220 thinking output tokens per item (--thinking low)" in (
        done.stderr
    )
    assert _input_tokens(done.stderr) == images * (1120 + PROMPT_TOKENS)  # Gemini 3 default
    prices = _prices(done.stderr)
    one = item_estimate(DEFAULT_MODEL, 1120 + PROMPT_TOKENS, "low")
    assert one is not None
    assert prices["standard"] == pytest.approx(images * one, abs=1e-4)
    assert prices["--service-tier flex"] == pytest.approx(prices["standard"] / 2, abs=1e-4)
    assert prices["batch submit"] == pytest.approx(prices["standard"] / 2, abs=1e-4)
    assert "standard (this command): est." in done.stderr


async def test_nothing_reaches_gemini_or_the_image_host(
    emulator: GeminiEmulator, images: ImageServer, write_files
) -> None:
    images.add("/a.jpg", jpeg(seed=1))
    images.add("/b.jpg", jpeg(seed=2))
    folder = write_files({"c.jpg": jpeg(seed=3)})
    listing = folder.parent / "urls.txt"
    listing.write_text(f"{images.url('/a.jpg')}\n{images.url('/b.jpg')}\n{folder}\n")
    env = {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": emulator.base_url}
    args = [str(listing), "--dry-run", "--service-tier", "flex", "--embed"]
    done = await cli_async(args, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "3 images to describe (1 file, 2 URLs)" in done.stderr
    assert "--service-tier flex (this command): est." in done.stderr
    assert not images.hits  # no URL was downloaded, not even its header
    assert emulator.stats.generate_requests == 0 and emulator.stats.embed_requests == 0
    assert emulator.stats.responses_by_status == {}


@pytest.mark.parametrize(
    ("options", "per_image"),
    [
        ([], 1120),  # Gemini 3: the default media resolution's tokens, whatever the size
        (["--media-resolution", "low"], 280),
        (["-m", "gemini-2.5-flash"], 258 * 3 * 2),  # 1600x1200: 3x2 tiles of 768 px
        (["-m", "gemini-2.5-flash", "--max-side", "768"], 258),  # 768x576: one tile
    ],
)
async def test_input_tokens_follow_the_model_resolution_and_size(
    write_files, options: list[str], per_image: int
) -> None:
    folder = write_files({"big.jpg": jpeg(1600, 1200)})
    done = await cli_async([str(folder), "--dry-run", *options], {})
    assert done.returncode == 0, done.stderr
    assert _input_tokens(done.stderr) == per_image + PROMPT_TOKENS


async def test_urls_are_assumed_and_labelled_where_the_size_matters(
    images: ImageServer,
) -> None:
    urls = "".join(f"{images.url(f'/{n}.jpg')}\n" for n in range(3))
    done = await cli_async(["-", "--dry-run", "-m", "gemini-2.5-flash"], {}, stdin=urls)
    assert done.returncode == 0, done.stderr
    assert "3 images to describe (0 files, 3 URLs)" in done.stderr
    assert "URLs are not downloaded: each assumed 1920x1080, 1,548 tokens" in done.stderr
    assert _input_tokens(done.stderr) == 3 * (1548 + PROMPT_TOKENS)
    assert not images.hits


async def test_sources_already_described_in_the_output_are_not_counted(
    write_files, tmp_path: Path
) -> None:
    folder = write_files({"a.jpg": jpeg(seed=1), "b.jpg": jpeg(seed=2), "notes.txt": b"hi"})
    shutil.copy(SAMPLES / "CREDITS.md", folder / "credits.md")
    out = tmp_path / "out.jsonl"
    done_record = {"source": str(folder / "a.jpg"), "description": "A photo.", "error": None,
                   "model": DEFAULT_MODEL, "prompt": DEFAULT_PROMPT, "usage": None}  # fmt: skip
    out.write_text(json.dumps(done_record) + "\n")
    before = out.read_bytes()
    done = await cli_async([str(folder), "--dry-run", "-o", str(out)], {})
    assert done.returncode == 0, done.stderr
    assert (f"1 image to describe (1 file, 0 URLs), 2 skipped (not images), "
            f"1 already described in {out} (not counted)") in done.stderr  # fmt: skip
    assert out.read_bytes() == before


async def test_an_output_that_is_not_describers_is_refused_untouched(
    write_files, tmp_path: Path
) -> None:
    folder = write_files({"a.jpg": jpeg()})
    out = tmp_path / "settings.json"
    out.write_text('{"theme": "dark"}\n')
    done = await cli_async([str(folder), "--dry-run", "-o", str(out)], {})
    assert done.returncode == 2
    assert "is not a describer output" in done.stderr and done.stdout == ""
    assert out.read_text() == '{"theme": "dark"}\n'
