"""The fault-injecting proxy and the archive factory that the job's resilience tests use.

Each fault is checked the way the job will meet it: a boto3 client with botocore's own
retries off (so every request is one attempt) talks to the proxy, which sits in front
of the real loopback S3 server. Nothing here sleeps to synchronise; the rate limiter
runs on a hand-driven clock.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import io
import json
import os
import random
import tarfile
import tempfile
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from urllib3.exceptions import ProtocolError

from job.demo.locals3 import ACCESS_KEY, SECRET_KEY, LocalS3, free_port
from tests.support import tarfactory
from tests.support.faultproxy import FAULT_KINDS, RATE_LIMITED, FaultPolicy, FaultProxy, RateLimit

MIB = 1024 * 1024
SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "samples"
# What reading a body that was cut short can raise, depending on urllib3/botocore versions.
TRUNCATED_BODY_ERRORS = (IncompleteReadError, ResponseStreamingError, ProtocolError)
# Everything one failed attempt of get-and-read can raise.
ATTEMPT_ERRORS = (ClientError, BotoCoreError, ProtocolError)


def _client(endpoint_url: str, *, read_timeout: float = 10.0) -> Any:
    """A client like the job's, but with botocore retries off: one call, one attempt."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(
            retries={"total_max_attempts": 1},
            connect_timeout=5,
            read_timeout=read_timeout,
        ),
    )


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _get(client: Any, bucket: str, key: str) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def _get_with_retries(client: Any, bucket: str, key: str, attempts: int) -> bytes:
    """Stand-in for the job's tenacity loop: retry a get-and-read on any failure."""
    for attempt in range(1, attempts + 1):
        try:
            return _get(client, bucket, key)
        except ATTEMPT_ERRORS:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _status(client: Any, bucket: str, key: str) -> int:
    try:
        client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200


def _proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("faultproxy-")]


@pytest.fixture(scope="module")
def stock_bucket(s3_server: LocalS3) -> str:
    """A bucket shared by this module's read-only tests (no test writes to it)."""
    s3_server.create_bucket("faultproxy-stock")
    return "faultproxy-stock"


