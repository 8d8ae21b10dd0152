"""The download stage against a real S3 server on loopback."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from job.core.config import DownloadConfig, RetrySettings
from job.download.stage import run_download
from job.model.manifest import load
from tests.conftest import SAMPLES, run_group_members, tar_gz

FAST_RETRY = RetrySettings(attempts=3, initial_wait=0.01, max_wait=0.05)


def config(bucket: str, out: Path, prefix: str = "failed_runs/", **kw: object) -> DownloadConfig:
    return DownloadConfig(
        bucket_path=f"s3://{bucket}/{prefix}", output_dir=out, retry=FAST_RETRY, **kw
    )


def put(s3, bucket: str, key: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key=key, Body=data)


def tree(root: Path) -> dict[str, bytes | str]:
    """Every file (content) and link (target) below root, except manifests."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if name.startswith("manifest") and name.endswith(".json"):
                continue  # times differ run to run; compared by outcome where it matters
            if name.startswith(".analyze-failures") and name.endswith(".lock"):
                continue  # empty lock files; which exist depends on how the run was sharded
            out[rel] = f"-> {os.readlink(path)}" if path.is_symlink() else path.read_bytes()
    return out


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "job", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_extracts_every_archive_at_any_depth_into_its_key_folder(s3, bucket, tmp_path):
    put(s3, bucket, "failed_runs/G1.tar.gz", tar_gz(run_group_members("G1")))
    put(s3, bucket, "failed_runs/aide/task-a/G2.tar.gz", tar_gz(run_group_members("G2")))
    put(s3, bucket, "failed_runs/readme.txt", b"not an archive")
    put(s3, bucket, "elsewhere/G3.tar.gz", tar_gz(run_group_members("G3")))
    out = tmp_path / "out"

    summary = run_download(config(bucket, out))

    assert (summary.succeeded, summary.failed, summary.skipped) == (2, 0, 0)
    assert (out / "G1/G1/metadata.json").is_file()
    assert (out / "aide/task-a/G2/G2/metadata.json").is_file()
    assert not (out / "readme.txt").exists()
    assert not (out / "G3").exists()
    assert sorted(p.name for p in out.iterdir()) == ["G1", "aide", "manifest.json"]


def test_same_file_name_in_two_folders_both_survive(s3, bucket, tmp_path):
    put(s3, bucket, "failed_runs/aide/task-a/G.tar.gz", tar_gz({"G/who.txt": b"task a"}))
    put(s3, bucket, "failed_runs/aide/task-b/G.tar.gz", tar_gz({"G/who.txt": b"task b"}))
    out = tmp_path / "out"
    run_download(config(bucket, out))
    assert (out / "aide/task-a/G/G/who.txt").read_bytes() == b"task a"
    assert (out / "aide/task-b/G/G/who.txt").read_bytes() == b"task b"


def test_streams_without_a_compressed_copy_unless_asked(s3, bucket, tmp_path):
    data = tar_gz(run_group_members("G"))
    put(s3, bucket, "failed_runs/G.tar.gz", data)
    plain, kept = tmp_path / "plain", tmp_path / "kept"
    run_download(config(bucket, plain))
    run_download(config(bucket, kept, keep_compressed=True))
    assert [p.name for p in plain.rglob("*.tar.gz")] == []
    assert (kept / "G.tar.gz").read_bytes() == data
    assert tree(plain) == {k: v for k, v in tree(kept).items() if k != "G.tar.gz"}


def test_keep_compressed_later_fetches_the_missing_copy(s3, bucket, tmp_path):
    put(s3, bucket, "failed_runs/G.tar.gz", tar_gz(run_group_members("G")))
    out = tmp_path / "out"
    run_download(config(bucket, out))
    summary = run_download(config(bucket, out, keep_compressed=True))
    assert summary.succeeded == 1
    assert (out / "G.tar.gz").is_file()


