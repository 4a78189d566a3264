"""describer: describe large numbers of images with Gemini, one JSON record per image.

Library use (e.g. in a notebook)::

    from describer import Config, describe_stream

    async for result in describe_stream(["photos/", "https://example.com/cat.jpg"], Config()):
        print(result.source, result.description or result.error)

The names below are imported on first use, so ``import describer`` (and the emulator, which
lives inside the package) does not pay for google-genai until something needs it. The rooms
of the code are listed in ARCHITECTURE.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "DEFAULT_MODEL": "config",
    "DEFAULT_PROMPT": "config",
    "Config": "config",
    "ConfigError": "errors",
    "ErrorType": "model",
    "ItemError": "model",
    "Media": "model",
    "Result": "model",
    "Source": "model",
    "Usage": "model",
    "describe_stream": "pipeline",
    "RunReport": "runner",
    "run": "runner",
    "schema_of": "schema",
}

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PROMPT",
    "Config",
    "ConfigError",
    "ErrorType",
    "ItemError",
    "Media",
    "Result",
    "RunReport",
    "Source",
    "Usage",
    "__version__",
    "describe_stream",
    "run",
    "schema_of",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'describer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from .config import DEFAULT_MODEL, DEFAULT_PROMPT, Config
    from .errors import ConfigError
    from .model import ErrorType, ItemError, Media, Result, Source, Usage
    from .pipeline import describe_stream
    from .runner import RunReport, run
    from .schema import schema_of
