"""The byte stream between S3 and the decompressor: counted and checked for length.

A GET response body is read exactly once. On its way to the decompressor every
chunk is counted (and, with ``--keep-compressed``, copied to a file), so a body
that ends before Content-Length is told apart from a damaged archive: the first
is a transport problem (retried), a whole body that does not decompress is a
corrupt archive (not retried).

Content is verified by gzip itself: the reader checks the CRC-32 and length in
the gzip trailer over every decompressed byte, so a byte changed anywhere in the
data fails the archive. The body is not also hashed with MD5 against the ETag:
that check could only ever run after gzip had accepted the data (a changed byte
fails decompression first), so it caught nothing gzip had not, and it cost 8%
of the download's CPU (bench, issue #6). Multipart and SSE-KMS ETags are not
MD5s anyway, and over HTTPS TLS already authenticates every byte in transit.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from job.core.errors import Cancelled
from job.core.signals import stop_requested


class ShortBody(Exception):
    """The connection ended before Content-Length bytes arrived."""


def normalise_etag(etag: str | None) -> str:
    return (etag or "").strip().strip('"').lower()


class VerifyingReader(io.RawIOBase):
    """Raw stream over a response body, so gzip readers can pull from it directly."""

    def __init__(
        self,
        body: BinaryIO,
        /,
        *,
        content_length: int | None,
        tee: BinaryIO | None = None,
    ) -> None:
        super().__init__()
        self._body = body
        self._expected = content_length
        self._tee = tee
        self.received = 0
        self.transport_error: BaseException | None = None
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self.read(len(buffer))
        n = len(chunk)
        buffer[:n] = chunk
        return n

    def read(self, size: int = -1) -> bytes:
        if stop_requested():
            raise Cancelled()
        if self._eof:
            return b""
        try:
            chunk = self._body.read(size if size and size > 0 else None)
        except Exception as exc:  # botocore/urllib3 raise many kinds; the caller classifies
            self.transport_error = exc
            raise
        if not chunk:
            self._eof = True
            if self._expected is not None and self.received < self._expected:
                self.transport_error = ShortBody(
                    f"body ended after {self.received} of {self._expected} bytes"
                )
                raise self.transport_error
            return b""
        self.received += len(chunk)
        if self._tee is not None:
            self._tee.write(chunk)
        return chunk

    def finish(self) -> None:
        """Read what the decompressor left (tar padding, trailer); the whole body must have come."""
        while self.read(1 << 20):
            pass
        if self._expected is not None and self.received != self._expected:
            self.transport_error = ShortBody(
                f"received {self.received} bytes but Content-Length was {self._expected}"
            )
            raise self.transport_error
