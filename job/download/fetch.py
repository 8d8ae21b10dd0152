"""Fetch one archive: GET, verify, decompress and extract into a temporary folder, publish.

One attempt is all-or-nothing. Its folder is a hidden temporary sibling of the
target; only after the body was checked (its length, and gzip's CRC-32 over every
decompressed byte) and every member was written does a rename make it visible. A
failed attempt deletes its temporary folder; a retry starts from scratch with a
new GET.
"""

from __future__ import annotations

import gzip
import os
import posixpath
import threading
import time
import zlib
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import botocore.exceptions as bce

# ISA-L's C gzip reader (what isal's GzipFile wraps): it decompresses straight into
# the caller's buffer with the GIL released. python-isal is pinned in the lock.
from isal.isal_zlib import _GzipReader

from job.core.atomic import remove_tree, temp_sibling
from job.core.config import DownloadConfig, usable_cpus
from job.core.errors import Cancelled, ItemError
from job.core.safe_fs import ensure_real_dirs
from job.core.signals import stop_requested
from job.download.extract import Limits, TarSource, extract_stream
from job.download.listing import Archive
from job.download.names import check_archive_folder
from job.download.retrying import diagnose, retrying
from job.download.throttle import AdaptiveThrottle
from job.download.transfer import VerifyingReader, normalise_etag

try:  # isal's own error type, when the isal backend raises it
    from isal.isal_zlib import error as _isal_error
except ImportError:  # pragma: no cover
    _isal_error = zlib.error


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


#: gzip's messages for a trailer that disagrees with the data -> the field that did.
_TRAILER_CHECKS = {"CRC check failed": "CRC-32", "Incorrect length": "length"}


def _corrupt(exc: BaseException) -> ItemError | None:
    """The archive's own fault, said in one line; None for anything that is not gzip's."""
    if isinstance(exc, EOFError):
        return ItemError("archive is truncated: the gzip stream ends early")
    if isinstance(exc, gzip.BadGzipFile):
        text = str(exc)
        field = next((f for start, f in _TRAILER_CHECKS.items() if text.startswith(start)), None)
        if field is not None:
            return ItemError(
                f"corrupt gzip data: the {field} in its trailer does not match the data "
                "(damaged in the bucket or in transit; re-upload it if a re-run fails again)"
            )
        return ItemError(f"not a gzip file: {text}")
    if isinstance(exc, OSError) and "gzip" in str(exc).lower():
        return ItemError(f"not a gzip file: {exc}")
    if isinstance(exc, zlib.error | _isal_error):
        return ItemError(f"corrupt gzip data: {exc}")
    return None


def _trailing_garbage(exc: BaseException, decompressed: BinaryIO | None) -> ItemError | None:
    """Bytes after a gzip stream that already gave data: said as such, not "not gzip".

    The gzip reader takes what follows a stream for the next member's header, so
    garbage after the trailer reads as "Not a gzipped file", which is wrong about
    the archive. GNU tar extracts such a body with "trailing garbage ignored"; the
    job does not (docs/RELIABILITY.md, "Where GNU tar only warns"): the CRC covers
    the gzip stream only, so extra bytes mean the object is not what was written.
    Zero padding after the stream is accepted, as gzip accepts it.
    """
    if decompressed is None or decompressed.tell() == 0:
        return None  # nothing came out yet: the body is not gzip at all
    if isinstance(exc, gzip.BadGzipFile) and str(exc).startswith("Not a gzipped file"):
        return ItemError(
            "archive has data after its gzip stream (trailing garbage, which GNU tar "
            "ignores with a warning): it is not the object that was uploaded"
        )
    return None


_GZIP_READ = 512 * 1024  # compressed bytes asked of the network per read
_SLOT_POLL_SECONDS = 0.2  # how often a response waiting for a slot checks for a stop


def open_decompressed(raw: BinaryIO) -> BinaryIO:
    """gzip decompression with ISA-L (several times zlib's speed; see docs/PERFORMANCE.md).

    The result is read with ``readinto``; multi-member gzip files, trailing
    zero padding and the CRC/length trailer are handled as :mod:`gzip` does.
    """
    return _GzipReader(raw, _GZIP_READ)  # type: ignore[no-any-return]


class Fetcher:
    """Shared state for fetching many archives with one client."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        cfg: DownloadConfig,
        throttle: AdaptiveThrottle,
        log: Any,
        in_flight: InFlight,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.cfg = cfg
        self.throttle = throttle
        self.log = log
        self.in_flight = in_flight
        self.limits = Limits(max_bytes=cfg.max_bytes, max_members=cfg.max_members)
        # One per CPU, plus one: a slot's holder that waits for the network would
        # otherwise leave a CPU idle on a slow link (40 MiB/s: 2 slots +2%, 3 slots -1%).
        self.slots = threading.BoundedSemaphore(cfg.extract_slots or usable_cpus() + 1)

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
        if not self.throttle.acquire(cancelled=stop_requested):
            raise Cancelled()
        throttled = False
        self.in_flight.add(tmp)
        if self.cfg.keep_compressed:
            self.in_flight.add(tmp_tar)
        try:
            tmp.mkdir()
            with ExitStack() as stack:
                tee = stack.enter_context(open(tmp_tar, "wb")) if self.cfg.keep_compressed else None
                try:
                    response = self.client.get_object(Bucket=self.bucket, Key=archive.key)
                except bce.ClientError as exc:
                    throttled = diagnose(exc).throttled
                    raise
                body = response["Body"]
                stack.callback(body.close)
                etag = normalise_etag(response.get("ETag"))
                reader = VerifyingReader(
                    body, content_length=response.get("ContentLength"), tee=tee
                )
                self._take_slot()
                stack.callback(self.slots.release)
                decompressed: BinaryIO | None = None
                try:
                    decompressed = open_decompressed(reader)
                    source = TarSource(decompressed)
                    stats = extract_stream(source, tmp, self.limits)
                    source.drain()  # reach the gzip trailer so its CRC is checked
                    reader.finish()
                except Cancelled:
                    raise
                except Exception as exc:
                    if reader.transport_error is not None:
                        raise reader.transport_error from None
                    if isinstance(exc, ItemError):
                        raise
                    corrupt = _trailing_garbage(exc, decompressed) or _corrupt(exc)
                    if corrupt is not None:
                        raise corrupt from None
                    raise
            self._publish(tmp, target, tmp_tar if self.cfg.keep_compressed else None)
            return FetchResult(archive, etag, reader.received, stats.bytes, stats.members, 0, 0.0)
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

    def _take_slot(self) -> None:
        """Wait for one of the extraction slots: decompressing and writing is CPU work.

        ``--concurrent`` requests are in flight so that their first bytes are
        already here when a slot frees (latency hidden), but only about as many
        archives as there are CPUs are decompressed and written at once. More
        threads doing that CPU work only take the GIL from each other: with 8 at
        once on 2 cores the download made 28,000 futex calls, against 11,600
        with 2 (docs/PERFORMANCE.md). A waiting response stays unread; its first
        bytes wait in the socket's buffer.
        """
        while not self.slots.acquire(timeout=_SLOT_POLL_SECONDS):
            if stop_requested():
                raise Cancelled()

    @staticmethod
    def _publish(tmp: Path, target: Path, tmp_tar: Path | None) -> None:
        """Swap the finished folder into place; the old one (if any) goes away after."""
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
