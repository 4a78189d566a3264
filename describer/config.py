"""One frozen configuration for a run, built by the CLI or by a library user."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .schema import field_names, load_schema

#: Longest time, in seconds, one model call may keep meeting 429s (from its first) before
#: the run stops at that quota (``--max-quota-wait``; see describer.retries). A per-minute
#: quota frees within a minute or two, so a quarter of an hour of refusals means a quota
#: that will not come back this run (a per-day quota whose 429 does not say so, say).
DEFAULT_MAX_QUOTA_WAIT = 900.0
#: Default model: the newest stable Gemini Flash model, and the cheapest Flash per token
#: (ai.google.dev/gemini-api/docs/models and .../pricing, read 2026-11). Override with
#: ``--model`` or ``DESCRIBER_MODEL``.
DEFAULT_MODEL = "gemini-3.8-flash"
DEFAULT_PROMPT = (
    "Describe this image in one or two sentences for alt text: the main subject, the setting, "
    "and any legible text."
)
#: Default embedding model (ai.google.dev/gemini-api/docs/embeddings, read 2026-11).
DEFAULT_EMBED_MODEL = "gemini-embedding-001"
#: gemini-embedding-001 is trained with Matryoshka representation learning: its first 768
#: values keep most of the quality of its 3072 at a quarter of the storage; Google recommends
#: 768, 1536 or 3072 (ai.google.dev/gemini-api/docs/embeddings#control-embedding-size).
DEFAULT_EMBED_DIM = 768
#: Largest download accepted, in bytes (``--max-bytes``). Generous for 12 MP+ photographs,
#: small enough that an endless body is cut off quickly.
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
#: Media bytes held in flight per ``--concurrency`` slot when ``--memory-budget`` is not given.
#: google-genai holds about 3.7 times an image's size while sending it (the bytes, their
#: base64, the JSON body). Measured on 100 URLs, a third of them 3.7 MB 12 MP JPEGs, latency
#: 0.5-1.5 s: at -c 16, 24 MiB gave 224-231 MB peak RSS but 9.1-9.4 s; 28 MiB 232-239 MB,
#: 8.3 s; 32 MiB 240-245 MB, 8.4-8.6 s. At -c 32, 56 MiB gave 5.8-6.0 s (357-363 MB).
BUDGET_PER_SLOT = 28 * 1024 * 1024 // 16
#: Gemini's limit for a whole request with inline data is 20 MB
#: (ai.google.dev/gemini-api/docs/image-understanding); larger media go by the Files API.
INLINE_LIMIT_BYTES = 20 * 1024 * 1024
#: ``--media-resolution`` values and the SDK's names for them.
MEDIA_RESOLUTIONS = {"low": "MEDIA_RESOLUTION_LOW", "medium": "MEDIA_RESOLUTION_MEDIUM",
                     "high": "MEDIA_RESOLUTION_HIGH"}  # fmt: skip
MEDIA_KINDS = ("image", "pdf", "audio", "video")
#: ``--thinking`` values: a thinking level, or ``model`` to send none (the model's default:
#: MEDIUM on Gemini 3.8 Flash, per its developer guide). Default ``low``: describing a photo
#: needs little reasoning, and thinking tokens are billed as output ($3.75 per 1M on
#: gemini-3.8-flash, ai.google.dev/gemini-api/docs/pricing).
THINKING_LEVELS = ("low", "medium", "high", "model")
DEFAULT_THINKING = "low"
#: ``--service-tier`` values. ``flex``: Gemini's Flex inference, "a 50% cost reduction
#: compared to standard rates, in exchange for variable latency and best-effort
#: availability" (ai.google.dev/gemini-api/docs/flex-inference); ``standard`` sends no tier
#: (the API's default when the field is omitted, same page).
SERVICE_TIERS = ("standard", "flex")
DEFAULT_SERVICE_TIER = "standard"
#: ``--send`` values: what goes to Gemini for an http(s) source (describer.send).
SEND_MODES = ("bytes", "url", "auto")
DEFAULT_SEND = "bytes"
#: Seconds allowed for one model call unless ``--request-timeout`` says otherwise.
DEFAULT_REQUEST_TIMEOUT = 180.0
#: The same under ``--service-tier flex``: Flex's latency target is "Minutes (1-15 min
#: target)" (ai.google.dev/gemini-api/docs/optimization), and it queues a request for up to
#: 15 minutes before the first byte (docker/docker-agent#4348); 900 s of queueing plus 60 s
#: for the answer itself.
FLEX_REQUEST_TIMEOUT = 960.0
#: The longest TTL describer sets for a context cache unless ``--cache-ttl`` says, in
#: seconds, and the TTL when the run's items cannot be counted (stdin): Gemini's own default,
#: one hour ("If not set, the TTL defaults to 1 hour", ai.google.dev/gemini-api/docs/caching).
#: Without ``--cache-ttl`` the TTL is the run's estimated length (``context.plan.run_ttl``);
#: a run that outlives it extends it by as much again (``caches.update``); storage is
#: billed per hour the cache is set to live.
DEFAULT_CACHE_TTL = 3600.0
#: ``--input-format`` values: a table format, or ``list`` (one source a line).
INPUT_FORMATS = ("csv", "tsv", "parquet", "jsonl", "list")


def _columns(value: tuple[str, ...] | str | None) -> tuple[str, ...] | str:
    """``--keep-cols``: ``"all"``, or the names of ``"a,b"`` (or a sequence) as a tuple."""
    if value == "all":
        return "all"
    names = value.split(",") if isinstance(value, str) else (value or ())
    return tuple(name.strip() for name in names if name.strip())


def describer_home() -> Path:
    """describer's own folder: ``$DESCRIBER_HOME``, default ``~/.describer`` (``~``
    expanded). It holds the Batch API job records (``jobs/``) and the result cache
    (``cache.sqlite3``). Not created here."""
    return Path(os.environ.get("DESCRIBER_HOME", "~/.describer")).expanduser()


def model_family(model: str) -> str:
    """Which Gemini family ``model`` belongs to, for what differs by family: ``"legacy"``
    (1.x and 2.0: no thinking), ``"2.5"`` (a ``thinking_budget``; image tokens follow the
    size), ``"3"`` (Gemini 3 and later, and names describer does not know: a
    ``thinking_level``; image tokens fixed per media resolution). A ``models/`` prefix is
    ignored."""
    name = model.removeprefix("models/")
    if name.startswith(("gemini-1", "gemini-2.0")):
        return "legacy"
    if name.startswith("gemini-2.5"):
        return "2.5"
    return "3"


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a run needs; immutable so stages can share it freely.

    Flat on purpose: each field is one command-line option (and its environment variable),
    so the CLI builds it with ``Config(**options)`` and a library user with keywords; the
    sections below group the fields for the reader.

    Times are in seconds, sizes in bytes or pixels as named. ``api_key`` is optional: when
    ``None`` the google-genai client reads ``GEMINI_API_KEY``/``GOOGLE_API_KEY`` or the Vertex
    AI variables itself. It is excluded from ``repr`` so it never lands in a log.
    """

    # What to ask (the request settings, encoded once in describer.gemini.encoding)
    prompt: str = DEFAULT_PROMPT
    model: str = DEFAULT_MODEL
    system_instruction: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    media_resolution: str | None = None  # low, medium, high: Gemini's media_resolution
    thinking: str = DEFAULT_THINKING  # low, medium, high, or model (send no level)
    service_tier: str = DEFAULT_SERVICE_TIER  # standard (send none) or flex
    #: --schema: a JSON Schema dict, a pydantic model class, or a --schema SPEC string (llm's
    #: concise syntax, inline JSON, a file); held as the JSON Schema dict (describer.schema)
    schema: dict[str, Any] | type | str | None = None

    # Shared context (describer.context): few-shot examples and reference documents, sent
    # with every request, from one Gemini context cache per run when that is cheaper
    examples: tuple[tuple[str, str], ...] = ()  # --example IMAGE TEXT: (source, wanted answer)
    examples_file: Path | None = None  # --examples FILE: JSONL {"source", "answer"} or records
    context: tuple[str, ...] = ()  # --context PATH: text, Markdown, PDF or image files
    context_cache: bool = True  # --no-context-cache: send the shared part inline every time
    cache_ttl: float | None = None  # --cache-ttl seconds; None: the run's estimated length

    # What to take, and how it is read and prepared
    media: frozenset[str] = frozenset({"image"})  # --media kinds taken: image, pdf, audio, video
    follow_symlinks: bool = False
    max_side: int | None = None
    send: str = DEFAULT_SEND  # http(s) sources: bytes, url (Gemini fetches it) or auto
    max_bytes: int = DEFAULT_MAX_BYTES
    inline_limit: int = INLINE_LIMIT_BYTES  # larger media are sent with the Files API
    download_timeout: float = 60.0
    max_redirects: int = 5

    # Tables in (describer.tables): which column is the source, the id, the kept columns
    input_format: str | None = None  # csv, tsv, parquet, jsonl, list; None: by file name
    url_col: str = "url"
    id_col: str | None = None  # the record's id and resume key
    keep_cols: tuple[str, ...] | str | None = None  # "a,b", names, or "all": the record's meta

    # Limits: how much at once, how fast, how much memory
    concurrency: int = 16
    prefetch: int | None = None  # downloads allowed ahead of the model side; None: concurrency // 2
    memory_budget: int | None = None  # media bytes in flight; None: per slot; 0: no limit
    rpm: int | None = None  # requests per minute allowed by the quota
    tpm: int | None = None  # input tokens per minute allowed by the quota
    quota_window: float = 60.0  # seconds over which --rpm/--tpm are counted (Gemini: a minute)
    max_cost: float | None = None  # US dollars this run may spend on model calls (estimated)

    # Retries and the connection to Gemini
    max_attempts: int = 5  # tries per download and per model call (429s not counted)
    max_quota_wait: float = DEFAULT_MAX_QUOTA_WAIT  # seconds of 429s one call may meet
    retry_wait: float = 1.0  # first backoff in seconds; doubles per attempt, capped at 60
    request_timeout: float | None = None  # seconds; None: by tier (see call_timeout)
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)

    # Embeddings (--embed, embed FILE, search)
    embed: bool = False  # add an embedding of each description (--embed)
    embed_model: str = DEFAULT_EMBED_MODEL
    embed_dim: int | None = DEFAULT_EMBED_DIM  # output_dimensionality; None: the model's (3072)
    embed_batch_size: int = 100  # texts per embed_content call, at most 100 (Gemini API limit)
    embed_timeout: float = 2.0  # seconds a partial batch waits for more texts
    embed_rpm: int | None = None  # embedding calls per minute allowed by the quota
    embed_field: str | None = None  # embed this field of each record's data, not the text
    index: Path | None = None  # --index: the vector index folder; None: beside -o FILE

    # The result cache (describer.cache): answers kept by the bytes sent and the settings
    cache: bool = True  # read and write $DESCRIBER_HOME/cache.sqlite3 (--no-cache: neither)

    # Output
    output: Path | None = None
    overwrite: bool = False  # start -o FILE afresh instead of resuming it
    progress: bool | None = None  # None: show a bar when stderr is a terminal

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", load_schema(self.schema))
        object.__setattr__(self, "keep_cols", _columns(self.keep_cols))
        object.__setattr__(self, "examples", tuple((str(a), str(b)) for a, b in self.examples))
        object.__setattr__(self, "context", tuple(str(path) for path in self.context))
        self._check_embed_field()
        checks = [
            (self.concurrency >= 1, "--concurrency must be at least 1"),
            (self.prefetch is None or self.prefetch >= 0, "--prefetch must be 0 or more"),
            (self.max_side is None or self.max_side >= 16, "--max-side must be at least 16 px"),
            (self.max_bytes >= 1, "--max-bytes must be at least 1"),
            (self.send in SEND_MODES, "--send is bytes, url or auto"),
            (self.send != "url" or self.max_side is None,
             "--max-side re-encodes the bytes, and --send url sends none: use --send auto"),
            (self.send != "url" or model_family(self.model) != "legacy",
             f"{self.model} cannot fetch URLs (Gemini 2.5 and later can): use --send bytes"),
            (bool(self.media) and self.media <= set(MEDIA_KINDS),
             f"--media takes {', '.join(MEDIA_KINDS)}"),
            (self.thinking in THINKING_LEVELS, "--thinking is low, medium, high or model"),
            (self.media_resolution in (None, *MEDIA_RESOLUTIONS),
             "--media-resolution is low, medium or high"),
            (self.inline_limit >= 1, "--inline-limit must be at least 1"),
            (self.memory_budget is None or self.memory_budget >= 0,
             "--memory-budget must be 0 (no limit) or more"),
            (self.download_timeout > 0, "--download-timeout must be positive"),
            (self.request_timeout is None or self.request_timeout > 0,
             "--request-timeout must be positive"),
            (self.service_tier in SERVICE_TIERS, "--service-tier is standard or flex"),
            (self.max_redirects >= 0, "--max-redirects must be 0 or more"),
            (self.rpm is None or self.rpm >= 1, "--rpm must be at least 1"),
            (self.tpm is None or self.tpm >= 1, "--tpm must be at least 1"),
            (self.quota_window > 0, "quota_window must be positive"),
            (self.max_cost is None or self.max_cost > 0, "--max-cost must be positive"),
            (self.cache_ttl is None or self.cache_ttl >= 60,
             "--cache-ttl must be at least 60 seconds"),
            (self.max_attempts >= 1, "--max-attempts must be at least 1"),
            (self.max_quota_wait > 0, "--max-quota-wait must be positive"),
            (self.retry_wait >= 0, "--retry-wait must be 0 or more"),
            (1 <= self.embed_batch_size <= 100, "--embed-batch-size must be 1..100 (API limit)"),
            (self.embed_timeout >= 0, "--embed-timeout must be 0 or more"),
            (self.embed_dim is None or self.embed_dim >= 1, "--embed-dim must be at least 1"),
            (self.embed_rpm is None or self.embed_rpm >= 1, "--embed-rpm must be at least 1"),
            (self.input_format in (None, *INPUT_FORMATS),
             f"--input-format is one of {', '.join(INPUT_FORMATS)}"),
            (bool(self.url_col), "--url-col must name a column"),
            (self.id_col is None or bool(self.id_col), "--id-col must name a column"),
            (bool(self.prompt.strip()), "--prompt must not be empty"),
            (bool(self.model.strip()), "--model must not be empty"),
            (
                self.max_output_tokens is None or self.max_output_tokens >= 1,
                "--max-output-tokens must be at least 1",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def _check_embed_field(self) -> None:
        """``--embed-field`` with ``--embed`` needs a ``--schema`` that has that field."""
        if self.embed_field is None or not self.embed:
            return
        if self.schema is None:
            raise ConfigError("--embed-field names a field of the answers: give --schema too")
        names = field_names(self.schema)  # type: ignore[arg-type]
        if names is not None and self.embed_field not in names:
            raise ConfigError(
                f"--embed-field {self.embed_field!r} is not a field of --schema "
                f"(its fields: {', '.join(names)})"
            )

    @property
    def byte_budget(self) -> int | None:
        """Media bytes allowed in flight: ``memory_budget``, else ``BUDGET_PER_SLOT`` per
        concurrency slot (28 MiB at 16); None (no limit) when ``memory_budget`` is 0."""
        if self.memory_budget == 0:
            return None
        return self.memory_budget or self.concurrency * BUDGET_PER_SLOT

    @property
    def call_timeout(self) -> float:
        """Seconds allowed for one model call: ``request_timeout`` when set, else
        ``FLEX_REQUEST_TIMEOUT`` (960) under ``--service-tier flex``, else
        ``DEFAULT_REQUEST_TIMEOUT`` (180)."""
        if self.request_timeout is not None:
            return self.request_timeout
        return FLEX_REQUEST_TIMEOUT if self.service_tier == "flex" else DEFAULT_REQUEST_TIMEOUT

    @property
    def in_flight(self) -> int:
        """Items allowed in flight from download start until their record is taken:
        ``concurrency`` plus ``prefetch`` (default ``concurrency // 2``)."""
        ahead = self.concurrency // 2 if self.prefetch is None else self.prefetch
        return self.concurrency + max(ahead, 0)
