"""Pure pieces of the transfer path: body verification, retry classification, progress."""

from __future__ import annotations

import hashlib
import io

import botocore.exceptions as bce
import pytest

from job.progress import Progress
from job.retrying import diagnose
from job.transfer import ChecksumMismatch, ShortBody, VerifyingReader, plain_md5

DATA = b"archive bytes " * 1000


def reader(data: bytes, *, length: int | None, etag: str | None) -> VerifyingReader:
    return VerifyingReader(io.BytesIO(data), content_length=length, etag=etag)


def test_whole_body_with_matching_md5_passes():
    r = reader(DATA, length=len(DATA), etag=f'"{hashlib.md5(DATA).hexdigest()}"')
    assert r.read(100) == DATA[:100]
    r.finish()
    assert r.received == len(DATA)


def test_md5_mismatch_is_detected():
    corrupt = DATA[:10] + b"X" + DATA[11:]
    r = reader(corrupt, length=len(DATA), etag=hashlib.md5(DATA).hexdigest())
    with pytest.raises(ChecksumMismatch):
        r.finish()
    assert diagnose(r.transport_error).retryable


def test_multipart_etag_is_not_an_md5_and_is_not_checked():
    assert plain_md5('"0123456789abcdef0123456789abcdef-3"') is None
    r = reader(DATA, length=len(DATA), etag='"0123456789abcdef0123456789abcdef-3"')
    r.finish()  # no checksum to compare: no error


def test_body_shorter_than_content_length_is_a_retryable_short_body():
    r = reader(DATA[:500], length=len(DATA), etag=None)
    with pytest.raises(ShortBody):
        r.finish()
    assert diagnose(r.transport_error).retryable


def client_error(code: str, status: int) -> bce.ClientError:
    return bce.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


@pytest.mark.parametrize(
    ("exc", "retryable", "throttled"),
    [
        (client_error("SlowDown", 503), True, True),
        (client_error("ServiceUnavailable", 503), True, True),
        (client_error("TooManyRequests", 429), True, True),
        (client_error("InternalError", 500), True, False),
        (client_error("BadGateway", 502), True, False),
        (client_error("RequestTimeout", 400), True, False),
        (client_error("AccessDenied", 403), False, False),
        (client_error("NoSuchKey", 404), False, False),
        (client_error("NoSuchBucket", 404), False, False),
        (bce.ReadTimeoutError(endpoint_url="http://x"), True, False),
        (bce.ConnectionClosedError(endpoint_url="http://x"), True, False),
        (ConnectionResetError("reset"), True, False),
        (ValueError("corrupt"), False, False),
    ],
)
def test_what_is_retried(exc, retryable, throttled):
    d = diagnose(exc)
    assert (d.retryable, d.throttled) == (retryable, throttled)
    assert d.cause


def test_progress_bar_draws_on_a_terminal_stream_only():
    shown, hidden = io.StringIO(), io.StringIO()
    bar = Progress(total=2, enabled=True, stream=shown)
    off = Progress(total=2, enabled=False, stream=hidden)
    for p in (bar, off):
        p.advance(1_000_000)
        p.advance(0, failed=True)
        p.close()
    assert "2/2 archives, 1 failed" in shown.getvalue()
    assert hidden.getvalue() == ""
