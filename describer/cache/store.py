"""The cache file: one SQLite database, ``$DESCRIBER_HOME/cache.sqlite3``, stdlib ``sqlite3``.

One table, ``answers (key TEXT PRIMARY KEY, record TEXT, created REAL)``: ``key`` from
:mod:`.keys`, ``record`` the answer part of a described record as JSON (see
:mod:`.reuse`), ``created`` in Unix seconds.

Several describer processes may share the file: it is in WAL mode (readers never wait for a
writer, writers take turns), every statement is its own short transaction, and a writer that
finds the file locked waits up to ``BUSY_TIMEOUT_S`` (sqlite3's busy timeout) before the
statement fails. ``synchronous=NORMAL``: in WAL mode a power cut can lose the last answers
stored, never corrupt the file (sqlite.org/pragma.html#pragma_synchronous).

describer writes only into its own cache: the file is created whole under a temporary name
and linked into place, marked with SQLite's ``application_id`` (``APPLICATION_ID``); a file
at that path without the mark (read from its header with plain reads, before SQLite opens
it) is refused untouched with :class:`~describer.errors.ConfigError`. A cache that cannot be
made or opened (a read-only home, a full disk) raises :class:`CacheUnavailable`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import describer_home
from ..errors import ConfigError

FILE_NAME = "cache.sqlite3"
#: The mark in the header of describer's cache (SQLite's ``PRAGMA application_id``, bytes
#: 68-71 of the file, big-endian): "DSCR" in ASCII.
APPLICATION_ID = 0x44534352
#: The layout of the table (``PRAGMA user_version``, bytes 60-63); a file from a newer
#: describer with a higher number is refused.
SCHEMA_VERSION = 1
#: Seconds a statement waits for another process's write to finish before it fails.
BUSY_TIMEOUT_S = 30.0
#: How every SQLite database file begins (sqlite.org/fileformat.html, "The Database Header").
SQLITE_MAGIC = b"SQLite format 3\x00"
#: What the refusal of a file that is not describer's cache tells the user to do.
ADVICE = (
    "describer does not write into files it did not write: move it away, set DESCRIBER_HOME, "
    "or run with --no-cache"
)
_SCHEMA = """
PRAGMA application_id = {app};
PRAGMA user_version = {version};
PRAGMA journal_mode = WAL;
CREATE TABLE answers (key TEXT PRIMARY KEY, record TEXT NOT NULL, created REAL NOT NULL)
    WITHOUT ROWID;