@pytest.fixture(scope="module")
def objects(s3_server: LocalS3, stock_bucket: str) -> dict[str, bytes]:
    """A ~5 MB object and a few small ones, written through the upstream client once."""
    rng = random.Random(20250825)
    data = {
        "runs/big.tar.gz": rng.randbytes(5 * MIB + 123),
        "runs/small-1.tar.gz": rng.randbytes(1000),
        "runs/small-2.tar.gz": rng.randbytes(1),
        "runs/empty.tar.gz": b"",
        "runs/with space & ü.tar.gz": rng.randbytes(4096),
    }
    upstream = s3_server.client()
    for key, content in data.items():
        upstream.put_object(Bucket=stock_bucket, Key=key, Body=content)
    return data


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Every test must leave no proxy thread behind (close() joins them all)."""
    yield
    assert _proxy_threads() == []


def test_a_seed_faults_the_same_objects_and_pages_in_any_bucket():
    # Test buckets are numbered in the order tests run; a pattern that followed the
    # bucket's name changed whenever a test was added before a fault test.
    policy = FaultPolicy(seed=5, rate=0.5, first_attempts=3)
    targets = [f"failed_runs/G{n:03d}.tar.gz" for n in range(20)]
    targets += ["?list-type=2&prefix=failed_runs%2F", "?list-type=2&continuation-token=abc"]
    separator = {t: "" if t.startswith("?") else "/" for t in targets}
    here = {t: policy.schedule("GET", f"/bucket-1{separator[t]}{t}", 3) for t in targets}
    there = {t: policy.schedule("GET", f"/bucket-97{separator[t]}{t}", 3) for t in targets}
    assert here == there
    faulted = [t for t, plan in here.items() if any(plan)]
    assert 0 < len(faulted) < len(targets)  # a real pattern, neither nothing nor everything


# -- transparency ----------------------------------------------------------------------


def test_pass_through_is_byte_identical_and_keeps_the_connection(
    s3_server: LocalS3, stock_bucket: str, objects: dict[str, bytes]
) -> None:
    with FaultProxy(s3_server.endpoint_url) as proxy:
        client = _client(proxy.endpoint_url)
        for key, data in objects.items():
            assert _md5(_get(client, stock_bucket, key)) == _md5(data), key
        listing = client.list_objects_v2(Bucket=stock_bucket)
        stats = proxy.stats()

    assert {o["Key"]: o["Size"] for o in listing["Contents"]} == {
        key: len(data) for key, data in objects.items()
    }
    assert stats["requests"] == stats["passed"] == len(objects) + 1
    assert stats["by_method"] == {"GET": len(objects) + 1}
    assert stats["connections"] == 1  # keep-alive: one pooled connection served them all
    assert [e["status"] for e in proxy.events] == [200] * (len(objects) + 1)
    assert all(e["seconds"] is not None for e in proxy.events)  # all finished
    assert proxy.events[0]["key"] == "runs/big.tar.gz"
    assert proxy.events[0]["body_bytes"] == len(objects["runs/big.tar.gz"])
    assert proxy.errors == []


def test_uploads_heads_and_listing_pages_pass_through(
    s3_server: LocalS3, bucket: str, s3: Any
) -> None:
    """Request bodies (with Expect: 100-continue), HEAD and paginated listings whose
    continuation tokens travel in the query string, all still signed correctly."""
    data = random.Random(1).randbytes(2 * MIB)
    with FaultProxy(s3_server.endpoint_url) as proxy:
        client = _client(proxy.endpoint_url)
        client.put_object(Bucket=bucket, Key="up/ü file.bin", Body=data)
        for n in range(5):
            client.put_object(Bucket=bucket, Key=f"page/{n}", Body=b"%d" % n)
        head = client.head_object(Bucket=bucket, Key="up/ü file.bin")
        pages = list(
            client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix="page/", PaginationConfig={"PageSize": 2}
            )
        )

    assert _get(s3, bucket, "up/ü file.bin") == data
    assert head["ContentLength"] == len(data)
    assert [o["Key"] for page in pages for o in page.get("Contents", [])] == [
        f"page/{n}" for n in range(5)
    ]
    assert len(pages) == 3
    assert proxy.stats()["by_method"] == {"PUT": 6, "HEAD": 1, "GET": 3}
    assert proxy.errors == []


def test_faulted_uploads_keep_the_connection_in_step(
    s3_server: LocalS3, bucket: str, s3: Any
) -> None:
    """A faulted request's body is still read, so the next request on the same
    keep-alive connection is parsed from the right place."""
    data = random.Random(2).randbytes(MIB + 7)
    policy = FaultPolicy(rate=1.0, kinds=("slowdown",), methods=("PUT",))
    with FaultProxy(s3_server.endpoint_url, policy) as proxy:
        client = _client(proxy.endpoint_url)
        with pytest.raises(ClientError):
            client.put_object(Bucket=bucket, Key="retried.bin", Body=data)
        client.put_object(Bucket=bucket, Key="retried.bin", Body=data)  # attempt 2 passes

    assert _get(s3, bucket, "retried.bin") == data
    assert [(e["fault"], e["status"]) for e in proxy.events] == [("slowdown", 503), (None, 200)]
    assert proxy.stats()["connections"] == 1


def test_chunked_request_bodies_are_forwarded_with_their_framing(
    s3_server: LocalS3, bucket: str
) -> None:
    """Raw HTTP (boto3 never sends chunked bodies to S3): two requests on one keep-alive
    connection get the same answers through the proxy as straight from the server
    (which turns the unsigned requests away), so the framing was kept in step."""

    def exchange(port: int) -> list[tuple[int, bytes]]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request(
                "PUT", f"/{bucket}/raw", body=iter([b"abc", b"defgh"]), encode_chunked=True
            )
            first = conn.getresponse()
            answers = [(first.status, first.read())]
            conn.request("GET", f"/{bucket}/raw")
            second = conn.getresponse()
            return [*answers, (second.status, second.read())]
        finally:
            conn.close()

    with FaultProxy(s3_server.endpoint_url) as proxy:
        proxied = exchange(proxy.port)

    assert proxied == exchange(s3_server.port)
    assert all(status >= 400 for status, _ in proxied)  # really turned away, not stored
    assert [e["error"] for e in proxy.events] == [None, None]
    assert proxy.stats()["connections"] == 1
    assert proxy.errors == []


@pytest.mark.parametrize("mib", [64, pytest.param(1024, marks=pytest.mark.slow)])
def test_large_objects_stream_through_without_buffering(
    s3_server: LocalS3, bucket: str, mib: int
) -> None:
    size = mib * MIB
    # A sparse file in the server's folder: no upload time, no disk used.
    with open(s3_server.root / bucket / "big.bin", "wb") as sparse:
        sparse.truncate(size)
    # rclone hashes the whole file for its ETag before the first byte (seconds for 1 GiB,
    # more on a loaded machine); this test is about streaming, so wait for it.
    with FaultProxy(s3_server.endpoint_url, upstream_timeout=600) as proxy:
        client = _client(proxy.endpoint_url, read_timeout=600)
        tracemalloc.start()
        try:
            response = client.get_object(Bucket=bucket, Key="big.bin")
            digest, seen = hashlib.md5(), 0
            for chunk in response["Body"].iter_chunks(MIB):
                digest.update(chunk)
                seen += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    assert seen == size
    assert digest.hexdigest() == response["ETag"].strip('"')  # the server's own MD5
    assert peak < 16 * MIB  # proxy and client hold a few buffers, never the object
    assert proxy.events[0]["body_bytes"] == size


# -- each fault, as the client sees it --------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("slowdown", 503, "SlowDown"), ("internal", 500, "InternalError")],
)
def test_error_faults_are_s3_error_responses(
    s3_server: LocalS3,
    stock_bucket: str,
    objects: dict[str, bytes],
    kind: str,
    status: int,
    code: str,
) -> None:
    with FaultProxy(s3_server.endpoint_url, FaultPolicy(rate=1.0, kinds=(kind,))) as proxy:
        client = _client(proxy.endpoint_url)
        with pytest.raises(ClientError) as caught:
            client.get_object(Bucket=stock_bucket, Key="runs/big.tar.gz")
        # The connection stays usable afterwards, as it does with S3.
        assert client.head_object(Bucket=stock_bucket, Key="runs/big.tar.gz")["ContentLength"] > 0

    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    event = proxy.events[0]
    assert (event["method"], event["path"], event["key"]) == (
        "GET",
        f"/{stock_bucket}/runs/big.tar.gz",
        "runs/big.tar.gz",
    )
    assert (event["attempt"], event["fault"], event["status"], event["error"]) == (
        1,
        kind,
        status,
        None,
    )
    assert proxy.stats()["faults"][kind] == 1
    assert proxy.stats()["connections"] == 1


@pytest.mark.timeout(60)
def test_stall_is_a_read_timeout_and_close_cuts_it_short(
    s3_server: LocalS3, stock_bucket: str, objects: dict[str, bytes]
) -> None:
    # The proxy would stay silent for 10 minutes; the 60 s test timeout proves that
    # leaving the with-block (Event set, sockets shut, threads joined) ends the stall.
    policy = FaultPolicy(rate=1.0, kinds=("stall",))
    with FaultProxy(s3_server.endpoint_url, policy, stall_seconds=600) as proxy:
        client = _client(proxy.endpoint_url, read_timeout=0.5)
        with pytest.raises(ReadTimeoutError):
            client.get_object(Bucket=stock_bucket, Key="runs/small-1.tar.gz")

    assert proxy.events[0]["fault"] == "stall"
    assert proxy.events[0]["status"] is None
    assert proxy.events[0]["seconds"] < 600  # ended by close(), not by the stall running out
    assert proxy.errors == []


def test_truncate_sends_full_headers_then_half_the_body(
    s3_server: LocalS3, stock_bucket: str, objects: dict[str, bytes]
) -> None:
    size = len(objects["runs/big.tar.gz"])
    with FaultProxy(s3_server.endpoint_url, FaultPolicy(rate=1.0, kinds=("truncate",))) as proxy:
        client = _client(proxy.endpoint_url)
        response = client.get_object(Bucket=stock_bucket, Key="runs/big.tar.gz")
        assert response["ContentLength"] == size  # the real headers, full length promised
        with pytest.raises(TRUNCATED_BODY_ERRORS):
            response["Body"].read()

    assert proxy.events[0]["status"] == 200
    assert proxy.events[0]["body_bytes"] == size // 2


@pytest.mark.parametrize("operation", ["empty_object", "head", "listing"])
def test_truncate_is_visible_even_without_a_body_to_cut(
    s3_server: LocalS3, stock_bucket: str, objects: dict[str, bytes], operation: str
) -> None:
    """An empty object or a HEAD has no body to cut, so the status line is cut instead;
    a listing is cut like any body. Either way the client must notice."""
    policy = FaultPolicy(rate=1.0, kinds=("truncate",), methods=("GET", "HEAD"))
    calls: dict[str, Callable[[Any], object]] = {
        "empty_object": lambda c: c.get_object(Bucket=stock_bucket, Key="runs/empty.tar.gz")[
            "Body"
        ].read(),
        "head": lambda c: c.head_object(Bucket=stock_bucket, Key="runs/big.tar.gz"),
        "listing": lambda c: c.list_objects_v2(Bucket=stock_bucket),
    }
    with FaultProxy(s3_server.endpoint_url, policy) as proxy, pytest.raises(ATTEMPT_ERRORS):
        calls[operation](_client(proxy.endpoint_url))

    assert proxy.events[0]["fault"] == "truncate"


def test_reset_is_a_connection_reset_before_any_response(
    s3_server: LocalS3, stock_bucket: str, objects: dict[str, bytes]
) -> None:
    with FaultProxy(s3_server.endpoint_url, FaultPolicy(rate=1.0, kinds=("reset",))) as proxy:
        client = _client(proxy.endpoint_url)
        with pytest.raises(ConnectionClosedError) as caught:
            client.get_object(Bucket=stock_bucket, Key="runs/small-1.tar.gz")

    # An RST (SO_LINGER 0), not an orderly FIN: the client sees ECONNRESET.
    underlying = caught.value.kwargs["error"]
    assert any(isinstance(arg, ConnectionResetError) for arg in underlying.args), underlying
    assert proxy.events[0]["fault"] == "reset"
    assert proxy.events[0]["status"] is None


def test_unreachable_upstream_is_a_502(bucket: str) -> None:
    upstream = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with FaultProxy(upstream) as proxy, pytest.raises(ClientError) as caught:
        _client(proxy.endpoint_url).get_object(Bucket=bucket, Key="anything")

    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502
    assert proxy.events[0]["error"].startswith("upstream:")
    assert proxy.errors == []


# -- policy: first attempts, persistence, filters, replay --------------------------------


def test_first_attempt_faults_clear_on_retry(
    s3_server: LocalS3, stock_bucket: str, objects: dict[str, bytes]
) -> None:
    policy = FaultPolicy(seed=3, rate=1.0, kinds=("slowdown",), first_attempts=2)
    key = "runs/small-1.tar.gz"
    with FaultProxy(s3_server.endpoint_url, policy) as proxy:
        client = _client(proxy.endpoint_url)
        statuses = [_status(client, stock_bucket, key) for _ in range(4)]

    assert statuses == [503, 503, 200, 200]
    assert [(e["attempt"], e["fault"]) for e in proxy.events] == [
        (1, "slowdown"),
        (2, "slowdown"),
        (3, None),
        (4, None),
    ]
    assert proxy.stats()["passed"] == 2


@pytest.mark.timeout(120)
def test_a_run_with_most_first_attempts_faulted_still_finishes(s3_server: LocalS3, s3: Any) -> None:
    bucket = "faultproxy-night"
    s3_server.create_bucket(bucket)
    rng = random.Random(7)
    data = {f"night/{n:02d}.tar.gz": rng.randbytes(rng.randrange(1, 300_000)) for n in range(16)}
    for key, content in data.items():
        s3.put_object(Bucket=bucket, Key=key, Body=content)
    policy = FaultPolicy(seed=11, rate=0.7)  # all five kinds, first attempts only
    expected = {
        key: policy.decide("GET", f"/{bucket}/{key}", 1)
        for key in data
        if policy.decide("GET", f"/{bucket}/{key}", 1)
    }
    # Fixed by the seed and the names; guards the test's meaning if either is edited.
    assert len(expected) >= 8
    assert set(expected.values()) == set(FAULT_KINDS)

    with FaultProxy(s3_server.endpoint_url, policy, stall_seconds=60) as proxy:
        client = _client(proxy.endpoint_url, read_timeout=1.5)
        # Attempts after the first always pass; the spare ones absorb a slow machine.
        got = {key: _get_with_retries(client, bucket, key, attempts=4) for key in data}

    assert {key: _md5(v) for key, v in got.items()} == {key: _md5(v) for key, v in data.items()}
    assert {e["key"]: e["fault"] for e in proxy.events if e["fault"]} == expected
    assert policy.mismatches(proxy.events) == []
    assert sum(proxy.stats()["faults"].values()) == len(expected)
    assert proxy.errors == []


def test_persistent_keys_never_clear(
    s3_server: LocalS3, stock_bucket: str, objects: dict[str, bytes]
) -> None:
    bad = "runs/small-2.tar.gz"
    policy = FaultPolicy(seed=5, rate=0.0, kinds=("slowdown", "internal"), persistent_keys={bad})
    with FaultProxy(s3_server.endpoint_url, policy) as proxy:
        client = _client(proxy.endpoint_url)
        bad_statuses = [_status(client, stock_bucket, bad) for _ in range(6)]
        good = _get(client, stock_bucket, "runs/small-1.tar.gz")

    assert all(status in (500, 503) for status in bad_statuses)
    assert good == objects["runs/small-1.tar.gz"]
    assert [e["attempt"] for e in proxy.events if e["key"] == bad] == [1, 2, 3, 4, 5, 6]
    assert all(e["fault"] for e in proxy.events if e["key"] == bad)


def test_key_filter_and_methods_limit_which_requests_fault(
    s3_server: LocalS3, stock_bucket: str, objects: dict[str, bytes]
) -> None:
    policy = FaultPolicy(rate=1.0, kinds=("internal",), key_filter=r"^runs/big\.")
    with FaultProxy(s3_server.endpoint_url, policy) as proxy:
        client = _client(proxy.endpoint_url)
        assert _status(client, stock_bucket, "runs/big.tar.gz") == 500
        assert _status(client, stock_bucket, "runs/small-1.tar.gz") == 200
        client.head_object(Bucket=stock_bucket, Key="runs/big.tar.gz")  # HEAD is not in methods
        client.list_objects_v2(Bucket=stock_bucket)  # bucket-level: key "" does not match

    assert [e["fault"] for e in proxy.events] == ["internal", None, None, None]


def test_policy_decisions_are_a_pure_function_of_their_inputs() -> None:
    paths = [f"/b/run-{n}.tar.gz" for n in range(2000)]
    policy = FaultPolicy(seed=42, rate=0.3, first_attempts_only=False)
    forward = [policy.decide("GET", p, a) for p in paths for a in (1, 2)]
    backward = [
        FaultPolicy(seed=42, rate=0.3, first_attempts_only=False).decide("GET", p, a)
        for p in reversed(paths)
        for a in (2, 1)
    ]
    assert forward == list(reversed(backward))  # same answers, any order, any instance
    share = sum(d is not None for d in forward) / len(forward)
    assert 0.25 < share < 0.35  # deterministic for this seed; checks rate is honoured
    assert {d for d in forward if d} == set(FAULT_KINDS)
    other_seed = FaultPolicy(seed=43, rate=0.3, first_attempts_only=False)
    assert [other_seed.decide("GET", p, 1) for p in paths] != forward[::2]
    filtered = FaultPolicy(rate=1.0, key_filter=lambda key: key.startswith("x/"))
    first, second = filtered.schedule("GET", "/b/x/1", 2)
    assert first in FAULT_KINDS
    assert second is None  # first attempts only: attempt 2 passes
    assert filtered.decide("GET", "/b/y/1", 1) is None  # the callable filter excludes it
    assert FaultPolicy(rate=1.0).decide("PUT", "/b/k", 1) is None
    assert FaultPolicy(rate=0.0).decide("GET", "/b/k", 1) is None


@pytest.mark.parametrize(
    "kwargs",
    [{"rate": 1.5}, {"kinds": ()}, {"kinds": ("meteor",)}, {"first_attempts": 0}],
)
def test_policy_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        FaultPolicy(**kwargs)


def test_same_seed_replays_the_same_faults_under_concurrency(s3_server: LocalS3, s3: Any) -> None:
    bucket = "faultproxy-replay"  # fixed, so the seed alone fixes the pattern
    s3_server.create_bucket(bucket)
    keys = [f"replay/{n:02d}.tar.gz" for n in range(12)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode() * 100)
    policy = FaultPolicy(
        seed=2024,
        rate=0.5,
        kinds=("slowdown", "internal", "truncate", "reset"),
        first_attempts_only=False,
    )

    def run() -> FaultProxy:
        with FaultProxy(s3_server.endpoint_url, policy) as proxy:
            client = _client(proxy.endpoint_url)

            def three_attempts(key: str) -> None:
                for _ in range(3):
                    with contextlib.suppress(*ATTEMPT_ERRORS):
                        _get(client, bucket, key)

            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(three_attempts, keys))
        return proxy

    first, second = run(), run()
    assert first.decisions() == second.decisions()
    assert len(first.decisions()) == 3 * len(keys)
    assert policy.mismatches(first.events) == []
    faults = [fault for *_, fault in first.decisions()]
    assert None in faults
    assert len({f for f in faults if f}) >= 3
    assert FaultPolicy(seed=2025, rate=0.5, first_attempts_only=False).mismatches(first.events)
    assert first.errors == second.errors == []


# -- rate limiting ------------------------------------------------------------------------


class HandClock:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TickingClock:
    """Advances by a fixed tick on every reading: with the limiter reading it under its
    lock, the n-th request always sees time n * tick, whatever the thread timing."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return (self.readings - 1) * self.tick


