"""Implicit context caching: the prompt tokens Gemini bills as read from a cache.

Gemini 2.5 and newer models cache implicitly: "We automatically pass on cost savings if
your request hits caches", reported as ``cachedContentTokenCount`` in usageMetadata, and
"To increase the chance of an implicit cache hit: Try putting large and common contents at
the beginning of your prompt; Try to send requests with similar prefix in a short amount of
time" (ai.google.dev/gemini-api/docs/caching). A prefix is the request's leading content,
system instruction first, then contents in order, repeated byte for byte.

The emulator's simple version (``ImplicitCache``): the prefix is the system instruction
plus the text parts before the first media part. When it is at least the model's minimum
(``min_prefix_tokens``) and the same model saw the same prefix within ``cache_ttl``
seconds, its tokens (ceil(chars / 4)) are reported as cached. So a request whose media
come first, as describer sends them, gets no hit beyond a long system instruction: the
documented consequence of putting varying content first. Departures, each on the harsher
(costlier) side: media are never part of a cached prefix, a longer prefix that extends a
cached one gets no partial hit, an entry lives ``cache_ttl`` seconds from its first
sighting whatever hits it, and a request answered with an error neither hits nor fills
the cache. Entries are not separated by API key (at Google: by project, presumably).

Figures and where they come from:

* Minimum prefix (``min_prefix_tokens``): 2,048 tokens for Gemini 2.5 Flash and Pro,
  4,096 for Gemini 3 and later (3.1 Pro Preview, 3.5-3.8 Flash, 4 Argon), from the
  caching page as updated 2026-10-13. Earlier versions of that page (2026-05) said 1,024
  for 2.5 Flash and Gemini 3 Flash Preview and 4,096 for the Pro models; the emulator
  follows the newer, higher figures. Models before 2.5 do not cache implicitly.
* ``cache_ttl`` (300 s by default): the emulator's assumption; Google documents no lifetime
  for implicit caches (explicit caches default to one hour).

Explicit caches (``cachedContents``, a request's ``cachedContent``) are contexts.py's; a
request that reads one gets no implicit hit on top.
"""

from __future__ import annotations

import hashlib

from .answers import text_tokens
from .contents import GenerateRequest

MIN_PREFIX_TOKENS_2_5 = 2048  # Gemini 2.5 Flash / Pro (caching page, 2026-10-13).
MIN_PREFIX_TOKENS_3 = 4096  # Gemini 3 and later (caching page, 2026-10-13).
MAX_ENTRIES = 10_000  # prefixes remembered at most (memory bound; oldest dropped first).


def min_prefix_tokens(model: str) -> int | None:
    """The smallest prefix in tokens ``model`` caches implicitly; None before Gemini 2.5.

    Model names not matching gemini-1 / gemini-2.0 / gemini-2.5 are taken as Gemini 3 or
    later, as answers.thinking_tokens does.
    """
    name = model.removeprefix("models/")
    if name.startswith(("gemini-1", "gemini-2.0")):
        return None
    return MIN_PREFIX_TOKENS_2_5 if name.startswith("gemini-2.5") else MIN_PREFIX_TOKENS_3


class ImplicitCache:
    """Prefixes seen, by hash, with the time (s, the emulator's clock) each was first seen."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def clear(self) -> None:
        """Forget every prefix."""
        self._seen.clear()

    def lookup(self, req: GenerateRequest, now: float, ttl: float) -> int:
        """Cached prompt tokens for ``req`` at time ``now``: the prefix's tokens if the same
        model saw it less than ``ttl`` seconds ago, else 0 (and it is remembered from now
        if long enough)."""
        minimum = min_prefix_tokens(req.model)
        chars = len(req.system_instruction) + sum(len(t) for t in req.lead_texts)
        tokens = text_tokens(chars)
        if minimum is None or tokens < minimum:
            return 0
        key = _prefix_key(req)
        seen = self._seen.get(key)
        if seen is not None and now - seen < ttl:
            return tokens
        self._seen.pop(key, None)
        if len(self._seen) >= MAX_ENTRIES:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = now
        return 0


def _prefix_key(req: GenerateRequest) -> str:
    """sha256 (hex) of the model name, system instruction and leading texts, each prefixed
    by its length so that no two different sequences hash alike."""
    digest = hashlib.sha256()
    for piece in (req.model.removeprefix("models/"), req.system_instruction, *req.lead_texts):
        data = piece.encode()
        digest.update(f"{len(data)}:".encode() + data)
    return digest.hexdigest()
