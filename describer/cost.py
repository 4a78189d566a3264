"""Estimated cost of a run from its token counts and a small price table.

Prices are US dollars per million tokens on the Gemini Developer API's paid tier, from
https://ai.google.dev/gemini-api/docs/pricing as transcribed on 2026-10-07 (prompts up to
200k tokens; output includes thinking tokens). The Batch API costs 50 % of these ("Batch
API (50% cost reduction)", same page), and so does the Flex service tier. Models not in the
table get no estimate.

Before a call (``--dry-run``, and a per-item budget) the output is not known: it is an
assumption, :func:`assumed_output`, and :func:`item_estimate` prices one item with it.

Context caching (``Price.cached``, ``Price.storage``; :func:`context_cache_costs`): tokens
read from an explicit cache are billed at the cached price, and the cache's tokens are
billed for storage per hour it is set to live ("Cache token count ... billed at a reduced
rate when included in subsequent prompts"; "Storage duration", ai.google.dev/gemini-api/
docs/caching). Gemini 2.5 Flash lists $1.00 per 1M tokens per hour of storage and 2.5 Pro
$4.50 (the pricing page as quoted on discuss.ai.google.dev, 2025-08). For gemini-3.8-flash
no storage figure could be found in what was at hand: the table uses the Flash figure,
$1.00, and its cached price $0.075 per 1M is issue 14's figure (a tenth of the input
price, as the pricing page's context caching row has it for earlier Flash models).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .config import DEFAULT_SERVICE_TIER, model_family

SOURCE = "ai.google.dev/gemini-api/docs/pricing, read 2026-10-07"
BATCH_DISCOUNT = 0.5
#: Price factor per ``--service-tier``. Flex: "a 50% cost reduction compared to standard
#: rates" (ai.google.dev/gemini-api/docs/flex-inference); "Flex | 50% discount"
#: (ai.google.dev/gemini-api/docs/optimization, pricing row).
TIER_DISCOUNTS = {"standard": 1.0, "flex": 0.5}
#: Answer tokens assumed per item before the call: the default prompt asks for "one or two
#: sentences" of alt text, about 40 words, and "100 tokens is equal to about 60-80 English
#: words" (ai.google.dev/gemini-api/docs/tokens): 50-67 tokens, taken as 60.
ASSUMED_ANSWER_TOKENS = 60
#: Thinking tokens assumed per item at each ``--thinking`` level. An assumption: Gemini
#: publishes no per-level counts. Measured by a third party on Gemini 3.6 and 3.7 Flash
#: (langchain-ai/openwiki#786, usageMetadata.thoughtsTokenCount, means of 3 runs): low 213
#: and 159, the default level 356 and 373, high 891 and 753; each rounded up from the larger.
#: ``medium`` and ``model`` take the default level's figure (MEDIUM is Gemini 3.8 Flash's
#: default, see ``config.THINKING_LEVELS``); all stay under Gemini 2.5's budgets (1,024 up).
ASSUMED_THINKING_TOKENS = {"low": 220, "medium": 380, "high": 900, "model": 380}


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M input and output tokens (output includes thinking), per 1M ``cached``
    input tokens (read from a context cache; None: not in the table, so cached tokens are
    charged at the input price, the dearer assumption), per 1M tokens per hour of context
    cache ``storage`` (None: not in the table, and no context cache is made for the model),
    valid until ``until`` (inclusive) when set."""

    input: float
    output: float
    until: dt.date | None = None
    cached: float | None = None
    storage: float | None = None