"""


class CacheUnavailable(Exception):
    """The cache file cannot be made or opened here (its message says why)."""


def cache_path() -> Path:
    """Where the cache lives: ``$DESCRIBER_HOME/cache.sqlite3`` (default
    ``~/.describer/cache.sqlite3``)."""
    return describer_home() / FILE_NAME


@dataclass(frozen=True, slots=True)
class CacheStats:
    """``entries``: answers kept; ``bytes``: the size on disk of the file and its ``-wal``
    and ``-shm`` companions; ``exists``: False when no run has made the file yet."""

    path: Path
    entries: int
    bytes: int
    exists: bool


class CacheStore:
    """An open cache file. Not thread-safe: use it from one thread at a time."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    @classmethod
    def open(cls, path: Path | None = None) -> CacheStore:
        """Open the cache at ``path`` (default :func:`cache_path`), creating it (and its
        folder) when there is none. Raises :class:`ConfigError` when the file is not
        describer's cache (left untouched), :class:`CacheUnavailable` when it cannot be
        created or opened."""
        path = path or cache_path()
        try:
            if not _exists(path):
                _create(path)
            check_ours(path)
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                 check_same_thread=False)  # fmt: skip
            db.execute("PRAGMA synchronous = NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise CacheUnavailable(f"cannot open the cache {path}: {_reason(exc)}") from None
        return cls(path, db)

    def get(self, key: str) -> str | None:
        """The record stored under ``key`` (JSON text), or None. Raises ``sqlite3.Error``."""
        row = self._db.execute("SELECT record FROM answers WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, record: str) -> None:
        """Store ``record`` (JSON text) under ``key``, replacing what was there. Raises
        ``sqlite3.Error`` (e.g. ``database is locked`` after ``BUSY_TIMEOUT_S``, disk full)."""
        self._db.execute(
            "INSERT OR REPLACE INTO answers (key, record, created) VALUES (?, ?, ?)",
            (key, record, time.time()),
        )

    def count(self) -> int:
        """Answers kept."""
        return int(self._db.execute("SELECT count(*) FROM answers").fetchone()[0])

    def clear(self) -> int:
        """Remove every answer and give the space back to the file system; how many were
        removed. Raises ``sqlite3.Error``."""
        removed = int(self._db.execute("DELETE FROM answers").rowcount)
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed

    def close(self) -> None:
        """Close the connection (the last one to close folds the WAL into the file)."""
        self._db.close()


def stats(path: Path | None = None) -> CacheStats:
    """Entries and size on disk of the cache, without creating it. Raises
    :class:`ConfigError` when the file is not describer's cache or cannot be read."""
    path = path or cache_path()
    if not _exists(path):
        return CacheStats(path, 0, 0, exists=False)
    with opened(path) as store:
        try:
            entries = store.count()
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot read the cache {path}: {_reason(exc)}") from None
    size = sum(_size(Path(f"{path}{suffix}")) for suffix in ("", "-wal", "-shm"))
    return CacheStats(path, entries, size, exists=True)


def clear(path: Path | None = None) -> int:
    """Empty the cache; the answers removed (0 when there is no cache: nothing is made).
    Raises :class:`ConfigError` when the file is not describer's cache (left untouched) or
    cannot be written."""
    path = path or cache_path()
    if not _exists(path):
        return 0
    with opened(path) as store:
        try:
            return store.clear()
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot clear the cache {path}: {_reason(exc)}") from None


@contextlib.contextmanager
def opened(path: Path | None = None) -> Iterator[CacheStore]:
    """:meth:`CacheStore.open` for the duration of a block. Raises :class:`ConfigError`
    when the file is not describer's cache or cannot be opened."""
    try:
        store = CacheStore.open(path)
    except CacheUnavailable as exc:
        raise ConfigError(str(exc)) from None
    try:
        yield store
    finally:
        store.close()


def check_ours(path: Path) -> None:
    """Raise :class:`ConfigError` unless ``path`` is describer's cache: an SQLite file with
    ``APPLICATION_ID`` and a ``user_version`` up to ``SCHEMA_VERSION``. Reads the first 100
    bytes with plain reads: SQLite never opens a file that fails this."""
    with open(path, "rb") as handle:
        header = handle.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise ConfigError(f"{path} is not describer's cache (not an SQLite file); {ADVICE}")
    if int.from_bytes(header[68:72], "big") != APPLICATION_ID:
        raise ConfigError(f"{path} is not describer's cache (an SQLite file of another "
                          f"program); {ADVICE}")  # fmt: skip
    if int.from_bytes(header[60:64], "big") > SCHEMA_VERSION:
        raise ConfigError(f"{path} was made by a newer describer; upgrade, or use --no-cache")


def _create(path: Path) -> None:
    """Make an empty cache at ``path``: built whole under a temporary name, then linked into
    place, so no other process ever sees a half-made file; if one appeared meanwhile, it is
    kept and ours dropped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        db = sqlite3.connect(temp, isolation_level=None)
        try:
            db.executescript(_SCHEMA.format(app=APPLICATION_ID, version=SCHEMA_VERSION))
        finally:
            db.close()  # folds the WAL into the file and removes it
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not _exists(path):
                os.replace(temp, path)
    finally:
        for leftover in (temp, Path(f"{temp}-wal"), Path(f"{temp}-shm")):
            leftover.unlink(missing_ok=True)


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