def test_rate_limit_rejects_above_the_rate_with_slowdown(
    s3_server: LocalS3, stock_bucket: str, objects: dict[str, bytes]
) -> None:
    clock = HandClock()
    limiter = RateLimit(rate_per_sec=5, burst=3, clock=clock)
    key = "runs/small-1.tar.gz"
    with FaultProxy(s3_server.endpoint_url, rate_limit=limiter) as proxy:
        client = _client(proxy.endpoint_url)
        burst = [_status(client, stock_bucket, key) for _ in range(6)]
        clock.now += 0.4  # 0.4 s at 5/s refills 2 tokens
        later = [_status(client, stock_bucket, key) for _ in range(4)]
        clock.now += 10.0  # a long pause refills only up to the burst
        rested = [_status(client, stock_bucket, key) for _ in range(5)]

    assert burst == [200, 200, 200, 503, 503, 503]
    assert later == [200, 200, 503, 503]
    assert rested == [200, 200, 200, 503, 503]
    assert (limiter.accepted, limiter.rejected) == (8, 7)
    stats = proxy.stats()
    assert (stats["accepted"], stats["rejected"]) == (8, 7)
    rejected = [e for e in proxy.events if e["fault"] == RATE_LIMITED]
    assert len(rejected) == 7
    assert all(e["attempt"] is None for e in rejected)
    assert all(e["status"] == 503 for e in rejected)
    # Rejected requests do not consume policy attempts: accepted ones are numbered 1..8.
    assert [e["attempt"] for e in proxy.events if e["attempt"]] == list(range(1, 9))


