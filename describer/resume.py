"""Reading what an earlier run left in ``-o FILE``: which sources are done, and whether the
file is describer's at all.

A file is describer's when every whole line is a describer record (``model.is_record``: the
keys every record has had since the first release). Anything else (a config file, a data-set
manifest whose lines have a ``source`` key, a binary file) is refused before a byte of it is
touched. A torn last line (a run killed mid-write) is dropped only in a file recognised so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ConfigError
from .model import is_record, record_source
from .sources import source_key

#: How every record line describer writes begins (``json.dumps`` of ``Result.to_json``): a
#: torn first line is recognised by it, a complete JSON object never is.
RECORD_PREFIX = b'{"source": "'


@dataclass
class Resume:
    """What an earlier run left in ``-o FILE``.

    ``done``: fingerprints of the :func:`~describer.sources.identity` of sources with a
    successful record (skipped this time); ``kept_bytes``: the length of the whole records;
    ``torn``: a torn last line follows them (to be dropped); ``other_settings``: some kept
    records were made with another model or prompt, or with ``--schema`` where this run has
    none, or the other way round (records with a schema carry ``data``).
    """

    done: set[bytes] = field(default_factory=set)
    kept_bytes: int = 0
    torn: bool = False
    other_settings: bool = False


#: What the refusal of ``-o FILE`` tells the user to do.
OUTPUT_ADVICE = "describer does not write into files it did not write: choose another -o"


def scan(
    handle: BinaryIO,
    path: Path,
    model: str = "",
    prompt: str = "",
    structured: bool | None = None,
) -> Resume:
    """Read the records of an open output file. Nothing is written. ``model``, ``prompt``
    and ``structured`` (a schema is asked for; None: not checked) are this run's, for
    :attr:`Resume.other_settings`.

    Raises :class:`ConfigError` when a whole line is not a describer record, or the file is
    one unterminated line that is not a torn record.
    """
    resume = Resume()
    for line, record in recognised_lines(handle, path, OUTPUT_ADVICE):
        if record is None:
            _check_torn(line, path, recognised=resume.kept_bytes > 0)
            resume.torn = True
            break
        _remember(resume, record, model, prompt, structured)
        resume.kept_bytes += len(line)
    return resume


def recognised_lines(
    handle: BinaryIO, path: Path, advice: str
) -> Iterator[tuple[bytes, dict[str, Any] | None]]:
    """Each line of a describer output with its record, in order: every whole line must be a
    describer record (``model.is_record``), else :class:`ConfigError` naming the line, with
    ``advice`` (what the user can do); a last line without a newline (torn) comes with None.
    The one definition of a describer output, shared by resume and ``embed FILE``."""
    for number, line in enumerate(handle, start=1):
        if not line.endswith(b"\n"):
            yield line, None  # only the last line can lack its newline
            return
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not is_record(record):
            raise ConfigError(
                f"{path} is not a describer output (line {number} is not a describer record); "
                f"{advice}"
            )
        yield line, record


def _check_torn(line: bytes, path: Path, recognised: bool) -> None:
    """A last line without a newline may be dropped only when it is describer's."""
    if recognised:
        return
    try:
        json.loads(line)
        complete = True
    except ValueError:
        complete = False
    if complete or not line.startswith(RECORD_PREFIX):
        raise ConfigError(
            f"{path} is not a describer output (it is not JSON lines of describer records); "
            f"{OUTPUT_ADVICE}"
        )


def _remember(
    resume: Resume, record: dict[str, Any], model: str, prompt: str, structured: bool | None
) -> None:
    if record.get("error") is None:
        key = record.get("id")
        resume.done.add(source_key(record_source(record), None if key is None else str(key)))
        if (
            (model and record.get("model") != model)
            or (prompt and record.get("prompt") != prompt)
            or (structured is not None and ("data" in record) != structured)
        ):
            resume.other_settings = True
