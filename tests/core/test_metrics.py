"""The metrics file: Prometheus text format that the official parser reads, kept across runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from job.core.metrics import LAST_COMPLETION, LAST_SUCCESS, RunMetrics, write_metrics
from job.core.summary import Outcome, StageSummary
from tests.conftest import run_group_members, tar_gz


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample in the file, by name and sorted labels, via prometheus_client's parser."""
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge", family
        assert family.documentation, family.name
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found[(f"analyze_failures_{name}", tuple(sorted(labels.items())))]


def test_a_run_is_described_in_parsable_text(tmp_path: Path) -> None:
    download = StageSummary("download")
    for _ in range(3):
        download.record(Outcome.SUCCEEDED, 1000)
    download.record(Outcome.FAILED)
    download.record(Outcome.SKIPPED)
    parse = StageSummary("parse")
    parse.record(Outcome.SUCCEEDED)
    run = RunMetrics("run", started=1_700_000_000.5)
    run.stages.update(download=download, parse=parse)
    run.durations.update(download=1.25, parse=0.5, report=0.125)
    path = tmp_path / "job.prom"
    write_metrics(path, run, ended=1_700_000_010.0, exit_status=1)

    found = samples(path)
    assert value(found, "last_run_start_timestamp_seconds", command="run") == 1_700_000_000.5
    assert value(found, "last_run_end_timestamp_seconds", command="run") == 1_700_000_010.0
    assert value(found, "last_run_exit_status", command="run") == 1
    assert value(found, "last_run_archives", outcome="succeeded") == 3
    assert value(found, "last_run_archives", outcome="failed") == 1
    assert value(found, "last_run_archives", outcome="skipped") == 1
    assert value(found, "last_run_journals", outcome="succeeded") == 1
    assert value(found, "last_run_fetched_bytes") == 3000
    assert value(found, "last_run_stage_duration_seconds", stage="report") == 0.125
    # exit 1: the job ran to its end, but something failed
    assert value(found, "last_completion_timestamp_seconds") == 1_700_000_010.0
    assert ("analyze_failures_last_success_timestamp_seconds", ()) not in found
    assert not list(tmp_path.glob(".*")), "no temporary left beside the file"


def test_the_last_success_survives_failed_runs(tmp_path: Path) -> None:
    path = tmp_path / "job.prom"
    write_metrics(path, RunMetrics("run", started=100.0), ended=110.0, exit_status=0)
    write_metrics(path, RunMetrics("run", started=200.0), ended=210.0, exit_status=1)
    found = samples(path)
    assert found[(LAST_SUCCESS, ())] == 110.0
    assert found[(LAST_COMPLETION, ())] == 210.0
    write_metrics(path, RunMetrics("run", started=300.0), ended=301.0, exit_status=2)
    found = samples(path)
    assert found[(LAST_SUCCESS, ())] == 110.0
    assert found[(LAST_COMPLETION, ())] == 210.0
    assert value(found, "last_run_exit_status", command="run") == 2


def test_a_garbled_previous_file_is_replaced_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "job.prom"
    path.write_text(f"{LAST_SUCCESS} nan\n{LAST_COMPLETION} not-a-number\ngarbage{{\n")
    write_metrics(path, RunMetrics("parse", started=5.0), ended=6.0, exit_status=2)
    found = samples(path)
    assert (LAST_SUCCESS, ()) not in found
    assert (LAST_COMPLETION, ()) not in found


def _cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "job", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


def test_the_cli_writes_the_file_for_a_real_run_and_for_a_usage_error(
    tmp_path: Path, bucket: str, s3, s3_env: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    sizes = 0
    for i in range(3):
        body = tar_gz(run_group_members(f"G{i}_run-group_aide", runs=1))
        s3.put_object(Bucket=bucket, Key=f"failed_runs/G{i}.tar.gz", Body=body)
        sizes += len(body)
    metrics = tmp_path / "textfile" / "analyze.prom"
    metrics.parent.mkdir()
    out = tmp_path / "out"
    proc = _cli(
        "run", "--bucket-path", f"s3://{bucket}/failed_runs/", "--output-dir", str(out),
        env={**s3_env, "METRICS_FILE": str(metrics)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = samples(metrics)
    assert value(found, "last_run_exit_status", command="run") == 0
    assert value(found, "last_run_archives", outcome="succeeded") == 3
    assert value(found, "last_run_journals", outcome="succeeded") == 3
    assert value(found, "last_run_fetched_bytes") == sizes
    assert {"download", "parse", "report"} <= {
        dict(labels)["stage"] for (name, labels) in found if name.endswith("stage_duration_seconds")
    }
    succeeded_at = found[(LAST_SUCCESS, ())]

    proc = _cli(
        "run", "--bucket-path", "s3://no-such-bucket-here/x/", "--output-dir", str(out),
        "--metrics-file", str(metrics),
        env=s3_env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    found = samples(metrics)
    assert value(found, "last_run_exit_status", command="run") == 2
    assert found[(LAST_SUCCESS, ())] == succeeded_at


@pytest.mark.parametrize("command", ["download", "parse", "run", "report", "merge"])
def test_every_command_takes_the_flag(command: str) -> None:
    from job.cli import build_parser

    args = build_parser().parse_args([command, "--metrics-file", "/x.prom"])
    assert args.metrics_file == Path("/x.prom")
