"""The ``describe-images`` command line: options → one :class:`~describer.config.Config` →
one library call → an exit code (``terminal.EXIT_*``).

- :mod:`.options`: option types and shared option groups;
- :mod:`.commands`: the group, ``describe`` (default), ``embed``, ``search``;
- :mod:`.batch`: ``batch submit | status | fetch | cancel | list``;
- :mod:`.cache`: ``cache stats | clear``;
- :mod:`.export`: ``export FILE --to parquet|csv|hf``;
- :mod:`.ray`: ``ray SOURCE_TABLE -o OUT_DIR``: a table on Ray Data (``describer[ray]``);
- :mod:`.terminal`: exit codes, Ctrl-C, the search table.
"""

from __future__ import annotations

import logging

from . import batch as _batch  # noqa: F401 - registers the batch commands on the group
from . import cache as _cache  # noqa: F401 - registers the cache commands on the group
from . import export as _export  # noqa: F401 - registers the export command on the group
from . import ray as _ray  # noqa: F401 - registers the ray command (Ray imported when it runs)
from .commands import cli


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="describer: %(levelname)s: %(message)s")
    cli()


__all__ = ["cli", "main"]
