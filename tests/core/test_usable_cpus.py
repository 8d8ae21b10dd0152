"""Worker counts follow the CPUs a container may use: affinity capped by the cgroup quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from job.core.config import cgroup_cpu_quota, usable_cpus

AFFINITY = len(os.sched_getaffinity(0))


def fake(tmp_path: Path, self_cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(self_cgroup)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return proc, root


def test_v2_quota_of_the_process_cgroup(tmp_path: Path) -> None:
    proc, root = fake(
        tmp_path,
        "0::/kubepods/pod1/ctr\n",
        {"kubepods/pod1/ctr/cpu.max": "150000 100000\n", "cpu.max": "max 100000\n"},
    )
    assert cgroup_cpu_quota(proc, root) == 1.5
    assert usable_cpus(proc, root) == min(AFFINITY, 2)  # 1.5 CPUs round up


def test_v2_a_parent_limit_binds_its_children(tmp_path: Path) -> None:
    proc, root = fake(
        tmp_path,
        "0::/kubepods/pod1/ctr\n",
        {
            "kubepods/pod1/cpu.max": "100000 100000\n",
            "kubepods/pod1/ctr/cpu.max": "max 100000\n",
        },
    )
    assert cgroup_cpu_quota(proc, root) == 1.0
    assert usable_cpus(proc, root) == 1


def test_v2_unlimited_leaves_the_affinity(tmp_path: Path) -> None:
    proc, root = fake(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(proc, root) is None
    assert usable_cpus(proc, root) == AFFINITY


def test_v1_cfs_quota(tmp_path: Path) -> None:
    proc, root = fake(
        tmp_path,
        "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n",
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_cpu_quota(proc, root) == 0.5
    assert usable_cpus(proc, root) == 1  # never below one


def test_v1_no_quota_is_minus_one(tmp_path: Path) -> None:
    proc, root = fake(
        tmp_path,
        "4:cpu,cpuacct:/\n",
        {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
    )
    assert cgroup_cpu_quota(proc, root) is None


@pytest.mark.parametrize(
    "files",
    [
        {},  # no cgroup files at all (not Linux, or /sys not mounted)
        {"cpu.max": "garbage\n"},
        {"cpu.max": "100000 0\n"},  # a zero period must not divide by zero
    ],
)
def test_unreadable_or_odd_files_mean_no_limit(tmp_path: Path, files: dict[str, str]) -> None:
    proc, root = fake(tmp_path, "0::/\n", files)
    assert cgroup_cpu_quota(proc, root) is None
    assert usable_cpus(proc, root) == AFFINITY


def test_a_64_core_node_limited_to_2_cpus_starts_2_workers(tmp_path: Path) -> None:
    """What the quota is for: the parse's default worker count in such a pod."""
    proc, root = fake(tmp_path, "0::/pod\n", {"pod/cpu.max": "200000 100000\n"})
    assert usable_cpus(proc, root) == min(AFFINITY, 2)
    assert usable_cpus(proc, root) <= 2


def test_the_parse_default_is_the_usable_cpus() -> None:
    from job.cli import _parse_config, build_parser
    from job.core.config import Shard

    args = build_parser().parse_args(["parse"])
    assert _parse_config(args, Path("a"), Path("b"), Shard()).concurrent == usable_cpus()
    args = build_parser().parse_args(["parse", "--concurrent", "3"])
    assert _parse_config(args, Path("a"), Path("b"), Shard()).concurrent == 3
