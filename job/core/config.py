"""Typed settings for each stage, built by the CLI and passed to library functions.

Keeping them as plain frozen dataclasses means the library never reads argv or the
environment itself (except the standard AWS chain, which boto3 owns), so tests and
the container entrypoint drive exactly the same code.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BUCKET_PATH = "s3://biomlbench/v1/artifacts/failed_runs/"
DEFAULT_MAX_BYTES = 64 * 1024**3  # 64 GiB extracted per archive
DEFAULT_MAX_MEMBERS = 1_000_000
#: Largest journal parsed (bytes). A worker's peak memory is a small multiple of
#: the journal it holds (decoded JSON plus the model; tests/parse measures it), so
#: this bounds each worker: the biggest real AIDE journals are tens of MB.
DEFAULT_MAX_JOURNAL_BYTES = 512 * 1024**2


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
    #: Archives in flight at once; None: two per worker process, at least 8 (see job.download.stage).
    concurrent: int | None = None
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
    #: Worker processes receiving archives; None: usable CPUs + 1 (one CPU: none);
    #: 0: threads of this process do it (see job.download.workers).
    processes: int | None = None
    #: Without worker processes: archives decompressed at once; None: usable CPUs + 1.
    extract_slots: int | None = None


@dataclass(frozen=True)
class ParseConfig:
    failed_runs_dir: Path = Path("failed_runs")
    output_dir: Path = Path("aide_journals")
    concurrent: int = 2
    dry_run: bool = False
    force: bool = False
    shard: Shard = Shard()
    max_journal_bytes: int = DEFAULT_MAX_JOURNAL_BYTES


def usable_cpus(proc: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may keep busy: its affinity mask, capped by its cgroup's CPU quota.

    A pod limited to 2 CPUs on a 64-core node sees all 64 in ``os.cpu_count()`` and
    often in its affinity mask too; the quota (cgroup v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) is what the kernel enforces, by
    throttling. Workers beyond it only add contention, so sizes derive from this.
    A fractional quota rounds up (1.5 CPUs can keep two workers partly busy).
    ``proc`` and ``cgroup_root`` exist for tests.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(proc, cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def cgroup_cpu_quota(proc: Path, cgroup_root: Path) -> float | None:
    """CPUs' worth of time per period the cgroup allows this process; None when unlimited.

    Walks from this process's own cgroup up to the root, taking the tightest limit
    on the way (a parent's quota binds its children too). Anything unreadable
    counts as no limit: this only ever lowers a worker count.
    """
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not hierarchy or not path.startswith("/"):
            continue
        if hierarchy == "0" and controllers == "":
            base = cgroup_root  # v2, unified
            reader = _v2_limit
        elif "cpu" in controllers.split(","):
            base = next(
                (
                    cgroup_root / d
                    for d in ("cpu,cpuacct", "cpu", controllers)
                    if (cgroup_root / d).is_dir()
                ),
                cgroup_root / "cpu",
            )
            reader = _v1_limit
        else:
            continue
        parts = [p for p in path.split("/") if p and p != ".."]
        for depth in range(len(parts), -1, -1):
            limit = reader(base.joinpath(*parts[:depth]))
            if limit is not None:
                limits.append(limit)
    return min(limits) if limits else None


def _v2_limit(folder: Path) -> float | None:
    try:
        quota, _, period = (folder / "cpu.max").read_text().strip().partition(" ")
        if quota == "max":
            return None
        return int(quota) / int(period or "100000")
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _v1_limit(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period
