"""What a cached answer is filed under: the media sent, and everything asked about it.

A key is the SHA-256 (hex) of a canonical JSON (keys sorted, no spaces, UTF-8) of three
parts:

- the **content**: :func:`content_key`, ``sha256:<hex>`` of the bytes sent (after
  ``prepare``: the original file, or its re-encoding under ``--max-side``); for a URL sent
  for Gemini to fetch (``--send url``/``auto``), ``url:<hex>`` of the URL, its validators
  (ETag, Last-Modified), its size and its first 512 bytes (``describer.send``);
- the **MIME type** sent with them;
- the **request**: :func:`request_fingerprint`, the model, the prompt and every setting of
  ``gemini.encoding.generation_settings`` (system instruction, temperature, output cap,
  media resolution, thinking, and whatever a later feature adds there, such as a response
  schema). Read at each run from that one function, so a setting added to requests is in
  the key without a change here. And the endpoint when it is not Google's
  (``--base-url``, ``GOOGLE_GEMINI_BASE_URL``): another server (the emulator, a gateway)
  gives other answers, which must not be taken for Gemini's. And ``shared_context``, the
  digest of the run's examples and reference documents (``context.SharedContext.digest``:
  their bytes and answers, not their names, nor the context cache's name, which differs
  from run to run for the same content).

Not in the key, as they do not change the answer: ``--service-tier`` (price and latency
only), inline bytes or a Files API upload (how the same bytes travel), timeouts, retries,
concurrency.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..config import Config
from ..gemini import connection, encoding


def content_key(data: bytes) -> str:
    """``sha256:<64 hex digits>`` of the bytes sent. A URL sent for Gemini to fetch is
    keyed by ``describer.send`` instead (``Prepared.content``: ``url:<hex>``)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def request_settings(config: Config, shared: str | None = None) -> dict[str, Any]:
    """Everything sent with the media that changes the answer: ``model`` (without a
    ``models/`` prefix), ``prompt``, the fields of ``generation_settings(config)``,
    ``shared_context`` (the digest ``shared`` of the run's examples and documents) when
    there are any, and ``endpoint`` when the calls do not go to Google
    (``gemini.connection.endpoint``)."""
    settings = {
        "model": config.model.removeprefix("models/"),
        "prompt": config.prompt,
        **encoding.generation_settings(config),
    }
    if shared is not None:
        settings["shared_context"] = shared
    server = connection.endpoint(config)
    return settings if server is None else settings | {"endpoint": server}


def request_fingerprint(config: Config, shared: str | None = None) -> str:
    """SHA-256 (hex) of :func:`canonical` ``request_settings(config, shared)``: one per run.
    Raises ``TypeError`` when a setting cannot be written as JSON (the run is then not
    cached)."""
    return _sha256(canonical(request_settings(config, shared)))


def item_key(content: str, mime_type: str, request: str) -> str:
    """The cache key (64 hex digits) of one item: its ``content`` (:func:`content_key`), the
    ``mime_type`` sent and the run's ``request`` (:func:`request_fingerprint`)."""
    return _sha256(canonical({"content": content, "mime_type": mime_type, "request": request}))


def canonical(value: Any) -> str:
    """``value`` as canonical JSON: keys sorted, no spaces, non-ASCII kept. A pydantic model
    class (a response schema given in the library) is written as its JSON Schema, a pydantic
    object as its JSON; anything else that JSON cannot hold raises ``TypeError``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_plain)  # fmt: skip


def _plain(value: Any) -> Any:
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return value.model_json_schema()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"a setting of type {type(value).__name__} cannot be part of a cache key")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