def test_rate_limit_bounds_a_concurrent_burst(
    s3_server: LocalS3, stock_bucket: str, objects: dict[str, bytes]
) -> None:
    requests, burst, rate, tick = 64, 4, 8.0, 1 / 64  # binary fractions: exact floats
    limiter = RateLimit(rate_per_sec=rate, burst=burst, clock=TickingClock(tick))
    with FaultProxy(s3_server.endpoint_url, rate_limit=limiter) as proxy:
        client = _client(proxy.endpoint_url)
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(
                pool.map(
                    lambda _: _status(client, stock_bucket, "runs/small-1.tar.gz"), range(requests)
                )
            )

    elapsed = (requests - 1) * tick  # fake seconds the burst spanned
    assert statuses.count(200) == limiter.accepted == proxy.stats()["accepted"]
    assert statuses.count(503) == limiter.rejected == proxy.stats()["rejected"]
    assert limiter.accepted <= burst + rate * elapsed
    assert limiter.rejected >= requests - (burst + rate * elapsed)
    # And exactly what a single-threaded token bucket on the same clock gives.
    replay = RateLimit(rate_per_sec=rate, burst=burst, clock=TickingClock(tick))
    assert limiter.accepted == sum(replay.try_acquire() for _ in range(requests))


# -- lifecycle and safety ------------------------------------------------------------------


