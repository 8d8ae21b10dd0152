"""A one-line progress bar on stderr for people at a terminal; silent otherwise.

Stages report progress through :meth:`Progress.advance` (a subscriber-style
callback) instead of printing, so logs on stdout stay machine-readable.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, *, enabled: bool, stream: TextIO | None = None) -> None:
        self.total = total
        self.enabled = enabled and total > 0
        self.stream = stream or sys.stderr
        self.done = 0
        self.failed = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_draw = 0.0

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
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} archives{failed}, {rate:.1f} MB/s ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
