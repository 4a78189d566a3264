"""The ``describe-images`` command: parse options into a :class:`Config` and call ``run``."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from pathlib import Path

import click

from .config import DEFAULT_MAX_BYTES, DEFAULT_MODEL, DEFAULT_PROMPT, Config
from .errors import ConfigError
from .run import EXIT_INTERRUPTED, EXIT_USAGE, run

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


class ByteSize(click.ParamType):
    """A size in bytes: ``50000000``, ``50MB``, ``48MiB``."""

    name = "size"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        match = _SIZE.match(str(value))
        if not match:
            self.fail(f"{value!r} is not a size like 50MB or 52428800", param, ctx)
        unit = (match.group(2) or "").lower().removesuffix("b")
        return int(float(match.group(1)) * _UNITS[unit])


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option(
    "-p",
    "--prompt",
    default=DEFAULT_PROMPT,
    show_default=True,
    help="What to ask about each image.",
)
@click.option(
    "-m",
    "--model",
    envvar="DESCRIBER_MODEL",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Gemini model (env DESCRIBER_MODEL).",
)
@click.option("--system-instruction", help="System instruction sent with every request.")
@click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature.")
@click.option("--max-output-tokens", type=click.IntRange(min=1), help="Cap on answer tokens.")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Items in flight through download and describe.",
)
@click.option(
    "--prefetch",
    type=click.IntRange(min=0),
    help="Downloads allowed ahead of the model side [default: concurrency/2].",
)
@click.option(
    "--max-side",
    type=click.IntRange(min=16),
    metavar="PX",
    help="Downscale images whose longer side exceeds PX before upload.",
)
@click.option(
    "--max-bytes",
    type=ByteSize(),
    default=DEFAULT_MAX_BYTES,
    show_default=True,
    help="Largest download or file accepted (e.g. 50MB).",
)
@click.option(
    "--download-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds allowed for one download.",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=180.0,
    show_default=True,
    help="Seconds allowed for one model call.",
)
@click.option("--max-redirects", type=click.IntRange(min=0), default=5, show_default=True)
@click.option(
    "--rpm",
    type=click.IntRange(min=1),
    envvar="DESCRIBER_RPM",
    help="Requests per minute of your quota: paced so none is refused (env DESCRIBER_RPM).",
)
@click.option(
    "--tpm",
    type=click.IntRange(min=1),
    envvar="DESCRIBER_TPM",
    help="Input tokens per minute of your quota (env DESCRIBER_TPM).",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Tries per download and per model call (408, 429, 5xx, timeouts).",
)
@click.option(
    "--retry-wait",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="First backoff in seconds; doubles per try (jittered, at most 60).",
)
@click.option("--overwrite", is_flag=True, help="Start -o FILE afresh instead of resuming it.")
@click.option("--follow-symlinks", is_flag=True, help="Follow symlinks that leave a folder.")
@click.option(
    "--base-url", help="Gemini endpoint (default: GOOGLE_GEMINI_BASE_URL, else Google's)."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write JSON lines here instead of stdout.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr [default: when stderr is a terminal].",
)
def describe_images(sources: tuple[str, ...], **options: object) -> None:
    """Describe images with Gemini: one JSON line per SOURCE item, as each completes.

    SOURCE is an image file, a folder (recursive), an http(s) URL, a text file of URLs or
    paths (one per line, # comments), or - to read such lines from stdin.

    Exit codes: 0 all described, 1 some failed, 2 usage or configuration error, 130 interrupted.
    """
    try:
        _check_arguments(sources)
        config = Config(**options)  # type: ignore[arg-type]
        code = asyncio.run(run(config, sources))
    except ConfigError as exc:
        click.echo(f"describe-images: error: {exc}", err=True)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    sys.exit(code)


def _check_arguments(sources: tuple[str, ...]) -> None:
    if sources.count("-") > 1:
        raise ConfigError("- (stdin) can be given once")
    for source in sources:
        if source != "-" and "://" not in source and not os.path.exists(source):
            raise ConfigError(f"no such file or folder: {source}")


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="describer: %(levelname)s: %(message)s")
    describe_images()
