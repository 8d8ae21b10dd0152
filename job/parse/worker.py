"""Parse one journal and publish its report: the unit of work, inline or in a worker process.

Everything here is importable at top level and takes/returns small picklable
values, because with ``concurrent > 1`` it runs in a ``ProcessPoolExecutor``
(JSON decoding and formatting hold the GIL, so threads would not help).
"""

from __future__ import annotations

import contextlib
import gc
import os
import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from job.core.child import become_worker
from job.core.config import DEFAULT_MAX_JOURNAL_BYTES
from job.core.errors import Cancelled, ItemError
from job.core.safe_fs import ensure_real_dirs
from job.model.journal import Journal, read_journal
from job.model.layout import Layout
from job.model.taxonomy import step_details
from job.parse.index import Fingerprint, IndexEntry, entry_for, failure_entry

#: Set by :func:`init_worker` in worker processes: the parent's "stop now" flag.
_stop_event: Any = None


class Renderer(Protocol):
    """What a parsed journal becomes on the drive; the CLI passes the report layer's.

    The parse stage sits below the report layer and never imports it: it is
    handed an object with this shape (it must pickle, to reach worker processes).
    """

    @property
    def version(self) -> int:
        """Recorded per index entry; a change makes every journal render again."""
        ...

    def outputs(self, report: Path) -> tuple[Path, ...]:
        """Every file that :meth:`write` publishes for ``report``."""
        ...

    def write(
        self,
        journal: Journal,
        layout: Layout,
        report: Path,
        details: Sequence[str | None],
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        """Publish the files atomically; raise ItemError for this journal's failure."""
        ...


@dataclass(frozen=True)
class ParseTask:
    journal_path: Path  # where to read the journal
    layout: Layout
    report_path: Path  # where to publish the report (output folder / layout.report)
    renderer: Renderer
    size: int = 0  # the journal's bytes when planned: the pool starts big ones first
    max_bytes: int = DEFAULT_MAX_JOURNAL_BYTES  # larger journals fail unread


@dataclass(frozen=True)
class ParseResult:
    entry: IndexEntry  # has ``error`` set when the journal failed
    seconds: float


def parse_one(task: ParseTask, should_stop: Callable[[], bool] | None = None) -> ParseResult:
    """Read, normalise, write the report atomically; never raises for a bad journal.

    Raises :class:`Cancelled` (leaving nothing behind) when ``should_stop()``
    becomes true before the report is published.

    The cyclic garbage collector is paused meanwhile: a decoded journal is
    hundreds of thousands of acyclic containers, and the collections their
    allocation triggers walked all of them again and again (orjson's decode took
    twice as long with it on; see docs/PERFORMANCE.md). Reference counting
    frees the journal as usual; collections resume afterwards.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return _parse_one(task, should_stop)
    finally:
        if paused:
            gc.enable()


def _planted(path: Path) -> None:
    """Replaced without an event of its own: workers don't log (their lines would
    interleave with the parent's on one stdout); the download reports the links it
    meets, and a link here shows as the journal's report being written normally."""


def _real_report_folder(task: ParseTask) -> None:
    """Make the report's folders real folders below the output root, links replaced.

    The renderer writes by path; a symlink planted at any folder above the report
    (``aide_journals/aide -> /elsewhere``) would take the report, and the cleanup
    of its temporary, out of the output tree. See :mod:`job.core.safe_fs`.
    """
    rel = task.layout.report
    report = os.fspath(task.report_path)
    if not report.endswith("/" + rel):
        return
    root = Path(report[: -len(rel) - 1])
    try:
        root.mkdir(parents=True, exist_ok=True)  # the output root itself is trusted
        ensure_real_dirs(root, posixpath.dirname(rel), _planted)
    except OSError as exc:
        raise ItemError(f"cannot write report: {exc.strerror or exc} ({exc.filename})") from None


def _parse_one(task: ParseTask, should_stop: Callable[[], bool] | None) -> ParseResult:
    started = time.monotonic()
    fingerprint: Fingerprint | None = None
    try:
        if should_stop is not None and should_stop():
            raise Cancelled("stop requested")
        journal, fingerprint = _read(task.journal_path, task.max_bytes)
        details = step_details(journal)
        _real_report_folder(task)
        task.renderer.write(journal, task.layout, task.report_path, details, should_stop)
        entry = entry_for(task.layout, journal, fingerprint, task.renderer.version, details)
    except Cancelled:
        raise
    except ItemError as exc:
        entry = failure_entry(task.layout, exc.reason, fingerprint)
    except MemoryError:
        entry = failure_entry(task.layout, "ran out of memory reading this journal", fingerprint)
    except Exception as exc:  # a bug must fail this journal, not the whole stage
        entry = failure_entry(
            task.layout, f"internal error: {type(exc).__name__}: {exc}", fingerprint
        )
    return ParseResult(entry, round(time.monotonic() - started, 3))


def _read(path: Path, max_bytes: int) -> tuple[Journal, Fingerprint]:
    """The journal and the fingerprint of exactly the version that was read.

    The size is checked on the open file before a byte is read: a ~1 GB journal
    (a ~1 MB object compresses that well) took ~4 GB in one worker.
    """
    try:
        with open(path, "rb") as fh:
            stat = os.fstat(fh.fileno())
            if stat.st_size > max_bytes:
                raise ItemError(
                    f"journal is {stat.st_size:,} bytes, over --max-journal-bytes "
                    f"({max_bytes:,}); raise the limit if this is expected"
                )
            fingerprint = Fingerprint.of(stat)
            return read_journal(fh), fingerprint
    except OSError as exc:
        raise ItemError(f"cannot read journal: {exc.strerror or exc}") from None


# -- worker processes ---------------------------------------------------------------


def init_worker(stop_event: Any, parent_pid: int, nice: int = 0) -> None:
    """Worker set-up: stopping is the parent's decision, and a worker dies with it.

    ``nice`` > 0 lowers the worker's CPU priority: workers that parse while the
    parent still downloads should not slow the download down (the longer task).

    SIGINT (Ctrl-C reaches the whole process group) and SIGTERM are ignored, so
    the parent alone decides how to stop and workers never print tracebacks;
    the parent sets ``stop_event`` instead. On Linux the kernel kills the worker
    when its parent dies, even by SIGKILL: otherwise it would wait forever for
    work on a queue whose other end it holds itself.
    """
    global _stop_event
    _stop_event = stop_event
    become_worker(parent_pid)
    if nice > 0:
        with contextlib.suppress(OSError):  # best effort: only a scheduling preference
            os.nice(nice)


def run_in_worker(task: ParseTask) -> ParseResult:
    """Entry point submitted to the pool."""
    should_stop = _stop_event.is_set if _stop_event is not None else None
    return parse_one(task, should_stop)