def test_close_breaks_idle_keepalive_connections_and_joins_threads(
    s3_server: LocalS3, stock_bucket: str, objects: dict[str, bytes]
) -> None:
    proxy = FaultProxy(s3_server.endpoint_url)
    with proxy:
        client = _client(proxy.endpoint_url)
        _get(client, stock_bucket, "runs/small-1.tar.gz")
        # The client keeps its connection pooled, so a handler thread is now parked
        # waiting for the next request on it.
        assert len(_proxy_threads()) == 2  # accept loop + that connection
    assert _proxy_threads() == []
    proxy.close()  # idempotent


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:9000",
        "http://example.com:9000",
        "https://127.0.0.1:9000",
        "http://127.0.0.1:9000/prefix",
    ],
)
def test_only_loopback_http_upstreams_are_accepted(url: str) -> None:
    with pytest.raises(ValueError, match="upstream must"):
        FaultProxy(url)


# -- tarfactory ----------------------------------------------------------------------------


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getmembers()


def test_run_group_archive_has_biomlbench_layout() -> None:
    runs = (
        tarfactory.RunSpec(),
        tarfactory.RunSpec(
            task="manual/open-problems-predict-modality",
            run_uuid="9728585e-f091-0b92-9a71-912f6bc952b7",
            seed=1,
            exp="1-dusky-amber-heron",
            steps=3,
        ),
        tarfactory.RunSpec(task="manual/other-agent", run_uuid="0" * 8, exp=None),
    )
    data = tarfactory.run_group_archive(runs=runs)
    assert data == tarfactory.run_group_archive(runs=runs)  # reproducible bytes
    group = tarfactory.DEFAULT_RUN_GROUP
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = tar.getnames()
        metadata = json.load(tar.extractfile(f"{group}/metadata.json"))  # type: ignore[arg-type]
        journals = {
            run.run_id: json.load(tar.extractfile(tarfactory.journal_path(group, run)))  # type: ignore[arg-type]
            for run in runs
            if run.exp
        }

    assert names[0] == group
    assert all(name == group or name.startswith(f"{group}/") for name in names)
    assert names == sorted(names, key=lambda n: n.split("/"))  # tarfile.add's walk order
    assert set(metadata["runs"]) == {run.run_id for run in runs}
    assert not [n for n in names if "manual/other-agent" in n and "/logs/" in n]
    assert all(f"{group}/{run.run_id}/run.log" in names for run in runs)
    for run in runs[:2]:
        journal = journals[run.run_id]
        assert set(journal) == {"nodes", "node2parent", "__version"}
        expected = tarfactory.journal_expectations(journal)
        assert expected["steps"] == run.steps
        assert expected["buggy_steps"] == sum(n["is_buggy"] for n in journal["nodes"])


