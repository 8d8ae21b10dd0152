"""The generator's run endings against the verdicts: every mode, every agent, as a person reads them.

Why: the demo and the report tests rely on the generator writing run logs,
start-script messages and submission folders the way biomlbench does. Each
generated run has a ground-truth mode (how the generator ended it); the
verdict read back from the extracted archive must equal it, for every mode
each agent can show, with AIDE's journals full of step errors (CUDA OOM,
MemoryError, NameError...) that must not decide the verdict.
"""

from __future__ import annotations

import tarfile
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import pytest

from job.demo.synthetic import AGENTS, generate_run_group, write_archive
from job.demo.synthetic.archive import run_mode
from job.demo.synthetic.outcomes import MODE_WEIGHTS
from job.model.extras import has_valid_solution
from job.model.journal import load_journal
from job.model.runs import find_run_groups
from job.report.verdicts import RunVerdict, compute_verdicts

GROUPS_PER_AGENT = 14


class Generated(NamedTuple):
    root: Path  # failed_runs/
    truth: dict[str, str]  # run folder -> the mode the generator ended it with
    verdicts: list[RunVerdict]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """Ground truth (run folder -> mode) and the verdicts read back from the extracted archives."""
    tmp = tmp_path_factory.mktemp("verdicts")
    truth: dict[str, str] = {}
    for agent in AGENTS:
        for i in range(GROUPS_PER_AGENT):
            spec = generate_run_group(1000 + i, agent=agent, n_runs=3, steps=10)
            path = write_archive(spec, tmp / "archives")
            with tarfile.open(path) as tar:
                tar.extractall(tmp / "failed_runs", filter="data")
            for run in spec.runs:
                truth[f"{spec.name}/{run.run_id}"] = run_mode(run, spec.when)
    failed_runs = tmp / "failed_runs"
    entries = []
    for journal in failed_runs.rglob("journal.json"):
        loaded = load_journal(journal)
        entries.append(
            {
                "journal": journal.relative_to(failed_runs).as_posix(),
                "steps": len(loaded.nodes),
                "valid_solution": has_valid_solution(loaded),
            }
        )
    verdicts = compute_verdicts(failed_runs, find_run_groups(failed_runs), entries)
    return Generated(failed_runs, truth, verdicts)


def test_every_run_gets_the_mode_it_ended_with(
    generated: Generated,
) -> None:
    truth, verdicts = generated.truth, generated.verdicts
    assert len(verdicts) == len(truth)
    wrong = [
        (v.record.run_folder, truth[v.record.run_folder], v.verdict)
        for v in verdicts
        if v.verdict.mode != truth[v.record.run_folder]
    ]
    assert wrong == []


def test_every_mode_of_every_agent_occurs(
    generated: Generated,
) -> None:
    verdicts = generated.verdicts
    seen: dict[str, set[str]] = defaultdict(set)
    for v in verdicts:
        seen[v.record.agent or ""].add(v.verdict.mode)
    for agent in AGENTS:
        assert seen[agent] == set(MODE_WEIGHTS[agent]), agent


def test_evidence_lines_are_the_lines_in_the_files(
    generated: Generated,
) -> None:
    root, verdicts = generated.root, generated.verdicts
    checked = 0
    for v in verdicts:
        if v.verdict.evidence_line is None:
            continue
        path = root / v.record.run_folder / str(v.verdict.evidence_file)
        line = path.read_text().split("\n")[v.verdict.evidence_line - 1]
        assert v.verdict.evidence.rstrip("…") in line
        checked += 1
    assert checked > len(verdicts) // 2


def test_aide_step_errors_do_not_decide(
    generated: Generated,
) -> None:
    verdicts = generated.verdicts
    aide = [v for v in verdicts if v.record.agent == "aide" and v.verdict.mode != "succeeded"]
    assert aide
    assert all(
        "NameError" not in v.verdict.cause and "undefined name" not in v.verdict.cause for v in aide
    )


def test_the_demo_bucket_shows_every_failure_mode() -> None:
    """``scripts/demo`` (16 archives, seed 0, every agent) must show each mode on its page."""
    from job.demo.__main__ import DEMO_PREFIX
    from job.demo.synthetic import plan_bucket
    from job.model.verdict import PRECEDENCE

    planned = plan_bucket(prefix=DEMO_PREFIX, n_archives=16, layout="mixed", agents=AGENTS, seed=0)
    modes = {run_mode(run, spec.when) for _, spec in planned for run in spec.runs}
    assert set(PRECEDENCE) <= modes
    assert "succeeded" in modes
