"""Estimated cost of a run from its token counts and a small price table.

Prices are US dollars per million tokens on the Gemini Developer API's paid tier, from
https://ai.google.dev/gemini-api/docs/pricing as transcribed on 2026-10-07 (prompts up to
200k tokens; output includes thinking tokens). The Batch API costs 50 % of these ("Batch
API (50% cost reduction)", same page). Models not in the table get no estimate.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

SOURCE = "ai.google.dev/gemini-api/docs/pricing, read 2026-10-07"
BATCH_DISCOUNT = 0.5


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M input and output tokens (output includes thinking), per 1M ``cached``
    input tokens (read from a context cache; None: not in the table, so cached tokens are
    charged at the input price, the dearer assumption), valid until ``until`` (inclusive)
    when set."""

    input: float
    output: float
    until: dt.date | None = None
    cached: float | None = None


#: model -> prices, newest first where a price changes on a date.
PRICES: dict[str, tuple[Price, ...]] = {
    "gemini-3.8-flash": (
        # cached input at a tenth of the input price (pricing page, context caching row)
        Price(0.75, 3.75, until=dt.date(2026, 12, 31), cached=0.075),
        Price(1.50, 7.50, cached=0.15),
    ),
    "gemini-3.5-flash": (Price(1.50, 9.00),),
    "gemini-3.5-flash-lite": (Price(0.30, 2.50),),
    "gemini-3.1-pro-preview": (Price(2.00, 12.00),),
    "gemini-embedding-001": (Price(0.15, 0.0),),
}


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
) -> float | None:
    """Estimated USD for these tokens on ``model`` (half price with ``batch``), or None.
    ``output_tokens`` include thinking tokens (billed as output); ``cached_tokens``, the
    part of ``input_tokens`` read from a cache, are charged at the cached price."""
    price = price_of(model, on)
    if price is None:
        return None
    cached_price = price.input if price.cached is None else price.cached
    fresh = input_tokens - cached_tokens
    dollars = (
        fresh * price.input + cached_tokens * cached_price + output_tokens * price.output
    ) / 1_000_000
    return dollars * (BATCH_DISCOUNT if batch else 1.0)


def describe_cost(
    model: str, input_tokens: int, output_tokens: int, batch: bool = False, cached_tokens: int = 0
) -> str:
    """A phrase for the summary line, e.g. ``"est. $0.0123 (gemini-3.8-flash at $0.75/$3.75
    per 1M tokens)"``, or says that the model has no price here."""
    price = price_of(model)
    dollars = estimate(model, input_tokens, output_tokens, batch, cached_tokens=cached_tokens)
    if price is None or dollars is None:
        return f"no price for {model} in describer's table"
    note = ", Batch API -50%" if batch else ""
    return f"est. ${dollars:.4f} ({model} at ${price.input:.2f}/${price.output:.2f} per 1M{note})"
