"""The shared part of every request of a run: few-shot examples and reference documents.

``--example IMAGE TEXT`` and ``--examples FILE`` give examples (an image and the answer
wanted for it); ``--context PATH`` gives documents (text and Markdown as text; PDFs and
images as media). They go through the same sources → download → prepare stages as the items,
once per run, and are sent before each item's own turn: the documents, then for each
example a user turn (its image and the prompt) and a model turn (the answer).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from dataclasses import dataclass

import aiohttp

from ..config import Config
from ..download import source_bytes
from ..errors import ConfigError, ItemFailure
from ..limits.tokens import estimate_tokens, request_resolution
from ..model import Prepared
from ..prepare import prepare
from ..schema import AnswerCheck
from ..sources import classify
from .examples import read_examples

#: What a ``--context`` document may be, as media (anything else must be UTF-8 text).
DOCUMENT_MEDIA = frozenset({"image", "pdf"})


@dataclass(frozen=True, slots=True)
class Example:
    """One few-shot example: ``source`` as given, its ``prepared`` image, the ``answer``."""

    source: str
    prepared: Prepared
    answer: str


@dataclass(frozen=True, slots=True)
class Document:
    """One ``--context`` document: ``source`` as given, and its ``text`` (text, Markdown)
    or its ``prepared`` media (PDF, image); exactly one of the two is set."""

    source: str
    text: str | None = None
    prepared: Prepared | None = None


@dataclass(frozen=True, slots=True)
class SharedContext:
    """The run's system instruction, documents and examples, in the order they are sent."""

    system_instruction: str | None
    documents: tuple[Document, ...] = ()
    examples: tuple[Example, ...] = ()

    @property
    def empty(self) -> bool:
        """True when there are neither documents nor examples (a system instruction alone
        goes in each request's settings, as before)."""
        return not (self.documents or self.examples)

    def tokens(self, config: Config) -> int:
        """Estimated input tokens of the shared part (system instruction, documents,
        examples with the prompt of each example turn): text at ~4 characters a token,
        media as :func:`describer.limits.tokens.estimate_tokens` counts them."""
        resolution = request_resolution(config)
        text = len(self.system_instruction or "") + len(config.prompt) * len(self.examples)
        text += sum(len(d.text or "") for d in self.documents)
        text += sum(len(e.answer) for e in self.examples)
        media = [d.prepared.media for d in self.documents if d.prepared is not None]
        media += [e.prepared.media for e in self.examples]
        return math.ceil(text / 4) + sum(estimate_tokens(m, "", resolution) for m in media)

    def digest(self) -> str:
        """SHA-256 (hex) of everything the model reads here, in order: what a cached answer
        made with this context is filed under (``cache.keys``). Sources' names are not in
        it, nor is any cache's name: the content is what changes the answer."""
        h = hashlib.sha256()
        for document in self.documents:
            _update(h, "document", document.text, document.prepared)
        for example in self.examples:
            _update(h, "example", example.answer, example.prepared)
        return h.hexdigest()


def _update(h: hashlib._Hash, kind: str, text: str | None, prepared: Prepared | None) -> None:
    for piece in (kind, text or "", prepared.media.mime_type if prepared else "",
                  prepared.data if prepared else b""):
        data = piece if isinstance(piece, bytes) else piece.encode()
        h.update(f"{len(data)}:".encode() + data)


async def load_shared(config: Config, session: aiohttp.ClientSession) -> SharedContext:
    """The run's :class:`SharedContext`: every ``--example`` (then those of
    ``--examples FILE``) and ``--context`` document read (downloaded for a URL) and
    prepared. Raises :class:`ConfigError` naming the source for one that cannot be read or
    is not an image (examples) or text, PDF or image (documents), and for an example answer
    that is not valid under ``--schema``."""
    pairs = list(config.examples)
    if config.examples_file is not None:
        pairs += read_examples(config.examples_file, structured=config.schema is not None)
    check = AnswerCheck(config.schema) if config.schema is not None else None  # type: ignore[arg-type]
    examples = []
    for source, answer in pairs:
        if check is not None:
            _, problem = check.parse(answer)
            if problem is not None:
                raise ConfigError(f"example {source}: its answer is not valid under --schema: "
                                  f"{problem.removeprefix('the answer ')}")
        data = await _bytes(source, "--example", session, config)
        prepared = await asyncio.to_thread(_prepared, data, source, config)
        examples.append(Example(source, prepared, answer))
    documents = [await _document(path, session, config) for path in config.context]
    return SharedContext(config.system_instruction, tuple(documents), tuple(examples))


async def _document(path: str, session: aiohttp.ClientSession, config: Config) -> Document:
    """A ``--context`` document: media when its bytes are a PDF or an image, else text."""
    data = await _bytes(path, "--context", session, config)
    try:
        prepared = await asyncio.to_thread(prepare, data, config.max_side, DOCUMENT_MEDIA)
        return Document(path, prepared=prepared)
    except ItemFailure:
        pass
    try:
        return Document(path, text=data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ConfigError(f"--context {path}: neither UTF-8 text, a PDF nor an image") from None


async def _bytes(ref: str, option: str, session: aiohttp.ClientSession, config: Config) -> bytes:
    try:
        return await source_bytes(classify(ref), session, config)
    except ItemFailure as failure:
        raise ConfigError(f"{option} {ref}: {failure.error.message}") from None


def _prepared(data: bytes, ref: str, config: Config) -> Prepared:
    try:
        return prepare(data, config.max_side, frozenset({"image"}))
    except ItemFailure as failure:
        raise ConfigError(f"--example {ref}: {failure.error.message}") from None
