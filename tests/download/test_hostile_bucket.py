"""Keys whose folders nest or collide fail alone, night after night; nothing else is lost.

Issue #19 (part a). Every test runs the real download stage (or the real ``run``
command in its own process) against the loopback S3 server, with archives built
in memory and written to real folders under ``tmp_path``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from structlog.testing import capture_logs

from job.core.config import DownloadConfig, RetrySettings
from job.download.stage import run_download
from tests.conftest import run_group_members, tar_gz

FAST_RETRY = RetrySettings(attempts=2, initial_wait=0.01, max_wait=0.02)


def _cfg(bucket: str, out: Path, **kw: object) -> DownloadConfig:
    return DownloadConfig(
        bucket_path=f"s3://{bucket}/failed_runs/", output_dir=out, retry=FAST_RETRY, **kw
    )


def _failures(logs: list[dict]) -> dict[str, str]:
    return {
        e["key"]: e["error"]
        for e in logs
        if e["event"] == "download.archive" and e["outcome"] == "failed"
    }


def _tar(members: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=fmt) as tar:
        for m in members:
            if isinstance(m, tuple):
                tar.addfile(m[0], io.BytesIO(m[1]))
            else:
                tar.addfile(m)
    return buf.getvalue()


def _run_job(bucket: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``analyze-failures run`` in its own process, as cron starts it."""
    argv = [sys.executable, "-m", "job", "run", "--bucket-path", f"s3://{bucket}/failed_runs/"]
    return subprocess.run(
        [*argv, "--output-dir", str(out), "--log-format", "json", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _events(proc: subprocess.CompletedProcess[str]) -> list[dict]:
    lines = proc.stdout.splitlines() + proc.stderr.splitlines()
    events = []
    for line in lines:
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not one JSON event per line: {line[:400]!r}") from None
    return events


def _assert_complete_night(out: Path, proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Exit 1 (some failed), a summary, a manifest, index.json and index.html; the failures."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    events = _events(proc)
    assert any(e["event"] == "download.summary" for e in events), proc.stderr[-3000:]
    assert (out / "failed_runs" / "manifest.json").is_file()
    assert (out / "aide_journals" / "index.json").is_file()
    assert (out / "index.html").is_file()
    failed = {
        e["key"]: e["error"]
        for e in events
        if e["event"] == "download.archive" and e["outcome"] == "failed"
    }
    assert all("\n" not in reason for reason in failed.values())
    return failed


LONG = "g" * 240  # fits NAME_MAX itself; not with the job's temporary suffixes


def negative_pax_size_then_big(big: int) -> bytes:
    """A PAX ``size=-N`` member (credits the bomb guard N bytes) followed by a big file."""
    liar = tarfile.TarInfo("G/liar")
    liar.pax_headers = {"size": str(-(1 << 40))}
    data = b"\0" * big
    real = tarfile.TarInfo("G/big")
    real.size = big
    return _tar([liar, (real, data)], tarfile.PAX_FORMAT)


def _manifest_is_true(out: Path) -> dict[str, dict]:
    """Every archive the manifest calls succeeded has its folder (and kept archive) on disk."""
    records = json.loads((out / "manifest.json").read_text())["archives"]
    for key, rec in records.items():
        if rec["outcome"] == "succeeded":
            assert (out / rec["folder"]).is_dir(), key
            assert (out / f"{rec['folder']}.tar.gz").is_file(), key
    return records


def test_keys_whose_folders_nest_or_collide_fail_alone_across_nights(s3, bucket, tmp_path):
    """``X`` beside ``X/Y``, ``Z`` beside ``Z.tar.gz``: the odd key fails, nothing is lost."""
    bodies = {
        "failed_runs/X.tar.gz": tar_gz(run_group_members("GX")),
        "failed_runs/X/Y.tar.gz": tar_gz(run_group_members("GY")),
        "failed_runs/Z.tar.gz": tar_gz(run_group_members("GZ")),
        "failed_runs/Z.tar.gz.tar.gz": tar_gz(run_group_members("GZZ")),
        "failed_runs/good.tar.gz": tar_gz(run_group_members("G")),
    }
    for key, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    out = tmp_path / "out"
    odd = {"failed_runs/X.tar.gz", "failed_runs/Z.tar.gz.tar.gz"}
    # Night 2: X is re-uploaded (it changed); night 3: nothing new at all.
    for night in (1, 2, 3):
        if night == 2:
            s3.put_object(
                Bucket=bucket, Key="failed_runs/X.tar.gz", Body=tar_gz(run_group_members("GX2"))
            )
        with capture_logs() as logs:
            run_download(_cfg(bucket, out, keep_compressed=True))
        failed = _failures(logs)
        assert set(failed) == odd, (night, failed)
        assert (
            "would contain the folder of 'failed_runs/X/Y.tar.gz'" in failed["failed_runs/X.tar.gz"]
        )
        assert "kept archive" in failed["failed_runs/Z.tar.gz.tar.gz"]
        records = _manifest_is_true(out)
        assert {k for k, r in records.items() if r["outcome"] == "succeeded"} == set(bodies) - odd
        assert (out / "X" / "Y" / "GY" / "metadata.json").is_file()
        assert (out / "Z.tar.gz").is_file()


def test_every_step_of_one_archive_failing_fails_only_that_archive(s3, bucket, tmp_path):
    """Real occupied paths make each filesystem step of one archive fail in turn.

    The job runs as the user who owns the drive, so permissions can't be relied on
    to refuse anything in a test (CI may run as root); files of the wrong type
    standing where the job wants a folder, or a folder where it wants a file, make
    the same syscalls fail for real.
    """
    out = tmp_path / "out"
    out.mkdir()
    (out / "occupied").write_bytes(b"a file where a key's parent folder goes")  # mkdir
    (out / "was_a_file").write_bytes(b"a file where an archive's folder goes")  # publish
    (out / "kept.tar.gz").mkdir()  # a folder where the kept archive goes (EISDIR)
    (out / "kept.tar.gz" / "x").write_bytes(b"")
    bodies = {
        "failed_runs/occupied/G.tar.gz": tar_gz(run_group_members("G1")),
        "failed_runs/was_a_file.tar.gz": tar_gz(run_group_members("G2")),
        "failed_runs/kept.tar.gz": tar_gz(run_group_members("G3")),
        "failed_runs/file_then_dir.tar.gz": tar_gz({"G4/f": b"file", "G4/f/g": b"under it"}),
        "failed_runs/good.tar.gz": tar_gz(run_group_members("G5")),
    }
    for key, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    published: list[Path] = []

    def on_published(folder: Path) -> None:
        published.append(folder)
        if folder.name == "good":
            raise RuntimeError("the parse stage refused this folder")

    with capture_logs() as logs:
        summary = run_download(_cfg(bucket, out, keep_compressed=True), on_published)
    failed = _failures(logs)
    assert set(failed) == {"failed_runs/occupied/G.tar.gz", "failed_runs/file_then_dir.tar.gz"}
    assert "occupied" in failed["failed_runs/occupied/G.tar.gz"]
    assert all("\n" not in r for r in failed.values())
    assert (summary.succeeded, summary.failed) == (3, 2)
    # What stood at the job's own names was the job's to replace.
    assert (out / "was_a_file" / "G2" / "metadata.json").is_file()
    assert (out / "kept.tar.gz").is_file()
    assert {p.name for p in published} == {"was_a_file", "kept", "good"}
    assert any(e["event"] == "download.published_callback_failed" for e in logs)
    _manifest_is_true(out)


def _snapshot(root: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry below ``root``: its mode and its bytes (files) or target (links)."""
    snap: dict[str, tuple[int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            if path.is_symlink():
                content: bytes | str = os.readlink(path)
            elif path.is_file():
                content = path.read_bytes()
            else:
                content = b""
            snap[str(path.relative_to(root))] = (st.st_mode, content)
    return snap


def test_links_planted_in_the_output_are_replaced_never_followed(s3, bucket, tmp_path):
    sentinel = tmp_path / "sentinel"  # what the planted links point at
    (sentinel / "task").mkdir(parents=True)
    (sentinel / "task" / "G").mkdir()
    (sentinel / "task" / "G" / "precious").write_bytes(b"keep me")
    (sentinel / ".G.partial-1-deadbeef").mkdir()  # looks like one of our temporaries
    (sentinel / "manifest.json").write_bytes(b"not yours")
    before = _snapshot(sentinel)

    out = tmp_path / "out"
    out.mkdir()
    (out / "aide").symlink_to(sentinel)  # the parent of an archive's folder
    (out / "deep").mkdir()
    (out / "deep" / "task").symlink_to(sentinel / "task")  # a grandchild level
    (out / ".G.partial-1-deadbeef").symlink_to(sentinel / ".G.partial-1-deadbeef")  # temp area
    (out / "manifest.json").symlink_to(sentinel / "manifest.json")
    for key in ("aide/task/G", "deep/task/G", "G"):
        s3.put_object(
            Bucket=bucket, Key=f"failed_runs/{key}.tar.gz", Body=tar_gz(run_group_members("R"))
        )
    for night in (1, 2):
        with capture_logs() as logs:
            summary = run_download(_cfg(bucket, out))
        done = summary.succeeded if night == 1 else summary.skipped  # night 2: up to date
        assert (done, summary.failed) == (3, 0)
        assert _snapshot(sentinel) == before, night
        planted = [e["path"] for e in logs if e["event"] == "download.planted_link"]
        if night == 1:
            assert sorted(planted) == [str(out / "aide"), str(out / "deep" / "task")]
        else:
            assert planted == []
    for folder in ("aide/task/G", "deep/task/G", "G"):
        assert (out / folder / "R" / "metadata.json").is_file()
    assert not any(p.is_symlink() for p in out.rglob("*")), "a planted link is still there"
    assert json.loads((out / "manifest.json").read_text())["archives"]


def test_where_gnu_tar_only_warns_the_job_fails_the_archive(s3, bucket, tmp_path):
    """Trailing garbage after the gzip stream, a file replaced by a folder: both fail.

    GNU tar extracts both with a warning (``gzip: stdin: decompression OK, trailing
    garbage ignored``; a folder member unlinks the file of the same name). The job
    does not follow it: biomlbench's uploader writes neither, a body with bytes
    after its gzip trailer is not the object that was uploaded, and a member that
    replaces an earlier one's type is how tar tricks start. Zero padding after the
    stream (tape-style blocking) is accepted, as gzip and tarfile accept it.
    """
    good = tar_gz(run_group_members("G"))
    folder = tarfile.TarInfo("F/f")
    folder.type = tarfile.DIRTYPE
    file_then_folder = _tar([(tarfile.TarInfo("F/f"), b""), folder], tarfile.GNU_FORMAT)
    bodies = {
        "failed_runs/garbage.tar.gz": good + b"trailing garbage\n",
        "failed_runs/padded.tar.gz": good + b"\0" * 1024,
        "failed_runs/file_then_folder.tar.gz": file_then_folder,
        "failed_runs/good.tar.gz": good,
    }
    for key, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    out = tmp_path / "out"
    with capture_logs() as logs:
        summary = run_download(_cfg(bucket, out))
    failed = _failures(logs)
    assert set(failed) == {"failed_runs/garbage.tar.gz", "failed_runs/file_then_folder.tar.gz"}
    assert "after its gzip stream" in failed["failed_runs/garbage.tar.gz"], failed
    assert "where a file already is" in failed["failed_runs/file_then_folder.tar.gz"]
    assert summary.succeeded == 2


def test_a_bucket_of_every_hostile_kind_still_gives_a_complete_night(s3, bucket, tmp_path):
    """One object of each kind beside good ones: ``run`` twice in a real process.

    Each night is complete (summary, manifest, index.json, index.html), exactly the
    hostile objects fail, each with one line, and nothing outside the output root
    changes, even with a link planted inside it that points outside.
    """
    sentinel = tmp_path / "sentinel"
    (sentinel / "G").mkdir(parents=True)
    (sentinel / "G" / "precious").write_bytes(b"keep me")
    before = _snapshot(sentinel)
    good = tar_gz(run_group_members("G"))
    hostile = {
        "failed_runs/negative.tar.gz": negative_pax_size_then_big(2 << 20),
        "failed_runs/long_member.tar.gz": tar_gz({f"L/{'m' * 300}": b"x"}),
        "failed_runs/X.tar.gz": good,  # beside X/Y
        "failed_runs/Z.tar.gz.tar.gz": good,  # beside Z
        "failed_runs/garbage.tar.gz": good + b"garbage",
        "failed_runs/traversal.tar.gz": tar_gz({"T/../../../escaped": b"x"}),
    }
    fine = {
        "failed_runs/X/Y.tar.gz": good,
        "failed_runs/Z.tar.gz": good,
        "failed_runs/aide/G.tar.gz": good,  # its parent will be a planted link
        "failed_runs/good.tar.gz": good,
    }
    for key, body in {**hostile, **fine}.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    out = tmp_path / "out"
    (out / "failed_runs").mkdir(parents=True)
    (out / "failed_runs" / "aide").symlink_to(sentinel)
    (out / "aide_journals").mkdir()
    (out / "aide_journals" / "aide").symlink_to(sentinel)  # where its reports go
    outside = {p.name for p in tmp_path.iterdir()}
    for night in (1, 2):
        proc = _run_job(bucket, out, "--max-bytes", str(1 << 20))
        failed = _assert_complete_night(out, proc)
        assert set(failed) == set(hostile), (night, failed)
        assert _snapshot(sentinel) == before
        assert {p.name for p in tmp_path.iterdir()} == outside
        for key in fine:
            folder = key.removeprefix("failed_runs/").removesuffix(".tar.gz")
            assert (out / "failed_runs" / folder / "G" / "metadata.json").is_file(), key
    assert not (out / "failed_runs" / "aide").is_symlink()
    assert not (out / "aide_journals" / "aide").is_symlink()
    assert list((out / "aide_journals" / "aide" / "G").rglob("*.txt"))
