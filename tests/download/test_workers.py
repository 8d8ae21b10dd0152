"""The download's worker processes: what a dead worker, a stop, or a dead parent leaves.

Each test runs the job as users do (``python -m job download``) against the
loopback S3 server through the fault proxy, which holds chosen responses partly
sent (``pause``, after 90% of the body). While they are held, the test knows exactly which worker
process is mid-archive (the one whose socket is the held connection's client
end) and acts on that process.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from structlog.testing import capture_logs

from job.core.atomic import iter_temporaries
from job.core.config import DownloadConfig
from job.download.stage import archives_in_flight, run_download, spread, worker_processes
from tests.conftest import put_busy_archives
from tests.download.test_download import tree
from tests.support.faultproxy import PAUSE, FaultPolicy, FaultProxy
from tests.support.jobcli import download_argv

N_ARCHIVES = 6


@pytest.fixture
def busy_bucket(s3, bucket):  # type: ignore[no-untyped-def]
    put_busy_archives(s3, bucket, N_ARCHIVES, seed=11)
    return bucket


def pausing(pattern: str) -> FaultPolicy:
    """Hold the first GET of every archive whose key matches ``pattern`` partly sent."""
    return FaultPolicy(seed=1, rate=1.0, kinds=(PAUSE,), key_filter=pattern)


def held_proxy(s3_server: Any, policy: FaultPolicy) -> FaultProxy:
    """The fault proxy, holding paused responses after 90% of their body.

    The job reads a megabyte of decompressed tar before it writes anything, so
    a response held at half of these 1.6 MB archives would leave the folder
    empty; at 90% the first members are on the drive while the rest waits.
    """
    return FaultProxy(s3_server.endpoint_url, policy, truncate_fraction=0.9)


def start(bucket: str, out: Path, proxy: FaultProxy, *extra: str) -> subprocess.Popen[str]:
    argv = download_argv(bucket, out, "--endpoint-url", proxy.endpoint_url, *extra)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextmanager
def held(proxy: FaultProxy, bucket: str, out: Path, *extra: str) -> Iterator[subprocess.Popen[str]]:
    """The job, started; whatever the test does meanwhile, held responses go on after."""
    job = start(bucket, out, proxy, *extra)
    try:
        yield job
    finally:
        proxy.resume()


def holder(job: subprocess.Popen[str], client_port: int) -> psutil.Process:
    """The job's worker process whose connection is the held response's client end."""
    for child in psutil.Process(job.pid).children():
        if any(c.laddr and c.laddr.port == client_port for c in child.net_connections("tcp")):
            return child
    raise AssertionError(f"no worker of {job.pid} holds the connection from port {client_port}")


def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Whether ``condition`` becomes true within ``timeout`` (for what no event announces)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def reference(bucket: str, tmp_path: Path, proxy: FaultProxy) -> dict[str, bytes | str]:
    out = tmp_path / "reference"
    proc = start(bucket, out, proxy, "--download-processes", "0")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return tree(out)


def test_a_worker_killed_mid_archive_fails_that_attempt_and_the_night_completes(
    s3_server, busy_bucket, tmp_path
):
    out = tmp_path / "out"
    with held_proxy(s3_server, pausing(r"G3\.tar\.gz$")) as proxy:
        # One lane per worker, so the victim holds G3 and nothing else.
        with held(proxy, busy_bucket, out, "--download-processes", "2", "--concurrent", "2") as job:
            (paused,) = proxy.wait_paused(1)
            victim = holder(job, paused["client_port"])
            assert victim.pid != job.pid
            # Mid-archive for real: its hidden folder already holds members.
            (filling,) = [p for p in out.iterdir() if p.name.startswith(".G3")]
            assert eventually(lambda: (filling / "G3" / "run" / "file0.bin").is_file())
            victim.kill()
        stdout, err = job.communicate(timeout=120)
        expected = reference(busy_bucket, tmp_path, proxy)
    assert job.returncode == 0, err
    log = events(stdout)
    (died,) = [e for e in log if e["event"] == "download.worker_died"]
    assert died["pid"] == victim.pid
    assert died["exitcode"] == -signal.SIGKILL
    assert died["workers_left"] == 1
    (retry,) = [e for e in log if e["event"] == "download.retry"]
    assert retry["key"] == "failed_runs/G3.tar.gz"
    assert "worker process died" in retry["cause"]
    assert "SIGKILL" in retry["cause"]
    assert tree(out) == expected  # G3 too: its second attempt ran on the other worker
    assert list(iter_temporaries(out)) == []


def test_when_every_worker_is_gone_the_rest_is_received_in_the_job_itself(
    s3_server, busy_bucket, tmp_path
):
    out = tmp_path / "out"
    with held_proxy(s3_server, pausing(r"G[01]\.tar\.gz$")) as proxy:
        with held(proxy, busy_bucket, out, "--download-processes", "2", "--concurrent", "2") as job:
            paused = proxy.wait_paused(2)
            victims = {holder(job, e["client_port"]).pid for e in paused}
            assert len(victims) == 2  # one lane per worker: both workers are busy
            for pid in victims:
                psutil.Process(pid).kill()
        stdout, err = job.communicate(timeout=120)
        expected = reference(busy_bucket, tmp_path, proxy)
    assert job.returncode == 0, err
    died = [e for e in events(stdout) if e["event"] == "download.worker_died"]
    assert {e["pid"] for e in died} == victims
    assert sorted(e["workers_left"] for e in died) == [0, 1]
    assert tree(out) == expected
    assert list(iter_temporaries(out)) == []


def test_sigterm_with_every_worker_busy_exits_143_and_publishes_nothing_partial(
    s3_server, busy_bucket, tmp_path
):
    out = tmp_path / "out"
    with (
        held_proxy(s3_server, pausing(r"G[0-9]\.tar\.gz$")) as proxy,
        held(proxy, busy_bucket, out, "--download-processes", "2", "--concurrent", "4") as job,
    ):
        paused = proxy.wait_paused(4)  # two lanes in each of the two workers, all held
        workers = psutil.Process(job.pid).children()
        assert {holder(job, e["client_port"]).pid for e in paused} == {w.pid for w in workers}
        job.send_signal(signal.SIGTERM)
        stdout, err = job.communicate(timeout=30)
    assert job.returncode == 143, err
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []  # no worker outlives the run
    assert list(iter_temporaries(out)) == []
    assert [p.name for p in out.iterdir() if p.is_dir()] == []
    assert json.loads((out / "manifest.json").read_text())["archives"] == {}
    assert not [e for e in events(stdout) if e["event"] == "download.worker_died"]


def test_workers_die_with_the_parent_and_a_rerun_equals_a_clean_run(
    s3_server, busy_bucket, tmp_path
):
    out = tmp_path / "out"
    with held_proxy(s3_server, pausing(r"G[0-9]\.tar\.gz$")) as proxy:
        with held(proxy, busy_bucket, out, "--download-processes", "2", "--concurrent", "2") as job:
            proxy.wait_paused(2)
            workers = psutil.Process(job.pid).children()
            assert len(workers) == 2
            job.kill()
            job.communicate(timeout=30)
            _, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == []  # the kernel killed them with their parent (PR_SET_PDEATHSIG)
        rerun = start(busy_bucket, out, proxy)
        _, err = rerun.communicate(timeout=120)
        expected = reference(busy_bucket, tmp_path, proxy)
    assert rerun.returncode == 0, err
    assert tree(out) == expected
    assert list(iter_temporaries(out)) == []


@pytest.mark.parametrize(
    ("processes", "cpus", "todo", "expected"),
    [
        (None, 2, 40, 3),  # one per CPU, plus one for a CPU whose worker waits
        (None, 16, 160, 17),
        (None, 16, 5, 5),  # never more workers than archives
        (None, 1, 40, 0),  # one CPU: processes add nothing
        (None, 8, 1, 0),  # one archive: forking costs more than it gives
        (0, 8, 40, 0),
        (4, 2, 40, 4),
    ],
)
def test_worker_count_follows_the_usable_cpus(monkeypatch, processes, cpus, todo, expected):
    import job.download.stage as stage

    monkeypatch.setattr(stage, "usable_cpus", lambda: cpus)
    assert worker_processes(DownloadConfig(processes=processes), todo) == expected


def test_no_more_workers_than_archives_in_flight(monkeypatch):
    import job.download.stage as stage

    monkeypatch.setattr(stage, "usable_cpus", lambda: 16)
    assert worker_processes(DownloadConfig(concurrent=4), 160) == 4
    assert worker_processes(DownloadConfig(concurrent=1), 160) == 1


def test_archives_in_flight_and_their_lanes():
    assert archives_in_flight(DownloadConfig(), 3) == 8
    assert archives_in_flight(DownloadConfig(), 17) == 34
    assert archives_in_flight(DownloadConfig(concurrent=5), 17) == 5
    assert spread(8, 3) == [3, 3, 2]
    assert spread(34, 17) == [2] * 17
    assert spread(2, 3) == [1, 1, 1]  # every worker has a lane


class _Refusing:
    """A fork context whose ``Process.start`` fails like fork(2) under a pids limit.

    There is no way to make the kernel refuse a fork to this process alone
    (threads count against the same limits, root ignores RLIMIT_NPROC), so the
    refusal is injected at the one call that forks.
    """

    def __init__(self, allowed: int) -> None:
        self.context = multiprocessing.get_context("fork")
        self.allowed = allowed

    def Process(self, *args: Any, **kwargs: Any) -> Any:
        process = self.context.Process(*args, **kwargs)
        if self.allowed <= 0:

            def refuse() -> None:
                raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

            process.start = refuse
        self.allowed -= 1
        return process


@pytest.mark.parametrize("allowed", [0, 1])
def test_a_refused_fork_is_one_warning_and_the_night_completes(
    busy_bucket, tmp_path, monkeypatch, allowed
):
    import job.download.workers as workers

    refusing = _Refusing(allowed)
    monkeypatch.setattr(workers.multiprocessing, "get_context", lambda _method: refusing)
    out = tmp_path / "out"
    with capture_logs() as logs:
        summary = run_download(
            DownloadConfig(
                bucket_path=f"s3://{busy_bucket}/failed_runs/",
                output_dir=out,
                processes=2,
            )
        )
    assert (summary.succeeded, summary.failed) == (N_ARCHIVES, 0)
    (refused,) = [e for e in logs if e["event"] == "download.workers_refused"]
    assert refused["started"] == allowed
    assert refused["problem"] == "cannot start a worker process: Resource temporarily unavailable"
    (started,) = [e for e in logs if e["event"] == "download.workers"]
    assert started["processes"] == allowed
    assert list(iter_temporaries(out)) == []


OTHER_UID = 10001  # anyone else who can write to the shared drive


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to act as another user",
)
def test_the_folder_being_filled_is_private_until_published(s3_server, busy_bucket, tmp_path):
    """A shared drive with a permissive umask: nobody else can plant a link mid-archive.

    The job runs under umask 000 on a world-writable output folder, so a folder
    made with mkdir's default mode is open to all; the one being filled must not
    be, or another user could put a link in it (or swap one of its folders for
    one) between the job's checks and its writes. Once published, the folder has
    the mode the umask gives.
    """
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # tmp_path's parents are private to root
    try:
        base.chmod(0o755)
        out = base / "out"
        out.mkdir(mode=0o777)
        out.chmod(0o777)
        with held_proxy(s3_server, pausing(r"G3\.tar\.gz$")) as proxy:
            argv = download_argv(busy_bucket, out, "--endpoint-url", proxy.endpoint_url)
            job = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, umask=0
            )
            try:
                proxy.wait_paused(1)
                (filling,) = [p for p in out.iterdir() if p.name.startswith(".G3")]
                # The held half is on its way to the worker: wait for its first members.
                assert eventually(lambda: (filling / "G3" / "run" / "file0.bin").is_file())
                planted = subprocess.run(
                    ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups",
                     "ln", "-s", "/etc", str(filling / "planted")],
                    capture_output=True, text=True,
                )  # fmt: skip
                mode = stat.S_IMODE(filling.stat().st_mode)
            finally:
                proxy.resume()
            _, err = job.communicate(timeout=120)
        assert job.returncode == 0, err
        assert planted.returncode != 0
        assert "Permission denied" in planted.stderr
        assert mode == 0o700
        assert stat.S_IMODE((out / "G3").stat().st_mode) == 0o777  # umask 000, as mkdir gives
        assert not list(out.rglob("planted"))
    finally:
        shutil.rmtree(base)
