"""Credentials, the run's one HTTP session, and the google-genai client that sends over it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from google import genai
from google.genai import types

from ..config import Config
from ..errors import ConfigError, secrets

KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
NO_CREDENTIALS = (
    "no Gemini credentials: set GEMINI_API_KEY (or GOOGLE_API_KEY) to a key from "
    "https://aistudio.google.com/apikey, or for Vertex AI set GOOGLE_GENAI_USE_VERTEXAI=true "
    "with GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION"
)


@dataclass(frozen=True, slots=True)
class Connection:
    """What a run talks over: its one ``session`` (downloads and Gemini calls), the
    google-genai ``client`` bound to it, and the key values to scrub from messages."""

    session: aiohttp.ClientSession
    client: genai.Client
    hidden: tuple[str, ...]


@asynccontextmanager
async def connect(config: Config) -> AsyncIterator[Connection]:
    """The run's one HTTP session and a google-genai client sending over it, closed on exit.

    Raises :class:`describer.ConfigError` when no credentials are configured.
    """
    check_credentials(config)
    async with open_session() as session:
        yield Connection(session, create_client(config, session), secrets(config.api_key))


def check_credentials(config: Config, env: Mapping[str, str] = os.environ) -> None:
    """Raise :class:`ConfigError` when neither an API key nor Vertex AI settings are present."""
    if config.api_key:
        return
    if env.get("GOOGLE_GENAI_USE_VERTEXAI", "").strip().lower() in ("1", "true", "yes"):
        if env.get("GOOGLE_API_KEY") or (
            env.get("GOOGLE_CLOUD_PROJECT") and env.get("GOOGLE_CLOUD_LOCATION")
        ):
            return
        raise ConfigError(
            "Vertex AI mode (GOOGLE_GENAI_USE_VERTEXAI) needs GOOGLE_CLOUD_PROJECT and "
            "GOOGLE_CLOUD_LOCATION, with application default credentials "
            "(gcloud auth application-default login)"
        )
    if not any(env.get(name) for name in KEY_VARIABLES):
        raise ConfigError(NO_CREDENTIALS)


def endpoint(config: Config, env: Mapping[str, str] = os.environ) -> str | None:
    """The base URL the run's calls go to when it is not Google's: ``config.base_url``, else
    ``GOOGLE_GEMINI_BASE_URL`` (as google-genai reads it), without a trailing slash; None
    for Google's own endpoints."""
    url = config.base_url or env.get("GOOGLE_GEMINI_BASE_URL")
    return url.rstrip("/") if url else None


def create_client(config: Config, session: aiohttp.ClientSession) -> genai.Client:
    """A google-genai client that sends over the run's ``session``.

    The endpoint is ``config.base_url``, else ``GOOGLE_GEMINI_BASE_URL``, else Google's. Each
    call may take ``config.call_timeout`` seconds (180, or 960 under ``--service-tier flex``,
    unless ``--request-timeout`` says otherwise). The SDK's own retries stay off
    (``attempts=1``): describer decides what is retried.
    """
    options = types.HttpOptions(
        base_url=config.base_url,
        timeout=int(config.call_timeout * 1000),  # milliseconds
        aiohttp_client=session,
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key=config.api_key, http_options=options)


def open_session() -> aiohttp.ClientSession:
    """The run's one HTTP session, shared by downloads and the google-genai client.

    The connection pool is unbounded because the pipeline's semaphores bound the requests.
    Proxy variables (``HTTPS_PROXY`` and kin) are honoured when set; when none is, aiohttp
    is not asked to look (it would consult the environment and ``~/.netrc`` in a worker
    thread on every request: two thread hops per request, ~10 % of the CPU per image).
    """
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, trust_env=_proxy_configured())


def _proxy_configured() -> bool:
    names = ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy")
    return any(os.environ.get(name) or os.environ.get(name.upper()) for name in names)