def test_generated_journals_match_the_samples_shape() -> None:
    archives = sorted((SAMPLES / "bucket").rglob("*.tar.gz"))
    assert archives, f"the committed fixture is missing: {SAMPLES}"
    with tarfile.open(archives[0], mode="r:gz") as tar:
        path = next(n for n in tar.getnames() if n.endswith("/journal.json"))
        sample = json.load(tar.extractfile(path))  # type: ignore[arg-type]
    generated = tarfactory.aide_journal(4)
    assert list(generated) == list(sample)
    assert list(generated["nodes"][0]) == list(sample["nodes"][0])
    assert type(generated["__version"]) is type(sample["__version"])


def test_journal_expectations_agree_with_expected_json() -> None:
    """The helper computes expected.json's fields the same way as whoever wrote it."""
    expected_file = SAMPLES / "expected.json"
    expected = json.loads(expected_file.read_text())
    checked = 0
    for key, archive in expected["archives"].items():
        with tarfile.open(SAMPLES / "bucket" / key, mode="r:gz") as tar:
            for journal in archive["journals"]:
                actual = tarfactory.journal_expectations(
                    json.load(tar.extractfile(journal["path"]))  # type: ignore[arg-type]
                )
                assert actual == {field: journal[field] for field in actual}, journal["path"]
                checked += 1
    assert checked > 0


