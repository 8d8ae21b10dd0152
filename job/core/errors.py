"""Exception types that decide how the job reports a problem.

The split matters for exit status: a :class:`UsageError` aborts the whole run with
status 2 and one line telling the user what to fix, while an :class:`ItemError`
fails one archive or journal and lets the rest of the run go on (status 1).
"""

from __future__ import annotations


class UsageError(Exception):
    """Bad flags or configuration: the run cannot start. Message is shown as-is."""


class ItemError(Exception):
    """One item (archive or journal) failed; ``reason`` is a one-line explanation."""

    def __init__(self, reason: str, *, retryable: bool = False, throttled: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        #: The server asked to slow down (said by a worker process for a SlowDown it got).
        self.throttled = throttled


class Cancelled(Exception):
    """The run was asked to stop (SIGTERM/SIGINT); in-flight work is discarded."""
