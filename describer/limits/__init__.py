"""Everything that holds a call or an item back: quotas (``--rpm``/``--tpm`` moving windows),
the shared 429 gate, the adaptive concurrency limit, token estimates for ``--tpm``, and the
byte budget (``--memory-budget``).

- :mod:`.quota`: :class:`Throttle` (what a model call waits for), :class:`Gate`,
  :class:`AdaptiveLimit`;
- :mod:`.tokens`: :func:`estimate_tokens`;
- :mod:`.budget`: :class:`ByteBudget` and its per-item :class:`Lease`.
"""

from .budget import ByteBudget, Lease
from .quota import MIN_MARGIN_S, AdaptiveLimit, Gate, Permit, Throttle
from .tokens import estimate_tokens, request_tokens

__all__ = [
    "MIN_MARGIN_S",
    "AdaptiveLimit",
    "ByteBudget",
    "Gate",
    "Lease",
    "Permit",
    "Throttle",
    "estimate_tokens",
    "request_tokens",
]