def _only_hostile(members: list[tarfile.TarInfo]) -> tarfile.TarInfo:
    group = tarfactory.DEFAULT_RUN_GROUP
    assert [m.name for m in members[:2]] == [group, f"{group}/metadata.json"]  # benign start
    return members[-1]


def test_hostile_members_are_what_they_claim(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    group = tarfactory.DEFAULT_RUN_GROUP
    m = _only_hostile(_members(tarfactory.path_traversal()))
    assert m.isfile()
    assert m.name.startswith("../")
    m = _only_hostile(_members(tarfactory.absolute_path(outside / "x")))
    assert m.isfile()
    assert m.name == str(outside / "x")
    m = _only_hostile(_members(tarfactory.symlink_outside(outside)))
    assert m.issym()
    assert m.linkname == str(outside)
    m = _only_hostile(_members(tarfactory.symlink_dotdot()))
    assert m.issym()
    assert m.linkname.startswith("..")
    m = _only_hostile(_members(tarfactory.hardlink_outside(outside / "victim")))
    assert m.islnk()
    assert m.linkname == str(outside / "victim")
    data = tarfactory.hardlink_nonmember()
    m = _only_hostile(_members(data))
    assert m.islnk()
    assert m.linkname.startswith(f"{group}/")
    assert m.linkname not in {member.name for member in _members(data)}
    m = _only_hostile(_members(tarfactory.device_node("char")))
    assert m.ischr()
    assert (m.devmajor, m.devminor) == (1, 3)
    m = _only_hostile(_members(tarfactory.device_node("block")))
    assert m.isblk()
    assert _only_hostile(_members(tarfactory.fifo())).isfifo()
    *_, link, through = _members(tarfactory.write_through_symlink(outside))
    assert link.issym()
    assert link.linkname == str(outside)
    assert through.isfile()
    assert through.name == f"{link.name}/x"
    # Python's own safe-extraction filter agrees these are dangerous.
    for builder in (tarfactory.path_traversal, tarfactory.symlink_dotdot, tarfactory.fifo):
        with pytest.raises(tarfile.FilterError):
            tarfile.data_filter(_members(builder())[-1], str(tmp_path))


@pytest.mark.parametrize(
    "builder", [tarfactory.not_gzip, tarfactory.uncompressed_tar, tarfactory.zero_bytes]
)
def test_non_gzip_inputs_are_not_gzip(builder: Callable[[], bytes]) -> None:
    data = builder()
    assert not data.startswith(b"\x1f\x8b")
    with pytest.raises(tarfile.ReadError):
        _members(data)


def test_truncated_gzip_starts_like_gzip_and_ends_early() -> None:
    data = tarfactory.truncated_gzip()
    assert data.startswith(b"\x1f\x8b")
    with pytest.raises(EOFError):
        gzip.decompress(data)


def test_single_member_bomb_is_valid_and_tiny() -> None:
    small = tarfactory.bomb_single_member(3 * MIB + 123)
    raw = gzip.decompress(small)  # checks the algebraic CRC-32 and the length
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        member = tar.getmembers()[-1]
        assert member.size == 3 * MIB + 123
        assert tar.extractfile(member).read() == bytes(member.size)  # type: ignore[union-attr]

    claimed = 20 * 1024 * MIB  # beyond ustar's 8 GiB size field: needs a PAX header
    big = tarfactory.bomb_single_member(claimed)
    assert len(big) < claimed // 900
    with tarfile.open(fileobj=io.BytesIO(big), mode="r|gz") as stream:
        first, second = stream.next(), stream.next()
        assert first is not None
        assert first.isdir()
        assert second is not None
        assert second.isfile()
        assert second.size == claimed


def test_many_members_bomb_counts() -> None:
    data = tarfactory.bomb_many_members(5000)
    members = _members(data)
    files = [m for m in members if m.isfile()]
    assert len(files) == 5000
    assert len({m.name for m in files}) == 5000
    assert len(data) < 20 * 5000  # well under 20 bytes per member
    assert len(gzip.decompress(data)) % tarfile.RECORDSIZE == 0


def test_every_hostile_builder_is_registered_and_builds() -> None:
    assert {name: type(build()) for name, build in tarfactory.HOSTILE.items()} == {
        name: bytes for name in tarfactory.HOSTILE
    }


def test_upload_round_trips_through_s3(bucket: str, s3: Any) -> None:
    data = tarfactory.run_group_archive()
    etag = tarfactory.upload(s3, bucket, "v1/artifacts/failed_runs/x.tar.gz", data)
    assert etag == _md5(data)
    assert _get(s3, bucket, "v1/artifacts/failed_runs/x.tar.gz") == data


def test_hostile_archives_can_be_served_through_the_proxy(
    s3_server: LocalS3, bucket: str, s3: Any
) -> None:
    """The two helpers together, as the job's tests will use them."""
    archives = {name: build() for name, build in tarfactory.HOSTILE.items()}
    for name, data in archives.items():
        tarfactory.upload(s3, bucket, f"hostile/{name}.tar.gz", data)
    with FaultProxy(s3_server.endpoint_url) as proxy:
        client = _client(proxy.endpoint_url)
        for name, data in archives.items():
            assert _get(client, bucket, f"hostile/{name}.tar.gz") == data, name
    assert proxy.stats()["passed"] == len(tarfactory.HOSTILE)


def test_outside_defaults_are_in_the_system_temp_dir() -> None:
    """Defaults point at the system temp dir, never somewhere a test could damage."""
    temp = tempfile.gettempdir()
    assert _members(tarfactory.symlink_outside())[-1].linkname == temp
    assert _members(tarfactory.absolute_path())[-1].name.startswith(temp + os.sep)
    assert _members(tarfactory.hardlink_outside())[-1].linkname.startswith(temp + os.sep)
