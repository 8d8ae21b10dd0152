"""N shard workers on one bucket add up to exactly one unsharded run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from job.core.config import shard_of
from tests.conftest import run_group_members, tar_gz
from tests.download.test_download import tree
from tests.support.jobcli import download_argv

SHARDS = 3


def download(bucket: str, out: Path, *extra: str, env: dict[str, str] | None = None):
    return subprocess.Popen(
        download_argv(bucket, out, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_shards_together_equal_one_unsharded_run_with_no_item_done_twice(s3, bucket, tmp_path):
    keys = [
        f"failed_runs/{agent}/task-{i % 3}/G{i}.tar.gz" for i in range(15) for agent in ("aide",)
    ]
    keys += [f"failed_runs/G{i}.tar.gz" for i in range(6)]
    for key in keys:
        name = Path(key).name.removesuffix(".tar.gz")
        s3.put_object(Bucket=bucket, Key=key, Body=tar_gz(run_group_members(name)))

    single = tmp_path / "single"
    proc = download(bucket, single)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err

    shared = tmp_path / "shared"
    # Two shards by flag, one by the Kubernetes Indexed Job variable: all run at once.
    procs = [
        download(bucket, shared, "--shard-index", "0", "--shard-count", str(SHARDS)),
        download(bucket, shared, "--shard-index", "1", "--shard-count", str(SHARDS)),
        download(bucket, shared, env={"JOB_COMPLETION_INDEX": "2", "SHARD_COUNT": str(SHARDS)}),
    ]
    fetched: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out[-3000:]
        fetched += [
            json.loads(line)["key"] for line in out.splitlines() if '"download.archive"' in line
        ]
    assert sorted(fetched) == sorted(keys)  # every item once, none twice
    shard_manifests = sorted(p.name for p in shared.glob("manifest.shard-*.json"))
    assert shard_manifests == [f"manifest.shard-{i}-of-{SHARDS}.json" for i in range(SHARDS)]
    for i in range(SHARDS):
        doc = json.loads((shared / f"manifest.shard-{i}-of-{SHARDS}.json").read_text())
        assert all(shard_of(k, SHARDS) == i for k in doc["archives"])

    merge = subprocess.run(
        [sys.executable, "-m", "job", "merge", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert merge.returncode == 2  # tmp_path is not a run root: one clear line
    assert "no failed_runs/" in merge.stderr

    root = tmp_path / "root"
    shared.rename(root / "failed_runs") if root.mkdir() is None else None
    merge = subprocess.run(
        [sys.executable, "-m", "job", "merge", "--output-dir", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert merge.returncode == 0, merge.stderr
    merged = root / "failed_runs"
    assert sorted(p.name for p in merged.glob("manifest*.json")) == ["manifest.json"]
    assert tree(merged) == tree(single)

    def outcomes(path: Path) -> dict[str, tuple[str, str]]:
        doc = json.loads(path.read_text())
        return {k: (v["etag"], v["outcome"]) for k, v in doc["archives"].items()}

    assert outcomes(merged / "manifest.json") == outcomes(single / "manifest.json")

    # The next night, sharded again: nothing is fetched twice after a merge.
    again = download(bucket, merged, "--shard-index", "1", "--shard-count", str(SHARDS))
    out, _ = again.communicate(timeout=60)
    assert '"download.archive"' not in out


def test_bad_shard_settings_are_usage_errors(bucket, tmp_path, s3_env):
    for extra, env, message in [
        (["--shard-index", "3", "--shard-count", "3"], {}, "outside 0..2"),
        (["--shard-index", "1"], {}, "needs --shard-count"),
        ([], {"JOB_COMPLETION_INDEX": "x", "SHARD_COUNT": "2"}, "not a whole number"),
    ]:
        proc = download(bucket, tmp_path, *extra, env=env)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, err
        assert message in err
