"""The data every stage passes along: sources in, media, answers and results out.

Nothing here does I/O or imports anything of describer outside this package: ``sources``
makes :class:`Source`, ``prepare`` makes :class:`Prepared` (with its :class:`Media`), the
Gemini adapter makes :class:`Answer`, the pipeline and the Batch API results make
:class:`Result`, and ``output`` writes it. Read back (resume, ``batch fetch``, ``export``),
a record goes through :meth:`Result.from_json`. ``items`` holds what comes before a record,
``records`` the record and its JSON shape.
"""

from .items import (
    Answer,
    ErrorType,
    ItemError,
    Media,
    Prepared,
    Source,
    SourceKind,
    Usage,
)
from .records import RECORD_KEYS, Result, is_record, record_source

__all__ = [
    "RECORD_KEYS", "Answer", "ErrorType", "ItemError", "Media", "Prepared", "Result", "Source",
    "SourceKind", "Usage", "is_record", "record_source",
]
