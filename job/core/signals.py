"""Cooperative shutdown on SIGTERM/SIGINT.

A signal only sets a flag. Workers poll :func:`stop_requested` between chunks and
abandon their item (deleting its temporary folder); the stage then raises
:class:`Interrupted`, the CLI returns 143 (SIGTERM) or 130 (SIGINT). Nothing is
published half-done, because publishing is always a rename of a complete item.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_stop = threading.Event()
_received: list[int] = []


class Interrupted(Exception):
    """Raised by a stage once it has cleaned up after a stop signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def stop_requested() -> bool:
    return _stop.is_set()


def wait_for_stop(timeout: float) -> bool:
    return _stop.wait(timeout)


def request_stop(signum: int = signal.SIGTERM) -> None:
    _received.append(signum)
    _stop.set()


def raise_if_stopped() -> None:
    if _stop.is_set():
        raise Interrupted(_received[0] if _received else signal.SIGTERM)


def listen_in_worker() -> None:
    """In a forked worker process: its own stop flag, set by a SIGTERM from the parent.

    The flag inherited through the fork is a copy of the parent's at that
    instant, lock included; had another thread held that lock then, setting
    the flag here would wait forever. A fresh one cannot be held.
    """
    global _stop
    _stop = threading.Event()
    _received.clear()
    signal.signal(signal.SIGTERM, _handler)


def _handler(signum: int, _frame: FrameType | None) -> None:
    request_stop(signum)


@contextmanager
def handle_stop_signals() -> Iterator[None]:
    """Install the handlers for the duration of a run (main thread only)."""
    _stop.clear()
    _received.clear()
    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    # A file-size limit (ulimit -f) must fail the one write with EFBIG, which the
    # item reports, instead of killing the whole run with SIGXFSZ.
    previous[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
