"""Typed settings for each stage, built by the CLI and passed to library functions.

Keeping them as plain frozen dataclasses means the library never reads argv or the
environment itself (except the standard AWS chain, which boto3 owns), so tests and
the container entrypoint drive exactly the same code.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BUCKET_PATH = "s3://biomlbench/v1/artifacts/failed_runs/"
DEFAULT_MAX_BYTES = 64 * 1024**3  # 64 GiB extracted per archive
DEFAULT_MAX_MEMBERS = 1_000_000


@dataclass(frozen=True)
class Shard:
    """This worker's slice of the work: items whose stable key hash % count == index."""

    index: int = 0
    count: int = 1

    @property
    def active(self) -> bool:
        return self.count > 1

    @property
    def suffix(self) -> str:
        """File-name suffix that keeps shards from writing the same state file."""
        return f".shard-{self.index}-of-{self.count}" if self.active else ""


def shard_of(key: str, count: int) -> int:
    """Stable across machines and Python versions (unlike ``hash``).

    It lives here, beside :class:`Shard`, so that ``parse`` can shard without
    importing the S3 listing (and botocore with it: ~35 ms of start-up).
    """
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") % count


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None = None
    no_sign_request: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


@dataclass(frozen=True)
class RetrySettings:
    attempts: int = 6
    initial_wait: float = 0.5
    max_wait: float = 20.0


@dataclass(frozen=True)
class DownloadConfig:
    bucket_path: str = DEFAULT_BUCKET_PATH
    output_dir: Path = Path("failed_runs")
    concurrent: int = 8
    keep_compressed: bool = False
    dry_run: bool = False
    force: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS
    s3: S3Settings = S3Settings()
    retry: RetrySettings = RetrySettings()
    shard: Shard = Shard()
    progress: bool = False
    #: Slow the whole run down on throttling (see job.download.throttle); off only for comparisons.
    adaptive: bool = True
    #: Archives decompressed and written at once; None: usable CPUs + 1 (see job.download.fetch).
    extract_slots: int | None = None


@dataclass(frozen=True)
class ParseConfig:
    failed_runs_dir: Path = Path("failed_runs")
    output_dir: Path = Path("aide_journals")
    concurrent: int = 2
    dry_run: bool = False
    force: bool = False
    shard: Shard = Shard()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as container limits set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
