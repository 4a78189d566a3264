"""Tables in and out: table sources (:mod:`.reading`), records written as Parquet, CSV or a
Hugging Face ImageFolder ``metadata.jsonl`` (:mod:`.writing`), JSON-safe cell values
(:mod:`.values`). pyarrow is imported only when a Parquet file is read or written."""

from .reading import TABLE_SUFFIXES, TableSpec, check_table, table_sources

__all__ = ["TABLE_SUFFIXES", "TableSpec", "check_table", "table_sources"]