#: model -> prices, newest first where a price changes on a date.
PRICES: dict[str, tuple[Price, ...]] = {
    "gemini-3.8-flash": (
        # cached input at a tenth of the input price (pricing page, context caching row)
        # storage: the Flash figure, $1.00 per 1M tokens an hour (see the module docstring)
        Price(0.75, 3.75, until=dt.date(2026, 12, 31), cached=0.075, storage=1.00),
        Price(1.50, 7.50, cached=0.15, storage=1.00),
    ),
    "gemini-3.5-flash": (Price(1.50, 9.00),),
    "gemini-3.5-flash-lite": (Price(0.30, 2.50),),
    "gemini-3.1-pro-preview": (Price(2.00, 12.00),),
    "gemini-embedding-001": (Price(0.15, 0.0),),
}
#: The smallest context cache each family of models takes, in tokens ("minimum input token
#: count for context caching", ai.google.dev/gemini-api/docs/caching, as updated
#: 2026-10-13): 4,096 for Gemini 3.5-3.8 Flash and 3.1 Pro, 2,048 for 2.5 Flash and Pro.
#: Models before 2.5 are not in that table: 4,096, the larger, is assumed.
CACHE_MIN_TOKENS = {"3": 4096, "2.5": 2048, "legacy": 4096}


def price_of(model: str, on: dt.date | None = None) -> Price | None:
    """The price of ``model`` on date ``on`` (today by default), or None if unknown.

    A ``models/`` prefix is ignored.
    """
    day = on or dt.date.today()
    for price in PRICES.get(model.removeprefix("models/"), ()):
        if price.until is None or day <= price.until:
            return price
    return None


def estimate(
    model: str,
    input_tokens: int,
    output_tokens: int,
    batch: bool = False,
    on: dt.date | None = None,
    cached_tokens: int = 0,
    tier: str = DEFAULT_SERVICE_TIER,
) -> float | None:
    """Estimated USD for these tokens on ``model``, or None when it has no price here.
    ``output_tokens`` include thinking tokens (billed as output); ``cached_tokens``, the
    part of ``input_tokens`` read from a cache, are charged at the cached price. The whole
    is scaled by :func:`discount` (``batch``: the Batch API; ``tier``: the service tier).
    Raises ValueError for an unknown tier, or a tier other than standard with ``batch``."""
    price = price_of(model, on)
    if price is None:
        return None
    cached_price = price.input if price.cached is None else price.cached
    fresh = input_tokens - cached_tokens
    dollars = (
        fresh * price.input + cached_tokens * cached_price + output_tokens * price.output
    ) / 1_000_000
    return dollars * discount(batch, tier)


def discount(batch: bool = False, tier: str = DEFAULT_SERVICE_TIER) -> float:
    """The factor on standard prices: ``BATCH_DISCOUNT`` (0.5) on the Batch API, else the
    tier's ``TIER_DISCOUNTS`` (flex 0.5, standard 1). Raises ValueError for an unknown tier
    or for flex with ``batch``: the Batch API is a price of its own, not lowered by Flex."""
    if tier not in TIER_DISCOUNTS:
        raise ValueError(f"unknown service tier {tier!r}")
    if batch and tier != DEFAULT_SERVICE_TIER:
        raise ValueError(f"the Batch API takes no service tier (got {tier!r})")
    return BATCH_DISCOUNT if batch else TIER_DISCOUNTS[tier]


@dataclass(frozen=True, slots=True)
class AssumedOutput:
    """Output tokens assumed for one item before its call: ``answer`` and ``thinking``
    (both billed as output)."""

    answer: int
    thinking: int

    @property
    def total(self) -> int:
        """Answer plus thinking tokens."""
        return self.answer + self.thinking


def assumed_output(
    model: str, thinking: str, max_output_tokens: int | None = None
) -> AssumedOutput:
    """The output assumed for one item: ``ASSUMED_ANSWER_TOKENS`` (60) and
    ``ASSUMED_THINKING_TOKENS`` for the ``--thinking`` level (none on models that do not
    think: 1.x, 2.0), the thinking first, both within ``max_output_tokens`` (which counts
    thinking too). An assumption, not a measurement: label it wherever it is shown."""
    thoughts = 0 if model_family(model) == "legacy" else ASSUMED_THINKING_TOKENS[thinking]
    answer = ASSUMED_ANSWER_TOKENS
    if max_output_tokens is not None:
        thoughts = min(thoughts, max_output_tokens)
        answer = min(answer, max_output_tokens - thoughts)
    return AssumedOutput(answer, thoughts)


