"""Shared fixtures: a real S3 server on loopback and fresh buckets per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from job.demo.locals3 import LocalS3

SAMPLES = Path(__file__).resolve().parent / "fixtures" / "samples"
_bucket_ids = itertools.count()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    root = tmp_path_factory.mktemp("s3root")
    with LocalS3(root, log_file=root.parent / "rclone.log") as server:
        yield server


@pytest.fixture
def s3_env(s3_server: LocalS3, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the standard AWS chain at the loopback server (and nothing else)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return s3_server.env


@pytest.fixture
def bucket(s3_server: LocalS3, s3_env: dict[str, str]) -> str:
    """A new empty bucket for this test."""
    name = f"bucket-{next(_bucket_ids)}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture
def no_stop_left_over() -> Iterator[None]:
    """The stop flag is process-wide; a test that sets it must not stop the next one."""
    from job.core import signals

    signals._stop.clear()
    signals._received.clear()
    yield
    signals._stop.clear()
    signals._received.clear()


@pytest.fixture
def s3(s3_server: LocalS3):  # type: ignore[no-untyped-def]
    return s3_server.client()


def tar_gz(members: dict[str, bytes], *, mtime: int = 1_700_000_000) -> bytes:
    """A gzip tarball of regular files (folders implied), like tarfile mode w:gz writes."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def run_group_members(run_group: str, *, runs: int = 2, agent_marker: str = "") -> dict[str, bytes]:
    """Files of a small run group in biomlbench's layout (metadata, run.log, journal)."""
    import json
    import uuid

    members = {
        f"{run_group}/metadata.json": json.dumps({"run_group": run_group, "runs": {}}).encode(),
    }
    for i in range(runs):
        run = f"{run_group}/polarishub/task-{i}_{uuid.UUID(int=i + 1)}"
        members[f"{run}/run.log"] = f"run {i} of {run_group}{agent_marker}\n".encode()
        journal = {"nodes": [], "node2parent": {}, "__version": "2"}
        members[f"{run}/logs/exp-{i}/journal.json"] = json.dumps(journal).encode()
        members[f"{run}/submission/submission.csv"] = b"id,pred\n1,0.5\n"
    return members


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.support import ledger

    ledger.write(Path(__file__).resolve().parent.parent / "test-artifacts" / "reliability.json")


@pytest.fixture
def classify_calls(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Every failure classification from now on, by exception type (the call still happens)."""
    import job.model.taxonomy as taxonomy

    calls: list[str | None] = []
    classify = taxonomy.classify

    def counting(exc_type: str | None, *args: object) -> object:
        calls.append(exc_type)
        return classify(exc_type, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(taxonomy, "classify", counting)
    return calls


def put_busy_archives(s3, bucket: str, count: int, seed: int) -> None:  # type: ignore[no-untyped-def]
    """``count`` archives of incompressible data (~1.6 MB each): a run has them in flight.

    Half of one such body is several members already written, so a test that acts
    "mid-archive" really acts while the archive's folder is being filled.
    """
    import json
    import random

    rng = random.Random(seed)
    for i in range(count):
        members = {f"G{i}/run/file{j}.bin": rng.randbytes(400_000) for j in range(4)}
        members[f"G{i}/metadata.json"] = json.dumps({"i": i}).encode()
        s3.put_object(Bucket=bucket, Key=f"failed_runs/G{i}.tar.gz", Body=tar_gz(members))
