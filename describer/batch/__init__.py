"""Gemini's Batch API: ``describe-images batch submit | status | fetch | cancel | list``.

Half the price of online calls, results within 24 hours.

- :mod:`.store`: local job records (``$DESCRIBER_HOME/jobs``);
- :mod:`.requests`: ``submit``: request files, written off the event loop;
- :mod:`.jobs`: create, refresh, cancel, wait;
- :mod:`.results`: a finished submission's :class:`~describer.model.Result` records.
"""

from .jobs import cancel, refresh, wait_until_done
from .requests import MAX_FILE_BYTES, MAX_REQUESTS, submit
from .results import results
from .store import FINAL_STATES, JobPart, JobRecord, jobs_dir, leftovers, list_records

__all__ = [
    "FINAL_STATES",
    "MAX_FILE_BYTES",
    "MAX_REQUESTS",
    "JobPart",
    "JobRecord",
    "cancel",
    "jobs_dir",
    "leftovers",
    "list_records",
    "refresh",
    "results",
    "submit",
    "wait_until_done",
]
