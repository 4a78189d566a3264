"""``--send``: what goes to Gemini for an http(s) source: its bytes, or its URL to fetch.

Since 2026-01-08 the Gemini API fetches public and pre-signed HTTP(S) URLs given as
``file_data`` itself, on every endpoint including the Batch API, up to 100 MB a file, for
Gemini 2.5 and later (Gemini API changelog 2026-01-08; ai.google.dev/gemini-api/docs/
file-input-methods). Under ``--send url`` and ``auto`` describer downloads only the first
:data:`PEEK_BYTES` of each URL (a ranged GET), to learn what it is (sniffed as a download
is, or from Content-Type when the server ignores the range and the bytes say nothing),
its size and validators (for the result cache), and whether Gemini may take it as it is.

* ``bytes``: download and send inline (or by the Files API over the inline limit).
* ``url``: send the URL; an item whose bytes would have to change (a GIF, a 16-bit PNG,
  an image over ``--max-side``) or that is over 100 MB is an error record.
* ``auto``: send the URL when it can go as it is, else the bytes; and when Gemini answers
  a URL with a 400 (it could not fetch it), the item is sent again as bytes
  (:func:`fetch_refused`).

Local files always go as bytes.
"""

from __future__ import annotations

import hashlib

import aiohttp

from .config import Config, model_family
from .download import USER_AGENT, check_status, client_failure
from .errors import ItemFailure
from .formats import NATIVE, SNIFF_BYTES, Format, kind_of
from .model import Answer, ErrorType, Media, Prepared
from .prepare import check_head, sniff_sendable

#: Bytes asked for by the ranged GET: what :func:`describer.formats.sniff` reads.
PEEK_BYTES = SNIFF_BYTES
#: Largest file Gemini fetches from a URL: 100 MB (ai.google.dev/gemini-api/docs/
#: file-input-methods, "ideal for files up to 100MB"), read as 100 * 2**20 bytes.
MAX_URL_BYTES = 100 * 2**20


def can_send_urls(config: Config) -> bool:
    """Whether this run sends http(s) sources as URLs at all: ``--send`` url or auto, on a
    model that fetches them (Gemini 2.5 and later: not the ``legacy`` family)."""
    return config.send != "bytes" and model_family(config.model) != "legacy"


async def by_url(url: str, session: aiohttp.ClientSession, config: Config) -> Prepared | None:
    """What to send for ``url`` as a URL (``Prepared.url`` set, no data), or None when,
    under ``auto``, it must go as bytes instead.

    Raises :class:`ItemFailure` as a download does when the ranged GET fails
    (``http_error``, ``download_error``, ``timeout``); ``not_an_image`` or
    ``unsupported_format`` for what the first bytes (or Content-Type) show; under ``url``,
    ``unsupported_format`` when the bytes would have to change, ``too_large`` over 100 MB.
    """
    head, size, mime, validators = await peek(url, session, config)
    try:
        fmt = sniff_sendable(head, config.media)
    except ItemFailure:
        fmt = _format_named(mime, config)
        if fmt is None:
            raise
    check = check_head(fmt, head, config.max_side)
    change = check.change or _size_problem(size)
    if change is not None:
        if config.send == "auto":
            return None
        kind = ErrorType.TOO_LARGE if check.change is None else ErrorType.UNSUPPORTED_FORMAT
        raise ItemFailure(kind, f"{change}: --send url cannot change the bytes "
                                "(--send auto sends these as bytes)")  # fmt: skip
    media = Media(fmt.value, check.width, check.height, size or 0, sent_as="url")
    return Prepared(b"", media, url=url, content=_content(url, head, size, validators))


def fetch_refused(answer: Answer, prepared: Prepared, config: Config) -> bool:
    """Whether ``answer`` is Gemini refusing the URL ``prepared`` sent, under ``auto``: any
    400 (INVALID_ARGUMENT; Gemini documents no message for a URL it cannot fetch, users
    report "Cannot fetch content from the provided URL"). The item is then sent as bytes; a
    400 of another cause comes back for the bytes too, at the cost of one download."""
    error = answer.error
    return (
        config.send == "auto" and prepared.url is not None and error is not None
        and error.type is ErrorType.API_ERROR and error.message.startswith("400 ")
    )  # fmt: skip


async def peek(
    url: str, session: aiohttp.ClientSession, config: Config
) -> tuple[bytes, int | None, str | None, str]:
    """GET the first :data:`PEEK_BYTES` of ``url`` (``Range: bytes=0-511``): those bytes,
    the file's size (from Content-Range, or Content-Length when the range was ignored;
    None when not given), the Content-Type when the server ignored the range (else None),
    and its validators (ETag and Last-Modified). A server that ignores the range is cut
    off after those bytes. Raises :class:`ItemFailure` as :func:`describer.download.download`
    does."""
    headers = {"User-Agent": USER_AGENT, "Accept": "image/*,*/*;q=0.5",
               "Range": f"bytes=0-{PEEK_BYTES - 1}"}  # fmt: skip
    timeout = aiohttp.ClientTimeout(total=config.download_timeout)
    try:
        async with session.get(url, timeout=timeout, headers=headers,
                               max_redirects=config.max_redirects) as response:  # fmt: skip
            check_status(response)
            head = await response.content.read(PEEK_BYTES)
            if response.status != 206:
                response.close()  # the range was ignored: read no more of the body
            return head, _size(response), _ignored_type(response), _validators(response)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise client_failure(exc, config) from None


def _size(response: aiohttp.ClientResponse) -> int | None:
    if response.status == 206:
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    return response.content_length


def _ignored_type(response: aiohttp.ClientResponse) -> str | None:
    if response.status == 206:
        return None
    return response.content_type or None


def _validators(response: aiohttp.ClientResponse) -> str:
    return "\n".join(response.headers.get(name, "") for name in ("ETag", "Last-Modified"))


def _size_problem(size: int | None) -> str | None:
    if size is not None and size > MAX_URL_BYTES:
        return f"{size:,} bytes is over the {MAX_URL_BYTES:,} Gemini fetches from a URL"
    return None


def _format_named(mime: str | None, config: Config) -> Format | None:
    """The format a Content-Type names, when it is one Gemini takes as it is and of a
    ``--media`` kind: what stands in for first bytes that sniff as nothing."""
    fmt = Format._value2member_map_.get(mime or "")
    if isinstance(fmt, Format) and kind_of(fmt) in config.media:
        return fmt if fmt in NATIVE or kind_of(fmt) != "image" else None
    return None


def _content(url: str, head: bytes, size: int | None, validators: str) -> str:
    """``url:<sha256>`` of the URL, its validators, its size and its first bytes: the
    result cache's content key for a URL (a changed file changes one of them, unless the
    server sends no validators and the change keeps the size and first 512 bytes)."""
    digest = hashlib.sha256()
    for part in (url.encode("utf-8", "surrogateescape"), validators.encode("latin-1", "replace"),
                 str(size).encode(), head):  # fmt: skip
        digest.update(len(part).to_bytes(8, "big") + part)
    return "url:" + digest.hexdigest()
