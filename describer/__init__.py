"""describer: describe large numbers of images with Gemini, one JSON record per image.

Library use (e.g. in a notebook)::

    from describer import Config, describe

    async for result in describe(["photos/", "https://example.com/cat.jpg"], Config()):
        print(result.source, result.description or result.error)
"""

from .config import DEFAULT_MODEL, DEFAULT_PROMPT, Config
from .describe import Usage
from .errors import ConfigError, ErrorType, ItemError
from .pipeline import describe
from .prepare import ImageInfo
from .records import Result
from .run import run

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PROMPT",
    "Config",
    "ConfigError",
    "ErrorType",
    "ImageInfo",
    "ItemError",
    "Result",
    "Usage",
    "describe",
    "run",
]
