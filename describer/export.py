"""Records out as tables: ``-o FILE.parquet`` / ``-o FILE.csv`` at the end of a run, and
``describe-images export FILE.jsonl --to parquet|csv|hf``.

The JSONL records stay the crash-safe journal (each record one ``write(2)``, resumable); a
table is made from them in two streaming passes (:mod:`describer.tables.columns`: the shape,
then the rows, :data:`CHUNK` records at a time), written under a temporary name beside the
target and moved into place with ``os.replace``, so a table is either the old one or the new
one, never half. One row per source: when the records hold several for one source (failed,
then described by a rerun), the last is taken.

describer writes only its own files: a target that exists must be a table describer wrote
(Parquet: marked in its schema metadata; CSV: describer's header; ``metadata.jsonl``: lines
that begin ``file_name``, ``description``, ``model``), else :class:`ConfigError`, untouched.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ConfigError
from .model import record_source
from .resume import recognised_lines
from .sources import source_key
from .tables.columns import (
    CSV_LEADING,
    JOURNAL_SUFFIX,
    PARQUET_MARK,
    Shape,
    arrow_schema,
    csv_cells,
    csv_header,
    nested_row,
)

#: ``export --to`` values.
EXPORT_FORMATS = ("parquet", "csv", "hf")
#: Records turned into rows at a time (Parquet: one row group each).
CHUNK = 10_000
_HF_LEADING = ["file_name", "description", "model"]
_ADVICE = "describer reads only its own JSONL records here"


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What an export wrote: ``rows`` to ``path``; ``superseded``: earlier records of a
    source that a later one replaced; ``left_out`` (``hf`` only): records not described, or
    not a file under the folder."""

    path: Path
    rows: int
    superseded: int = 0
    left_out: int = 0


def default_target(records: Path, to: str) -> Path:
    """Where ``export`` writes without ``-o``: ``out.jsonl`` (or a table's journal,
    ``out.parquet.journal.jsonl``) → ``out.parquet`` / ``out.csv``; for ``hf``,
    ``metadata.jsonl`` in the folder that holds every described file (found by reading
    ``records``). Raises :class:`ConfigError` for ``hf`` when no local file is described."""
    if to != "hf":
        base = records.name.removesuffix(JOURNAL_SUFFIX)
        return records.with_name(base).with_suffix(f".{to}")
    folders = {os.path.dirname(_local(record)) for record in _last_records(records)[0]
               if record.get("error") is None and _local(record)}  # fmt: skip
    if not folders:
        raise ConfigError(f"{records} describes no local file: --to hf needs a described folder")
    return Path(os.path.commonpath(sorted(folders))) / "metadata.jsonl"


def export(records: Path, target: Path, to: str) -> ExportReport:
    """Write the records of ``records`` (a describer JSONL output or journal) to ``target``
    as ``to`` (``parquet``, ``csv``, ``hf``). Raises :class:`ConfigError` when ``records``
    is not describer's, ``target`` exists and is not a file describer wrote, or it cannot be
    written (the target is then as it was)."""
    check_target(target, to)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        report = _write(records, temporary, target, to)
        os.replace(temporary, target)
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return report


def _write(records: Path, temporary: Path, target: Path, to: str) -> ExportReport:
    keep, shape, superseded = _last_records(records)
    if to == "parquet":
        rows = _write_parquet(keep, shape, temporary)
    elif to == "csv":
        rows = _write_csv(keep, shape, temporary)
    else:
        return _write_hf(keep, temporary, target)
    return ExportReport(target, rows, superseded)


def _last_records(records: Path) -> tuple[Iterator[dict[str, Any]], Shape, int]:
    """First pass: the records' :class:`Shape`, and which record is the last of its source
    (8 bytes of its key each). Returns the second pass (an iterator over those records, in
    file order), the shape, and how many records were superseded."""
    shape, last, count = Shape(), {}, 0
    for index, record in enumerate(_records(records)):
        shape.add(record)
        last[_short_key(record)] = index
        count = index + 1

    def second() -> Iterator[dict[str, Any]]:
        for index, record in enumerate(_records(records)):
            if last.get(_short_key(record)) == index:
                yield record

    return second(), shape, count - len(last)


def _short_key(record: dict[str, Any]) -> int:
    key = record.get("id")
    return int.from_bytes(source_key(record_source(record), None if key is None else str(key))[:8])


def _records(path: Path) -> Iterator[dict[str, Any]]:
    """The whole records of a describer output (a torn last line is left out)."""
    try:
        with open(path, "rb") as handle:
            for _, record in recognised_lines(handle, path, _ADVICE):
                if record is not None:
                    yield record
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def chunks(records: Iterator[dict[str, Any]], size: int = CHUNK) -> Iterator[list[dict[str, Any]]]:
    """``records`` in lists of ``size`` (the last one shorter)."""
    chunk: list[dict[str, Any]] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _write_parquet(records: Iterator[dict[str, Any]], shape: Shape, path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(shape, {"writer": f"describer {__version__}"})
    rows = 0
    with pq.ParquetWriter(path, schema) as writer:
        for chunk in chunks(records):
            table = pa.Table.from_pylist([nested_row(r, shape) for r in chunk], schema=schema)
            writer.write_table(table)
            rows += len(chunk)
    return rows


def _write_csv(records: Iterator[dict[str, Any]], shape: Shape, path: Path) -> int:
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(shape))
        for record in records:
            writer.writerow(csv_cells(record, shape))
            rows += 1
    return rows


def _write_hf(records: Iterator[dict[str, Any]], path: Path, target: Path) -> ExportReport:
    """Hugging Face ImageFolder's ``metadata.jsonl``: one line per described file under the
    target's folder, ``file_name`` relative to it (``/``-separated), then ``description``,
    ``model``, and ``id``, ``data``, ``meta`` when the record has them."""
    folder, rows, left_out = os.path.abspath(target.parent), 0, 0
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            local = _local(record)
            inside = local and os.path.commonpath([folder, local]) == folder
            if record.get("error") is not None or not inside:
                left_out += 1
                continue
            line = {"file_name": Path(os.path.relpath(local, folder)).as_posix(),
                    "description": record.get("description"), "model": record.get("model")}
            line |= {k: record[k] for k in ("id", "data", "meta") if k in record}
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
            rows += 1
    return ExportReport(target, rows, left_out=left_out)


def _local(record: dict[str, Any]) -> str:
    """The absolute path a record's source names, or "" for a URL."""
    source = record_source(record)
    return "" if "://" in source else os.path.abspath(os.path.expanduser(source))


def check_target(path: Path, to: str) -> None:
    """Raise :class:`ConfigError` when ``path`` exists and is not a file describer wrote
    as ``to``; nothing is changed."""
    if not path.exists():
        return
    if path.is_dir() or not _is_ours(path, to):
        raise ConfigError(
            f"{path} exists and is not a {to} file describer wrote; describer does not write "
            "into files it did not write: choose another file"
        )


def _is_ours(path: Path, to: str) -> bool:
    try:
        if to == "parquet":
            import pyarrow.parquet as pq

            metadata = pq.read_schema(path).metadata or {}
            return PARQUET_MARK in metadata
        with open(path, encoding="utf-8", newline="") as handle:
            first = handle.readline()
    except (OSError, ValueError, UnicodeDecodeError):  # ArrowInvalid is a ValueError
        return False
    if to == "csv":
        return next(csv.reader([first]), [])[: len(CSV_LEADING)] == list(CSV_LEADING)
    try:
        return list(json.loads(first))[:3] == _HF_LEADING
    except (ValueError, TypeError):
        return False
