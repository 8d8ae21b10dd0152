"""Parse one journal and publish its report: the unit of work, inline or in a worker process.

Everything here is importable at top level and takes/returns small picklable
values, because with ``concurrent > 1`` it runs in a ``ProcessPoolExecutor``
(JSON decoding and formatting hold the GIL, so threads would not help).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from job.analysis.extras import page_header
from job.analysis.journal_page import render_journal_page
from job.analysis.taxonomy import step_details
from job.atomic import atomic_write_bytes
from job.atomic_stream import atomic_binary_file
from job.errors import Cancelled, ItemError
from job.index import Fingerprint, IndexEntry, entry_for, failure_entry
from job.journal import Journal, read_journal
from job.layout import Layout
from job.report_text import write_report

_PR_SET_PDEATHSIG = 1

#: Set by :func:`init_worker` in worker processes: the parent's "stop now" flag.
_stop_event: Any = None


@dataclass(frozen=True)
class ParseTask:
    journal_path: Path  # where to read the journal
    layout: Layout
    report_path: Path  # where to publish the report (output folder / layout.report)
    size: int = 0  # the journal's bytes when planned: the pool starts big ones first


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
    twice as long with it on; see README, Performance). Reference counting
    frees the journal as usual; collections resume afterwards.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return _parse_one(task, should_stop)
    finally:
        if paused:
            gc.enable()


def _parse_one(task: ParseTask, should_stop: Callable[[], bool] | None) -> ParseResult:
    started = time.monotonic()
    fingerprint: Fingerprint | None = None
    try:
        if should_stop is not None and should_stop():
            raise Cancelled("stop requested")
        journal, fingerprint = _read(task.journal_path)
        details = step_details(journal)
        _write(task, journal, details, should_stop)
        entry = entry_for(task.layout, journal, fingerprint, details)
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


def _read(path: Path) -> tuple[Journal, Fingerprint]:
    """The journal and the fingerprint of exactly the version that was read."""
    try:
        with open(path, "rb") as fh:
            fingerprint = Fingerprint.of(os.fstat(fh.fileno()))
            return read_journal(fh), fingerprint
    except OSError as exc:
        raise ItemError(f"cannot read journal: {exc.strerror or exc}") from None


def page_path(report: Path) -> Path:
    """The journal's HTML page lives beside its text report (same name, .html)."""
    return report.with_suffix(".html")


def _write(
    task: ParseTask,
    journal: Journal,
    details: list[str | None],
    should_stop: Callable[[], bool] | None,
) -> None:
    try:
        with atomic_binary_file(task.report_path) as out:
            write_report(out, journal, task.layout, should_stop=should_stop)
        # The journal page is rendered in the same pass, while the model is in memory.
        atomic_write_bytes(
            page_path(task.report_path),
            render_journal_page(
                journal,
                header=page_header(task.layout),
                report_name=task.report_path.name,
                details=details,
            ),
            durable=False,
        )
    except OSError as exc:
        raise ItemError(_write_failure(exc)) from None


def _write_failure(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "cannot write report: no space left on the output drive"
    if exc.errno == errno.EFBIG:
        return "cannot write report: file too large for the output drive"
    return f"cannot write report: {exc.strerror or exc} ({exc.filename})"


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
    gc.freeze()  # what the parent had is never garbage here: keep collections from walking it
    if nice > 0:
        with contextlib.suppress(OSError):  # best effort: only a scheduling preference
            os.nice(nice)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG fails one report instead
    if sys.platform == "linux":
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass  # best effort
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the line above took effect


def run_in_worker(task: ParseTask) -> ParseResult:
    """Entry point submitted to the pool."""
    should_stop = _stop_event.is_set if _stop_event is not None else None
    return parse_one(task, should_stop)
