"""The download's worker processes: every usable CPU gunzips, parses tar and writes.

Why processes: receiving an archive is CPU work done mostly in Python (tar
headers, the safety policy, bookkeeping per member) around C calls (ISA-L, the
kernel). In one interpreter those Python parts take turns on one lock, so more
threads made a 16-core download *slower* (issue #18: 1.61 s with defaults, 2.08 s
with 32 threads, against 0.53 s for ``s5cmd`` + ``igzip`` + ``tar``).

Shape: the parent forks the workers once, before it starts any thread, and
keeps everything that is decided once for the run (the listing, the plan, the
throttle, retries, the manifest, the log, publishing). Each worker has its own
S3 client and a few *lanes*: a lane is one pipe to the parent and one thread in
the worker that receives one archive at a time (:mod:`job.download.receive`). A
worker has one extraction slot, so while one lane decompresses, the others hold
their GET responses open, first bytes already here: network latency is hidden
without two lanes of one process competing for its interpreter.

What can go wrong, and what happens:

* a worker dies (OOM killer, ``kill -9``): the archives its lanes held fail that
  attempt with a retryable reason and are retried on the other workers; its
  lanes are gone. No worker is forked again while threads run (a fork then can
  copy a lock another thread holds); if every worker is gone, the remaining
  attempts run in this process, as with ``--download-processes 0``;
* a stop (SIGTERM, SIGINT): each busy worker gets a SIGTERM; its lanes abandon
  their archive and say so; the parent deletes the temporary folders;
* the parent dies, even by SIGKILL: the kernel kills the workers
  (:func:`job.core.child.become_worker`); their temporary folders are hidden
  and removed by the next run.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

from job.core.child import become_worker
from job.core.errors import Cancelled, ItemError
from job.core.signals import listen_in_worker, stop_requested
from job.download.extract import Limits
from job.download.fetch import Receive, Transport
from job.download.reasons import failure_reason
from job.download.receive import Received, Receiver
from job.download.retrying import diagnose
from job.download.s3client import ClientMaker

_POLL_SECONDS = 0.2
#: How long workers get to leave after being told the run is over.
_CLOSE_SECONDS = 5.0


def worker_died(exitcode: int | None) -> str:
    """The reason an archive's attempt failed when its worker vanished under it."""
    if exitcode is None:
        how = "its pipe closed"
    elif exitcode < 0:
        how = f"killed by {signal.Signals(-exitcode).name}"
    else:
        how = f"exited with status {exitcode}"
    return (
        f"download worker process died while receiving this archive ({how}: "
        "out of memory, or killed from outside)"
    )


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs, inherited through the fork (nothing is pickled)."""

    maker: ClientMaker
    bucket: str
    limits: Limits


@dataclass(eq=False)
class _Worker:
    process: Any  # multiprocessing's Process (fork context)
    told_to_stop: bool = False
    dead: bool = False


@dataclass(eq=False)
class _Lane:
    worker: _Worker
    conn: multiprocessing.connection.Connection


class WorkerPool:
    """Worker processes behind the :class:`~job.download.fetch.Transport` interface."""

    def __init__(
        self,
        spec: WorkerSpec,
        lanes_per_worker: list[int],
        fallback: Transport,
        log: Any,
    ) -> None:
        self.spec = spec
        self.lanes_per_worker = lanes_per_worker
        self.fallback = fallback
        self.log = log
        self.workers: list[_Worker] = []
        self._free: queue.SimpleQueue[_Lane] = queue.SimpleQueue()
        self._lock = threading.Lock()

    # -- the parent's side ------------------------------------------------------------
    def start(self) -> str | None:
        """Fork the workers; call it before this process starts any thread of its own.

        Returns why fewer workers than asked for were forked (the system refused
        a fork: a pids limit, memory), or None. The run goes on with those that
        were, or in this process when none was.
        """
        context = multiprocessing.get_context("fork")
        pipes = [[multiprocessing.Pipe() for _ in range(n)] for n in self.lanes_per_worker]
        every_end = [end for worker_pipes in pipes for pair in worker_pipes for end in pair]
        parent = os.getpid()
        refused: str | None = None
        for index, worker_pipes in enumerate(pipes):
            own = [child for _, child in worker_pipes]
            process = context.Process(
                target=_serve,
                args=(self.spec, own, [e for e in every_end if e not in own], parent),
                name=f"download-worker-{index}",
                daemon=True,
            )
            try:
                process.start()
            except OSError as exc:
                refused = f"cannot start a worker process: {exc.strerror or exc}"
                break
            worker = _Worker(process)
            self.workers.append(worker)
            for parent_end, _ in worker_pipes:
                self._free.put(_Lane(worker, parent_end))
        for index, worker_pipes in enumerate(pipes):
            for parent_end, child_end in worker_pipes:
                child_end.close()
                if index >= len(self.workers):
                    parent_end.close()
        return refused

    @property
    def alive(self) -> int:
        return sum(not w.dead for w in self.workers)

    @contextmanager
    def lane(self) -> Iterator[Receive]:
        """A free lane of a live worker (waiting for one), or this process when none is left."""
        lane = self._take()
        if lane is None:
            with self.fallback.lane() as receive:
                yield receive
            return
        try:
            yield partial(self._run, lane)
        finally:
            if not lane.worker.dead:
                self._free.put(lane)

    def close(self, *, kill: bool) -> None:
        """Let the workers go (``kill``: at once, for a stop or an error) and reap them all.

        Killing is safe: every attempt still running writes only into its own
        hidden temporary folder, which the parent deletes next.
        """
        if kill:
            for worker in self.workers:
                _signal(worker, signal.SIGKILL)
        while True:
            try:
                lane = self._free.get_nowait()
            except queue.Empty:
                break
            with suppress(OSError):
                lane.conn.send(None)
            lane.conn.close()
        for worker in self.workers:
            worker.process.join(_CLOSE_SECONDS)
            if worker.process.is_alive():
                _signal(worker, signal.SIGKILL)
                worker.process.join()

    def _take(self) -> _Lane | None:
        while True:
            if stop_requested():
                raise Cancelled()
            if not self.alive:
                return None
            try:
                lane = self._free.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if not lane.worker.dead:
                return lane

    def _run(self, lane: _Lane, key: str, tmp: Path, tmp_tar: Path | None) -> Received:
        worker = lane.worker
        try:
            lane.conn.send((key, os.fspath(tmp), None if tmp_tar is None else os.fspath(tmp_tar)))
        except OSError:
            self._died(worker)
        sentinel = worker.process.sentinel
        while True:
            ready = multiprocessing.connection.wait([lane.conn, sentinel], timeout=_POLL_SECONDS)
            if lane.conn in ready:
                try:
                    reply = lane.conn.recv()
                except (EOFError, OSError):
                    self._died(worker)
                return _unpack(reply)
            if sentinel in ready:
                self._died(worker)
            if stop_requested() and not worker.told_to_stop:
                worker.told_to_stop = True
                _signal(worker, signal.SIGTERM)

    def _died(self, worker: _Worker) -> NoReturn:
        """Note a dead worker (once) and fail the attempt that was running on it."""
        worker.process.join(_POLL_SECONDS)
        with self._lock:
            first = not worker.dead
            worker.dead = True
        if stop_requested():
            raise Cancelled()  # killed because the run is stopping: not a failure
        reason = worker_died(worker.process.exitcode)
        if first:
            self.log.error(
                "download.worker_died",
                pid=worker.process.pid,
                exitcode=worker.process.exitcode,
                workers_left=self.alive,
                problem=reason,
            )
        raise ItemError(reason, retryable=True)


def _signal(worker: _Worker, signum: int) -> None:
    pid = worker.process.pid
    if pid is not None and worker.process.exitcode is None:
        with suppress(ProcessLookupError):
            os.kill(pid, signum)


def _unpack(reply: tuple[Any, ...]) -> Received:
    kind = reply[0]
    if kind == "ok":
        return reply[1]  # type: ignore[no-any-return]
    if kind == "cancelled":
        raise Cancelled()
    _, reason, retryable, throttled = reply
    raise ItemError(reason, retryable=retryable, throttled=throttled)


# -- the worker's side -------------------------------------------------------------------


def _serve(
    spec: WorkerSpec,
    lanes: list[multiprocessing.connection.Connection],
    inherited: list[multiprocessing.connection.Connection],
    parent: int,
) -> None:
    """A worker's life: one thread per lane, each receiving what the parent sends it."""
    become_worker(parent)
    listen_in_worker()  # a SIGTERM from the parent means "abandon what you hold"
    for conn in inherited:  # the other workers' pipes: not ours to keep open
        conn.close()
    receive: Receive
    try:
        client = spec.maker.client(pool_size=len(lanes))
    except Exception as exc:  # said for each archive sent here, instead of a traceback
        receive = partial(_refuse, exc)
    else:
        receive = Receiver(client, spec.bucket, spec.limits, slots=1).receive
    threads = [
        threading.Thread(target=_serve_lane, args=(receive, conn), daemon=True)
        for conn in lanes[1:]
    ]
    for thread in threads:
        thread.start()
    _serve_lane(receive, lanes[0])
    for thread in threads:
        thread.join()


def _refuse(exc: Exception, *_: object) -> Received:
    raise exc


def _serve_lane(receive: Receive, conn: multiprocessing.connection.Connection) -> None:
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if job is None:
            return
        key, tmp, tmp_tar = job
        reply: tuple[Any, ...]
        try:
            got = receive(key, Path(tmp), None if tmp_tar is None else Path(tmp_tar))
            reply = ("ok", got)
        except Cancelled:
            reply = ("cancelled",)
        except BaseException as exc:  # every failure is the archive's, said in one line
            found = diagnose(exc)
            reply = ("failed", failure_reason(exc), found.retryable, found.throttled)
        try:
            conn.send(reply)
        except OSError:
            return
