"""Records as table rows: the columns of ``-o FILE.parquet``, ``-o FILE.csv`` and ``export``.

A table is made in two passes over the records (:mod:`describer.export`): the first learns
the :class:`Shape` (which optional columns appear, the type of each ``meta`` key), the
second writes rows of that shape. Parquet keeps the record's nesting as structs
(``error``, ``usage``, ``image`` with ``image.original``, ``meta``); ``data`` (whatever the
``--schema`` says) is JSON text; ``embedding`` a list of float32. CSV is flat: nested fields
become columns (``error_type``, ``input_tokens``, ``width``, ``meta.license``), lists and
objects JSON text. Nothing here does I/O; pyarrow is imported by :func:`arrow_schema` only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: ``-o`` endings written as tables, and their formats.
OUTPUT_FORMATS = {".parquet": "parquet", ".csv": "csv"}
#: The crash-safe JSONL journal of ``-o FILE.parquet`` is ``FILE.parquet`` + this.
JOURNAL_SUFFIX = ".journal.jsonl"
#: Key of the Parquet schema metadata that marks a file as describer's.
PARQUET_MARK = b"describer"
#: Every CSV describer writes begins with this header: the mark by which it is recognised.
CSV_LEADING = ("source", "id", "description", "error_type", "error_message", "model", "prompt")
_USAGE = ("input_tokens", "output_tokens", "thinking_tokens", "cached_tokens")
_IMAGE = ("mime_type", "width", "height", "bytes", "pages")
_TAIL = ("finish_reason", "latency_ms", "attempts", "cached")


def output_format(path: Path | None) -> str | None:
    """``parquet`` or ``csv`` when ``-o path`` is written as a table; None for JSONL."""
    return None if path is None else OUTPUT_FORMATS.get(path.suffix.lower())


def journal_of(path: Path) -> Path:
    """Where a run's records go for ``-o path``: ``path`` itself for JSONL, else the journal
    beside the table (``out.parquet`` → ``out.parquet.journal.jsonl``)."""
    return path if output_format(path) is None else path.with_name(path.name + JOURNAL_SUFFIX)


def _kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return {float: "float", str: "string"}.get(type(value), "json")


def _merged(a: str | None, b: str | None) -> str | None:
    """The column type two values share: ints and floats are floats, mixed scalars text,
    anything with a list or an object JSON text."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    if {a, b} == {"int", "float"}:
        return "float"
    return "json" if "json" in (a, b) else "string"


@dataclass
class Shape:
    """What the records hold, learnt in the first pass: ``meta`` keys in first-seen order
    with their column types (``string``, ``int``, ``float``, ``bool``, ``json``); whether
    any record has ``data`` or an embedding."""

    meta: dict[str, str | None] = field(default_factory=dict)
    data: bool = False
    embedding: bool = False

    def add(self, record: dict[str, Any]) -> None:
        """Learn one record's optional fields."""
        self.data = self.data or "data" in record
        self.embedding = self.embedding or "embedding_model" in record
        meta = record.get("meta")
        if isinstance(meta, dict):
            for key, value in meta.items():
                self.meta[key] = _merged(self.meta.get(key), _kind(value))

    def meta_value(self, key: str, value: Any) -> Any:
        """``value`` as its column holds it: JSON text for ``json``, text for mixed
        scalars, a float for an int in a float column."""
        kind = self.meta[key]
        if value is None or kind in ("bool", "int"):
            return value
        if kind == "float":
            return float(value)
        if kind == "string":
            return value if isinstance(value, str) else json.dumps(value)
        return json.dumps(value, ensure_ascii=False)


def nested_row(record: dict[str, Any], shape: Shape) -> dict[str, Any]:
    """One record as a Parquet row (dicts for structs), the optional fields per ``shape``."""
    row = {key: record.get(key) for key in ("source", "id", "description", "error", "model",
                                            "prompt", "usage", "image", *_TAIL)}  # fmt: skip
    if row["id"] is not None:
        row["id"] = str(row["id"])
    if shape.data:
        row["data"] = _json_text(record.get("data"))
    if shape.embedding:
        row |= {k: record.get(k) for k in ("embedding", "embedding_model", "embedding_error")}
    if shape.meta:
        meta = record.get("meta") or {}
        row["meta"] = {k: shape.meta_value(k, meta.get(k)) for k in shape.meta}
    return row


def csv_header(shape: Shape) -> list[str]:
    """The CSV columns for records of ``shape``; it begins with :data:`CSV_LEADING`."""
    header = [*CSV_LEADING, *_TAIL, *_USAGE, *_IMAGE]
    if shape.data:
        header.append("data")
    if shape.embedding:
        header += ["embedding_model", "embedding_error_type", "embedding_error_message",
                   "embedding"]  # fmt: skip
    return header + [f"meta.{key}" for key in shape.meta]


def csv_cells(record: dict[str, Any], shape: Shape) -> Iterator[str]:
    """One record as CSV cells, in :func:`csv_header` order: None is empty, booleans
    ``true``/``false``, lists and objects JSON text."""
    error, usage = record.get("error") or {}, record.get("usage") or {}
    image = record.get("image") or {}
    values: list[Any] = [
        record.get("source"), record.get("id"), record.get("description"), error.get("type"),
        error.get("message"), record.get("model"), record.get("prompt"),
        *(record.get(k) for k in _TAIL), *(usage.get(k) for k in _USAGE),
        *(image.get(k) for k in _IMAGE),
    ]  # fmt: skip
    if shape.data:
        values.append(_json_text(record.get("data")))
    if shape.embedding:
        failure = record.get("embedding_error") or {}
        values += [record.get("embedding_model"), failure.get("type"), failure.get("message"),
                   _json_text(record.get("embedding"))]  # fmt: skip
    meta = record.get("meta") or {}
    values += [meta.get(key) for key in shape.meta]
    for value in values:
        yield _cell(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def arrow_schema(shape: Shape, provenance: dict[str, str]) -> Any:
    """The ``pyarrow.Schema`` of a Parquet table of records of ``shape``, its metadata
    marked describer's (:data:`PARQUET_MARK`: ``provenance`` as JSON)."""
    import pyarrow as pa

    text, whole = pa.string(), pa.int64()
    error = pa.struct([("type", text), ("message", text)])
    media = [("mime_type", text), ("width", whole), ("height", whole), ("bytes", whole),
             ("pages", whole)]  # fmt: skip
    fields = [
        ("source", text), ("id", text), ("description", text), ("error", error),
        ("model", text), ("prompt", text), ("usage", pa.struct([(k, whole) for k in _USAGE])),
        ("image", pa.struct([*media, ("original", pa.struct(media))])),
        ("finish_reason", text), ("latency_ms", whole), ("attempts", whole),
        ("cached", pa.bool_()),
    ]  # fmt: skip
    if shape.data:
        fields.append(("data", text))
    if shape.embedding:
        fields += [("embedding", pa.list_(pa.float32())), ("embedding_model", text),
                   ("embedding_error", error)]  # fmt: skip
    if shape.meta:
        kinds = {"bool": pa.bool_(), "int": whole, "float": pa.float64()}
        fields.append(("meta", pa.struct([(k, kinds.get(v or "", text))
                                          for k, v in shape.meta.items()])))  # fmt: skip
    return pa.schema(fields, metadata={PARQUET_MARK: json.dumps(provenance)})
