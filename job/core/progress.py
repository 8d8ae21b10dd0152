"""A one-line progress bar on stderr for people at a terminal; silent otherwise.

Stages report progress through :meth:`Progress.advance` (a subscriber-style
callback) instead of printing, so logs on stdout stay machine-readable.

On a terminal the log lines and the bar share the screen, so the bar must never
be left where a log line will be written: :func:`interrupting` (used by the log
writer in :mod:`job.core.logs`) clears the bar before each log line and draws it
again after, as apt, pip and cargo do. Hand-written rather than rich or tqdm: it
is these few lines, where a library would add megabytes and start-up time to an
image whose start-up is measured, and would have to own the log output too.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

#: Carriage return, then erase the whole line: leaves the cursor at column 0 of an empty row.
CLEAR_LINE = "\r\x1b[2K"

#: One lock for the bar and the log lines, so that a worker's log line and a redraw
#: never interleave their bytes. Re-entrant: a redraw may log nothing, but a log
#: line written while the bar is drawn must not deadlock.
_screen = threading.RLock()
_active: Progress | None = None


class Progress:
    def __init__(self, total: int, *, enabled: bool, stream: TextIO | None = None) -> None:
        global _active
        self.total = total
        self.enabled = enabled and total > 0
        self.stream = stream or sys.stderr
        self.done = 0
        self.failed = 0
        self.bytes = 0
        self._lock = _screen
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._shown = False
        if self.enabled:
            with _screen:
                _active = self
                self._draw()

    def advance(self, nbytes: int, *, failed: bool = False) -> None:
        with self._lock:
            self.done += 1
            self.failed += int(failed)
            self.bytes += nbytes
            if self.enabled and (
                time.monotonic() - self._last_draw > 0.1 or self.done == self.total
            ):
                self._draw()

    def _draw(self) -> None:
        self._last_draw = time.monotonic()
        width = 30
        filled = int(width * self.done / self.total)
        elapsed = max(self._last_draw - self._started, 1e-6)
        rate = self.bytes / elapsed / 1e6
        bar = "#" * filled + "-" * (width - filled)
        failed = f", {self.failed} failed" if self.failed else ""
        self.stream.write(
            f"{CLEAR_LINE}[{bar}] {self.done}/{self.total} archives{failed}, {rate:.1f} MB/s"
        )
        self.stream.flush()
        self._shown = True

    def _clear(self) -> None:
        if self._shown:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()
            self._shown = False

    def close(self) -> None:
        """Take the bar off the screen: the summary event that follows says it all."""
        global _active
        if not self.enabled:
            return
        with _screen:
            self._clear()
            if _active is self:
                _active = None


@contextmanager
def interrupting() -> Iterator[None]:
    """Clear the bar (if one is on screen) for a log line, and draw it again after."""
    with _screen:
        bar = _active
        if bar is None:
            yield
            return
        bar._clear()
        try:
            yield
        finally:
            bar._draw()
