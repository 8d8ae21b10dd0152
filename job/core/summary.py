"""Per-stage outcome counting and the ``<stage>.summary`` event.

Both stages (download, parse) report the same way so that dashboards and the
container's exit status treat them alike.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class StageSummary:
    """Thread-safe tally of item outcomes for one stage of one run."""

    stage: str
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    bytes_fetched: int = 0  # download: compressed bytes received (for the metrics file)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, outcome: Outcome, bytes_fetched: int = 0) -> None:
        with self._lock:
            setattr(self, outcome.value, getattr(self, outcome.value) + 1)
            self.bytes_fetched += bytes_fetched

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.skipped

    @property
    def attempted(self) -> int:
        return self.succeeded + self.failed

    def as_event(self) -> dict[str, Any]:
        """Fields of the summary event; rates are over items attempted in this run.

        With nothing attempted the rates are None (JSON null): a re-run that had
        nothing new did not succeed 100% of the time, and a dashboard averaging
        the rates must not count it as if it had.
        """
        attempted = self.attempted
        return {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "success_rate": round(self.succeeded / attempted, 4) if attempted else None,
            "failure_rate": round(self.failed / attempted, 4) if attempted else None,
        }

    def emit(self, log: Any) -> None:
        log.info(f"{self.stage}.summary", **self.as_event())

    @property
    def exit_status(self) -> int:
        return 1 if self.failed else 0
