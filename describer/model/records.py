"""The record: one :class:`Result` per source, and its JSON shape (``to_json`` /
``from_json``, the README's "The JSONL schema"), with the marks by which a file of records
is recognised as describer's (:func:`is_record`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .items import Answer, ItemError, Media, Usage


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one source. Exactly one per distinct source of a run.

    ``description`` is the model's text (``None`` on failure; partial on ``max_tokens``);
    ``error`` is ``None`` on success. ``media`` describes the bytes sent (the record's
    ``image`` key), ``original`` the downloaded file when it was re-encoded. ``latency_ms`` is
    the wall time of the last model call; ``attempts`` counts model calls made (0 when the item
    failed before reaching Gemini). With ``--embed``: ``embedding`` (floats) and
    ``embedding_model``, or ``embedding_error``. With ``--schema`` (``structured``): ``data``,
    the answer parsed and valid under the schema (``None`` when the item failed, e.g. with
    ``invalid_output``; ``description`` keeps the raw text either way). ``cached``: the answer
    came from the result cache (:mod:`describer.cache`) or from an item of the same run with
    the same bytes, and no model call was made for this source: ``usage``, ``latency_ms`` and
    ``attempts`` are those of the call that made the answer, not billed again. A table row's
    record also carries ``id`` (its ``--id-col``, text) and ``meta`` (its ``--keep-cols``),
    each written only when set.
    """

    source: str
    model: str
    prompt: str
    description: str | None = None
    error: ItemError | None = None
    usage: Usage | None = None
    media: Media | None = None
    original: Media | None = None
    finish_reason: str | None = None
    latency_ms: int | None = None
    attempts: int = 0
    embedding: list[float] | None = None
    embedding_model: str | None = None  # set when an embedding was asked for
    embedding_error: ItemError | None = None
    data: Any = None
    structured: bool = False  # set when a schema was asked for: the record has ``data``
    cached: bool = False
    id: str | None = None
    meta: Mapping[str, Any] | None = field(default=None, hash=False)

    @property
    def ok(self) -> bool:
        """True when the source was described."""
        return self.error is None

    @classmethod
    def described(
        cls,
        source: str,
        model: str,
        prompt: str,
        answer: Answer,
        media: Media | None = None,
        original: Media | None = None,
    ) -> Result:
        """The record for a model answer (which may itself carry an error), about ``media``
        (re-encoded from ``original`` when that is set)."""
        return cls(
            source, model, prompt, answer.text, answer.error, answer.usage, media, original,
            answer.finish_reason, answer.latency_ms, answer.attempts, data=answer.data,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (the schema documented in the README)."""
        image = None
        if self.media is not None:
            image = self.media.to_json()
            image["original"] = self.original.to_json() if self.original else None
        return _source_json(self.source) | self._row_json("id") | {
            "description": self.description,
            "error": self.error.to_json() if self.error else None,
            "model": self.model,
            "prompt": self.prompt,
            "usage": self.usage.to_json() if self.usage else None,
            "image": image,
            "finish_reason": self.finish_reason,
            "latency_ms": self.latency_ms,
            "attempts": self.attempts,
            "cached": self.cached,
        } | ({"data": self.data} if self.structured else {}) | self._embedding_json() \
            | self._row_json("meta")

    def _row_json(self, key: str) -> dict[str, Any]:
        """``{key: value}`` for a table row's ``id`` or ``meta``; ``{}`` when not set."""
        value = getattr(self, key)
        return {} if value is None else {key: dict(value) if key == "meta" else value}

    def _embedding_json(self) -> dict[str, Any]:
        if self.embedding_model is None:
            return {}
        error = self.embedding_error.to_json() if self.embedding_error else None
        return {"embedding": self.embedding, "embedding_model": self.embedding_model,
                "embedding_error": error}  # fmt: skip

    def to_line(self) -> str:
        """The record as one line of JSON, newline included."""
        return json.dumps(self.to_json(), ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        """Read a record written by :meth:`to_json` (records older than ``cached`` read
        ``False``). Raises ``KeyError``/``TypeError``/``ValueError`` when ``data`` is not one
        (see :func:`is_record`)."""
        image = data.get("image")
        original = image.get("original") if isinstance(image, dict) else None
        return cls(
            record_source(data), str(data["model"]), str(data["prompt"]),
            data.get("description"), _optional(ItemError, data.get("error")),
            _optional(Usage, data.get("usage")), _optional(Media, image),
            _optional(Media, original), data.get("finish_reason"), data.get("latency_ms"),
            int(data.get("attempts", 0)), data.get("embedding"), data.get("embedding_model"),
            _optional(ItemError, data.get("embedding_error")), data.get("data"), "data" in data,
            cached=data.get("cached") is True, id=_text(data.get("id")),
            meta=data["meta"] if isinstance(data.get("meta"), dict) else None,
        )  # fmt: skip


def _optional(kind: Any, data: Any) -> Any:
    return kind.from_json(data) if isinstance(data, dict) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _source_json(source: str) -> dict[str, str]:
    """``{"source": ...}``, always valid UTF-8: a source that is not (a file name with byte
    0xFF, read with ``surrogateescape``) is written with its bad bytes escaped (``\\xff``) and
    its original bytes, base64-encoded, in ``source_bytes``."""
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:
        raw = source.encode("utf-8", "surrogateescape")
        text = raw.decode("utf-8", "backslashreplace")
        return {"source": text, "source_bytes": base64.b64encode(raw).decode("ascii")}
    return {"source": source}


def record_source(record: dict[str, Any]) -> str:
    """The source a record names, as the run that wrote it saw it: ``source_bytes`` decoded
    (``surrogateescape``, as Python reads file names) when present, else ``source``.
    Raises ``KeyError`` when the record has no ``source``."""
    raw = record.get("source_bytes")
    if isinstance(raw, str):
        try:
            return base64.b64decode(raw, validate=True).decode("utf-8", "surrogateescape")
        except (binascii.Error, ValueError):
            pass
    return str(record["source"])


#: Keys every describer record has had since the first release (README, "The JSONL schema"):
#: the positive mark by which an output file is recognised as describer's.
RECORD_KEYS = frozenset({"source", "description", "error", "model", "prompt", "usage"})


def is_record(data: object) -> bool:
    """Whether parsed JSON ``data`` is a describer record: an object with every key of
    :data:`RECORD_KEYS`, a string ``source`` and ``model``, and ``error`` null or an object."""
    return (
        isinstance(data, dict)
        and data.keys() >= RECORD_KEYS
        and isinstance(data["source"], str)
        and isinstance(data["model"], str)
        and (data["error"] is None or isinstance(data["error"], dict))
    )
