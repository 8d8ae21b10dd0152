"""The job behaves as command-line tools do: pipes, empty results, honest summaries.

Everything runs the real CLI in a subprocess against the loopback S3 server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_group_members, tar_gz
from tests.support.jobcli import download_argv


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_dry_run_into_a_closed_pipe_ends_quietly_with_exit_zero(
    s3, bucket: str, tmp_path: Path, s3_env: dict[str, str]
) -> None:
    # More plan lines than a pipe buffer holds (64 KiB on Linux), so the job is still
    # writing when the reader goes away, as with `analyze-failures download --dry-run | head -1`.
    for i in range(400):
        s3.put_object(Bucket=bucket, Key=f"failed_runs/agent/task-{i:04d}/G{i}.tar.gz", Body=b"x")
    proc = subprocess.Popen(
        download_argv(bucket, tmp_path / "out", "--dry-run"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    first = proc.stdout.readline()
    assert json.loads(first)["event"] == "download.listed"
    proc.stdout.close()  # the reader is gone, as when `head -1` exits
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, stderr
    assert stderr == ""  # no BrokenPipeError traceback, nothing at all
    assert not (tmp_path / "out").exists()


def test_a_real_run_whose_reader_is_gone_stops_as_sigpipe_stops_other_tools(
    s3, bucket: str, tmp_path: Path, s3_env: dict[str, str]
) -> None:
    # `analyze-failures download | true`: the reader has gone before the first line.
    # The run must not go on fetching for nobody, nor end in a traceback; it stops as
    # a stopped run does (nothing half done is published), with 128 + SIGPIPE.
    s3.put_object(Bucket=bucket, Key="failed_runs/G.tar.gz", Body=tar_gz({"G/a": b"1"}))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            download_argv(bucket, tmp_path / "out"),
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 128 + signal.SIGPIPE, result.stderr
    assert result.stderr == b""
    assert not (tmp_path / "out" / "G").exists()


def test_a_prefix_without_archives_warns_with_the_nearest_prefixes(
    s3, bucket: str, tmp_path: Path, s3_env: dict[str, str]
) -> None:
    s3.put_object(Bucket=bucket, Key="failed_runs/G.tar.gz", Body=tar_gz({"G/a": b"1"}))
    s3.put_object(Bucket=bucket, Key="other/readme.txt", Body=b"not an archive")
    argv = download_argv(bucket, tmp_path / "out")
    argv[argv.index("--bucket-path") + 1] = f"s3://{bucket}/failed_run/"  # the typo
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    (warning,) = [e for e in _events(result.stdout) if e["event"] == "download.empty"]
    assert warning["level"] == "warning"
    assert warning["bucket_path"] == f"s3://{bucket}/failed_run/"
    assert warning["nearest"][0] == f"s3://{bucket}/failed_runs/"
    assert "--bucket-path" in warning["problem"]


def test_a_prefix_with_archives_does_not_warn(
    s3, bucket: str, tmp_path: Path, s3_env: dict[str, str]
) -> None:
    s3.put_object(Bucket=bucket, Key="failed_runs/G.tar.gz", Body=tar_gz({"G/a": b"1"}))
    result = subprocess.run(
        download_argv(bucket, tmp_path / "out"), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert not [e for e in _events(result.stdout) if e["event"] == "download.empty"]


def test_rates_are_null_when_nothing_was_attempted(
    s3, bucket: str, tmp_path: Path, s3_env: dict[str, str]
) -> None:
    s3.put_object(Bucket=bucket, Key="failed_runs/G.tar.gz", Body=tar_gz(run_group_members("G")))
    argv = [
        sys.executable, "-m", "job", "run",
        "--bucket-path", f"s3://{bucket}/failed_runs/",
        "--output-dir", str(tmp_path / "root"),
    ]  # fmt: skip
    first = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    assert first.returncode == 0, first.stderr
    summaries = {e["event"]: e for e in _events(first.stdout) if e["event"].endswith(".summary")}
    assert summaries["download.summary"]["success_rate"] == 1.0
    assert summaries["parse.summary"]["success_rate"] == 1.0

    again = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    assert again.returncode == 0, again.stderr
    summaries = {e["event"]: e for e in _events(again.stdout) if e["event"].endswith(".summary")}
    for stage in ("download.summary", "parse.summary"):
        assert summaries[stage]["skipped"] >= 1
        assert summaries[stage]["success_rate"] is None, summaries[stage]
        assert summaries[stage]["failure_rate"] is None, summaries[stage]
