"""Pure pieces of the transfer path: body verification, retry classification, progress."""

from __future__ import annotations

import io

import botocore.exceptions as bce
import pytest

from job.core.progress import Progress
from job.download.retrying import diagnose
from job.download.transfer import ShortBody, VerifyingReader

DATA = b"archive bytes " * 1000


def reader(data: bytes, *, length: int | None, tee: io.BytesIO | None = None) -> VerifyingReader:
    return VerifyingReader(io.BytesIO(data), content_length=length, tee=tee)


def test_whole_body_passes_and_is_counted_and_teed():
    kept = io.BytesIO()
    r = reader(DATA, length=len(DATA), tee=kept)
    assert r.read(100) == DATA[:100]
    r.finish()
    assert r.received == len(DATA)
    assert kept.getvalue() == DATA


def test_body_longer_than_content_length_is_a_retryable_length_mismatch():
    r = reader(DATA, length=len(DATA) - 1)
    with pytest.raises(ShortBody):
        r.finish()
    assert diagnose(r.transport_error).retryable


def test_body_shorter_than_content_length_is_a_retryable_short_body():
    r = reader(DATA[:500], length=len(DATA))
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
