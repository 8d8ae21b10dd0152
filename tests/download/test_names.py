"""Names past the filesystem's limits fail one archive up front; temporaries never pass them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from job.core.atomic import NAME_MAX, TEMP_MARKER, temp_prefix, temp_sibling
from job.core.errors import ItemError
from job.download.names import check_archive_folder, check_member_path
from tests.conftest import run_group_members, tar_gz


@pytest.mark.parametrize("length", [200, 240, 255, 400])
def test_temporary_names_stay_within_name_max(tmp_path: Path, length: int) -> None:
    target = tmp_path / ("é" * (length // 2) + "x" * (length % 2))
    tmp = temp_sibling(target)
    assert len(os.fsencode(tmp.name)) <= NAME_MAX
    assert tmp.name.startswith(temp_prefix(target))
    assert TEMP_MARKER in tmp.name
    assert tmp.name.startswith(".")


def test_shortened_prefixes_are_distinct_per_target(tmp_path: Path) -> None:
    a, b = tmp_path / ("a" * 240 + "1"), tmp_path / ("a" * 240 + "2")
    assert temp_prefix(a) != temp_prefix(b)
    assert temp_prefix(a) == temp_prefix(a)  # shard cleanup recomputes it


def test_a_folder_name_past_name_max_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ItemError, match="at most 255"):
        check_archive_folder(tmp_path, "aide/" + "k" * 256, keep_compressed=False)
    with pytest.raises(ItemError, match="at most 255"):  # .tar.gz beside it
        check_archive_folder(tmp_path, "k" * 250, keep_compressed=True)
    check_archive_folder(tmp_path, "k" * 250, keep_compressed=False)


def test_a_path_past_path_max_is_refused(tmp_path: Path) -> None:
    deep = "/".join(["d" * 200] * 21)
    with pytest.raises(ItemError, match="at most 4095"):
        check_member_path(tmp_path, deep)
    with pytest.raises(ItemError, match="has a name of 300 bytes"):
        check_member_path(tmp_path, "ok/" + "n" * 300)


def test_a_key_near_name_max_is_fetched_and_parsed(
    tmp_path: Path, bucket: str, s3, s3_env: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    """A 240-byte key name: its temporary (name + .partial-pid-hex) used to pass 255."""
    long_group = "G" * 226 + "_run-group_aide"  # 240 bytes, a valid folder name
    s3.put_object(
        Bucket=bucket,
        Key=f"failed_runs/{long_group}.tar.gz",
        Body=tar_gz(run_group_members(long_group, runs=1)),
    )
    s3.put_object(
        Bucket=bucket, Key="failed_runs/short.tar.gz", Body=tar_gz(run_group_members("short"))
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "job", "run", "--bucket-path", f"s3://{bucket}/failed_runs/",
         "--output-dir", str(out), "--keep-compressed"],
        capture_output=True, text=True, env={**os.environ, **s3_env}, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((out / "failed_runs" / "manifest.json").read_text())
    assert manifest["archives"][f"failed_runs/{long_group}.tar.gz"]["outcome"] == "succeeded"
    assert (out / "failed_runs" / long_group / long_group / "metadata.json").is_file()
    assert (out / "index.html").is_file()
