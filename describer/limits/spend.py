"""``--max-cost``: the run's spending limit, in US dollars at describer's price table.

Each model call reserves its estimated price before it is sent (the input estimated from the
media and prompt, the output assumed: :func:`describer.cost.item_estimate`), and settles it
at the price of the tokens its ``usage_metadata`` reports once it is answered (a call that
fails without usage is not billed, so it settles at 0). A call whose reservation would take
spent + reserved past the limit is not sent: the run stops taking items, like at a daily
quota (exit 3), and the items held back are not done, so a rerun continues them with a
budget of its own. Embedding calls are not counted (they cost a small fraction: $0.15 per
1M input tokens on gemini-embedding-001, against a caption's image and prompt tokens).
"""

from __future__ import annotations

from ..config import Config
from ..cost import estimate, item_estimate
from ..errors import ConfigError, QuotaExhausted
from ..model import Usage


class Spend:
    """Spent and reserved dollars of one run against ``config.max_cost``.

    Raises :class:`ConfigError` when ``max_cost`` is set for a model without a price in
    describer's table (the limit could not be kept).
    """

    def __init__(self, config: Config) -> None:
        self.limit = config.max_cost
        self.spent = 0.0
        self.reserved = 0.0
        self._config = config
        self._stopped: QuotaExhausted | None = None
        if self.limit is not None and self.price(0, None) is None:
            raise ConfigError(
                f"--max-cost needs a model with a price in describer's table; "
                f"{config.model} has none"
            )

    def price(self, input_tokens: int, usage: Usage | None) -> float | None:
        """Dollars of one call: of its ``usage`` once answered, else estimated from
        ``input_tokens`` and the assumed output; None when the model has no price."""
        config = self._config
        if usage is None:
            return item_estimate(
                config.model, input_tokens, config.thinking, config.service_tier,
                max_output_tokens=config.max_output_tokens,
            )  # fmt: skip
        return estimate(
            config.model, usage.input_tokens, usage.output_tokens,
            cached_tokens=usage.cached_tokens, tier=config.service_tier,
        )  # fmt: skip

    def reserve(self, input_tokens: int) -> float:
        """Reserve one call's estimated dollars and return them; raises
        :class:`QuotaExhausted` (the run stops) when they would pass the limit."""
        if self._stopped is not None:
            raise self._stopped
        dollars = self.price(input_tokens, None) or 0.0
        if self.limit is not None and self.spent + self.reserved + dollars > self.limit:
            self._stopped = QuotaExhausted(None, self._reason())
            raise self._stopped
        self.reserved += dollars
        return dollars

    def settle(self, reserved: float, usage: Usage | None) -> None:
        """A call reserved ``reserved`` dollars and ended with ``usage`` (None: not billed)."""
        self.settle_dollars(reserved, self.spent_on(usage))

    def spent_on(self, usage: Usage | None) -> float:
        """The dollars a call with ``usage`` cost (0 when it was not billed or not priced)."""
        return 0.0 if usage is None else self.price(0, usage) or 0.0

    def settle_dollars(self, reserved: float, spent: float) -> None:
        """Calls that reserved ``reserved`` dollars in all ended, costing ``spent``."""
        self.reserved -= reserved
        self.spent += spent

    def _reason(self) -> str:
        return (
            f"--max-cost ${self.limit:g} reached (est. ${self.spent:.4f} spent, "
            f"${self.reserved:.4f} in flight)"
        )
