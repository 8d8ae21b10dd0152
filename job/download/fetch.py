"""Fetch one archive: retry attempts, each received into a temporary folder, then publish.

One attempt is all-or-nothing. Its folder is a hidden temporary sibling of the
target; only after the body was checked (its length, and gzip's CRC-32 over every
decompressed byte) and every member was written does a rename make it visible. A
failed attempt deletes its temporary folder; a retry starts from scratch with a
new GET.

The receiving itself (GET, gunzip, tar, writes) is done through a
:class:`Transport`: in one of the download's worker processes
(:mod:`job.download.workers`) or in this process (:class:`InProcess`). Everything
that must be decided once for the whole run stays here, in the parent: the
throttle, retries and their log events, which folder an attempt writes, and the
rename that publishes it.
"""

from __future__ import annotations

import os
import posixpath
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from job.core.atomic import remove_tree, temp_sibling
from job.core.config import DownloadConfig
from job.core.errors import Cancelled
from job.core.safe_fs import ensure_real_dirs, share_dir
from job.core.signals import stop_requested
from job.download.listing import Archive
from job.download.names import check_archive_folder
from job.download.receive import Received, Receiver
from job.download.retrying import diagnose, retrying
from job.download.throttle import AdaptiveThrottle

#: Receive ``key`` into the new folder ``tmp`` (and its body into ``tmp_tar``).
Receive = Callable[[str, Path, "Path | None"], Received]


class Transport(Protocol):
    """Where attempts run: ``lane()`` waits for room to run one and yields the way to run it."""

    def lane(self) -> AbstractContextManager[Receive]: ...


class InProcess:
    """Attempts run in the calling thread, with this process's client."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    @contextmanager
    def lane(self) -> Iterator[Receive]:
        yield self.receiver.receive


@dataclass
class FetchResult:
    archive: Archive
    etag: str
    bytes_received: int
    bytes_extracted: int
    members: int
    attempts: int
    seconds: float


class InFlight:
    """Temporary paths of attempts in progress, so a stop can remove them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: set[Path] = set()

    def add(self, path: Path) -> None:
        with self._lock:
            self._paths.add(path)

    def discard(self, path: Path) -> None:
        with self._lock:
            self._paths.discard(path)

    def remove_all(self) -> None:
        with self._lock:
            paths = list(self._paths)
            self._paths.clear()
        for path in paths:
            remove_tree(path)


class Fetcher:
    """Shared state for fetching many archives through one transport."""

    def __init__(
        self,
        cfg: DownloadConfig,
        throttle: AdaptiveThrottle,
        log: Any,
        in_flight: InFlight,
        transport: Transport,
    ) -> None:
        self.cfg = cfg
        self.throttle = throttle
        self.log = log
        self.in_flight = in_flight
        self.transport = transport

    def fetch(self, archive: Archive) -> FetchResult:
        """Download and publish ``archive``; raises ItemError/ClientError/... when it fails."""
        started = time.monotonic()
        attempts = 0
        check_archive_folder(self.cfg.output_dir, archive.folder, self.cfg.keep_compressed)

        def on_retry(attempt: int, exc: BaseException, wait: float) -> None:
            self.log.warning(
                "download.retry",
                key=archive.key,
                attempt=attempt,
                cause=diagnose(exc).cause,
                wait=round(wait, 3),
            )

        try:
            for attempt in retrying(self.cfg.retry, on_retry=on_retry):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    result = self._attempt(archive)
        except Exception as exc:
            # Carried to the archive's log event; tenacity re-raises the last error as-is.
            exc.attempts = attempts  # type: ignore[attr-defined]
            exc.seconds = round(time.monotonic() - started, 3)  # type: ignore[attr-defined]
            raise
        result.attempts = attempts
        result.seconds = round(time.monotonic() - started, 3)
        return result

    def _attempt(self, archive: Archive) -> FetchResult:
        target = self.cfg.output_dir / archive.folder
        # Component by component from the output root: a link planted at any
        # parent folder is replaced, never followed out of the tree (safe_fs).
        ensure_real_dirs(self.cfg.output_dir, posixpath.dirname(archive.folder), self._link)
        tmp = temp_sibling(target)
        tmp_tar = temp_sibling(target.with_name(target.name + ".tar.gz"))
        keep = tmp_tar if self.cfg.keep_compressed else None
        with self.transport.lane() as receive:
            # The lane first, then the permit: a request counts against the
            # throttle only while it is really being sent, not while it queues.
            if not self.throttle.acquire(cancelled=stop_requested):
                raise Cancelled()
            throttled = False
            self.in_flight.add(tmp)
            self.in_flight.add(tmp_tar)
            try:
                got = receive(archive.key, tmp, keep)
                self._publish(tmp, target, keep)
                return FetchResult(
                    archive, got.etag, got.bytes_received, got.bytes_extracted, got.members, 0, 0.0
                )
            except BaseException as exc:
                throttled = diagnose(exc).throttled
                raise
            finally:
                self.throttle.release(throttled=throttled)
                remove_tree(tmp)
                tmp_tar.unlink(missing_ok=True)
                self.in_flight.discard(tmp)
                self.in_flight.discard(tmp_tar)

    def _link(self, path: Path) -> None:
        self.log.warning(
            "download.planted_link",
            path=str(path),
            action="replaced by a real folder; the link was not followed",
        )

    @staticmethod
    def _publish(tmp: Path, target: Path, tmp_tar: Path | None) -> None:
        """Swap the finished folder into place; the old one (if any) goes away after.

        The folder was private while it was filled (no one else could plant a
        link inside it); it becomes readable as ``mkdir`` would have made it.
        """
        share_dir(tmp)
        old = None
        if target.is_symlink() or target.exists():
            old = temp_sibling(target)
            os.rename(target, old)
        os.rename(tmp, target)
        kept = target.with_name(target.name + ".tar.gz")
        # Whatever stands at the kept archive's name is ours to replace: a .tar.gz
        # kept by an earlier run (it would no longer match the folder), or anything
        # else left there (a folder makes os.replace and unlink fail with EISDIR).
        if tmp_tar is None or (not kept.is_symlink() and kept.is_dir()):
            remove_tree(kept)
        if tmp_tar is not None:
            os.replace(tmp_tar, kept)
        if old is not None:
            remove_tree(old)
