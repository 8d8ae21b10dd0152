"""Resources: a full drive, a file-size limit, and thousands of archives at high concurrency."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from job.core.atomic import iter_temporaries
from job.core.config import DownloadConfig
from job.download.stage import run_download
from tests.conftest import tar_gz
from tests.support.jobcli import download_argv


def write_objects(s3_server, bucket: str, objects: dict[str, bytes]) -> None:  # type: ignore[no-untyped-def]
    """Drop objects straight into the server's folder (fast for thousands of keys)."""
    for key, data in objects.items():
        path = Path(s3_server.root, bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def cli(bucket: str, out: Path, *extra: str, preexec=None) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        download_argv(bucket, out, *extra),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=preexec,
    )


def failures(stdout: str) -> dict[str, str]:
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {
        e["key"]: e["error"]
        for e in events
        if e.get("event") == "download.archive" and e["outcome"] == "failed"
    }


def test_file_size_limit_fails_the_item_with_a_clear_message(s3_server, bucket, tmp_path, s3_env):
    write_objects(
        s3_server,
        bucket,
        {
            "failed_runs/big.tar.gz": tar_gz({"big/huge.bin": os.urandom(3 * 1024 * 1024)}),
            "failed_runs/small.tar.gz": tar_gz({"small/a.txt": b"fine"}),
        },
    )
    out = tmp_path / "out"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))

    result = cli(bucket, out, preexec=limit)
    assert result.returncode == 1, result.stderr
    assert "file-size limit" in failures(result.stdout)["failed_runs/big.tar.gz"]
    assert sorted(p.name for p in out.iterdir()) == [
        ".analyze-failures.lock",
        "manifest.json",
        "small",
    ]
    assert list(iter_temporaries(out)) == []


@pytest.fixture
def tiny_drive(tmp_path):
    """A 2 MiB tmpfs: a real full disk (ENOSPC), not a simulation."""
    mount = tmp_path / "drive"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must be able to mount a tmpfs (runs as root): {proc.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_drive_fails_the_item_being_written_and_leaves_nothing_partial(
    s3_server, bucket, tiny_drive, s3_env
):
    write_objects(
        s3_server,
        bucket,
        {
            "failed_runs/a-small.tar.gz": tar_gz({"a/x.txt": b"fits"}),
            "failed_runs/b-big.tar.gz": tar_gz({"b/y.bin": os.urandom(3 * 1024 * 1024)}),
        },
    )
    out = tiny_drive / "out"
    result = cli(bucket, out, "--concurrent", "1")
    assert result.returncode == 1, result.stderr
    error = failures(result.stdout)["failed_runs/b-big.tar.gz"]
    assert "no space left" in error
    assert "\n" not in error
    assert sorted(p.name for p in out.iterdir()) == [
        ".analyze-failures.lock",
        "a-small",
        "manifest.json",
    ]
    assert list(iter_temporaries(out)) == []
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["archives"]["failed_runs/b-big.tar.gz"]["outcome"] == "failed"


def test_two_thousand_archives_no_leaked_fds_or_threads(s3_server, bucket, tmp_path, s3_env):
    write_objects(
        s3_server,
        bucket,
        {
            f"failed_runs/g{i // 100}/G{i}.tar.gz": tar_gz({f"G{i}/run.log": b"x" * 200})
            for i in range(2000)
        },
    )
    fds_before = len(os.listdir("/proc/self/fd"))
    threads_before = threading.active_count()
    summary = run_download(
        DownloadConfig(
            bucket_path=f"s3://{bucket}/failed_runs/", output_dir=tmp_path / "out", concurrent=32
        )
    )
    assert (summary.succeeded, summary.failed) == (2000, 0)
    assert threading.active_count() == threads_before
    # boto3's connection pool may keep a few sockets open for reuse; nothing per archive.
    assert len(os.listdir("/proc/self/fd")) - fds_before <= 40


def peak_rss_kib(bucket: str, out: Path) -> int:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "job",
            "download",
            "--bucket-path",
            f"s3://{bucket}/failed_runs/",
            "--output-dir",
            str(out),
            "--concurrent",
            "32",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss


def test_memory_does_not_grow_with_the_number_of_archives(s3_server, s3, tmp_path, s3_env):
    sizes = {}
    for n in (250, 2000):
        bucket = f"mem-{n}"
        s3_server.create_bucket(bucket)
        write_objects(
            s3_server,
            bucket,
            {f"failed_runs/G{i}.tar.gz": tar_gz({f"G{i}/run.log": b"y" * 5000}) for i in range(n)},
        )
        sizes[n] = peak_rss_kib(bucket, tmp_path / f"out-{n}")
    # 8x the archives: the peak may grow by the listing and manifest (hundreds of bytes
    # per key), not by anything per archive in flight.
    assert sizes[2000] - sizes[250] < 25 * 1024, sizes
