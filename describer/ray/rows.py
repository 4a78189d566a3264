"""Ray Data batches as describer sources, and describer records as a batch's new columns.

A batch (a ``pyarrow.Table`` of any columns) gives one :class:`~describer.model.Source` per
row, read from its ``config.url_col`` and ``config.id_col`` as a table source's rows are
(:func:`describer.tables.reading.row_source`). Each row's stable key is its id when the
table has an id column, else the fingerprint of its source (:func:`row_key`): what resume,
retries and repeats go by. The records come back as columns added to the batch, one value
per input row (:func:`record_columns`): ``key``, ``description``, ``error_type``,
``error_message``, ``model``, ``prompt``, ``usage`` and ``image`` (structs, as in
``-o FILE.parquet``), ``finish_reason``, ``latency_ms``, ``attempts``, ``cached``, and
``data`` with a schema, ``embedding``... with ``--embed``. An input column of the same name
is replaced. A row without a record (a quota stopped the run first) has ``error_type``
``not_done``: it is not written to the journal, so a rerun does it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..config import Config
from ..model import Source, record_source
from ..sources import classify, source_key
from ..tables.columns import Shape, arrow_schema, nested_row
from ..tables.reading import TableSpec, row_source

#: ``error_type`` of a row left without a record when a quota stopped the run.
NOT_DONE = "not_done"
_LEADING = ("key", "description", "error_type", "error_message")


def batch_sources(batch: Any, config: Config) -> list[Source]:
    """One source per row of ``batch`` (a ``pyarrow.Table``), in order, with its id and
    its ``--keep-cols`` as ``meta`` (what the journal's records keep). A row without a usable
    value is an ``INVALID`` source saying why (its record is an error), as in a table
    source. Raises :class:`~describer.errors.ConfigError` when a named column is missing."""
    spec = TableSpec.of(config)
    columns = spec.needed(batch.schema.names, "the dataset") or batch.schema.names
    values = {name: batch.column(name).to_pylist() for name in columns}
    rows: Iterator[dict[str, Any]] = (
        {name: values[name][index] for name in columns} for index in range(batch.num_rows)
    )
    return [row_source(row, number, "dataset", spec, classify)
            for number, row in enumerate(rows, start=1)]  # fmt: skip


def row_key(source: Source) -> bytes:
    """A source's stable key: :func:`~describer.sources.source_key` of its id, else of
    its :func:`~describer.sources.identity` (16 bytes)."""
    return source_key(source.ref, source.id)


def record_key(record: Mapping[str, Any]) -> bytes:
    """The key of a record (a ``Result.to_json`` object), as :func:`row_key`."""
    key = record.get("id")
    return source_key(record_source(dict(record)), None if key is None else str(key))


def record_shape(config: Config) -> Shape:
    """The optional columns every batch of a run has (fixed by the run's settings, so that
    all blocks of the dataset share one schema)."""
    return Shape(data=config.schema is not None, embedding=config.embed)


def record_schema(config: Config) -> Any:
    """The ``pyarrow.Schema`` of the record columns (see the module docstring)."""
    import pyarrow as pa

    full = arrow_schema(record_shape(config), {})
    text = pa.string()
    leading = [pa.field(name, text) for name in _LEADING]
    rest = [f for f in full if f.name not in ("source", "id", "error", "description")]
    return pa.schema(leading + rest)


def record_columns(
    batch: Any, sources: list[Source], records: Mapping[bytes, Mapping[str, Any]], config: Config,
    stop_reason: str = "",
) -> Any:
    """``batch`` with the record columns set: each row's record found by its key in
    ``records`` (JSON objects), or ``not_done`` with ``stop_reason`` when there is none."""
    import pyarrow as pa

    schema, shape = record_schema(config), record_shape(config)
    rows = [_row(source, records.get(row_key(source)), shape, stop_reason) for source in sources]
    table = pa.Table.from_pylist(rows, schema=schema)
    for name in schema.names:
        index = batch.schema.get_field_index(name)
        column = table.column(name)
        batch = (batch.set_column(index, name, column) if index >= 0
                 else batch.append_column(name, column))  # fmt: skip
    return batch


def _row(
    source: Source, record: Mapping[str, Any] | None, shape: Shape, stop_reason: str
) -> dict[str, Any]:
    key = source.id if source.id is not None else row_key(source).hex()
    if record is None:
        return {"key": key, "error_type": NOT_DONE, "error_message": stop_reason or None}
    row = nested_row(dict(record), shape)
    error = row.pop("error") or {}
    row |= {"key": key, "error_type": error.get("type"), "error_message": error.get("message")}
    return row
