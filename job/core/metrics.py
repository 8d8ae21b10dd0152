"""Batch-job metrics in Prometheus' text format, for node_exporter's textfile collector.

A nightly job has no port to scrape: what an operator alerts on ("no success in
26 hours", "more than a fifth of the archives failed") has to be left in a file
that a collector reads or that a sidecar pushes to a Pushgateway. The file is
replaced atomically, so a collector never reads half of it (node_exporter's
convention), and it always describes the *last* run, plus the two timestamps
that must survive a failed run: the last completion and the last success,
carried over from the previous file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from job.core.atomic import atomic_write_text
from job.core.summary import StageSummary

PREFIX = "analyze_failures"
LAST_SUCCESS = f"{PREFIX}_last_success_timestamp_seconds"
LAST_COMPLETION = f"{PREFIX}_last_completion_timestamp_seconds"
#: Exit statuses after which the job ran to its end (1: some items failed).
COMPLETED = (0, 1)
#: What each stage counts, as a metric name.
ITEMS = {"download": "archives", "parse": "journals"}

_CARRIED = re.compile(
    rf"^({re.escape(LAST_SUCCESS)}|{re.escape(LAST_COMPLETION)}) ([0-9.eE+]+)$", re.MULTILINE
)


@dataclass
class RunMetrics:
    """What one invocation of the CLI did, filled in as its stages finish."""

    command: str
    started: float  # Unix time
    stages: dict[str, StageSummary] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)  # seconds in each stage's call


def render(run: RunMetrics, ended: float, exit_status: int, carried: Mapping[str, float]) -> str:
    """The file's text: HELP and TYPE for every family, then its samples."""
    timestamps = dict(carried)
    if exit_status in COMPLETED:
        timestamps[LAST_COMPLETION] = ended
    if exit_status == 0:
        timestamps[LAST_SUCCESS] = ended
    out: list[str] = []
    cmd = {"command": run.command}
    _family(
        out, "last_run_start_timestamp_seconds", "When the last run started.", [(cmd, run.started)]
    )
    _family(out, "last_run_end_timestamp_seconds", "When the last run ended.", [(cmd, ended)])
    _family(
        out,
        "last_run_exit_status",
        "Exit status of the last run: 0 ok, 1 some items failed, 2 configuration error, "
        "75 output locked by another run, 130/143 stopped by a signal.",
        [(cmd, exit_status)],
    )
    for name, help_text in (
        (LAST_COMPLETION, "When a run last ran to its end (exit status 0 or 1)."),
        (LAST_SUCCESS, "When a run last ended with nothing failed (exit status 0)."),
    ):
        if name in timestamps:
            _family(out, name.removeprefix(f"{PREFIX}_"), help_text, [({}, timestamps[name])])
    for stage, what in ITEMS.items():
        summary = run.stages.get(stage)
        if summary is None:
            continue
        _family(
            out,
            f"last_run_{what}",
            f"{what.capitalize()} handled by the last run, by outcome.",
            [({"outcome": o}, getattr(summary, o)) for o in ("succeeded", "failed", "skipped")],
        )
    if "download" in run.stages:
        _family(
            out,
            "last_run_fetched_bytes",
            "Compressed bytes the last run fetched from S3.",
            [({}, run.stages["download"].bytes_fetched)],
        )
    if run.durations:
        _family(
            out,
            "last_run_stage_duration_seconds",
            "Wall time of each stage's own work in the last run (run overlaps download and parse).",
            [({"stage": s}, d) for s, d in sorted(run.durations.items())],
        )
    return "\n".join(out) + "\n"


def read_carried(path: Path) -> dict[str, float]:
    """The timestamps a previous file holds that this run may not renew."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    carried = {}
    for name, value in _CARRIED.findall(text):
        try:
            number = float(value)
        except ValueError:
            continue
        if math.isfinite(number):
            carried[name] = number
    return carried


def write_metrics(path: Path, run: RunMetrics, ended: float, exit_status: int) -> None:
    """Replace ``path`` atomically with the metrics of ``run``, which ended with ``exit_status``."""
    atomic_write_text(path, render(run, ended, exit_status, read_carried(path)), durable=False)


def _family(
    out: list[str],
    name: str,
    help_text: str,
    samples: Iterable[tuple[Mapping[str, str], float]],
) -> None:
    full = name if name.startswith(PREFIX) else f"{PREFIX}_{name}"
    out.append(f"# HELP {full} {help_text}")
    out.append(f"# TYPE {full} gauge")
    for labels, value in samples:
        out.append(f"{full}{_labels(labels)} {_number(value)}")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))
