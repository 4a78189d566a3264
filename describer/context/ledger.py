"""The context caches describer has made and not yet deleted, kept under
``$DESCRIBER_HOME/context-caches.jsonl`` so that a run killed before it could delete its
cache (``kill -9``, a power cut) leaves a name the next run finds and deletes.

One JSON object a line: ``name`` (``cachedContents/...``), ``endpoint`` (the server it was
made on: None for Google's), ``pid`` of the run that made it, ``expires`` (Unix seconds:
after that Gemini has deleted it itself). A cache is left to its run while that process is
alive (a run going on in another shell keeps its cache); a pid reused by another process
only delays the clean-up until the cache expires by itself.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import describer_home

FILE_NAME = "context-caches.jsonl"


@dataclass(frozen=True, slots=True)
class Entry:
    """One cache describer made: see the module docstring."""

    name: str
    endpoint: str | None
    pid: int
    expires: float


def ledger_path() -> Path:
    """``$DESCRIBER_HOME/context-caches.jsonl``."""
    return describer_home() / FILE_NAME


def entries() -> list[Entry]:
    """Every entry of the ledger (none when there is no file; unreadable lines skipped)."""
    try:
        lines = ledger_path().read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            found.append(Entry(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return found


def remember(entry: Entry) -> None:
    """Add ``entry`` (a cache just made). An unwritable home is not an error: the cache is
    still deleted at the end of the run, only a killed run's would not be found."""
    _write([*(e for e in entries() if e.name != entry.name), entry])


def forget(name: str) -> None:
    """Drop the entry of ``name`` (deleted, or found gone)."""
    kept = [e for e in entries() if e.name != name]
    _write(kept)


def orphans(endpoint: str | None, now: float | None = None) -> list[Entry]:
    """Entries made on ``endpoint`` by a process that is no longer running and not yet
    expired; expired entries are dropped from the ledger as they are met."""
    now = time.time() if now is None else now
    live = [e for e in entries() if e.expires > now]
    if len(live) != len(entries()):
        _write(live)
    return [e for e in live if e.endpoint == endpoint and not _running(e.pid)]


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: running
        return True
    return True


def _write(kept: list[Entry]) -> None:
    """Replace the ledger with ``kept``, atomically (a temporary file moved into place)."""
    path = ledger_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{FILE_NAME}.{os.getpid()}")
        temporary.write_text("".join(json.dumps(asdict(e)) + "\n" for e in kept),
                             encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        pass
