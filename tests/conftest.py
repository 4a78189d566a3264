"""Fixtures: the project's Gemini emulator and image server, on real loopback HTTP."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import pytest
from google import genai
from google.genai import types

from describer import Config
from describer.cli.commands import describe_main
from describer.emulator import EmulatorSettings, GeminiEmulator, ImageServer

TEST_KEY = "test-key-not-secret"
#: Variables that would let a test read the developer's real credentials or settings.
ISOLATED_VARIABLES = (
    "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION", "GOOGLE_GEMINI_BASE_URL", "DESCRIBER_MODEL", "DESCRIBER_RPM",
    "DESCRIBER_TPM", "DESCRIBER_MAX_COST", "DESCRIBER_SERVICE_TIER",
)
#: Runs the describe-images command line in a child process.
CLI = [sys.executable, "-c", "from describer.cli import main; main()"]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test: no key or describer setting from the developer's environment, and job
    records in a fresh ``DESCRIBER_HOME``. Fixtures that need a key set it explicitly."""
    for name in ISOLATED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DESCRIBER_HOME", str(tmp_path / "describer-home"))


@pytest.fixture
async def emulator() -> AsyncIterator[GeminiEmulator]:
    """A Gemini emulator on a free port, zero latency; tests tune it with ``configure``."""
    async with GeminiEmulator(EmulatorSettings()) as emu:
        yield emu


@pytest.fixture
async def client(emulator: GeminiEmulator) -> AsyncIterator[genai.Client]:
    """A google-genai client (Gemini Developer API, key auth) pointed at ``emulator``."""
    c = genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=emulator.base_url))
    yield c
    await c.aio.aclose()


@pytest.fixture
async def images() -> AsyncIterator[ImageServer]:
    """A local image server; tests register bodies with ``add`` and friends."""
    async with ImageServer() as server:
        yield server


@pytest.fixture
def gemini_env(monkeypatch: pytest.MonkeyPatch, emulator: GeminiEmulator) -> GeminiEmulator:
    """Point the real google-genai client at the emulator with a dummy key."""
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emulator.base_url)
    return emulator


@dataclass
class Outcome:
    """What a run produced: exit code, parsed JSON lines, and stderr text."""

    code: int
    records: list[dict[str, Any]]
    stderr: str

    def by_source(self) -> dict[str, dict[str, Any]]:
        """Records keyed by ``source``; fails on a repeated source."""
        keyed = {r["source"]: r for r in self.records}
        assert len(keyed) == len(self.records), "a source has more than one record"
        return keyed


async def describe_run(
    capsys: pytest.CaptureFixture[str], sources: list[str], **options: Any
) -> Outcome:
    """The describe command's body (``describe_main``: ``describer.run``, the summary line,
    the exit code) in this event loop, records read from captured stdout."""
    options.setdefault("progress", False)
    code = await describe_main(Config(**options), sources)
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    return Outcome(code, records, captured.err)


def _child_env(env: dict[str, str]) -> dict[str, str]:
    """PATH, HOME, LANG and the isolated DESCRIBER_HOME of this process, plus ``env``: a
    child sees no other variable of the developer's environment."""
    names = ("PATH", "HOME", "LANG", "DESCRIBER_HOME")
    return {**{k: os.environ[k] for k in names if k in os.environ}, **env}


def cli(
    args: list[str], env: dict[str, str], stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``describe-images ARGS`` to the end in a child process (see :func:`_child_env`)."""
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, env=_child_env(env),
        timeout=timeout, check=False,
    )


def wait_until(condition: Callable[[], object], deadline: float = 20.0) -> None:
    """Poll ``condition`` every 10 ms until it is true (e.g. the emulator has seen a request);
    fail after ``deadline`` seconds. For waiting on another process, not for timing."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("the condition never held")
        time.sleep(0.01)


def cli_process(args: list[str], env: dict[str, str], **popen: Any) -> subprocess.Popen[str]:
    """Start ``describe-images ARGS`` in a child process (stdout and stderr piped unless
    ``popen`` says otherwise), for tests that signal it while it runs."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen([*CLI, *args], text=True, env=_child_env(env), **popen)


@pytest.fixture
def write_files(tmp_path: Path) -> Any:
    """Write ``{name: bytes}`` under tmp_path/photos and return that folder."""

    def write(files: dict[str, bytes], folder: str = "photos") -> Path:
        root = tmp_path / folder
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return root

    return write


@pytest.fixture
def aioresponses_compat() -> Iterator[None]:
    """Let aioresponses 0.7.9 build responses under aiohttp >= 3.14.

    aiohttp 3.14 added a required ``stream_writer`` argument to ``ClientResponse``, which
    aioresponses 0.7.9 does not pass (pnuckowski/aioresponses#289). aiohttp is not pinned
    below 3.14 because 3.14.0 is a security release; this shim adds the argument (aiohttp
    only reads its ``output_size``) and is a no-op on older aiohttp.
    """
    import aioresponses.core as core

    if "stream_writer" not in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
        yield
        return

    class CompatResponse(aiohttp.ClientResponse):
        def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stream_writer", mock.Mock(output_size=0))
            super().__init__(method, url, **kwargs)

    with mock.patch.object(core, "ClientResponse", CompatResponse):
        yield
