"""Table sources: a CSV, TSV, Parquet or JSONL file (or stdin) read lazily, one
:class:`~describer.model.Source` per row.

A row's ``--url-col`` is its source (a URL or a path, classified as a list line is); its
``--id-col`` becomes the record's ``id`` and the key it is resumed and de-duplicated by; its
``--keep-cols`` (or every other column, with ``all``) ride along as ``meta``, made JSON-safe
(:func:`describer.tables.values.json_safe`). Nothing is held whole: Parquet is read by
record batches of :data:`ROWS_PER_BATCH` rows with only the needed columns
(``pyarrow.parquet.ParquetFile.iter_batches``), CSV and TSV by the stdlib ``csv`` reader,
JSONL line by line.

A row without a usable source (an empty cell, a bad URL, a folder, a line that is not a JSON
object) is one ``INVALID`` source saying which row and why: its record is an
``invalid_source`` error and the run goes on. A table whose header lacks a named column is a
:class:`~describer.errors.ConfigError` (the whole run, exit 2), found by :func:`check_table`
before any row is read. A ``.jsonl`` file whose first line is a describer record is
describer's own output, the file a run resumes with ``-o``: it is refused as a source.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any, Literal

from ..config import Config
from ..errors import ConfigError
from ..model import Source, SourceKind, is_record
from .values import json_safe

#: File name endings read as tables (without ``--input-format``), and their formats.
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl"}
#: Parquet rows decoded at a time (the url column of 4,096 LAION rows is ~400 KB).
ROWS_PER_BATCH = 4096
_DELIMITERS = {"csv": ",", "tsv": "\t"}
Row = dict[str, Any]
#: How a row's source text becomes a :class:`Source` (``describer.sources.classify``).
Classify = Callable[[str], Source]


@dataclass(frozen=True, slots=True)
class TableSpec:
    """How tables are read: ``input_format`` (None: by file name ending), ``url_col``,
    ``id_col`` (None: no id) and ``keep_cols`` (column names, or ``"all"``: every column
    but the url and id columns)."""

    input_format: str | None = None
    url_col: str = "url"
    id_col: str | None = None
    keep_cols: tuple[str, ...] | Literal["all"] = ()

    @classmethod
    def of(cls, config: Config) -> TableSpec:
        """The run's table settings."""
        keep = config.keep_cols
        return cls(config.input_format, config.url_col, config.id_col,
                   "all" if keep == "all" else tuple(keep or ()))  # fmt: skip

    def format_of(self, arg: str) -> str | None:
        """The table format ``arg`` (a file argument or ``-``) is read in, or None when it
        is not read as a table: ``--input-format`` (``list``: never a table), else the file
        name's ending; stdin is a table only with ``--input-format``."""
        if self.input_format == "list":
            return None
        if self.input_format is not None:
            return self.input_format
        return None if arg == "-" else TABLE_SUFFIXES.get(os.path.splitext(arg)[1].lower())

    def needed(self, header: Sequence[str], name: str) -> list[str] | None:
        """The columns to read from a table with ``header`` (None: all). Raises
        :class:`ConfigError` naming ``name`` when a named column is missing."""
        named = [self.url_col, *([self.id_col] if self.id_col else [])]
        if self.keep_cols != "all":
            named += [c for c in self.keep_cols if c not in named]
        missing = [c for c in named if c not in header]
        if missing and any("://" in cell for cell in header):
            raise ConfigError(
                f"{name} starts with a URL, not a header row: for a list of URLs, one a "
                "line, give --input-format list"
            )
        if missing:
            shown = ", ".join(list(header)[:8]) + (", ..." if len(header) > 8 else "")
            raise ConfigError(
                f"{name} has no column {missing[0]!r} (its columns: {shown or 'none'}); "
                "name the source column with --url-col"
                + (", the id column with --id-col" if self.id_col else "")
            )
        return None if self.keep_cols == "all" else named

    def kept(self, columns: Sequence[str]) -> list[str]:
        """The ``meta`` columns among ``columns``."""
        if self.keep_cols == "all":
            return [c for c in columns if c not in (self.url_col, self.id_col)]
        return list(self.keep_cols)


