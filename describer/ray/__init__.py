"""describer on Ray Data, one quota shared by the whole cluster (``describer[ray]``).

- :mod:`.cluster`: :func:`describe_dataset` (a dataset in, the same rows with their records
  as columns out), the quota keeper actor (:func:`start_keeper`), Ray's retries;
- :mod:`.keeper`: :class:`QuotaKeeper`, the run's limits (``--rpm``/``--tpm``, learned
  quotas, the 429 gate, the daily stop, ``--max-cost``) granting permits in batches;
- :mod:`.permits`: a worker's throttle and spend under the keeper;
- :mod:`.worker`: :class:`DescribeBatch`, the callable class of the actor pool, and its
  batch journals (no double billing after a retry);
- :mod:`.rows`: rows → sources, records → columns, the stable row key;
- :mod:`.shards`: an output folder's journals → what is done, and its Parquet shards.

Importing ``describer`` (or this package) does not import Ray: the modules that need it
import it inside the functions that use it. Absolute ``import ray`` everywhere: this
package's name is ``describer.ray``, never plain ``ray``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cluster import describe_dataset, start_keeper

__all__ = ["describe_dataset", "start_keeper"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import cluster

        return getattr(cluster, name)
    raise AttributeError(name)
