"""Google's cookbook pattern for describing images from URLs: the benchmark's baseline.

This follows the "Downloading images asynchronously and in parallel" example of the Gemini
cookbook notebook ``quickstarts/Asynchronous_requests.ipynb``:

* one ``aiohttp.ClientSession`` downloads every URL with ``await resp.read()``;
* ``PIL.Image.open(BytesIO(data))`` wraps the bytes, and that PIL image goes to
  ``client.aio.models.generate_content`` - so google-genai re-encodes it as PNG before upload
  (``_transformers.pil_to_blob``; an image opened from memory has no file name, so even a JPEG
  becomes a PNG), which is the cost this baseline exists to show;
* a task per URL is created up front (``asyncio.ensure_future``) and the answers are taken
  with ``asyncio.as_completed``: no concurrency limit.

The only additions to the notebook: a failure becomes a JSON line instead of ending the run,
so every URL yields exactly one line ``{"source", "description", "error"}``; and a summary on
stderr. Exit status 0 if every URL was described, else 1.

Run (against the emulator, ``python -m describer.emulator --port 0``)::

    GEMINI_API_KEY=test GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:PORT \\
        python scripts/cookbook_baseline.py urls.txt -o bench-out/cookbook.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import IO, Any

import aiohttp
import PIL.Image
from google import genai

from describer import DEFAULT_MODEL

PROMPT = "Describe this image in 3 words."


async def download_image(session: aiohttp.ClientSession, img_url: str) -> PIL.Image.Image:
    """A PIL image of the bytes at ``img_url`` (the cookbook's ``download_image``)."""
    async with session.get(img_url) as img_resp:
        buffer = io.BytesIO()
        buffer.write(await img_resp.read())
        return PIL.Image.open(buffer)


async def process_image(
    client: genai.Client, img_url: str, img_future: Awaitable[PIL.Image.Image]
) -> dict[str, Any]:
    """Describe one image with the Gemini API (the cookbook's ``process_image``)."""
    try:
        response = await client.aio.models.generate_content(
            model=DEFAULT_MODEL, contents=[await img_future, PROMPT]
        )
        return {"source": img_url, "description": response.text, "error": None}
    except Exception as exc:  # one line per URL, as describer writes
        error = {"type": type(exc).__name__, "message": str(exc)[:500]}
        return {"source": img_url, "description": None, "error": error}


async def download_and_describe(urls: list[str], out: IO[str]) -> int:
    """Start every URL's task at once; write each answer as it completes. Failures count."""
    client = genai.Client()  # GEMINI_API_KEY and GOOGLE_GEMINI_BASE_URL from the environment
    failed = 0
    async with aiohttp.ClientSession() as sesh:
        response_futures = []
        for img_url in urls:
            img_future = download_image(sesh, img_url)
            response_future = process_image(client, img_url, img_future)
            response_futures.append(asyncio.ensure_future(response_future))
        for response in asyncio.as_completed(response_futures):
            record = await response
            failed += record["error"] is not None
            out.write(json.dumps(record) + "\n")
            out.flush()
    await client.aio.aclose()
    return failed


def read_urls(path: Path) -> list[str]:
    """The URLs of a list file: one per line; blank lines and ``#`` comments skipped."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def main(argv: list[str] | None = None) -> int:
    """Describe every URL of URLS_FILE; the exit status (0 all described, 1 some failed)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("urls_file", type=Path, help="text file, one image URL per line")
    parser.add_argument("-o", "--output", type=Path, help="JSON lines here instead of stdout")
    args = parser.parse_args(argv)
    urls = read_urls(args.urls_file)
    started = time.perf_counter()
    if args.output is None:
        failed = asyncio.run(download_and_describe(urls, sys.stdout))
    else:
        with args.output.open("w", encoding="utf-8") as out:
            failed = asyncio.run(download_and_describe(urls, out))
    elapsed = time.perf_counter() - started
    print(f"cookbook: {len(urls) - failed} described, {failed} failed, {elapsed:.1f} s",
          file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