def item_estimate(
    model: str,
    input_tokens: int,
    thinking: str,
    tier: str = DEFAULT_SERVICE_TIER,
    *,
    batch: bool = False,
    max_output_tokens: int | None = None,
    on: dt.date | None = None,
) -> float | None:
    """Estimated USD of one item before its call: ``input_tokens`` (image and text, e.g. from
    ``limits.estimate_tokens``) plus :func:`assumed_output` for ``thinking`` (a
    ``--thinking`` level) and ``max_output_tokens``, at ``tier``'s price (or the Batch API's
    with ``batch``). None when ``model`` has no price here. Raises ValueError as
    :func:`discount` does."""
    output = assumed_output(model, thinking, max_output_tokens).total
    return estimate(model, input_tokens, output, batch, on, tier=tier)


def describe_cost(
    model: str,
    input_tokens: int,
    output_tokens: int,
    batch: bool = False,
    cached_tokens: int = 0,
    tier: str = DEFAULT_SERVICE_TIER,
    storage: float = 0.0,
) -> str:
    """A phrase for the summary line, e.g. ``"est. $0.0123 (gemini-3.8-flash at $0.75/$3.75
    per 1M)"``, with ``", flex -50%"`` or ``", Batch API -50%"`` before the parenthesis
    closes when those prices apply, and the ``storage`` of a context cache (USD) added and
    named; or says that the model has no price here."""
    price = price_of(model)
    dollars = estimate(model, input_tokens, output_tokens, batch, cached_tokens=cached_tokens,
                       tier=tier)  # fmt: skip
    if price is None or dollars is None:
        return f"no price for {model} in describer's table"
    off = round((1 - discount(batch, tier)) * 100)
    note = f", Batch API -{off}%" if batch else f", {tier} -{off}%" if off else ""
    if storage:
        note += f", with ${storage:.4f} of context cache storage"
    return (f"est. ${dollars + storage:.4f} ({model} at ${price.input:.2f}/${price.output:.2f}"
            f" per 1M{note})")


def cache_min_tokens(model: str) -> int:
    """The fewest tokens a context cache of ``model`` may hold (:data:`CACHE_MIN_TOKENS`)."""
    return CACHE_MIN_TOKENS[model_family(model)]


@dataclass(frozen=True, slots=True)
class CacheCosts:
    """What a context cache of ``tokens`` tokens read by ``calls`` calls and stored for
    ``hours`` costs and saves, in USD at ``price`` (one tier's prices, discounts applied):
    ``saved`` (the input price less the cached price, for the cached tokens of every call),
    ``storage`` (tokens x hours at the storage price), ``net`` (saved less storage)."""

    tokens: int
    calls: int
    hours: float
    saved: float
    storage: float

    @property
    def net(self) -> float:
        """What the cache saves after paying for its storage (negative: it costs more)."""
        return self.saved - self.storage


def context_cache_costs(
    model: str, tokens: int, calls: int, hours: float, tier: str = DEFAULT_SERVICE_TIER
) -> CacheCosts | None:
    """:class:`CacheCosts` of a cache of ``tokens`` tokens of ``model``, read by ``calls``
    calls and stored ``hours`` hours, at ``tier``'s discount (storage is not discounted:
    the pricing page lists it apart). None when the table has no cached or storage price
    for ``model`` (no cache is then made)."""
    price = price_of(model)
    if price is None or price.cached is None or price.storage is None:
        return None
    per_call = (price.input - price.cached) * tokens / 1_000_000 * discount(tier=tier)
    storage = price.storage * tokens * hours / 1_000_000
    return CacheCosts(tokens, calls, hours, per_call * calls, storage)


def break_even_calls(model: str, tokens: int, hours: float,
                     tier: str = DEFAULT_SERVICE_TIER) -> int | None:
    """The fewest calls for which a cache of ``tokens`` tokens stored ``hours`` hours saves
    more than its storage costs; None when ``model`` has no cache prices here."""
    one = context_cache_costs(model, tokens, 1, hours, tier)
    if one is None or one.saved <= 0:
        return None
    return int(one.storage // one.saved) + 1