def check_table(path: str, fmt: str, spec: TableSpec) -> None:
    """Read a table file's header (Parquet: its schema; JSONL: its first object) and raise
    :class:`ConfigError` when it lacks a named column, is describer's own output, or
    cannot be read. Reads no more than that."""
    try:
        if fmt == "parquet":
            spec.needed(_parquet_file(path).schema_arrow.names, path)
            return
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
            if fmt == "jsonl":
                first = _first_object(handle, path)
                spec.needed(list(first) if first is not None else [], path)
            else:
                spec.needed(next(csv.reader(handle, delimiter=_DELIMITERS[fmt]), []), path)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def table_sources(
    arg: str, fmt: str, spec: TableSpec, classify: Classify, stdin: IO[str] | None = None
) -> Iterator[Source]:
    """One :class:`Source` per row of the table ``arg`` (a path, or ``-`` for stdin), in
    order, each row's source text made a :class:`Source` by ``classify``. Raises
    :class:`ConfigError` as :func:`check_table` does (stdin is checked here, when its
    first line is read), and for Parquet on stdin."""
    name = "stdin" if arg == "-" else arg
    if fmt == "parquet":
        if arg == "-":
            raise ConfigError("--input-format parquet reads files, not stdin (Parquet is read "
                              "by seeking); give the file")
        yield from _rows_to_sources(_parquet_rows(arg, spec), name, spec, classify)
        return
    if arg == "-":
        stream = stdin if stdin is not None else sys.stdin
        raw = getattr(stream, "buffer", None)
        text = io.TextIOWrapper(raw, "utf-8-sig", "replace", newline="") if raw else stream
        yield from _rows_to_sources(_text_rows(text, fmt, name, spec), name, spec, classify)
        return
    with open(arg, encoding="utf-8-sig", errors="replace", newline="") as handle:
        yield from _rows_to_sources(_text_rows(handle, fmt, name, spec), name, spec, classify)


def _rows_to_sources(
    rows: Iterator[Row | str], name: str, spec: TableSpec, classify: Classify
) -> Iterator[Source]:
    for number, row in enumerate(rows, start=1):
        yield row_source(row, number, name, spec, classify)


def row_source(
    row: Row | str, number: int, name: str, spec: TableSpec, classify: Classify
) -> Source:
    """The source of one row (``number`` counts data rows from 1); a ``str`` row is a row
    that could not be read, saying why. Never raises."""
    where = f"{name} row {number}"
    if isinstance(row, str):
        return Source(where, SourceKind.INVALID, where, f"row {number}: {row}")
    meta = {c: json_safe(row.get(c)) for c in spec.kept(list(row))} or None
    key = row.get(spec.id_col) if spec.id_col else None
    row_id = None if key is None or key == "" else str(json_safe(key))
    url = row.get(spec.url_col)
    text = "" if url is None else str(url).strip()
    if not text:
        problem = f"row {number}: no value in column {spec.url_col!r}"
        return Source(where, SourceKind.INVALID, where, problem, row_id, meta)
    if spec.id_col and row_id is None:
        problem = f"row {number}: no value in the id column {spec.id_col!r}"
        return Source(text, SourceKind.INVALID, text, problem, None, meta)
    source = classify(text)
    if source.kind is SourceKind.PATH and os.path.isdir(source.location):
        source = Source(text, SourceKind.INVALID, text, "a folder: a table row names one file")
    return replace(source, id=row_id, meta=meta)


def _text_rows(handle: IO[str], fmt: str, name: str, spec: TableSpec) -> Iterator[Row | str]:
    if fmt == "jsonl":
        yield from _jsonl_rows(handle, name, spec)
        return
    reader = csv.reader(handle, delimiter=_DELIMITERS[fmt])
    header = next(reader, [])
    spec.needed(header, name)
    for cells in reader:
        if cells:
            yield dict(zip(header, cells, strict=False))


def _jsonl_rows(handle: IO[str], name: str, spec: TableSpec) -> Iterator[Row | str]:
    """The objects of a JSONL table; a line that is not a JSON object is its problem text.
    The first object is checked as a header (:func:`_first_object`)."""
    checked = False
    for line in handle:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not checked:
            _refuse_records(row, name)
            spec.needed(list(row) if isinstance(row, dict) else [], name)
            checked = True
        yield row if isinstance(row, dict) else "not a JSON object"


def _first_object(handle: IO[str], name: str) -> Row | None:
    for line in handle:
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                return None
            _refuse_records(row, name)
            return row if isinstance(row, dict) else None
    return None


def _refuse_records(row: object, name: str) -> None:
    if is_record(row):
        raise ConfigError(
            f"{name} is describer's own output (its lines are describer records), not a table "
            f"of sources: to go on with that run, give it as -o {name}; to read its sources "
            f"as a table, give --url-col source after exporting it (export {name} --to csv)"
        )


def _parquet_file(path: str) -> Any:
    import pyarrow.parquet as pq  # pyarrow is imported by table runs only

    try:
        return pq.ParquetFile(path)
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise ConfigError(f"cannot read {path} as Parquet: {exc}") from None


def _parquet_rows(path: str, spec: TableSpec) -> Iterator[Row]:
    """The rows of a Parquet file, :data:`ROWS_PER_BATCH` decoded at a time, only the
    columns :meth:`TableSpec.needed` names."""
    table = _parquet_file(path)
    columns = spec.needed(table.schema_arrow.names, path)
    for batch in table.iter_batches(batch_size=ROWS_PER_BATCH, columns=columns):
        values = {name: batch.column(name).to_pylist() for name in batch.schema.names}
        for index in range(batch.num_rows):
            yield {name: column[index] for name, column in values.items()}
