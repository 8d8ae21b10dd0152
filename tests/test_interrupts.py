"""Killed or stopped runs: a re-run always ends with exactly one clean run's output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from job.core.atomic import iter_temporaries
from tests.conftest import put_busy_archives
from tests.download.test_download import tree
from tests.support import ledger
from tests.support.jobcli import download_argv

N_ARCHIVES = 16


@pytest.fixture
def busy_bucket(s3, bucket):
    """Archives big enough (incompressible MBs) that a run has archives in flight."""
    put_busy_archives(s3, bucket, N_ARCHIVES, seed=7)
    return bucket


def start(bucket: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        download_argv(bucket, out, "--concurrent", "4", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_event(proc: subprocess.Popen[str], name: str, count: int = 1) -> None:
    """Read the job's own log until ``count`` events named ``name`` went by."""
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:
        if line.startswith("{") and json.loads(line).get("event") == name:
            seen += 1
            if seen >= count:
                return
    raise AssertionError(f"job ended before {count} {name} events")


def clean_run(bucket: str, out: Path) -> None:
    proc = start(bucket, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


def manifest_outcomes(out: Path) -> dict[str, tuple[str, str]]:
    doc = json.loads((out / "manifest.json").read_text())
    return {k: (v["etag"], v["outcome"]) for k, v in doc["archives"].items()}


def comparable_summary(root: Path) -> dict:
    doc = json.loads((root / "summary.json").read_text())
    doc.pop("generated_at")
    return doc


@pytest.mark.parametrize(
    ("event", "count"),
    [
        ("download.listed", 1),
        ("download.archive", 1),
        ("download.archive", 7),
        ("download.archive", 15),
    ],
)
def test_sigkill_at_any_point_then_rerun_equals_a_clean_run(busy_bucket, tmp_path, event, count):
    reference = tmp_path / "reference"
    clean_run(busy_bucket, reference)

    out = tmp_path / "out"
    proc = start(busy_bucket, out)
    wait_for_event(proc, event, count)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    clean_run(busy_bucket, out)
    ledger.add("kill_points_tried")
    ledger.add("items_lost", len(set(tree(reference)) - set(tree(out))))
    assert tree(out) == tree(reference)
    assert manifest_outcomes(out) == manifest_outcomes(reference)
    assert list(iter_temporaries(out)) == []


def test_sigterm_stops_promptly_with_143_and_leaves_no_partial_folder(busy_bucket, tmp_path):
    out = tmp_path / "out"
    proc = start(busy_bucket, out, "--concurrent", "2")
    wait_for_event(proc, "download.archive", 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)  # "promptly": well inside the grace period
    assert proc.returncode == 143, err
    assert list(iter_temporaries(out)) == []
    # every folder present is complete: it matches the manifest's succeeded records
    done = {
        k.removeprefix("failed_runs/").removesuffix(".tar.gz")
        for k, (_, outcome) in manifest_outcomes(out).items()
        if outcome == "succeeded"
    }
    folders = {p.name for p in out.iterdir() if p.is_dir()}
    assert folders == done
    assert len(done) < N_ARCHIVES

    reference = tmp_path / "reference"
    clean_run(busy_bucket, reference)
    clean_run(busy_bucket, out)
    ledger.add("sigterm_stops_tried")
    ledger.add("items_lost", len(set(tree(reference)) - set(tree(out))))
    assert tree(out) == tree(reference)


def test_stale_temporaries_from_a_killed_run_are_removed(busy_bucket, tmp_path):
    out = tmp_path / "out"
    clean_run(busy_bucket, out)
    leftover = out / f".G3.partial-{os.getpid()}-deadbeef"
    (leftover / "half").mkdir(parents=True)
    (out / ".G4.tar.gz.partial-1-abcd").write_bytes(b"half")
    clean_run(busy_bucket, out)
    assert list(iter_temporaries(out)) == []


# --- the whole run: download, then parse (reports and index) ---------------------------


@pytest.fixture
def journal_bucket(s3_server, s3, bucket):
    """Generated run groups with real-looking AIDE journals, served by the loopback S3."""
    from job.demo.synthetic import seed_bucket

    seed_bucket(
        s3_server.root,
        bucket=bucket,
        prefix="failed_runs/",
        n_archives=6,
        layout="mixed",
        seed=3,
        steps=40,
        n_runs=3,
    )
    return bucket


def start_run(bucket: str, root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "job",
            "run",
            "--bucket-path",
            f"s3://{bucket}/failed_runs/",
            "--output-dir",
            str(root),
            "--concurrent",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def comparable_index(root: Path) -> list[dict]:
    """index.json minus what legitimately differs between runs (inodes, times)."""
    doc = json.loads((root / "aide_journals" / "index.json").read_text())
    drop = {"fingerprint", "parsed_at"}
    return [{k: v for k, v in e.items() if k not in drop} for e in doc["journals"]]


@pytest.mark.parametrize(
    ("event", "count"),
    [("download.archive", 3), ("parse.discovered", 1), ("parse.journal", 1), ("parse.journal", 9)],
)
def test_sigkill_during_a_whole_run_then_rerun_equals_a_clean_run(
    journal_bucket, tmp_path, event, count
):
    reference = tmp_path / "reference"
    proc = start_run(journal_bucket, reference)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err

    root = tmp_path / "root"
    proc = start_run(journal_bucket, root)
    wait_for_event(proc, event, count)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    rerun = start_run(journal_bucket, root)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err

    ledger.add("kill_points_tried")
    ledger.add("items_lost", len(set(tree(reference)) - set(tree(root))))
    # index.json carries inodes and times, index.html its folder's name and the time;
    # the index is compared entry by entry below, failures.csv byte for byte.
    # summary.json carries the time it was generated, and the verdict cache the logs'
    # mtimes (this machine's extraction times): compared without them.
    ignore = {"aide_journals/index.json", "index.html", "summary.json", "runs/verdicts-cache.json"}
    assert {k: v for k, v in tree(root).items() if k not in ignore} == {
        k: v for k, v in tree(reference).items() if k not in ignore
    }
    assert comparable_index(root) == comparable_index(reference)
    assert comparable_summary(root) == comparable_summary(reference)
    assert list(iter_temporaries(root)) == []
