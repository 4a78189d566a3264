"""The one adapter to google-genai: everything describer sends to or reads from Gemini.

- :mod:`.connection`: credentials, the run's one HTTP session and the client (``connect``);
- :mod:`.failures`: SDK errors as :class:`~describer.errors.ItemFailure` (``retryDelay`` read);
- :mod:`.encoding`: request settings, for online calls and Batch API request files alike;
- :mod:`.answers`: reading a response (text, finish reasons, blocks, usage);
- :mod:`.calls`: the model, Files API, context cache and Batch API calls.

No other module imports ``google.genai``.
"""

from .answers import interpret, interpret_json
from .calls import (
    by_files_api,
    cancel_batch,
    create_batch,
    create_cache,
    delete_cache,
    delete_file,
    download_file,
    embed,
    extend_cache,
    generate,
    get_batch,
    job_state,
    media_part,
    upload_media,
    upload_request_file,
)
from .connection import Connection, check_credentials, connect, create_client, open_session
from .encoding import (
    cache_config,
    file_json,
    generation_config,
    inline_json,
    request_json,
    shared_contents,
    shared_json,
)
from .failures import api_failure, gemini_errors, retry_delay

__all__ = [
    "Connection",
    "api_failure",
    "by_files_api",
    "cache_config",
    "cancel_batch",
    "check_credentials",
    "connect",
    "create_batch",
    "create_cache",
    "create_client",
    "delete_cache",
    "delete_file",
    "download_file",
    "embed",
    "extend_cache",
    "file_json",
    "gemini_errors",
    "generate",
    "generation_config",
    "get_batch",
    "inline_json",
    "interpret",
    "interpret_json",
    "job_state",
    "media_part",
    "open_session",
    "request_json",
    "retry_delay",
    "shared_contents",
    "shared_json",
    "upload_media",
    "upload_request_file",
]
