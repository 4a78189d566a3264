"""The streaming pipeline: sources → fetch → prepare → describe → results, bounded.

At most ``config.window`` items (``concurrency`` + prefetch) are in flight from the start of
their download until their result is taken by the consumer, so memory stays flat however long
the input; at most ``config.concurrency`` of them are inside a model call. Results come out in
completion order.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace

import aiohttp
from google import genai
from google.genai import types

from .config import Config
from .describe import (
    Answer,
    check_credentials,
    create_client,
    describe_image,
    generation_config,
    media_part,
)
from .embed import Embedder, EmbedOutcome, embed_stream
from .errors import ErrorType, ItemError, ItemFailure, redact, secrets
from .fetch import fetch
from .prepare import Prepared, prepare
from .records import Result
from .retries import call_with_retries, retrying
from .runner import bounded_map
from .sources import Source, SourceReader
from .throttle import ByteBudget, Lease, Throttle, estimate_tokens

log = logging.getLogger("describer")


async def describe(
    sources: Iterable[str],
    config: Config,
    *,
    reader: SourceReader | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[Result]:
    """Describe every source; yield one :class:`Result` per distinct source as each completes.

    ``sources`` are strings as on the command line: URLs, image files, folders, list files.
    Setting ``stop`` stops taking new sources; items already started still yield their
    results. Raises :class:`describer.ConfigError` when no credentials are configured.
    """
    reader = reader or SourceReader(config.follow_symlinks, media=config.media)
    async with connect(config) as (session, client):
        results = Pipeline(config, session, client).run(reader.iter(sources), stop)
        if config.embed:
            results = embed_results(results, Embedder(client, config), config)
        async for result in results:
            yield result


def embed_results(
    results: AsyncIterator[Result], embedder: Embedder, config: Config
) -> AsyncIterator[Result]:
    """``results`` with an embedding of each description (failures pass straight through)."""

    def attach(result: Result, outcome: EmbedOutcome) -> Result:
        return replace(result, embedding=outcome.vector, embedding_model=embedder.model,
                       embedding_error=outcome.error)  # fmt: skip

    async def marked() -> AsyncIterator[Result]:  # every record carries the embedding keys
        async for result in results:
            yield replace(result, embedding_model=embedder.model)

    return embed_stream(
        marked(), embedder, lambda r: r.description if r.ok else None, attach,
        config.embed_batch_size, config.embed_timeout,
    )  # fmt: skip


@asynccontextmanager
async def connect(config: Config) -> AsyncIterator[tuple[aiohttp.ClientSession, genai.Client]]:
    """The run's one HTTP session and a google-genai client sending over it.

    Raises :class:`describer.ConfigError` when no credentials are configured.
    """
    check_credentials(config)
    async with open_session() as session:
        yield session, create_client(config, session)


def open_session() -> aiohttp.ClientSession:
    """The run's one HTTP session, shared by downloads and the google-genai client.

    The connection pool is unbounded because the pipeline's semaphores bound the requests.
    Proxy variables (``HTTPS_PROXY`` and kin) are honoured when set; when none is, aiohttp
    is not asked to look (it would consult the environment and ``~/.netrc`` in a worker
    thread on every request: two thread hops per request, ~10 % of the CPU per image).
    """
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, trust_env=_proxy_configured())


def _proxy_configured() -> bool:
    names = ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy")
    return any(os.environ.get(name) or os.environ.get(name.upper()) for name in names)


async def load(
    source: Source, session: aiohttp.ClientSession, config: Config, lease: Lease | None = None
) -> Prepared:
    """Fetch (retrying transient failures) and prepare one source: the bytes to send, their
    size held in ``lease`` until the caller releases it.

    Raises :class:`ItemFailure` with the fetch and prepare stages' error types.
    """
    data = await call_with_retries(
        lambda: fetch(source, session, config, lease), config.max_attempts, config.retry_wait
    )
    return await asyncio.to_thread(prepare, data, config.max_side, config.media)


class Pipeline:
    """Runs items through the stages under the run's concurrency bounds."""

    def __init__(self, config: Config, session: aiohttp.ClientSession, client: genai.Client):
        self._config = config
        self._session = session
        self._client = client
        self._settings = generation_config(config)
        self._throttle = Throttle(config.concurrency, config.rpm, config.tpm, config.quota_window)
        self._text = config.prompt + (config.system_instruction or "")
        self._secrets = secrets(config.api_key)
        self._budget = ByteBudget(config.byte_budget)

    def run(
        self, sources: Iterator[Source], stop: asyncio.Event | None = None
    ) -> AsyncIterator[Result]:
        """Results in completion order, at most ``config.window`` in flight; see
        :func:`describe`."""
        return bounded_map(sources, self._process, self._config.window, stop)

    async def _process(self, source: Source) -> Result:
        config = self._config
        prepared: Prepared | None = None
        lease = self._budget.lease()
        try:
            prepared = await load(source, self._session, config, lease)
            answer, attempts = await self._describe(prepared)
            return Result.described(
                source.ref, config.model, config.prompt, prepared, answer, attempts
            )
        except ItemFailure as failure:
            error = redact(failure.error, self._secrets)
            return _failed(source, config, error, prepared, failure)
        except Exception as exc:  # a bug must cost one item, not the run; it is logged in full
            log.exception("internal error on %s", source.ref)
            error = ItemError(ErrorType.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            return _failed(source, config, redact(error, self._secrets), prepared)
        finally:
            await lease.release()

    async def _describe(self, prepared: Prepared) -> tuple[Answer, int]:
        """The model's answer and the number of calls it took, under the run's throttle."""
        config = self._config
        estimate = estimate_tokens(prepared.image, self._text, config.media_resolution)
        attempt_number = 0
        try:
            async with media_part(self._client, prepared, config) as part:
                async for attempt in retrying(config.max_attempts, config.retry_wait):
                    with attempt:
                        attempt_number = attempt.retry_state.attempt_number
                        return await self._call(part, estimate), attempt_number
        except ItemFailure as failure:
            failure.attempts = attempt_number
            raise
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    async def _call(self, part: types.Part, estimate: int) -> Answer:
        """One model call under the throttle, its token estimate corrected from usage."""
        async with self._throttle.permit(estimate) as permit:
            answer = await describe_image(self._client, part, self._config, self._settings)
        if answer.usage is not None:
            await self._throttle.correct_tokens(permit, answer.usage.input_tokens)
        return answer


def _failed(
    source: Source,
    config: Config,
    error: ItemError,
    prepared: Prepared | None,
    failure: ItemFailure | None = None,
) -> Result:
    return Result(
        source.ref, config.model, config.prompt, error=error,
        image=prepared.image if prepared else None,
        original=prepared.original if prepared else None,
        attempts=failure.attempts if failure else 0,
    )  # fmt: skip
