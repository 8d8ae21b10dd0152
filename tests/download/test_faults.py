"""A bad night on S3, for real: faults injected on the wire by a proxy in front of the server."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from job.core.config import DownloadConfig, RetrySettings, S3Settings
from job.demo.locals3 import SECRET_KEY
from job.download.stage import run_download
from tests.conftest import tar_gz
from tests.download.test_download import tree
from tests.support import ledger
from tests.support.faultproxy import FaultPolicy, FaultProxy, RateLimit

READ_TIMEOUT = 2.0  # stalls last 3x this; generous because CI machines are busy


def seed(s3, bucket: str, n: int, size: int = 200_000) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(n)
    for i in range(n):
        members = {f"G{i}/run.log": rng.randbytes(size), f"G{i}/metadata.json": b"{}"}
        s3.put_object(Bucket=bucket, Key=f"failed_runs/G{i:03d}.tar.gz", Body=tar_gz(members))


def config(bucket: str, out: Path, endpoint: str, **kw: object) -> DownloadConfig:
    retry = kw.pop("retry", RetrySettings(attempts=6, initial_wait=0.05, max_wait=0.5))
    kw.setdefault("concurrent", 4)
    return DownloadConfig(
        bucket_path=f"s3://{bucket}/failed_runs/",
        output_dir=out,
        s3=S3Settings(endpoint_url=endpoint, read_timeout=READ_TIMEOUT, connect_timeout=2.0),
        retry=retry,
        **kw,
    )


# One seed in CI; the soak runs many (see docs/RELIABILITY.md). The CI seed is one
# whose pattern hits every fault kind on this test's twelve keys (the policy draws
# from the key, not the bucket's name, so that holds whatever ran before).
CI_SEED = 12
FAULT_SEEDS = [int(x) for x in os.environ.get("FAULT_SEEDS", str(CI_SEED)).split(",")]


@pytest.mark.parametrize("fault_seed", FAULT_SEEDS)
def test_faults_on_most_first_attempts_still_give_the_fault_free_output(
    fault_seed, s3_server, s3, bucket, tmp_path
):
    seed(s3, bucket, 12)
    reference = tmp_path / "reference"
    assert run_download(config(bucket, reference, s3_server.endpoint_url)).failed == 0

    policy = FaultPolicy(seed=fault_seed, rate=0.7, first_attempts=2)
    out = tmp_path / "out"
    proxy = FaultProxy(s3_server.endpoint_url, policy, stall_seconds=READ_TIMEOUT * 3)
    with proxy, capture_logs() as logs:
        summary = run_download(config(bucket, out, proxy.endpoint_url))
    assert proxy.errors == []
    injected = [e for e in proxy.events if e["fault"]]
    kinds = {e["fault"] for e in injected}
    if fault_seed == CI_SEED:
        assert kinds == {"slowdown", "internal", "stall", "truncate", "reset"}, kinds
    ledger.add("faults_injected", len(injected))
    ledger.add("faults_survived", len(injected) if summary.failed == 0 else 0)
    ledger.add("items_lost", len(set(tree(reference)) - set(tree(out))))
    assert summary.failed == 0
    assert summary.succeeded == 12
    assert tree(out) == tree(reference)
    retries = [e for e in logs if e["event"] == "download.retry"]
    assert len(retries) == len(injected)  # every fault was survived by exactly one retry
    assert all(e["cause"] and e["attempt"] >= 1 for e in retries)
    causes = " ".join(e["cause"] for e in retries)
    for fragment in (
        ()
        if fault_seed != CI_SEED
        else (
            "SlowDown",
            "InternalError",
            "Timeout",
            "Short" if "Short" in causes else "Incomplete",
        )
    ):
        assert fragment in causes, fragment


def test_faults_that_never_clear_fail_that_item_after_the_configured_attempts(
    s3_server, s3, bucket, tmp_path
):
    seed(s3, bucket, 6, size=20_000)
    doomed = "failed_runs/G002.tar.gz"
    policy = FaultPolicy(seed=1, rate=0.0, persistent_keys={doomed}, kinds=("internal",))
    out = tmp_path / "out"
    attempts = 4
    with FaultProxy(s3_server.endpoint_url, policy) as proxy:
        started = time.monotonic()
        with capture_logs() as logs:
            summary = run_download(
                config(
                    bucket,
                    out,
                    proxy.endpoint_url,
                    retry=RetrySettings(attempts=attempts, initial_wait=0.05, max_wait=0.2),
                )
            )
        elapsed = time.monotonic() - started
    ledger.add("persistent_fault_items_failed_as_designed", summary.failed)
    assert (summary.succeeded, summary.failed) == (5, 1)
    gets = [e for e in proxy.events if e["method"] == "GET" and e.get("key") == doomed]
    assert len(gets) == attempts
    (failed,) = [e for e in logs if e["event"] == "download.archive" and e["outcome"] == "failed"]
    assert failed["key"] == doomed
    assert failed["attempts"] == attempts
    assert "InternalError" in failed["error"]
    # bounded: attempts x (request + capped backoff), far below any read timeout pile-up
    assert elapsed < 30
    assert not (out / "G002").exists()


def test_listing_is_retried_like_downloads(s3_server, s3, bucket, tmp_path):
    seed(s3, bucket, 3, size=1000)
    policy = FaultPolicy(seed=3, rate=1.0, kinds=("slowdown",), key_filter=lambda key: key == "")
    with FaultProxy(s3_server.endpoint_url, policy) as proxy, capture_logs() as logs:
        summary = run_download(config(bucket, tmp_path / "out", proxy.endpoint_url))
    assert summary.succeeded == 3
    list_retries = [
        e for e in logs if e["event"] == "download.retry" and e.get("operation") == "list"
    ]
    assert list_retries, [e for e in proxy.events if e["fault"]]


def test_adaptive_throttle_gets_far_fewer_rejections_than_fixed_concurrency(
    s3_server, s3, bucket, tmp_path
):
    seed(s3, bucket, 60, size=2000)
    retry = RetrySettings(attempts=10, initial_wait=0.05, max_wait=1.0)
    results = {}
    for adaptive in (False, True):
        limit = RateLimit(rate_per_sec=25, burst=5)
        with FaultProxy(s3_server.endpoint_url, None, rate_limit=limit) as proxy:
            summary = run_download(
                config(
                    bucket,
                    tmp_path / f"out-{adaptive}",
                    proxy.endpoint_url,
                    concurrent=16,
                    retry=retry,
                    adaptive=adaptive,
                    # Requests from several worker processes: the throttle must span them.
                    processes=4,
                )
            )
        results[adaptive] = (summary.failed, limit.rejected, limit.accepted)
    ledger.add("throttle_rejected_fixed_concurrency", results[False][1])
    ledger.add("throttle_rejected_adaptive", results[True][1])
    _fixed_failed, fixed_rejected, _ = results[False]
    adaptive_failed, adaptive_rejected, _ = results[True]
    assert adaptive_failed == 0
    assert fixed_rejected > 0
    assert adaptive_rejected * 2 < fixed_rejected, results


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_no_log_line_ever_contains_the_secret_key_or_session_token(
    log_format, s3_server, s3, bucket, tmp_path
):
    seed(s3, bucket, 3, size=1000)
    token = "FAKE-SESSION-TOKEN-" + "x" * 40
    policy = FaultPolicy(
        seed=5, rate=1.0, first_attempts=2, kinds=("internal", "truncate", "reset")
    )
    env = {
        **os.environ,
        **s3_server.env,
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SESSION_TOKEN": token,
    }
    outputs = []
    with FaultProxy(s3_server.endpoint_url, policy) as proxy:
        for extra in ([], ["--retries", "1"]):
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "job",
                    "download",
                    "--log-format",
                    log_format,
                    "--log-level",
                    "debug",
                    "--endpoint-url",
                    proxy.endpoint_url,
                    "--bucket-path",
                    f"s3://{bucket}/failed_runs/",
                    "--output-dir",
                    str(tmp_path / "out"),
                    *extra,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            outputs.append(result.stdout + result.stderr)
    text = "\n".join(outputs)
    assert "botocore" in text  # debug logging really was on, requests were logged
    assert "download.retry" in text or "retry" in text
    for line in text.splitlines():
        assert SECRET_KEY not in line
        assert token not in line
