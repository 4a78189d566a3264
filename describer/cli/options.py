"""The command line's option types and the option groups commands share."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..config import (
    DEFAULT_CACHE_TTL,
    DEFAULT_EMBED_DIM,
    DEFAULT_EMBED_MODEL,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_QUOTA_WAIT,
    DEFAULT_MODEL,
    DEFAULT_PROMPT,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SEND,
    DEFAULT_SERVICE_TIER,
    DEFAULT_THINKING,
    FLEX_REQUEST_TIMEOUT,
    INLINE_LIMIT_BYTES,
    INPUT_FORMATS,
    MEDIA_KINDS,
    SEND_MODES,
    SERVICE_TIERS,
    THINKING_LEVELS,
)

F = TypeVar("F", bound=Callable[..., Any])
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}
HELP = {"help_option_names": ["-h", "--help"]}


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


class MediaKinds(click.ParamType):
    """A comma-separated subset of image, pdf, audio, video."""

    name = "kinds"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> frozenset[str]:
        if isinstance(value, frozenset):
            return value
        kinds = frozenset(k.strip().lower() for k in str(value).split(",") if k.strip())
        if not kinds or kinds - set(MEDIA_KINDS):
            self.fail(f"{value!r}: choose from {', '.join(MEDIA_KINDS)}", param, ctx)
        return kinds


def options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator applying ``decorators`` in order (a reusable group of options)."""
    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


model_options = options(
    click.option("-p", "--prompt", default=DEFAULT_PROMPT, show_default=True,
                 help="What to ask about each image."),
    click.option("-m", "--model", envvar="DESCRIBER_MODEL", default=DEFAULT_MODEL,
                 show_default=True, help="Gemini model (env DESCRIBER_MODEL)."),
    click.option("--system-instruction", help="System instruction sent with every request."),
    click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature."),
    click.option("--max-output-tokens", type=click.IntRange(min=1), help="Cap on answer tokens."),
    click.option("--media-resolution", type=click.Choice(["low", "medium", "high"]),
                 help="Gemini's media_resolution: tokens per image (Gemini 3: 280, 560, 1120)."),
    click.option("--thinking", type=click.Choice(THINKING_LEVELS), default=DEFAULT_THINKING,
                 show_default=True,
                 help="Thinking level (billed as output tokens); model: the model's default."),
    click.option("--schema", metavar="SPEC",
                 help="Answer as JSON valid under a schema, parsed into each record's data: "
                      "llm's concise syntax ('title, people int: how many'), inline JSON "
                      "Schema, or a JSON Schema file."),
)  # fmt: skip

#: Examples and reference documents, sent with every request (describe and batch submit).
context_options = options(
    click.option("--example", "examples", nargs=2, multiple=True, metavar="IMAGE TEXT",
                 help="A few-shot example: an image (file or URL) and the answer wanted for "
                      "it; repeatable."),
    click.option("--examples", "examples_file", type=click.Path(dir_okay=False, path_type=Path),
                 help='Examples from a JSONL file: {"source", "answer"} lines, or an earlier '
                      'run\'s records marked "good": true.'),
    click.option("--context", multiple=True, metavar="PATH",
                 help="A reference document for every request (text, Markdown, PDF, image); "
                      "repeatable."),
)  # fmt: skip

#: The context cache of an online run (describe only: the Batch API is sent the shared part
#: in each request).
context_cache_options = options(
    click.option("--cache-ttl", type=click.FloatRange(min=60), metavar="S",
                 help="Seconds the context cache lives; extended when the run outlives it "
                      f"[default: the run's estimated length, 300-{DEFAULT_CACHE_TTL:g}]."),
    click.option("--context-cache/--no-context-cache", default=True, show_default=True,
                 help="Send examples and --context once, as a Gemini context cache, when "
                      "that is cheaper; --no-context-cache: inline with every request."),
)  # fmt: skip

input_options = options(
    click.option("-c", "--concurrency", type=click.IntRange(min=1), default=16, show_default=True,
                 help="Items in flight through download and describe."),
    click.option("--prefetch", type=click.IntRange(min=0),
                 help="Downloads allowed ahead of the model side [default: concurrency/2]."),
    click.option("--media", type=MediaKinds(), default="image", show_default=True,
                 help="What to take, comma-separated: image, pdf, audio, video."),
    click.option("--max-side", type=click.IntRange(min=16), metavar="PX",
                 help="Downscale images whose longer side exceeds PX before upload."),
    click.option("--send", type=click.Choice(SEND_MODES), default=DEFAULT_SEND,
                 show_default=True,
                 help="For URLs: bytes (download, send inline), url (Gemini fetches the URL), "
                      "auto (the URL, else its bytes)."),
    click.option("--max-bytes", type=ByteSize(), default=DEFAULT_MAX_BYTES, show_default=True,
                 help="Largest download or file accepted (e.g. 50MB)."),
    click.option("--inline-limit", type=ByteSize(), default=INLINE_LIMIT_BYTES, show_default=True,
                 help="Media larger than this go by the Files API (uploaded, then deleted)."),
    click.option("--memory-budget", type=ByteSize(),
                 help="Media bytes held in flight; bigger images wait their turn; 0: no limit "
                      "[default: 1.75 MiB per --concurrency slot, 28 MiB at 16]."),
    click.option("--download-timeout", type=click.FloatRange(min=0, min_open=True), default=60.0,
                 show_default=True, help="Seconds allowed for one download."),
    click.option("--max-redirects", type=click.IntRange(min=0), default=5, show_default=True),
    click.option("--follow-symlinks", is_flag=True, help="Follow symlinks that leave a folder."),
    click.option("--input-format", type=click.Choice(INPUT_FORMATS),
                 help="Read SOURCE files (and -) as this table format, or as a list of sources "
                      "[default: .csv .tsv .parquet .jsonl are tables, other files lists]."),
    click.option("--url-col", default="url", show_default=True, metavar="COLUMN",
                 help="A table's column of URLs or paths."),
    click.option("--id-col", metavar="COLUMN",
                 help="A table's column of stable keys: the record's id, and what resume and "
                      "repeats go by."),
    click.option("--keep-cols", metavar="A,B|all",
                 help="A table's columns carried into each record's meta (all: every other "
                      "column)."),
)  # fmt: skip

