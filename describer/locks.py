"""One writer per output file: describer's advisory lock on the files it writes.

``describe -o FILE``, ``embed FILE`` and ``batch fetch -o FILE`` each hold an exclusive
``fcntl.flock`` on the file while they run. A second describer process that wants to write
the same file is refused at once (one line, exit 2) instead of interleaving with the first
(two runs describing everything twice, or ``embed``'s atomic replace dropping the other's
records). The lock is advisory: other programs are not stopped by it. POSIX only.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError


@contextmanager
def exclusive(path: Path, create: bool = True) -> Iterator[int]:
    """Hold the write lock on ``path`` for the block; yields a read-only descriptor of it.

    With ``create`` a missing file is created empty (describer is about to write it). The
    lock is taken on the file that is at ``path`` once it is held (a file replaced meanwhile
    is locked again). Raises :class:`ConfigError` when another process holds the lock, or
    the file cannot be opened.
    """
    fd = _locked(path, create)
    try:
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _locked(path: Path, create: bool) -> int:
    for _ in range(10):  # another writer may replace the file between open and lock
        fd = _open(path, create)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"{path} is being written by another describer process; wait for it or "
                "choose another file"
            ) from None
        if _same_file(fd, path):
            return fd
        os.close(fd)
    raise ConfigError(f"{path} keeps being replaced by another process")


def _open(path: Path, create: bool) -> int:
    try:
        return os.open(path, os.O_RDONLY | (os.O_CREAT if create else 0), 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot open {path}: {exc.strerror}") from None


def _same_file(fd: int, path: Path) -> bool:
    try:
        current = os.stat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)
