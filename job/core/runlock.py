"""One run at a time per output folder: an advisory lock held for the whole run.

Two runs on one output folder (cron without ``flock``, an impatient person, a
retried pod) used to collide: the second one's start-up cleanup deleted the
first one's in-flight temporaries, and the first reported spurious failures.
Each stage now holds ``flock`` on a lock file in the folder it writes. Sharded
workers share the folder's main lock and hold their own shard's exclusively, so
shards of one job run side by side while an unsharded run (which sweeps the
whole folder) waits for all of them, and they for it.

The lock file stays empty and is never deleted (deleting it would let a third
run lock a new inode while the second still holds the old one); the kernel
drops the lock when the process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_NAME = ".analyze-failures.lock"
#: Exit status of a run that found its output locked (sysexits' EX_TEMPFAIL, as
#: ``flock -n`` in deploy/cron reports it): try again later, nothing is wrong.
EXIT_LOCKED = 75
_POLL = 0.2


class Locked(Exception):
    """Another run holds the output folder."""


@contextlib.contextmanager
def output_lock(
    folder: Path,
    shard: str | None = None,
    wait: float = 0.0,
    on_wait: Callable[[Path], None] | None = None,
) -> Iterator[None]:
    """Hold ``folder``'s lock (shared plus the shard's own when ``shard`` is given)."""
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    with contextlib.ExitStack() as held:
        main = held.enter_context(_opened(folder / LOCK_NAME))
        _take(main, fcntl.LOCK_SH if shard else fcntl.LOCK_EX, folder, deadline, on_wait)
        if shard:
            mine = held.enter_context(_opened(folder / f".analyze-failures.{shard}.lock"))
            _take(mine, fcntl.LOCK_EX, folder, deadline, on_wait)
        yield


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[int]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Locked(
                f"{path} is a symbolic link; remove it (the job never follows one)"
            ) from None
        raise
    try:
        yield fd
    finally:
        os.close(fd)


def _take(
    fd: int,
    kind: int,
    folder: Path,
    deadline: float,
    on_wait: Callable[[Path], None] | None,
) -> None:
    told = False
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise Locked(
                    f"another analyze-failures run is using {folder}; try again when it "
                    "has finished, or pass --wait-lock SECONDS to wait for it"
                ) from None
            if not told and on_wait is not None:
                on_wait(folder)
                told = True
            time.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))
