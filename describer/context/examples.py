"""``--examples FILE``: few-shot examples from a JSONL file.

Each line is one of:

- ``{"source": IMAGE, "answer": TEXT}`` (``answer`` may be a JSON object or array with
  ``--schema``: it is written as JSON text), always taken;
- a describer record (an earlier run's output line, :func:`describer.model.is_record`),
  taken only when a person marked it good, ``"good": true`` on the record, and it has no
  error; its answer is its ``data`` as JSON with ``--schema`` (when it has ``data``), else
  its ``description``.

Blank lines are skipped. Relative image paths are taken from the file's folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..model import is_record


def read_examples(path: Path, structured: bool = False) -> list[tuple[str, str]]:
    """``(source, answer)`` pairs of ``path`` in file order (module docstring). Raises
    :class:`ConfigError` for a file that cannot be read or a line that is neither form."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--examples {path}: cannot be read: {exc}") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            pair = _pair(json.loads(line), structured)
        except (json.JSONDecodeError, ValueError) as exc:
            raise ConfigError(f"--examples {path}, line {number}: {exc}") from None
        if pair is not None:
            pairs.append((_resolved(pair[0], path.parent), pair[1]))
    return pairs


def _pair(line: Any, structured: bool) -> tuple[str, str] | None:
    """One line's pair, None for a record not marked good; ValueError for anything else."""
    if is_record(line):
        if line.get("good") is not True or line["error"] is not None:
            return None
        data = line.get("data")
        answer = json.dumps(data, ensure_ascii=False) if structured and data is not None \
            else line.get("description")
        return (line["source"], str(answer or ""))
    if isinstance(line, dict) and isinstance(line.get("source"), str) and "answer" in line:
        answer = line["answer"]
        return (line["source"], answer if isinstance(answer, str)
                else json.dumps(answer, ensure_ascii=False))
    raise ValueError('expected {"source": ..., "answer": ...} or a describer record')


def _resolved(source: str, folder: Path) -> str:
    """``source`` with a relative path taken from ``folder`` (URLs as they are)."""
    if "://" in source or os.path.isabs(source):
        return source
    return str(folder / source)
