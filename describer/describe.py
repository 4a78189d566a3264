"""Describe stage: one ``generate_content`` call per prepared item, paced and retried.

Each call waits for the run's :class:`~describer.limits.Throttle` (concurrency, the shared 429
gate, ``--rpm``/``--tpm``), with a token estimate corrected afterwards from the response's
usage. Transient failures are retried by the run's policy (:mod:`describer.retries`).
With ``--schema``, each answer is checked against the schema (:mod:`describer.schema`); one
that is not valid JSON under it is asked once more, then kept as ``invalid_output``.
With a shared context (:mod:`describer.context`) each call carries its turns, or names the
run's context cache, extended first when it is about to expire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from . import gemini
from .config import Config
from .errors import ItemFailure, QuotaExhausted
from .limits import Throttle, request_tokens
from .limits.spend import Spend
from .model import Answer, ErrorType, Prepared
from .quotas import Quota
from .schema import AnswerCheck, after_retry

if TYPE_CHECKING:
    from google import genai
    from google.genai import types

    from .context import RunContext


class Describer:
    """Asks the model about prepared items, under one throttle shared by the run;
    ``on_quota`` hears of the quota every 429 names; ``context``: the run's shared part
    (its turns or its cache, and its tokens in each call's estimate). ``throttle`` and
    ``spend``: limits shared with others (a cluster's: :mod:`describer.ray.permits`), else
    the run's own."""

    def __init__(
        self,
        client: genai.Client,
        config: Config,
        on_quota: Callable[[Quota], None] | None = None,
        context: RunContext | None = None,
        throttle: Throttle | None = None,
        spend: Spend | None = None,
    ) -> None:
        self._client = client
        self._config = config
        self._context = context
        self._settings = context.settings if context else gemini.generation_config(config)
        self._prefix = context.prefix if context else []
        self._shared_tokens = context.tokens if context and context.digest else 0
        self._throttle = throttle or Throttle(
            config.concurrency, config.rpm, config.tpm, config.quota_window, on_quota
        )
        self._spend = spend or Spend(config)
        if context is not None:  # --max-cost counts the context cache's storage as spent
            self._spend.spent += context.storage_usd()
        self._check = AnswerCheck(config.schema) if config.schema is not None else None

    async def answer(self, prepared: Prepared) -> Answer:
        """The model's answer for one item, with the number of calls it took (429s
        included). A call that still fails after ``max_attempts`` (429s not counted) comes
        back as :meth:`Answer.failed`. With a schema, the answer carries ``data``, or, when
        it is not valid under the schema after one more call, an ``invalid_output`` error
        (:func:`describer.schema.after_retry`). Raises :class:`QuotaExhausted` when a quota
        stops the run (a per-day quota spent, a quota of 0, 429s for longer than
        ``max_quota_wait``): the item is not done. Raises :class:`ItemFailure` when media
        over the inline limit cannot be uploaded."""
        estimate = request_tokens(prepared.media, self._config) + self._shared_tokens
        async with gemini.media_part(self._client, prepared, self._config) as part:
            first = await self._retried(part, estimate)
            if self._check is None:
                return first
            first = self._check.check(first)
            if first.error is None or first.error.type is not ErrorType.INVALID_OUTPUT:
                return first
            second = self._check.check(await self._retried(part, estimate))
            return after_retry(first, second)

    async def _retried(self, part: types.Part, estimate: int) -> Answer:
        """One answer under the run's retry policy (see :meth:`answer`)."""
        attempts = 0
        try:
            async for attempt in self._throttle.retrying(self._config):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    return replace(await self._call(part, estimate), attempts=attempts)
        except QuotaExhausted:
            raise
        except ItemFailure as failure:
            return Answer.failed(failure.error, attempts)
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    async def _call(self, part: types.Part, estimate: int) -> Answer:
        """One model call under ``--max-cost`` and the throttle, its token estimate
        corrected from usage."""
        reserved = self._spend.reserve(estimate)
        answer: Answer | None = None
        try:
            async with self._throttle.permit(estimate) as permit:
                if self._context is not None:
                    await self._context.ensure_alive()
                answer = await gemini.generate(self._client, part, self._config,
                                               self._settings, self._prefix)
        finally:
            self._spend.settle(reserved, answer.usage if answer else None)
        if answer.usage is not None:
            self._throttle.correct_tokens(permit, answer.usage.input_tokens)
        return answer
