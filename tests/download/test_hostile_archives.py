"""Every hostile archive kind fails alone, with a clear reason, and leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from job.core.config import DownloadConfig, RetrySettings
from job.download.stage import run_download
from tests.conftest import tar_gz
from tests.support import ledger
from tests.support import tarfactory as tf


def outside_snapshot(base: Path) -> set[str]:
    return {p.name for p in base.iterdir()}


def no_links_outside(root: Path) -> None:
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                target = os.path.realpath(path)
                assert target == real_root or target.startswith(real_root + os.sep), path


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda out: tf.path_traversal("../../../escaped.txt"), "climbs out"),
        (lambda out: tf.absolute_path(out / "absolute.txt"), "absolute path"),
        (lambda out: tf.symlink_outside(out), "absolute path"),
        (lambda out: tf.symlink_dotdot("../../.."), "outside the archive folder"),
        (lambda out: tf.hardlink_outside(out / "victim"), "hard link"),
        (lambda out: tf.hardlink_nonmember(), "does not point at a file of this archive"),
        (lambda out: tf.device_node("char"), "device node"),
        (lambda out: tf.device_node("block"), "device node"),
        (lambda out: tf.fifo(), "fifo"),
        (lambda out: tf.write_through_symlink(out), "symlink"),
        (lambda out: tf.not_gzip(), "not a gzip file"),
        (lambda out: tf.uncompressed_tar(), "not a gzip file"),
        (lambda out: tf.truncated_gzip(), "truncated"),
        (lambda out: tf.zero_bytes(), "not a valid tar archive"),
        (lambda out: tf.bomb_single_member(64 * 1024 * 1024), "--max-bytes"),
        (lambda out: tf.bomb_many_members(5000), "--max-members"),
        (lambda out: tf.negative_pax_size(), "impossible size"),
        (lambda out: tf.long_member_name(300), "at most 255"),
    ],
)
def test_hostile_archive_fails_alone_and_writes_nothing(build, reason, s3, bucket, tmp_path):
    sandbox = tmp_path / "sandbox"  # the "outside" the archives aim at
    sandbox.mkdir()
    (sandbox / "victim").write_bytes(b"precious")
    out = tmp_path / "out"
    s3.put_object(Bucket=bucket, Key="failed_runs/hostile.tar.gz", Body=build(sandbox))
    s3.put_object(Bucket=bucket, Key="failed_runs/good.tar.gz", Body=tar_gz({"good/x": b"1"}))
    before = outside_snapshot(tmp_path)
    cfg = DownloadConfig(
        bucket_path=f"s3://{bucket}/failed_runs/",
        output_dir=out,
        max_bytes=16 * 1024 * 1024,
        max_members=1000,
        retry=RetrySettings(attempts=2, initial_wait=0.01, max_wait=0.02),
    )
    with capture_logs() as logs:
        summary = run_download(cfg)

    ledger.add("hostile_archives_end_to_end")
    assert (summary.succeeded, summary.failed) == (1, 1)
    (event,) = [e for e in logs if e["event"] == "download.archive" and e["outcome"] == "failed"]
    assert event["key"] == "failed_runs/hostile.tar.gz"
    assert reason in event["error"]
    assert "\n" not in event["error"]
    # nothing partial, nothing outside, nothing pointing outside
    assert sorted(p.name for p in out.iterdir()) == ["good", "manifest.json"]
    assert outside_snapshot(tmp_path) == before | {"out"}
    assert sorted(p.name for p in sandbox.iterdir()) == ["victim"]
    assert (sandbox / "victim").read_bytes() == b"precious"
    assert not Path("/tmp/tarfactory-absolute.txt").exists()
    no_links_outside(out)


def test_links_that_stay_inside_are_kept(s3, bucket, tmp_path):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"real"
        info = tarfile.TarInfo("G/dir/real.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        sym = tarfile.TarInfo("G/latest")
        sym.type, sym.linkname = tarfile.SYMTYPE, "dir/real.txt"
        tar.addfile(sym)
        hard = tarfile.TarInfo("G/copy.txt")
        hard.type, hard.linkname = tarfile.LNKTYPE, "G/dir/real.txt"
        tar.addfile(hard)
    s3.put_object(Bucket=bucket, Key="failed_runs/G.tar.gz", Body=buf.getvalue())
    out = tmp_path / "out"
    summary = run_download(
        DownloadConfig(bucket_path=f"s3://{bucket}/failed_runs/", output_dir=out)
    )
    assert summary.succeeded == 1
    assert os.readlink(out / "G/G/latest") == "dir/real.txt"
    assert (out / "G/G/latest").read_bytes() == b"real"
    assert (out / "G/G/copy.txt").read_bytes() == b"real"


def test_symlink_chain_that_resolves_outside_is_caught_after_extraction(s3, bucket, tmp_path):
    """Each link looks inside on its own; together they climb out (lexical checks miss it)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("G/a/b/c/d", "G/m"):
            d = tarfile.TarInfo(name)
            d.type = tarfile.DIRTYPE
            tar.addfile(d)
        s = tarfile.TarInfo("G/a/b/c/d/s")
        s.type, s.linkname = tarfile.SYMTYPE, "../../../../y"  # -> G/y, shallow
        tar.addfile(s)
        z = tarfile.TarInfo("G/m/z")
        # Lexically G/a/b/c/d/s/../../.. = G/a/b (inside, not an ancestor); really
        # G/y/../../.. = the folder above the archive's own.
        z.type, z.linkname = tarfile.SYMTYPE, "../a/b/c/d/s/../../.."
        tar.addfile(z)
    s3.put_object(Bucket=bucket, Key="failed_runs/G.tar.gz", Body=buf.getvalue())
    out = tmp_path / "out"
    with capture_logs() as logs:
        summary = run_download(
            DownloadConfig(bucket_path=f"s3://{bucket}/failed_runs/", output_dir=out)
        )
    assert summary.failed == 1
    errors = [e["error"] for e in logs if e.get("outcome") == "failed"]
    assert any("resolves outside the archive folder" in e for e in errors), errors
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
