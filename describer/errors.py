"""Error vocabulary: per-item failures are data, whole-run failures are exceptions.

An item that cannot be described becomes a :class:`describer.Result` whose ``error`` is an
:class:`~describer.model.ItemError` ``{"type", "message"}``; the run goes on. Inside a stage
that failure travels as :class:`ItemFailure` until the pipeline turns it into a record. A
whole-run problem raises :class:`ConfigError` (exit code 2).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from .model import ErrorType, ItemError
from .quotas import Quota

#: Environment variables that may hold a key; their values never appear in any output.
SECRET_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


class ItemFailure(Exception):
    """Raised inside a stage when one item fails; the pipeline turns it into a record.

    ``retryable`` marks transient failures (408, 429, 5xx, timeouts, connection errors);
    ``retry_after`` is the server's requested delay in seconds (Gemini's
    ``RetryInfo.retryDelay``, an HTTP ``Retry-After``), when it gave one; ``quota`` the
    quota a 429 says was spent (:mod:`describer.quotas`), ``quotas`` every quota it names
    (one per ``QuotaFailure`` violation; ``(quota,)`` when not given).
    """

    def __init__(
        self,
        type_: ErrorType,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        quota: Quota | None = None,
        quotas: tuple[Quota, ...] = (),
    ) -> None:
        super().__init__(message)
        self.error = ItemError(type_, message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.quota = quota
        self.quotas = quotas or ((quota,) if quota is not None else ())


class QuotaExhausted(ItemFailure):
    """A quota stopped the run: a per-day quota is spent, the quota is 0, calls were refused
    for longer than ``--max-quota-wait``, or the run's own ``--max-cost`` is reached
    (``quota`` None). Nothing more is sent this run; the item is not done (no record is
    written; a rerun does it), and it is not retried. ``message`` says which it was."""

    def __init__(self, quota: Quota | None, message: str) -> None:
        super().__init__(ErrorType.RATE_LIMITED, message, quota=quota)
        self.stop_quota = quota


class ConfigError(Exception):
    """A whole-run problem (no credentials, bad option, unreadable output): exit code 2."""


class OutputError(ConfigError):
    """The output file could not take a record (disk full, quota, I/O error): the run stops,
    the file is cut back to its last whole record, and the summary is still shown."""


def secrets(api_key: str | None, env: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The key values of this run, to be scrubbed from messages (short values are ignored)."""
    values = [api_key, *(env.get(name) for name in SECRET_VARIABLES)]
    return tuple(v for v in values if v and len(v) >= 8)


def redact(error: ItemError, hidden: Iterable[str]) -> ItemError:
    """``error`` with every value in ``hidden`` replaced by ``[redacted]``."""
    message = redact_text(error.message, hidden)
    return error if message == error.message else ItemError(error.type, message)


def redact_text(text: str, hidden: Iterable[str]) -> str:
    """``text`` with every value in ``hidden`` replaced by ``[redacted]``."""
    for value in hidden:
        text = text.replace(value, "[redacted]")
    return text
