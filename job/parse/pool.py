"""Run parse tasks inline or in worker processes, stopping cleanly when asked.

Stopping: the parent stops submitting, cancels what has not started, sets the
workers' stop flag (they abandon their report before publishing it) and waits a
short grace period for what is running; whatever finished in time is recorded.
Workers that outlive the grace period are terminated: their temporary files are
hidden and removed by the next run, so nothing half-written is ever visible.

A worker that dies (OOM killer, a crash in a C extension) breaks the whole
process pool. The journals that were in flight are then retried one at a time in
a fresh pool, so the one that kills its worker again is the only one that fails.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from job.core.errors import Cancelled
from job.core.signals import stop_requested
from job.parse.index import failure_entry
from job.parse.worker import ParseResult, ParseTask, init_worker, parse_one, run_in_worker

#: How long running journals get to finish or notice a stop before workers are killed.
STOP_GRACE_SECONDS = 5.0
#: Tasks handed to the executor per worker. While ``run`` downloads, finished
#: journals are collected (and more handed out) only when an archive completes, so
#: workers need a few journals in hand not to sit idle in between: with 2 per
#: worker a third of a 40 MiB/s night's journals were left for after the download,
#: with 8 a tenth. Queued tasks cost nothing and are cancelled at once on a stop;
#: after a worker death each of them is retried alone, which only costs time.
IN_FLIGHT_PER_WORKER = 8
_POLL_SECONDS = 0.2
WORKER_DIED = "worker process died while parsing this journal (killed, or out of memory?)"

Record = Callable[[ParseTask, ParseResult], None]


def execute(
    tasks: list[ParseTask],
    concurrent: int,
    record: Record,
    worker: Callable[[ParseTask], ParseResult] = run_in_worker,
) -> None:
    """Parse every task, calling ``record`` in this process as each one finishes.

    Returns early (without raising) when a stop is requested; the caller decides
    what a stop means. ``worker`` is replaceable for tests of worker deaths.
    """
    if concurrent > 1 and len(tasks) > 1:
        with ParsePool(min(concurrent, len(tasks)), record, worker) as pool:
            pool.add(tasks)
            pool.drain()
    else:
        _inline(tasks, record)


def _inline(tasks: list[ParseTask], record: Record) -> None:
    for task in tasks:
        if stop_requested():
            return
        try:
            result = parse_one(task, should_stop=stop_requested)
        except Cancelled:
            return
        record(task, result)


@dataclass
class _Job:
    task: ParseTask
    isolated: bool = False  # retried alone after its worker died alongside others


class ParsePool:
    """Worker processes that take tasks as they come, while the caller does other work.

    ``add`` queues tasks and hands the workers what fits; ``poll`` records what
    finished; neither blocks. ``drain`` waits until everything added is done (or
    a stop). ``record`` is always called in this process, from those three.

    Workers are forked, so new ones are only made where this process has no
    other threads: by :meth:`start` (call it before starting any) and by
    :meth:`drain` (call it after they are gone). A fork while other threads run
    can copy a lock one of them holds. So when a worker dies while the caller is
    busy (say, downloading with threads), the tasks that were in flight wait in
    the queue until ``drain`` makes a fresh pool for them.
    """

    def __init__(
        self,
        workers: int,
        record: Record,
        worker: Callable[[ParseTask], ParseResult] = run_in_worker,
        *,
        nice: int = 0,
    ) -> None:
        self.workers = workers
        self.record = record
        self.worker = worker
        self.nice = nice
        self.context = multiprocessing.get_context(_start_method())
        self.stop_event = self.context.Event()
        self.executor: ProcessPoolExecutor | None = None
        self.queue: deque[_Job] = deque()
        self.pending: dict[Future[ParseResult], _Job] = {}

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Fork the workers now, while this process has no other threads."""
        if self.executor is None:
            self.executor = self._new_executor()
            # With fork, an executor forks all its workers at the first submit.
            self.executor.submit(os.getpid)

    def add(self, tasks: list[ParseTask]) -> None:
        """Queue ``tasks``; the biggest journals waiting are handed out first.

        A parallel parse ends when its last journal does: one big journal
        started last keeps a worker busy long after the others have gone idle
        (a 1,000-step journal takes a second and a half alone). Largest first
        is the classic cure for that tail. Retries of a dead worker's journals
        keep their place at the front.
        """
        self.queue.extend(_Job(t) for t in tasks)
        self.queue = deque(sorted(self.queue, key=_order))
        self.poll()

    def poll(self) -> None:
        """Record what finished and hand out queued tasks; never waits, never forks."""
        for future in [f for f in self.pending if f.done()]:
            self._collect(future, self.pending.pop(future))
        self._submit(fork=False)

    def drain(self, stopping: Callable[[], bool] = stop_requested) -> None:
        """Wait for every task added so far, or for ``stopping()`` and a grace period."""
        deadline: float | None = None
        while self.queue or self.pending:
            self._submit(fork=True, stopping=stopping)
            done, _ = wait(self.pending, timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                self._collect(future, self.pending.pop(future))
            if stopping():
                deadline = deadline or time.monotonic() + STOP_GRACE_SECONDS
                self._stop()
                if time.monotonic() >= deadline:
                    return

    def close(self, *, stopping: bool | None = None) -> None:
        """Shut the workers down; when stopping, running ones are told to stop, then killed."""
        executor, self.executor = self.executor, None
        if executor is None:
            return
        stopping = stop_requested() if stopping is None else stopping
        if stopping:
            self.stop_event.set()
        # shutdown() forgets the processes, so take them first.
        processes = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=not stopping, cancel_futures=True)
        if stopping:
            _terminate(processes)

    def _submit(self, *, fork: bool, stopping: Callable[[], bool] = stop_requested) -> None:
        while self.queue and not stopping() and self._room_for(self.queue[0]):
            if self.executor is None:
                if not fork:
                    return
                self.executor = self._new_executor()
            job = self.queue.popleft()
            self.pending[self.executor.submit(self.worker, job.task)] = job

    def _room_for(self, job: _Job) -> bool:
        if any(j.isolated for j in self.pending.values()):
            return False
        if job.isolated:
            return not self.pending
        return len(self.pending) < IN_FLIGHT_PER_WORKER * self.workers

    def _collect(self, future: Future[ParseResult], job: _Job) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self.record(job.task, future.result())
        elif isinstance(exc, BrokenProcessPool):
            self._retire_executor()
            if job.isolated:
                entry = failure_entry(job.task.layout, WORKER_DIED, None)
                self.record(job.task, ParseResult(entry, 0.0))
            else:
                self.queue.appendleft(_Job(job.task, isolated=True))
        elif not isinstance(exc, Cancelled):
            entry = failure_entry(job.task.layout, f"internal error: {exc!r}", None)
            self.record(job.task, ParseResult(entry, 0.0))

    def _stop(self) -> None:
        self.stop_event.set()
        self.queue.clear()
        for future in [f for f in self.pending if f.cancel()]:
            del self.pending[future]

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self.context,
            initializer=init_worker,
            initargs=(self.stop_event, os.getpid(), self.nice),
        )

    def _retire_executor(self) -> None:
        """Forget a broken executor; its other futures fail too and are collected later."""
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None


def _order(job: _Job) -> tuple[bool, int]:
    return (not job.isolated, -job.task.size)


def _start_method() -> str:
    """``fork`` where it exists: workers are direct children that share nothing new.

    ``spawn`` and ``forkserver`` re-import the caller's main module in every
    worker, so a script that calls :func:`job.parse.stage.run_parse` without an
    ``if __name__ == "__main__"`` guard would re-run itself and every worker
    would die; ``forkserver``'s workers also keep its server alive (and vice
    versa) after a SIGKILL of this process. Fork's usual hazard, locks held by
    other threads at that instant, does not bite: workers never log, print or
    import anything, they only read journals and write reports.
    """
    methods = multiprocessing.get_all_start_methods()
    return "fork" if "fork" in methods else "spawn"


def _terminate(processes: list[Any]) -> None:
    """Kill workers still busy after the grace period (they ignore SIGTERM, so SIGKILL)."""
    for process in processes:
        if process.is_alive():
            process.kill()
