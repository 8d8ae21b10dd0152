"""Set-up shared by every worker process the job forks (parse and download workers).

A worker must never outlive the run that made it: otherwise a killed run leaves
processes that wait forever for work, or that keep writing into an output tree
the next run is already cleaning. And a worker must never decide on its own to
stop: Ctrl-C reaches the whole process group, but only the parent knows which
items are half done and what must be discarded.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def become_worker(parent_pid: int) -> None:
    """Ignore SIGINT, SIGTERM and SIGXFSZ; die by SIGKILL when the parent dies.

    Callers that want a SIGTERM from the parent to mean "stop" install their
    own handler afterwards. SIGXFSZ is ignored so that a file-size limit fails
    one write with EFBIG (reported for its item) instead of killing the worker.
    What the parent had is frozen for the collector: it is never garbage here,
    and walking it would also copy every page it sits on (copy-on-write).
    """
    gc.freeze()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_IGN)
    if sys.platform == "linux":
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass  # best effort
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the line above took effect
