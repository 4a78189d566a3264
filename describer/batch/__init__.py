"""Gemini's Batch API: ``describe-images batch submit | status | fetch | cancel | list``.

Half the price of online calls, results within 24 hours.

- :mod:`.store`: local job records (``$DESCRIBER_HOME/jobs``);
- :mod:`.requests`: ``submit``: request files, written off the event loop, at most
  ``MAX_CONCURRENT_JOBS`` (100) of a submission's jobs unfinished at once;
- :mod:`.jobs`: create, refresh, cancel, wait (for every job to finish; for room for one more);
- :mod:`.results`: a finished submission's :class:`~describer.model.Result` records.
"""

from .jobs import cancel, refresh, wait_for_room, wait_until_done
from .requests import MAX_CONCURRENT_JOBS, MAX_FILE_BYTES, MAX_REQUESTS, submit
from .results import results
from .store import FINAL_STATES, JobPart, JobRecord, jobs_dir, leftovers, list_records

__all__ = [
    "FINAL_STATES",
    "MAX_CONCURRENT_JOBS",
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
    "wait_for_room",
    "wait_until_done",
]
