"""The byte stream between S3 and the decompressor: counted, hashed, verified.

A GET response body is read exactly once. On its way to the decompressor every
chunk is counted and hashed (and, with ``--keep-compressed``, copied to a file),
so the job can prove it received the object S3 described: the byte count must
equal Content-Length and, when the ETag is a plain MD5, the digest must match.
A body that ends early is a transport problem (retried); a body that is whole
but does not decompress is a corrupt archive (not retried).
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import BinaryIO

from job.errors import Cancelled
from job.signals import stop_requested

_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")


class ShortBody(Exception):
    """The connection ended before Content-Length bytes arrived."""


class ChecksumMismatch(Exception):
    """All bytes arrived but their MD5 differs from the ETag: corrupted in transit."""


def normalise_etag(etag: str | None) -> str:
    return (etag or "").strip().strip('"').lower()


def plain_md5(etag: str | None) -> str | None:
    """The MD5 an ETag stands for, or None for multipart/SSE-KMS style ETags."""
    value = normalise_etag(etag)
    return value if _PLAIN_MD5.match(value) else None


class VerifyingReader(io.RawIOBase):
    """Raw stream over a response body, so gzip readers can pull from it directly."""

    def __init__(
        self,
        body: BinaryIO,
        /,
        *,
        content_length: int | None,
        etag: str | None,
        tee: BinaryIO | None = None,
    ) -> None:
        super().__init__()
        self._body = body
        self._expected = content_length
        self._md5_expected = plain_md5(etag)
        self._md5 = hashlib.md5(usedforsecurity=False) if self._md5_expected else None
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
        if self._md5 is not None:
            self._md5.update(chunk)
        if self._tee is not None:
            self._tee.write(chunk)
        return chunk

    def finish(self) -> None:
        """Read what the decompressor left (tar padding, trailer) and verify the whole body."""
        while self.read(1 << 20):
            pass
        if self._expected is not None and self.received != self._expected:
            self.transport_error = ShortBody(
                f"received {self.received} bytes but Content-Length was {self._expected}"
            )
            raise self.transport_error
        if self._md5 is not None and self._md5.hexdigest() != self._md5_expected:
            self.transport_error = ChecksumMismatch(
                f"MD5 {self._md5.hexdigest()} does not match ETag {self._md5_expected}"
            )
            raise self.transport_error
