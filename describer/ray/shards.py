"""An output folder of ``describe-images ray``: its batch journals, what they say is done, and
the Parquet shards made from them.

``OUT_DIR/journal/*.jsonl`` are the batch journals (:mod:`describer.ray.worker`): the
crash-safe truth, as a table output's journal is in one process. ``OUT_DIR/part-00000.parquet``
... are made from them when a run ends (killed runs included, by the next run): one row per
key over all journals (a key described in two journals, which a rerun after a crash can do
at most for the rows its batches had in flight, keeps its last record), at most
``rows_per_shard`` rows a shard, in the columns of ``-o FILE.parquet``
(:mod:`describer.tables.columns`). Shards are written under temporary names and moved into
place; shards left over from an earlier run with more of them are removed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ConfigError
from ..export import chunks
from ..resume import scan
from ..tables.columns import Shape, arrow_schema, nested_row
from .rows import record_key
from .worker import journal_records

#: Rows per Parquet shard.
ROWS_PER_SHARD = 100_000
SHARD_GLOB = "part-*.parquet"


def journal_dir(out_dir: Path) -> Path:
    """Where the batch journals of ``out_dir`` are."""
    return out_dir / "journal"


def journals(out_dir: Path) -> list[Path]:
    """The batch journals of ``out_dir``, by name."""
    folder = journal_dir(out_dir)
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def done_keys(out_dir: Path) -> set[bytes]:
    """The keys (:func:`~describer.ray.rows.row_key`) with a successful record in any
    journal of ``out_dir``: a rerun skips them. Raises :class:`ConfigError` when a journal
    is not describer's."""
    done: set[bytes] = set()
    for path in journals(out_dir):
        with open(path, "rb") as handle:
            done |= scan(handle, path).done
    return done


@dataclass(frozen=True, slots=True)
class ShardReport:
    """What :func:`write_shards` wrote: ``rows`` over ``shards`` files; ``described`` and
    ``failed`` rows; ``superseded``: records of a key replaced by a later one."""

    rows: int
    shards: int
    described: int
    failed: int
    superseded: int


def write_shards(out_dir: Path, rows_per_shard: int = ROWS_PER_SHARD) -> ShardReport:
    """Make ``out_dir``'s Parquet shards from its journals (see the module docstring).
    Raises :class:`ConfigError` when a journal is not describer's or a shard cannot be
    written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shape, last, total = _first_pass(out_dir)
    schema = arrow_schema(shape, {"writer": f"describer {__version__}"})
    written, described, rows = [], 0, 0
    try:
        for number, chunk in enumerate(chunks(_last_records(out_dir, last), rows_per_shard)):
            target = out_dir / f"part-{number:05d}.parquet"
            temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            table = pa.Table.from_pylist([nested_row(r, shape) for r in chunk], schema=schema)
            pq.write_table(table, temporary)
            os.replace(temporary, target)
            written.append(target)
            rows += len(chunk)
            described += sum(1 for r in chunk if r.get("error") is None)
    except OSError as exc:
        raise ConfigError(f"cannot write the shards in {out_dir}: {exc.strerror or exc}") from None
    for stale in set(out_dir.glob(SHARD_GLOB)) - set(written):
        stale.unlink()
    return ShardReport(rows, len(written), described, rows - described, total - len(last))


def _first_pass(out_dir: Path) -> tuple[Shape, dict[bytes, tuple[int, int]], int]:
    """The records' shape, where each key's last record is (journal, line), and how many
    records there are."""
    shape, last, total = Shape(), {}, 0
    for file_index, path in enumerate(journals(out_dir)):
        for index, record in enumerate(journal_records(path)):
            shape.add(record)
            last[record_key(record)] = (file_index, index)
            total += 1
    return shape, last, total


def _last_records(
    out_dir: Path, last: dict[bytes, tuple[int, int]]
) -> Iterator[dict[str, Any]]:
    for file_index, path in enumerate(journals(out_dir)):
        for index, record in enumerate(journal_records(path)):
            if last.get(record_key(record)) == (file_index, index):
                yield record