def test_rerun_fetches_only_new_or_changed_and_retries_failures(s3, bucket, tmp_path):
    put(s3, bucket, "failed_runs/A.tar.gz", tar_gz({"A/v": b"1"}))
    put(s3, bucket, "failed_runs/B.tar.gz", tar_gz({"B/v": b"1"}))
    put(s3, bucket, "failed_runs/Bad.tar.gz", b"this is not gzip")
    out = tmp_path / "out"
    first = run_download(config(bucket, out))
    assert (first.succeeded, first.failed) == (2, 1)

    put(s3, bucket, "failed_runs/B.tar.gz", tar_gz({"B/v": b"2"}))  # changed
    put(s3, bucket, "failed_runs/C.tar.gz", tar_gz({"C/v": b"1"}))  # new
    put(s3, bucket, "failed_runs/Bad.tar.gz", tar_gz({"Bad/v": b"fixed"}))  # was failing
    with capture_logs() as logs:
        second = run_download(config(bucket, out))
    fetched = sorted(e["key"] for e in logs if e["event"] == "download.archive")
    assert fetched == ["failed_runs/B.tar.gz", "failed_runs/Bad.tar.gz", "failed_runs/C.tar.gz"]
    assert (second.succeeded, second.failed, second.skipped) == (3, 0, 1)
    assert (out / "B/B/v").read_bytes() == b"2"
    assert (out / "Bad/Bad/v").read_bytes() == b"fixed"

    third = run_download(config(bucket, out))
    assert (third.succeeded, third.failed, third.skipped) == (0, 0, 4)
    forced = run_download(config(bucket, out, force=True))
    assert (forced.succeeded, forced.skipped) == (4, 0)


def test_changed_archive_replaces_the_old_folder_entirely(s3, bucket, tmp_path):
    put(s3, bucket, "failed_runs/G.tar.gz", tar_gz({"G/old.txt": b"old", "G/keep.txt": b"1"}))
    out = tmp_path / "out"
    run_download(config(bucket, out))
    put(s3, bucket, "failed_runs/G.tar.gz", tar_gz({"G/new.txt": b"new", "G/keep.txt": b"2"}))
    run_download(config(bucket, out))
    assert sorted(p.name for p in (out / "G/G").iterdir()) == ["keep.txt", "new.txt"]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_deleted_folder_is_fetched_again(s3, bucket, tmp_path):
    put(s3, bucket, "failed_runs/G.tar.gz", tar_gz({"G/a": b"1"}))
    out = tmp_path / "out"
    run_download(config(bucket, out))
    import shutil

    shutil.rmtree(out / "G")
    assert run_download(config(bucket, out)).succeeded == 1
    assert (out / "G/G/a").read_bytes() == b"1"


def test_manifest_records_key_etag_size_outcome_and_time(s3, bucket, tmp_path):
    data = tar_gz({"G/a": b"1"})
    put(s3, bucket, "failed_runs/G.tar.gz", data)
    put(s3, bucket, "failed_runs/X.tar.gz", b"\x1f\x8b broken")
    out = tmp_path / "out"
    run_download(config(bucket, out))
    doc = json.loads((out / "manifest.json").read_text())
    good = doc["archives"]["failed_runs/G.tar.gz"]
    bad = doc["archives"]["failed_runs/X.tar.gz"]
    import hashlib

    assert good["etag"] == hashlib.md5(data).hexdigest()
    assert good["size"] == len(data)
    assert good["outcome"] == "succeeded"
    assert good["time"].endswith("+00:00")
    assert bad["outcome"] == "failed"
    assert bad["error"]
    assert set(load(out)) == {"failed_runs/G.tar.gz", "failed_runs/X.tar.gz"}


def test_dry_run_lists_status_and_touches_nothing(s3, bucket, tmp_path):
    put(s3, bucket, "failed_runs/A.tar.gz", tar_gz({"A/v": b"1"}))
    out = tmp_path / "out"
    run_download(config(bucket, out))
    put(s3, bucket, "failed_runs/A.tar.gz", tar_gz({"A/v": b"2"}))
    put(s3, bucket, "failed_runs/B.tar.gz", tar_gz({"B/v": b"1"}))
    before = tree(out)
    manifest_before = (out / "manifest.json").read_bytes()
    with capture_logs() as logs:
        run_download(config(bucket, out, dry_run=True))
    plans = {e["key"]: e for e in logs if e["event"] == "download.plan"}
    assert plans["failed_runs/A.tar.gz"]["status"] == "changed"
    assert plans["failed_runs/B.tar.gz"]["status"] == "new"
    assert plans["failed_runs/B.tar.gz"]["size"] > 0
    assert tree(out) == before
    assert (out / "manifest.json").read_bytes() == manifest_before

    fresh = tmp_path / "never"
    run_download(config(bucket, fresh, dry_run=True))
    assert not fresh.exists()


