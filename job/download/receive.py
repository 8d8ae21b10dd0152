"""Receive one archive into a folder: GET, decompress, extract, verify. One attempt, no more.

This is the per-archive work that costs CPU, so it is what runs in the download's
worker processes (:mod:`job.download.workers`); with ``--download-processes 0``
it runs in the job's own threads instead. Either way it only fills the folder
it is given: choosing that folder, retrying, throttling, publishing and
recording are the caller's (:mod:`job.download.fetch`), and the caller deletes
the folder whatever happens. Nothing here logs: a forked worker must not touch
locks the parent's other threads may have held at the fork.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

# ISA-L's C gzip reader (what isal's GzipFile wraps): it decompresses straight into
# the caller's buffer with the GIL released. python-isal is pinned in the lock.
from isal.isal_zlib import _GzipReader

from job.core.errors import Cancelled, ItemError
from job.core.safe_fs import PRIVATE_DIR_MODE
from job.core.signals import stop_requested
from job.download.extract import Limits, TarSource, extract_stream
from job.download.transfer import VerifyingReader, normalise_etag

try:  # isal's own error type, when the isal backend raises it
    from isal.isal_zlib import error as _isal_error
except ImportError:  # pragma: no cover
    _isal_error = zlib.error


@dataclass(frozen=True)
class Received:
    """What one successful attempt brought: small and picklable (it crosses processes)."""

    etag: str
    bytes_received: int
    bytes_extracted: int
    members: int


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


class Receiver:
    """Receives archives with one client; ``slots`` bounds how many decompress at once."""

    def __init__(self, client: Any, bucket: str, limits: Limits, slots: int) -> None:
        self.client = client
        self.bucket = bucket
        self.limits = limits
        self.slots = threading.BoundedSemaphore(slots)

    def receive(self, key: str, tmp: Path, tmp_tar: Path | None) -> Received:
        """Fill the new folder ``tmp`` from ``key`` (and copy the body to ``tmp_tar``).

        Raises ItemError for the archive's own faults, botocore/urllib3 errors
        for the transport's, Cancelled on a stop. Files are closed before it
        returns or raises; ``tmp`` and ``tmp_tar`` are left for the caller.
        """
        tmp.mkdir(PRIVATE_DIR_MODE)  # shared when published (fetch.Fetcher._publish)
        with ExitStack() as stack:
            tee = stack.enter_context(open(tmp_tar, "xb")) if tmp_tar is not None else None
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            stack.callback(body.close)
            etag = normalise_etag(response.get("ETag"))
            reader = VerifyingReader(body, content_length=response.get("ContentLength"), tee=tee)
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
        return Received(etag, reader.received, stats.bytes, stats.members)

    def _take_slot(self) -> None:
        """Wait for one of the extraction slots: decompressing and writing is CPU work.

        More requests are in flight than there are slots, so that their first
        bytes are already here when a slot frees (latency hidden), but only
        about as many archives as there are CPUs are decompressed and written
        at once. More threads doing that CPU work in one process only take the
        GIL from each other: with 8 at once on 2 cores the download made 28,000
        futex calls, against 11,600 with 2 (docs/PERFORMANCE.md). A waiting
        response stays unread; its first bytes wait in the socket's buffer.
        """
        while not self.slots.acquire(timeout=_SLOT_POLL_SECONDS):
            if stop_requested():
                raise Cancelled()
