"""The output record: one :class:`Result` per source, written as one JSON line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .describe import Answer, Usage
from .errors import ItemError
from .prepare import ImageInfo, Prepared


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one source. Exactly one per distinct source of a run.

    ``description`` is the model's text (``None`` on failure; partial on ``max_tokens``);
    ``error`` is ``None`` on success. ``image`` describes the bytes sent, ``original`` the
    downloaded file when it was re-encoded. ``latency_ms`` is the wall time of the last model
    call; ``attempts`` counts model calls made (0 when the item failed before reaching Gemini).
    With ``--embed``: ``embedding`` (floats) and ``embedding_model``, or ``embedding_error``.
    """

    source: str
    model: str
    prompt: str
    description: str | None = None
    error: ItemError | None = None
    usage: Usage | None = None
    image: ImageInfo | None = None
    original: ImageInfo | None = None
    finish_reason: str | None = None
    latency_ms: int | None = None
    attempts: int = 0
    embedding: list[float] | None = None
    embedding_model: str | None = None  # set when an embedding was asked for
    embedding_error: ItemError | None = None

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
        prepared: Prepared,
        answer: Answer,
        attempts: int,
    ) -> Result:
        """The record for a model answer (which may itself carry an error)."""
        return cls(
            source, model, prompt, answer.text, answer.error, answer.usage, prepared.image,
            prepared.original, answer.finish_reason, answer.latency_ms, attempts,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (the schema documented in the README)."""
        image = None
        if self.image is not None:
            image = self.image.to_json()
            image["original"] = self.original.to_json() if self.original else None
        return {
            "source": self.source,
            "description": self.description,
            "error": self.error.to_json() if self.error else None,
            "model": self.model,
            "prompt": self.prompt,
            "usage": self.usage.to_json() if self.usage else None,
            "image": image,
            "finish_reason": self.finish_reason,
            "latency_ms": self.latency_ms,
            "attempts": self.attempts,
        } | self._embedding_json()

    def _embedding_json(self) -> dict[str, Any]:
        if self.embedding_model is None:
            return {}
        error = self.embedding_error.to_json() if self.embedding_error else None
        return {"embedding": self.embedding, "embedding_model": self.embedding_model,
                "embedding_error": error}  # fmt: skip

    def to_line(self) -> str:
        """The record as one line of JSON, newline included."""
        return json.dumps(self.to_json(), ensure_ascii=False) + "\n"