limit_options = options(
    click.option("--rpm", type=click.IntRange(min=1), envvar="DESCRIBER_RPM",
                 help="Requests per minute of your quota: paced so none is refused "
                      "(env DESCRIBER_RPM)."),
    click.option("--tpm", type=click.IntRange(min=1), envvar="DESCRIBER_TPM",
                 help="Input tokens per minute of your quota (env DESCRIBER_TPM)."),
    click.option("--max-cost", type=click.FloatRange(min=0, min_open=True), metavar="USD",
                 envvar="DESCRIBER_MAX_COST",
                 help="Stop taking items once the estimated spend, calls in flight included, "
                      "would pass USD (exit 3; a rerun continues; env DESCRIBER_MAX_COST)."),
)  # fmt: skip

cache_option = click.option(
    "--cache/--no-cache", default=True, show_default=True,
    help="Take answers already paid for (same bytes, model, prompt and settings) from "
         "$DESCRIBER_HOME/cache.sqlite3, and keep new ones there; --no-cache: neither, and "
         "every item gets its own model call.",
)  # fmt: skip

connection_options = options(
    click.option("--base-url",
                 help="Gemini endpoint (default: GOOGLE_GEMINI_BASE_URL, else Google's)."),
    click.option("--max-attempts", type=click.IntRange(min=1), default=5, show_default=True,
                 help="Tries per download and per model call (408, 5xx, timeouts; a model "
                      "call's 429s are waited out and not counted)."),
    click.option("--max-quota-wait", type=click.FloatRange(min=0, min_open=True), metavar="S",
                 default=DEFAULT_MAX_QUOTA_WAIT, show_default=True,
                 help="Seconds of 429s one model call may meet before the run stops at that "
                      "quota (exit 3; rerun to continue)."),
    click.option("--retry-wait", type=click.FloatRange(min=0), default=1.0, show_default=True,
                 help="First backoff in seconds; doubles per try (jittered, at most 60)."),
    click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True),
                 help=f"Seconds allowed for one model call [default: {DEFAULT_REQUEST_TIMEOUT:g}; "
                      f"{FLEX_REQUEST_TIMEOUT:g} with --service-tier flex]."),
)  # fmt: skip

#: Online calls only: ``batch submit`` refuses it (:data:`refuse_service_tier`), and does not
#: read DESCRIBER_SERVICE_TIER, so a tier exported for describe neither changes nor breaks it.
service_tier_option = click.option(
    "--service-tier", type=click.Choice(SERVICE_TIERS), default=DEFAULT_SERVICE_TIER,
    envvar="DESCRIBER_SERVICE_TIER", show_default=True,
    help="flex: Gemini's Flex tier, half price, answers within minutes (1-15), best effort; "
         f"--request-timeout then defaults to {FLEX_REQUEST_TIMEOUT:g} s "
         "(env DESCRIBER_SERVICE_TIER).",
)  # fmt: skip

index_option = click.option(
    "--index", type=click.Path(path_type=Path), metavar="PATH",
    help="The vector index folder [default: the output file's name + .index].")

embed_options = options(
    click.option("--embed-model", default=DEFAULT_EMBED_MODEL, show_default=True,
                 help="Embedding model."),
    click.option("--embed-dim", type=click.IntRange(min=1), default=DEFAULT_EMBED_DIM,
                 show_default=True,
                 help="Vector length (output_dimensionality): 768, 1536 or 3072 (the model's "
                      "full length) as Google recommends."),
    click.option("--embed-batch-size", type=click.IntRange(1, 100), default=100, show_default=True,
                 help="Texts per embedding call (at most 100: Gemini API limit)."),
    click.option("--embed-timeout", type=click.FloatRange(min=0), default=2.0, show_default=True,
                 help="Seconds a partial batch waits for more descriptions."),
    click.option("--embed-rpm", type=click.IntRange(min=1),
                 help="Embedding calls per minute allowed by your quota."),
    click.option("--embed-field", metavar="FIELD",
                 help="Embed this field of each record's data (--schema answers) instead of "
                      "the description."),
)  # fmt: skip

output_option = click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
    help="Write JSON lines here instead of stdout (resumed when it exists).",
)  # fmt: skip


def _refuse_tier(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.UsageError(
            "batch submit takes no --service-tier: the Batch API has its own price, already "
            "half of standard, which Flex does not lower further; --service-tier flex is for "
            "describe's online calls",
            ctx,
        )


#: ``batch submit --service-tier ...``: a usage error that says why (exit 2), not click's
#: bare "No such option"; hidden from --help, and no environment variable is read.
refuse_service_tier = click.option(
    "--service-tier", hidden=True, expose_value=False, callback=_refuse_tier
)
