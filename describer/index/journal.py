"""The index's journal: one SQLite file, ``index.sqlite3``, in the index folder.

It holds every vector added, with what search shows for it, one row per record:
``items (row INTEGER PRIMARY KEY, key TEXT UNIQUE, source, description, id, meta, vector)``.
``key`` is the record's ``id`` when it has one, else its ``source``; ``meta`` is the record's
``meta`` as JSON text (or NULL); ``vector`` is ``dim`` float16 values (2 bytes each,
little-endian), unit length. ``settings (name, value)`` holds the model and dimension, how
far the output file has been read into it (``synced``), and which ANN file covers which rows.

Every batch of rows is one transaction (WAL, ``synchronous=NORMAL``): a killed process leaves
the rows of the batches committed, never half a batch. The file is marked with SQLite's
``application_id`` ("DSCI"); a file without the mark is refused untouched.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

FILE_NAME = "index.sqlite3"
#: SQLite ``application_id`` of describer's index journal: "DSCI" in ASCII.
APPLICATION_ID = 0x44534349
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
_SCHEMA = """
PRAGMA application_id = {app};
PRAGMA user_version = {version};
PRAGMA journal_mode = WAL;
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE items (row INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, source TEXT NOT NULL,
                    description TEXT NOT NULL, id TEXT, meta TEXT, vector BLOB NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Item:
    """One record's entry: ``vector`` float32 of shape (dim,), unit length."""

    key: str
    source: str
    description: str
    id: str | None
    meta: dict[str, Any] | None
    vector: np.ndarray


@dataclass(frozen=True, slots=True)
class Entry:
    """What a search result shows of a row."""

    source: str
    description: str
    id: str | None
    meta: dict[str, Any] | None


class Journal:
    """An open journal. Not thread-safe: one thread at a time."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self._db = db

    @classmethod
    def open(cls, folder: Path, create: bool) -> Journal:
        """The journal in ``folder``; made (with the folder) when ``create`` and absent.
        Raises :class:`ConfigError` when the folder is not describer's index (left
        untouched), or cannot be opened or made."""
        path = folder / FILE_NAME
        try:
            if not path.exists():
                if not create:
                    raise ConfigError(f"{folder} is not a describer index (no {FILE_NAME})")
                _check_empty(folder)
                _create(path)
            _check_ours(path)
            db = _connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the index {folder}: {exc}") from None
        return cls(path, db)

    def setting(self, name: str) -> Any:
        """A setting's value (JSON-decoded), or None."""
        row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, items: Iterable[Item], settings: dict[str, Any] | None = None,
            commit: bool = True) -> int:  # fmt: skip
        """Add ``items`` whose key is not there yet, and set ``settings``, in one
        transaction, committed unless ``commit`` is False (then :meth:`commit` or
        :meth:`rollback` ends it); how many were added. Raises ``sqlite3.Error``."""
        rows = [(i.key, i.source, i.description, i.id,
                 None if i.meta is None else json.dumps(i.meta, ensure_ascii=False),
                 i.vector.astype("<f2").tobytes()) for i in items]  # fmt: skip
        before = self._db.total_changes
        try:
            self._db.executemany(
                "INSERT OR IGNORE INTO items (key, source, description, id, meta, vector) "
                "VALUES (?, ?, ?, ?, ?, ?)", rows)  # fmt: skip
            added = self._db.total_changes - before
            for name, value in (settings or {}).items():
                self._db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)",
                                 (name, json.dumps(value)))  # fmt: skip
        except BaseException:
            self._db.rollback()
            raise
        if commit:
            self._db.commit()
        return added

    def commit(self) -> None:
        """End the open transaction, keeping it."""
        self._db.commit()

    def rollback(self) -> None:
        """End the open transaction, dropping it."""
        self._db.rollback()

    def set(self, **settings: Any) -> None:
        """Set ``settings`` in one transaction."""
        self.put((), settings)

    def clear(self) -> None:
        """Remove every item and every setting (``describe --overwrite``)."""
        self._db.execute("DELETE FROM items")
        self._db.execute("DELETE FROM settings")
        self._db.commit()

    def count(self) -> int:
        """Rows held."""
        return int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])

    def last_row(self) -> int:
        """The highest row number (0 when empty)."""
        return int(self._db.execute("SELECT coalesce(max(row), 0) FROM items").fetchone()[0])

    def vectors(self, after: int = 0, upto: int | None = None, chunk: int = 50_000
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
        """Rows ``after < row <= upto`` in order, in chunks: (row numbers int64 (n,),
        vectors float32 (n, dim))."""
        upto = self.last_row() if upto is None else upto
        while after < upto:
            got = self._db.execute(
                "SELECT row, vector FROM items WHERE row > ? AND row <= ? ORDER BY row LIMIT ?",
                (after, upto, chunk)).fetchall()  # fmt: skip
            if not got:
                return
            rows, matrix = _matrix(got)
            yield rows, matrix
            after = int(rows[-1])

    def rows_where(self, where: dict[str, str]) -> np.ndarray:
        """Row numbers (int64, ascending) whose ``meta`` has every ``name: value`` of
        ``where`` (values compared as text: ``5`` matches "5")."""
        clauses = " AND ".join("CAST(json_extract(meta, ?) AS TEXT) = ?" for _ in where)
        args = [a for name, value in where.items() for a in (_json_path(name), value)]
        got = self._db.execute(f"SELECT row FROM items WHERE {clauses} ORDER BY row", args)
        return np.fromiter((r for (r,) in got), dtype=np.int64)

    def vectors_of(self, rows: np.ndarray, chunk: int = 10_000
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
        """The vectors of ``rows``, in chunks: (row numbers int64 (n,), float32 (n, dim))."""
        for start in range(0, len(rows), chunk):
            wanted = rows[start : start + chunk].tolist()
            got = self._db.execute(
                f"SELECT row, vector FROM items WHERE row IN ({','.join('?' * len(wanted))})",
                wanted).fetchall()  # fmt: skip
            yield _matrix(got)

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """Up to ``n`` vectors chosen at random, float32 (n, dim): what an ANN is trained
        on. Only their blobs are read (the row numbers come from the primary key)."""
        rows = np.fromiter((r for (r,) in self._db.execute("SELECT row FROM items")),
                           dtype=np.int64)  # fmt: skip
        chosen = np.random.default_rng(seed).permutation(rows)[:n]
        return np.concatenate([m for _, m in self.vectors_of(np.sort(chosen))])

    def entries(self, rows: Iterable[int]) -> dict[int, Entry]:
        """What search shows for each of ``rows``."""
        wanted = list(rows)
        marks = ",".join("?" * len(wanted))
        got = self._db.execute(
            f"SELECT row, source, description, id, meta FROM items WHERE row IN ({marks})",
            wanted).fetchall()  # fmt: skip
        return {row: Entry(source, description, id_, None if meta is None else json.loads(meta))
                for row, source, description, id_, meta in got}  # fmt: skip

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


def _matrix(got: list[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    """(row, float16 blob) pairs as (rows int64 (n,), vectors float32 (n, dim))."""
    rows = np.fromiter((r for r, _ in got), dtype=np.int64, count=len(got))
    matrix = np.frombuffer(b"".join(v for _, v in got), dtype="<f2")
    return rows, matrix.reshape(len(got), -1).astype(np.float32)


def _json_path(name: str) -> str:
    """The JSON path of ``meta[name]`` (quoted: any name works)."""
    return "$." + json.dumps(name)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    db.execute("PRAGMA synchronous = NORMAL")
    return db


def _create(path: Path) -> None:
    """Make an empty journal: built whole under a temporary name, then renamed into place,
    so no process (nor a rerun after a crash) ever finds a half-made one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    db = sqlite3.connect(temp)
    try:
        db.executescript(_SCHEMA.format(app=APPLICATION_ID, version=SCHEMA_VERSION))
    finally:
        db.close()
    os.replace(temp, path)


def _check_empty(folder: Path) -> None:
    """describer makes its index only where nothing is: a file, or a folder with anything
    in it, is refused untouched."""
    leftovers = f".{FILE_NAME}."  # a journal being made when a process was killed
    if folder.exists() and (
        not folder.is_dir() or any(not p.name.startswith(leftovers) for p in folder.iterdir())
    ):
        raise ConfigError(
            f"{folder} exists and is not a describer index; describer does not write into "
            "files it did not make: move it away or give another --index PATH"
        )


def _check_ours(path: Path) -> None:
    """Refuse (:class:`ConfigError`) a file that is not describer's journal, from its
    header (plain reads, before SQLite opens it)."""
    with open(path, "rb") as handle:
        header = handle.read(100)
    if len(header) < 100 or int.from_bytes(header[68:72], "big") != APPLICATION_ID:
        raise ConfigError(
            f"{path.parent} is not a describer index ({path.name} is not describer's); "
            "describer does not write into files it did not make"
        )
    if int.from_bytes(header[60:64], "big") > SCHEMA_VERSION:
        raise ConfigError(f"{path.parent} was made by a newer describer; upgrade describer")
