"""Local stand-ins for Google's Gemini API and for image hosts, used by tests and benchmarks.

``GeminiEmulator`` speaks the Gemini REST API over real HTTP (point google-genai at its
``base_url``); ``ImageServer`` serves image files and scripted misbehaving routes. It imports
nothing of describer outside this package and no google-genai: it stands for Google, not for
the client. Its modules follow the API surface it emulates:

- ``wire``: Google's error bodies and messages, JSON and base64 decoding, the API key check;
- ``media``: probing what a request carries (images with Pillow; PDFs, audio, video);
- ``contents``: reading a GenerateContentRequest (parts, inline and file data);
- ``urls``: ``fileData`` http(s) URLs, fetched as Gemini fetches them (100 MB, its 400);
- ``uplink``: the ``upload_bytes_per_s`` cap on reading request bodies;
- ``answers``: deterministic answers, token counts, usage metadata, embeddings;
- ``settings``: ``EmulatorSettings``, every knob with its default and source;
- ``behaviour``: latency, faults, flex and per-image scripts, as one ``Behaviour`` object,
  with ``quota`` (requests and tokens per minute, window or bucket; per day) and
  ``caching`` (implicit caching: cachedContentTokenCount);
- ``stats``: what was received (``emu.stats``, the Batch and Files API counters);
- ``models``: generateContent, batchEmbedContents, embedContent (``emu.models``);
- ``contexts``: explicit context caches, ``cachedContents`` (``emu.contexts``);
- ``files``: the Files API (``emu.files``); ``jobs`` and ``batches``: the Batch API
  (``emu.batch``), with ``batch_control`` (its ``/_emulator/batch`` routes);
- ``server``: ``GeminiEmulator``, composing the above, and its control endpoints;
- ``images``: ``ImageServer``; ``loopback``: the server lifecycle both share.
"""

from .behaviour import EmulatorSettings
from .images import ImageServer
from .server import GeminiEmulator

__all__ = ["EmulatorSettings", "GeminiEmulator", "ImageServer"]
