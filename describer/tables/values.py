"""Cell values made JSON-safe, for a record's ``meta`` and ``id``."""

from __future__ import annotations

import base64
import datetime
import decimal
import math
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` (a CSV cell, a Parquet value as ``to_pylist`` gives it, a JSONL value) as
    something ``json.dumps`` writes as valid JSON: None, bool, int and str as they are; a
    float, or None for NaN and infinities; dates and times in ISO 8601; a decimal as its
    text (no precision lost); bytes as base64; lists (and Parquet maps, lists of pairs) and
    dicts element by element; anything else as ``str``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return str(value)
