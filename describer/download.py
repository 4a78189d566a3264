"""Download stage: the bytes of one source, from an http(s) URL or a local file, size-capped.

Downloads share the run's one ``aiohttp.ClientSession``. The body streams into a buffer that
stops at ``max_bytes``, so an endless body costs at most that much memory.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp

from .config import Config
from .errors import ItemFailure
from .limits import Lease
from .model import ErrorType, Source, SourceKind

_CHUNK = 1 << 16
USER_AGENT = "describer/0.1 (+https://pypi.org/project/describer/)"
#: Longest ``Retry-After`` an image host may ask for, in seconds (5 minutes). Our own choice,
#: not a standard's: a host asking for longer (an hour, a day) is down for maintenance or
#: shedding us, and honouring it would leave the whole run sleeping with nothing on screen;
#: failing that item at once (an ``http_error`` naming the asked delay) lets the run finish
#: and report it. Within the cap the delay is honoured.
MAX_RETRY_AFTER_S = 300.0


async def source_bytes(
    source: Source, session: aiohttp.ClientSession, config: Config, lease: Lease | None = None
) -> bytes:
    """The bytes of ``source``: at most ``config.max_bytes`` of them. With a ``lease``, the
    body's size is reserved in the run's byte budget before it is read.

    Raises :class:`ItemFailure` with ``invalid_source``, ``http_error``, ``download_error``,
    ``timeout`` or ``too_large``.
    """
    if source.kind is SourceKind.INVALID:
        raise ItemFailure(ErrorType.INVALID_SOURCE, source.problem or "invalid source")
    if source.kind is SourceKind.PATH:
        if lease is not None:
            await lease.reserve(_size_of(source.location))
        return await asyncio.to_thread(read_file, source.location, config.max_bytes)
    return await download(source.location, session, config, lease)


def _size_of(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # read_file reports the problem


def read_file(path: str, max_bytes: int) -> bytes:
    """A local file's bytes; raises :class:`ItemFailure` when missing, unreadable or too large."""
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise _too_large(size, max_bytes)
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ItemFailure(ErrorType.INVALID_SOURCE, f"cannot read file: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes)
    return data


async def download(
    url: str, session: aiohttp.ClientSession, config: Config, lease: Lease | None = None
) -> bytes:
    """GET ``url`` following at most ``config.max_redirects`` redirects; the body's bytes."""
    timeout = aiohttp.ClientTimeout(total=config.download_timeout)
    try:
        async with session.get(
            url,
            timeout=timeout,
            max_redirects=config.max_redirects,
            headers={"User-Agent": USER_AGENT, "Accept": "image/*,*/*;q=0.5"},
        ) as response:
            check_status(response)
            return await _read_capped(response, config.max_bytes, lease)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise client_failure(exc, config) from None


def client_failure(exc: aiohttp.ClientError | TimeoutError, config: Config) -> ItemFailure:
    """What a failed GET of an image is for its item: ``download_error`` (a redirect loop,
    not retried; a connection that failed or broke, retried) or ``timeout`` (retried)."""
    if isinstance(exc, aiohttp.TooManyRedirects):
        message = f"too many redirects (more than {config.max_redirects}); a redirect loop?"
        return ItemFailure(ErrorType.DOWNLOAD_ERROR, message)
    if isinstance(exc, TimeoutError):
        message = f"download took longer than {config.download_timeout:g} s"
        return ItemFailure(ErrorType.TIMEOUT, message, retryable=True)
    return ItemFailure(ErrorType.DOWNLOAD_ERROR, _client_error_message(exc), retryable=True)


def check_status(response: aiohttp.ClientResponse) -> None:
    """Raise for 4xx/5xx; 408, 429 and 5xx are retryable (after ``Retry-After``), others not.

    A retryable answer whose ``Retry-After`` exceeds ``MAX_RETRY_AFTER_S`` is not retried: its
    failure is final and says so, and carries no delay, so no retry loop can sleep on it.
    """
    status = response.status
    if status < 400:
        return
    reason = f" {response.reason}" if response.reason else ""
    message = f"HTTP {status}{reason}"
    retryable = status in (408, 429) or status >= 500
    asked = retry_after_header(response.headers.get("Retry-After"))
    if retryable and asked is not None and asked > MAX_RETRY_AFTER_S:
        message += (f"; the server asked to retry after {asked:.0f} s, "
                    f"over the {MAX_RETRY_AFTER_S:g} s cap")
        raise ItemFailure(ErrorType.HTTP_ERROR, message)
    raise ItemFailure(ErrorType.HTTP_ERROR, message, retryable=retryable, retry_after=asked)


async def _read_capped(
    response: aiohttp.ClientResponse, max_bytes: int, lease: Lease | None
) -> bytes:
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise _too_large(declared, max_bytes)
    if lease is not None:
        await lease.reserve(declared if declared is not None else _CHUNK)
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise ItemFailure(
                ErrorType.TOO_LARGE, f"body exceeds --max-bytes ({max_bytes:,} bytes); stopped"
            )
        chunks.append(chunk)
        if lease is not None:
            lease.grow(total)
    return b"".join(chunks)


def _too_large(size: int, max_bytes: int) -> ItemFailure:
    return ItemFailure(ErrorType.TOO_LARGE, f"{size:,} bytes is over --max-bytes ({max_bytes:,})")


def _client_error_message(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the connection broke before the whole body arrived"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    return f"{type(exc).__name__}: {exc}"


def retry_after_header(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header (RFC 9110 section 10.2.3): a
    number of seconds, or an HTTP date, counted from ``now`` (default: the current UTC
    time); a date in the past gives 0. None when absent or unreadable (never raises)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, source unknown (RFC 5322 section 3.3)
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
