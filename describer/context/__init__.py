"""The shared context of a run: few-shot examples and reference documents, sent with every
request, from one Gemini context cache per run when that is cheaper than sending them.

- :mod:`.shared`: ``SharedContext`` and ``load_shared`` (examples and documents read and
  prepared once per run);
- :mod:`.examples`: ``--examples FILE`` (JSONL pairs, or records marked good);
- :mod:`.session`: ``open_context`` and ``RunContext`` (the decision, the cache's life);
- :mod:`.ledger`: the caches describer made, so a killed run's is deleted by the next.
"""

from .session import RunContext, open_context
from .shared import SharedContext, load_shared

__all__ = ["RunContext", "SharedContext", "load_shared", "open_context"]
