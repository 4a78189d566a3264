"""The result cache: never pay twice for the same answer.

- :mod:`.keys`: what an answer is filed under (the bytes sent, the model, the prompt and
  every generation setting);
- :mod:`.store`: the SQLite file, ``$DESCRIBER_HOME/cache.sqlite3`` (WAL, shared safely by
  several describer processes), ``stats`` and ``clear``;
- :mod:`.reuse`: :class:`ResultCache`, the stage between prepare and describe: a hit (or an
  item of the same run with the same bytes) makes no model call and its record says
  ``cached: true``.
"""

from .keys import canonical, content_key, item_key, request_fingerprint, request_settings
from .reuse import ResultCache, open_cache
from .store import CacheStats, CacheStore, CacheUnavailable, cache_path, clear, stats

__all__ = [
    "CacheStats",
    "CacheStore",
    "CacheUnavailable",
    "ResultCache",
    "cache_path",
    "canonical",
    "clear",
    "content_key",
    "item_key",
    "open_cache",
    "request_fingerprint",
    "request_settings",
    "stats",
]