def test_one_event_per_archive_and_a_summary(s3, bucket, tmp_path):
    put(s3, bucket, "failed_runs/A.tar.gz", tar_gz({"A/v": b"1"}))
    put(s3, bucket, "failed_runs/B.tar.gz", b"")
    with capture_logs() as logs:
        run_download(config(bucket, tmp_path / "out"))
    per_archive = [e for e in logs if e["event"] == "download.archive"]
    assert {e["key"]: e["outcome"] for e in per_archive} == {
        "failed_runs/A.tar.gz": "succeeded",
        "failed_runs/B.tar.gz": "failed",
    }
    for e in per_archive:
        assert {"key", "outcome", "bytes", "attempts", "seconds"} <= e.keys()
    (summary,) = [e for e in logs if e["event"] == "download.summary"]
    assert summary["total"] == 2
    assert summary["succeeded"] == 1
    assert summary["failed"] == 1
    assert summary["skipped"] == 0
    assert summary["success_rate"] == 0.5
    assert summary["failure_rate"] == 0.5


def test_corrupt_archives_fail_once_without_retry(s3, bucket, tmp_path):
    good = tar_gz({"G/a": b"x" * 10000})
    put(s3, bucket, "failed_runs/notgzip.tar.gz", b"plain bytes, not gzip")
    put(s3, bucket, "failed_runs/truncated.tar.gz", good[: len(good) // 2])
    put(s3, bucket, "failed_runs/empty.tar.gz", b"")
    with capture_logs() as logs:
        summary = run_download(config(bucket, tmp_path / "out"))
    assert summary.failed == 3
    assert [e for e in logs if e["event"] == "download.retry"] == []
    reasons = {e["key"]: e["error"] for e in logs if e["event"] == "download.archive"}
    assert "not a gzip file" in reasons["failed_runs/notgzip.tar.gz"]
    assert "truncated" in reasons["failed_runs/truncated.tar.gz"]
    assert "tar" in reasons["failed_runs/empty.tar.gz"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json"]


def test_a_byte_changed_anywhere_in_the_body_fails_the_archive(s3, bucket, tmp_path):
    """Content integrity rests on gzip's CRC-32 and length (no MD5 of the body, see transfer.py).

    Random content makes deflate store it as is, so each change below alters the
    data itself rather than only breaking the deflate structure; the last two hit
    the trailer's CRC-32 and length fields.
    """
    good = tar_gz({"G/a": random.Random(6).randbytes(200_000), "G/b": b"tail"})
    positions = {
        "early": 40,
        "middle": len(good) // 2,
        "crc": len(good) - 7,
        "isize": len(good) - 2,
    }
    for name, at in positions.items():
        changed = good[:at] + bytes([good[at] ^ 0x01]) + good[at + 1 :]
        put(s3, bucket, f"failed_runs/{name}.tar.gz", changed)
    put(s3, bucket, "failed_runs/good.tar.gz", good)
    with capture_logs() as logs:
        summary = run_download(config(bucket, tmp_path / "out"))
    reasons = {e["key"]: e.get("error") for e in logs if e["event"] == "download.archive"}
    assert summary.failed == len(positions), reasons
    assert reasons["failed_runs/good.tar.gz"] is None
    for name in positions:
        assert reasons[f"failed_runs/{name}.tar.gz"].startswith("corrupt gzip data: "), name
    assert "the CRC-32 in its trailer" in reasons["failed_runs/middle.tar.gz"]
    assert "the CRC-32 in its trailer" in reasons["failed_runs/crc.tar.gz"]
    assert "the length in its trailer" in reasons["failed_runs/isize.tar.gz"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good", "manifest.json"]


def test_bomb_is_stopped_by_the_limits(s3, bucket, tmp_path):
    put(s3, bucket, "failed_runs/big.tar.gz", tar_gz({"G/zeros": bytes(5_000_000)}))
    many = {f"G/f{i}": b"" for i in range(50)}
    put(s3, bucket, "failed_runs/many.tar.gz", tar_gz(many))
    with capture_logs() as logs:
        summary = run_download(
            config(bucket, tmp_path / "out", max_bytes=1_000_000, max_members=20)
        )
    assert summary.failed == 2
    reasons = {e["key"]: e["error"] for e in logs if e["event"] == "download.archive"}
    assert "--max-bytes" in reasons["failed_runs/big.tar.gz"]
    assert "--max-members" in reasons["failed_runs/many.tar.gz"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json"]


def test_real_sample_archives_extract_as_tar_would(s3, bucket, tmp_path):
    import tarfile

    samples = sorted((SAMPLES / "bucket/v1/artifacts/failed_runs").glob("*.tar.gz"))
    for path in samples:
        put(s3, bucket, f"v1/artifacts/failed_runs/{path.name}", path.read_bytes())
    out = tmp_path / "out"
    summary = run_download(config(bucket, out, prefix="v1/artifacts/failed_runs/"))
    assert summary.succeeded == len(samples) == 4
    for path in samples:
        ref = tmp_path / "ref" / path.name.removesuffix(".tar.gz")
        with tarfile.open(path) as tar:
            tar.extractall(ref, filter="data")
        assert tree(out / path.name.removesuffix(".tar.gz")) == tree(ref)


@pytest.mark.parametrize(
    ("key", "folder"),
    [
        ("p/G.tar.gz", "G"),
        ("p/aide/kaggle-x/G.tar.gz", "aide/kaggle-x/G"),
        ("p/a/../../escape.tar.gz", None),
        ("p/./G.tar.gz", None),
        ("p//G.tar.gz", None),
        ("p/.tar.gz", None),
        ("p/manifest.json.tar.gz", None),
        ("p/x/.G.partial-1-abc.tar.gz", None),
    ],
)
def test_keys_map_to_safe_folders_only(key, folder):
    from job.download.listing import folder_for

    assert folder_for(key, "p/") == folder


# --- the CLI: exit status and one-line errors --------------------------------------------


def test_cli_exit_zero_then_zero_with_nothing_new(s3, bucket, tmp_path, s3_env):
    put(s3, bucket, "failed_runs/G.tar.gz", tar_gz({"G/a": b"1"}))
    args = (
        "download",
        "--bucket-path",
        f"s3://{bucket}/failed_runs/",
        "--output-dir",
        str(tmp_path),
    )
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    second = run_cli(*args)
    assert second.returncode == 0
    (summary,) = [e for e in events(second.stdout) if e["event"] == "download.summary"]
    assert summary["skipped"] == 1


def test_cli_exit_one_when_an_archive_fails(s3, bucket, tmp_path, s3_env):
    put(s3, bucket, "failed_runs/G.tar.gz", tar_gz({"G/a": b"1"}))
    put(s3, bucket, "failed_runs/bad.tar.gz", b"garbage")
    result = run_cli(
        "download", "--bucket-path", f"s3://{bucket}/failed_runs/", "--output-dir", str(tmp_path)
    )
    assert result.returncode == 1
    assert (tmp_path / "G/G/a").is_file()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--concurrent", "0"], {}, "must be at least 1"),
        (["--bucket-path", "http://x/y"], {}, "s3://BUCKET/PREFIX/"),
        (["--bucket-path", "s3://no-such-bucket/p/"], {}, "does not exist"),
        (["--endpoint-url", "http://127.0.0.1:9"], {}, "cannot reach the S3 endpoint"),
        ([], {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, "no AWS credentials"),
        ([], {"AWS_SECRET_ACCESS_KEY": "wrong-secret-key-value"}, "rejected the credentials"),
    ],
)
def test_cli_configuration_errors_exit_two_with_one_line(
    args, env, message, bucket, tmp_path, s3_env
):
    base = [
        "download",
        "--bucket-path",
        f"s3://{bucket}/failed_runs/",
        "--output-dir",
        str(tmp_path / "o"),
    ]
    result = run_cli(*base, *args, env={"ANALYZE_FAILURES_RETRIES": "2", **env})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) <= 2  # argparse prints usage + one error line; ours print one


def test_cli_no_sign_request_reads_a_public_bucket(s3, bucket, tmp_path, s3_env):
    # rclone's server demands signatures, so an anonymous request is refused: the point is
    # that the flag really sends no credentials (a signed request would succeed).
    put(s3, bucket, "failed_runs/G.tar.gz", tar_gz({"G/a": b"1"}))
    result = run_cli(
        "download",
        "--no-sign-request",
        "--bucket-path",
        f"s3://{bucket}/failed_runs/",
        "--output-dir",
        str(tmp_path),
        env={"ANALYZE_FAILURES_RETRIES": "1"},
    )
    assert result.returncode == 2
    # rclone answers an unsigned request with UnsupportedAlgorithm; a signed one would work.
    assert "UnsupportedAlgorithm" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_defaults_match_the_old_scripts():
    from job.cli import build_parser

    args = build_parser().parse_args(["download"])
    assert args.bucket_path == "s3://biomlbench/v1/artifacts/failed_runs/"
    assert args.output_dir == Path("failed_runs")
    assert args.concurrent is None  # decided by the stage from the worker processes
    from job.cli import _download_config
    from job.core.config import Shard

    assert _download_config(args, args.output_dir, Shard()) == replace(
        DownloadConfig(), output_dir=Path("failed_runs")
    )


class _SlotProbe:
    """Counts responses received and extractions running, and holds the first extractions.

    Each extraction waits (on a condition, not a timer) until every request of
    the run has its response, so a fetcher that let a third archive extract
    while two were running would be seen doing it.
    """

    def __init__(self, archives: int) -> None:
        self.archives = archives
        self.cond = threading.Condition()
        self.responses = 0
        self.active = 0
        self.max_active = 0
        self.responses_seen_by_extractions: list[int] = []

    def reader(self, real):  # type: ignore[no-untyped-def]
        def make(*args, **kwargs):  # type: ignore[no-untyped-def]
            with self.cond:
                self.responses += 1
                self.cond.notify_all()
            return real(*args, **kwargs)

        return make

    def extract(self, real):  # type: ignore[no-untyped-def]
        def run(*args, **kwargs):  # type: ignore[no-untyped-def]
            with self.cond:
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                self.cond.wait_for(lambda: self.responses == self.archives, timeout=30)
                self.responses_seen_by_extractions.append(self.responses)
            try:
                return real(*args, **kwargs)
            finally:
                with self.cond:
                    self.active -= 1

        return run


def test_requests_stay_in_flight_but_only_the_extract_slots_decompress_at_once(
    s3, bucket, tmp_path, monkeypatch
):
    import job.download.receive as receive

    for i in range(6):
        put(s3, bucket, f"failed_runs/G{i}.tar.gz", tar_gz(run_group_members(f"G{i}", runs=1)))
    probe = _SlotProbe(archives=6)
    monkeypatch.setattr(receive, "VerifyingReader", probe.reader(receive.VerifyingReader))
    monkeypatch.setattr(receive, "extract_stream", probe.extract(receive.extract_stream))
    out = tmp_path / "out"

    # Slots are how threads of one process share its CPUs (processes=0: no workers).
    summary = run_download(config(bucket, out, concurrent=6, extract_slots=2, processes=0))

    assert (summary.succeeded, summary.failed) == (6, 0)
    assert probe.max_active == 2  # never a third archive decompressing at once...
    # ...while all six requests had their answers in hand, parked for a slot.
    assert probe.responses_seen_by_extractions == [6] * 6
    assert sorted(p.name for p in out.iterdir()) == [*(f"G{i}" for i in range(6)), "manifest.json"]


def test_a_stop_reaches_a_response_waiting_for_a_slot(
    s3, bucket, tmp_path, monkeypatch, no_stop_left_over
):
    import job.download.receive as receive
    from job.core.signals import Interrupted, request_stop

    put(s3, bucket, "failed_runs/A.tar.gz", tar_gz(run_group_members("A", runs=1)))
    put(s3, bucket, "failed_runs/B.tar.gz", tar_gz(run_group_members("B", runs=1)))
    cond = threading.Condition()
    waiting: list[int] = []
    gave_up: list[int] = []
    real_take = receive.Receiver._take_slot

    def take(self):  # type: ignore[no-untyped-def]
        with cond:
            waiting.append(1)
            cond.notify_all()
        try:
            return real_take(self)
        except receive.Cancelled:
            with cond:
                gave_up.append(1)
                cond.notify_all()
            raise

    def extract(*args, **kwargs):  # type: ignore[no-untyped-def]
        # The one slot's holder stops the run once the other response waits for the
        # slot, and keeps the slot until that one has given up waiting.
        with cond:
            cond.wait_for(lambda: len(waiting) == 2, timeout=30)
            request_stop()
            cond.wait_for(lambda: gave_up, timeout=30)
        raise receive.Cancelled()

    monkeypatch.setattr(receive.Receiver, "_take_slot", take)
    monkeypatch.setattr(receive, "extract_stream", extract)
    out = tmp_path / "out"

    with pytest.raises(Interrupted):
        run_download(config(bucket, out, concurrent=2, extract_slots=1, processes=0))

    assert gave_up == [1]  # it left its wait while the slot was still taken
    assert not [p for p in out.glob("*") if p.name != "manifest.json"]  # nothing half-made
