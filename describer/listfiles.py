"""Lists of sources read as bytes (a file, or stdin): their encoding told from their first
bytes, their lines decoded incrementally. UTF-8 (a BOM is dropped; bytes that are not UTF-8,
as in file names, are kept with ``surrogateescape``) or UTF-16 (a BOM, or a NUL every other
byte); ``None`` for binary data. Used by :mod:`describer.sources`.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from typing import IO

BOMS = (
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CHUNK = 64 * 1024
#: Bytes a list's encoding is told from: a BOM and one UTF-16 character.
_HEAD_MIN = 4
BINARY_LIST = "binary data, not a list of sources (NUL bytes, neither UTF-8 nor UTF-16)"


def list_encoding(head: bytes) -> tuple[str, int] | None:
    """How a list of sources is encoded, told from its first bytes: ``(encoding, length of
    its byte order mark)``. UTF-8 with or without a BOM; UTF-16 with a BOM, or without one
    when nearly every other byte is NUL (text in Latin script); ``None`` for binary data:
    NUL bytes in a head that is not UTF-8, or many of them. A lone NUL in otherwise clean
    UTF-8 is a bad line, not a binary list."""
    for bom, encoding in BOMS:
        if head.startswith(bom):
            return encoding, len(bom)
    if b"\x00" not in head:
        return "utf-8", 0
    even, odd = head[0::2], head[1::2]
    if len(head) >= _HEAD_MIN and b"\x00" not in even and odd.count(0) * 4 >= len(odd) * 3:
        return "utf-16-le", 0
    if len(head) >= _HEAD_MIN and b"\x00" not in odd and even.count(0) * 4 >= len(even) * 3:
        return "utf-16-be", 0
    if head.count(0) * 10 > len(head) or not _is_utf8(head):
        return None
    return "utf-8", 0


def _is_utf8(head: bytes) -> bool:
    """Whether ``head`` is UTF-8, but for a character cut at its end."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        return False
    return True


def read_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    """The bytes of ``stream`` as they come (``read1``: a pipe is not waited on to fill)."""
    read = getattr(stream, "read1", stream.read)
    while chunk := read(_CHUNK):
        yield chunk


def head_of(chunks: Iterator[bytes]) -> bytes:
    """At least :data:`_HEAD_MIN` bytes from ``chunks`` (fewer at their end)."""
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= _HEAD_MIN:
            break
    return head


def decoded_lines(chunks: Iterable[bytes], encoding: str) -> Iterator[str]:
    """The lines of ``chunks`` decoded incrementally (UTF-8 with ``surrogateescape``)."""
    errors = "surrogateescape" if encoding == "utf-8" else "replace"
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    pending = ""
    for chunk in chunks:
        pending += decoder.decode(chunk)
        *lines, pending = pending.split("\n")
        yield from lines
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def without_bom(lines: Iterable[str]) -> Iterator[str]:
    """Text lines with a BOM (U+FEFF) dropped from the start of the first."""
    lines = iter(lines)
    for first in lines:
        yield first.removeprefix("\ufeff")
        break
    yield from lines
