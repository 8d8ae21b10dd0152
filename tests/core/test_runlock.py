"""One run at a time per output folder; shards of one job side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from job.core.runlock import EXIT_LOCKED, LOCK_NAME, Locked, output_lock
from tests.conftest import run_group_members, tar_gz

HOLDER = """
import sys
from pathlib import Path
from job.core.runlock import output_lock
shard = sys.argv[2] or None
with output_lock(Path(sys.argv[1]), shard):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


@contextmanager
def held_by_another_process(folder: Path, shard: str = "") -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), shard],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def _cli(*argv: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "job", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


@pytest.fixture
def one_archive(bucket: str, s3) -> str:  # type: ignore[no-untyped-def]
    s3.put_object(
        Bucket=bucket,
        Key="failed_runs/G.tar.gz",
        Body=tar_gz(run_group_members("G_run-group_aide")),
    )
    return f"s3://{bucket}/failed_runs/"


def test_a_second_run_exits_75_at_once_and_touches_nothing(
    tmp_path: Path, one_archive: str, s3_env: dict[str, str]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "failed_runs").mkdir()
    leftover = root / "failed_runs" / ".G.partial-1-abcd"  # another run's in-flight work
    leftover.mkdir()
    with held_by_another_process(root / "failed_runs"):
        proc = _cli("run", "--bucket-path", one_archive, "--output-dir", str(root), env=s3_env)
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_LOCKED
    assert err.count("\n") == 1
    assert "another analyze-failures run is using" in err
    assert leftover.is_dir(), "its start-up cleanup must not touch the other run's work"
    assert not (root / "failed_runs" / "G").exists()
    assert not (root / "index.html").exists()


def test_wait_lock_waits_for_the_other_run_then_works(
    tmp_path: Path, one_archive: str, s3_env: dict[str, str]
) -> None:
    root = tmp_path / "root"
    with held_by_another_process(root):
        proc = _cli(
            "run", "--bucket-path", one_archive, "--output-dir", str(root), "--wait-lock", "120",
            env=s3_env,
        )  # fmt: skip
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["event"] == "lock.waiting"
    # the holder let go when the block above closed it
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert (root / "failed_runs" / "G" / "G_run-group_aide" / "metadata.json").is_file()


def test_shards_share_a_folder_but_not_a_shard(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    with held_by_another_process(folder, "shard-0-of-2"):
        with output_lock(folder, "shard-1-of-2"):
            pass  # another shard: fine
        with pytest.raises(Locked), output_lock(folder, "shard-0-of-2"):
            pass
        with pytest.raises(Locked), output_lock(folder):  # unsharded sweeps everything
            pass
    with output_lock(folder):
        pass


def test_a_planted_link_at_the_lock_file_is_refused_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (folder / LOCK_NAME).symlink_to(victim)
    with pytest.raises(Locked, match="symbolic link"), output_lock(folder):
        pass
    assert victim.read_text() == "precious"


def test_dry_runs_take_no_lock(tmp_path: Path, one_archive: str, s3_env: dict[str, str]) -> None:
    root = tmp_path / "root"
    with held_by_another_process(root / "failed_runs"):
        proc = _cli(
            "download", "--bucket-path", one_archive, "--output-dir", str(root / "failed_runs"),
            "--dry-run", env=s3_env,
        )  # fmt: skip
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


@pytest.mark.parametrize("command", ["report", "merge"])
def test_report_and_merge_wait_for_a_parse_of_the_same_tree(tmp_path: Path, command: str) -> None:
    """Both rewrite aide_journals/index.json: a parse writing it meanwhile would lose entries."""
    root = tmp_path / "root"
    (root / "aide_journals").mkdir(parents=True)
    with held_by_another_process(root / "aide_journals"):  # a `parse` at work
        proc = _cli(command, "--output-dir", str(root), env={})
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_LOCKED, err
    assert "aide_journals" in err
    assert err.count("\n") == 1
    assert not (root / "index.html").exists()
