"""Parsing while the download still runs (``run``): the same output as parsing after it,
every journal parsed once, and nothing half-done or unindexed when the caller fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import wait
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest
from structlog.testing import capture_logs

from job.core.atomic import iter_temporaries
from job.core.config import ParseConfig, usable_cpus
from job.model.layout import derive_layout
from job.parse.discover import find_journals
from job.parse.pool import IN_FLIGHT_PER_WORKER, WORKER_DIED, ParsePool, _Job
from job.parse.stage import ParseStage, run_parse
from job.parse.worker import ParseResult, ParseTask, run_in_worker
from job.report.journal_files import JOURNAL_FILES
from tests.journal_builders import failing, journal, node, run_path, write_journal

GROUPS = [f"2025-09-0{d}T10-00-00-GMT_run-group_aide" for d in (1, 2, 3)]


pytestmark = pytest.mark.usefixtures("no_stop_left_over")


@pytest.fixture(autouse=True)
def _cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """The early pool has at most one worker per CPU; these tests want two on any machine."""
    monkeypatch.setattr("job.parse.stage.usable_cpus", lambda: 2)


@pytest.fixture
def cfg(tmp_path: Path) -> ParseConfig:
    return ParseConfig(
        failed_runs_dir=tmp_path / "failed_runs", output_dir=tmp_path / "out", concurrent=2
    )


def doc(tag: str) -> dict[str, Any]:
    nodes = [failing(0, "KeyError", f"'{tag}'"), node(1, value=0.5, plan=f"plan {tag}")]
    return journal(nodes, {1: 0})


def archives(root: Path) -> dict[str, list[str]]:
    """Three archive folders (as the download publishes them), two journals each."""
    made: dict[str, list[str]] = {}
    for group in GROUPS:
        for task in ("alpha", "beta"):
            rel = run_path(group=group, task=f"{task}-{group[:10]}")
            write_journal(root, rel, doc(rel))
            made.setdefault(group, []).append(rel)
    return made


def parse_events(logs: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["journal"] for e in logs if e["event"] == "parse.journal")


def outputs(out: Path) -> dict[str, bytes]:
    """Reports and pages, byte for byte, plus the index minus times and inodes."""
    files = {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and p.name != "index.json"
    }
    entries = json.loads((out / "index.json").read_text())["journals"]
    drop = {"parsed_at": None, "fingerprint": None}
    files["index.json"] = json.dumps([{**e, **drop} for e in entries]).encode()
    return files


def test_offered_archives_are_parsed_once_and_the_output_equals_a_plain_parse(
    cfg: ParseConfig, tmp_path: Path
) -> None:
    made = archives(cfg.failed_runs_dir)
    run_parse(replace(cfg, output_dir=tmp_path / "plain"), JOURNAL_FILES)

    with capture_logs() as logs, ParseStage(cfg, JOURNAL_FILES) as stage:
        assert stage.start_early()
        stage.offer(cfg.failed_runs_dir / GROUPS[0])
        stage.offer(cfg.failed_runs_dir / GROUPS[1])
        summary = stage.finish()

    every = sorted(rel for rels in made.values() for rel in rels)
    assert parse_events(logs) == Counter(every)  # each journal exactly once
    assert (summary.succeeded, summary.failed, summary.skipped) == (len(every), 0, 0)
    discovered = next(e for e in logs if e["event"] == "parse.discovered")
    assert (discovered["to_parse"], discovered["parsed_early"]) == (6, 4)
    assert outputs(cfg.output_dir) == outputs(tmp_path / "plain")
    assert list(iter_temporaries(cfg.output_dir)) == []


def test_a_later_parse_finds_everything_parsed_early_up_to_date(cfg: ParseConfig) -> None:
    archives(cfg.failed_runs_dir)
    with ParseStage(cfg, JOURNAL_FILES) as stage:
        stage.start_early()
        for group in GROUPS:
            stage.offer(cfg.failed_runs_dir / group)
        stage.finish()
    again = run_parse(cfg, JOURNAL_FILES)
    assert (again.succeeded, again.skipped) == (0, 6)


def test_offers_outside_the_failed_runs_dir_or_before_start_are_ignored(
    cfg: ParseConfig, tmp_path: Path
) -> None:
    archives(cfg.failed_runs_dir)
    elsewhere = tmp_path / "elsewhere"
    archives(elsewhere)
    with ParseStage(cfg, JOURNAL_FILES) as stage:
        stage.offer(cfg.failed_runs_dir / GROUPS[0])  # not started: a plain parse follows
        assert stage.early == {}
        stage.start_early()
        stage.offer(elsewhere / GROUPS[0])
        stage.offer(cfg.failed_runs_dir)  # the root itself is no archive folder
        assert stage.early == {}


def test_the_early_pool_has_no_more_workers_than_cpus(
    cfg: ParseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("job.parse.stage.usable_cpus", lambda: 3)
    with ParseStage(replace(cfg, concurrent=8), JOURNAL_FILES) as stage:
        assert stage.start_early()
        assert stage.pool is not None
        assert stage.pool.workers == 3


@pytest.mark.parametrize("change", [{"dry_run": True}, {"concurrent": 1}])
def test_dry_runs_and_a_single_worker_do_not_start_early(
    cfg: ParseConfig, change: dict[str, Any]
) -> None:
    with ParseStage(replace(cfg, **change), JOURNAL_FILES) as stage:
        assert not stage.start_early()
        assert stage.pool is None


def fail_after_offering_everything(cfg: ParseConfig, workers: list[psutil.Process]) -> None:
    """A ``run`` whose download fails after every archive was offered for parsing."""
    before = {c.pid for c in psutil.Process().children()}  # e.g. the session's S3 server
    with ParseStage(cfg, JOURNAL_FILES) as stage:
        stage.start_early()
        workers += [c for c in psutil.Process().children() if c.pid not in before]
        for group in GROUPS:
            stage.offer(cfg.failed_runs_dir / group)
        assert stage.pool is not None
        wait(list(stage.pool.pending))  # some reports are surely published, none recorded yet
        raise RuntimeError("download failed")


def test_when_the_caller_fails_what_was_published_is_indexed_and_no_worker_is_left(
    cfg: ParseConfig,
) -> None:
    made = archives(cfg.failed_runs_dir)
    workers: list[psutil.Process] = []
    with pytest.raises(RuntimeError, match="download failed"):
        fail_after_offering_everything(cfg, workers)
    assert len(workers) == 2

    index_file = cfg.output_dir / "index.json"
    indexed = set()
    if index_file.exists():
        indexed = {e["journal"] for e in json.loads(index_file.read_text())["journals"]}
    assert len(indexed) >= 4
    for rel in (r for rels in made.values() for r in rels):
        report = cfg.output_dir / derive_layout(rel).report
        # All or nothing per journal: a published report is in the index, and only then.
        assert report.exists() == (rel in indexed), rel
        assert report.with_suffix(".html").exists() == (rel in indexed), rel
    assert list(iter_temporaries(cfg.output_dir)) == []
    psutil.wait_procs(workers, timeout=10)
    assert not any(w.is_running() for w in workers)


def written_tasks(cfg: ParseConfig, rels: list[str]) -> list[ParseTask]:
    """A small journal at each of ``rels``, and the task that parses it."""
    tasks = []
    for rel in rels:
        path = write_journal(cfg.failed_runs_dir, rel, doc(rel))
        layout = derive_layout(rel)
        tasks.append(ParseTask(path, layout, cfg.output_dir / layout.report, JOURNAL_FILES))
    return tasks


def die_on_poison(task: ParseTask) -> ParseResult:
    """Stands in for a worker the kernel kills (e.g. out of memory) on one journal."""
    if "poison" in task.layout.journal:
        os._exit(1)
    return run_in_worker(task)


def test_a_worker_death_while_the_caller_is_busy_waits_for_drain_to_fork_again(
    cfg: ParseConfig,
) -> None:
    rels = [run_path(task="poison")] + [run_path(task=f"t{i}") for i in range(5)]
    tasks = written_tasks(cfg, rels)
    results: dict[str, ParseResult] = {}
    with ParsePool(2, lambda t, r: results.__setitem__(t.layout.journal, r), die_on_poison) as pool:
        pool.start()
        pool.add(tasks)
        wait(list(pool.pending))  # the poisoned worker dies and breaks the pool
        pool.poll()
        # Threads of the caller may be running now: no new worker may be forked yet.
        assert pool.executor is None
        assert any(job.isolated for job in pool.queue)
        pool.drain()
    assert set(results) == set(rels)
    assert results[rels[0]].entry.error == WORKER_DIED
    assert all(results[r].entry.error is None for r in rels[1:])


def test_find_journals_within_one_archive_keeps_paths_relative_to_the_root(
    cfg: ParseConfig,
) -> None:
    made = archives(cfg.failed_runs_dir)
    found = find_journals(cfg.failed_runs_dir, within=cfg.failed_runs_dir / GROUPS[1])
    assert [f.rel for f in found] == sorted(made[GROUPS[1]])
    assert all(f.path == cfg.failed_runs_dir / f.rel for f in found)


# -- the whole run against the loopback S3 ------------------------------------------


def job(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "job", *args, "--log-format", "json", "--concurrent", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return {"logs": [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]}


def test_run_parses_each_archive_as_it_arrives_and_matches_download_then_parse(
    s3_server, bucket, tmp_path: Path
) -> None:
    from job.demo.synthetic import seed_bucket

    seed_bucket(s3_server.root, bucket=bucket, prefix="fr/", n_archives=5, steps=20, n_runs=2)
    src = f"s3://{bucket}/fr/"
    together = tmp_path / "together"
    logs = job("run", "--bucket-path", src, "--output-dir", str(together))["logs"]
    apart = tmp_path / "apart"
    job("download", "--bucket-path", src, "--output-dir", str(apart / "failed_runs"))
    job(
        "parse",
        "--failed-runs-dir",
        str(apart / "failed_runs"),
        "--output-dir",
        str(apart / "aide_journals"),
    )
    # `run` ends with the report stage (it stamps each run's verdict on its pages): so here too.
    from job.report.site import build_site

    build_site(apart)

    discovered = next(e for e in logs if e["event"] == "parse.discovered")
    journals = discovered["journals"]
    assert journals == 10
    # Every archive's journals, during the download (a one-CPU machine parses after it).
    early = journals if usable_cpus() >= 2 else 0
    assert discovered["parsed_early"] == early
    assert set(parse_events(logs).values()) == {1}
    assert outputs(together / "aide_journals") == outputs(apart / "aide_journals")


def test_the_pool_hands_out_the_biggest_journals_first_and_retries_before_all(
    cfg: ParseConfig,
) -> None:
    def task(name: str, size: int) -> ParseTask:
        layout = derive_layout(run_path(task=name))
        return ParseTask(
            cfg.failed_runs_dir / name, layout, cfg.output_dir / name, JOURNAL_FILES, size
        )

    pool = ParsePool(2, lambda t, r: None)  # not started: add() forks nothing, only queues
    pool.add([task("small", 10), task("big", 1000)])
    pool.queue.appendleft(_Job(task("retry", 1), isolated=True))  # as after a worker death
    pool.add([task("medium", 500), task("huge", 10**6)])
    assert [j.task.size for j in pool.queue] == [1, 10**6, 1000, 500, 10]
    assert pool.executor is None


def test_found_journals_carry_their_size(cfg: ParseConfig) -> None:
    archives(cfg.failed_runs_dir)
    found = find_journals(cfg.failed_runs_dir)
    assert found
    assert all(f.size == f.path.stat().st_size > 0 for f in found)


def test_workers_get_several_journals_in_hand_while_the_caller_is_busy(
    cfg: ParseConfig,
) -> None:
    rels = [run_path(task=f"t{i:02d}") for i in range(3 * IN_FLIGHT_PER_WORKER)]
    tasks = written_tasks(cfg, rels)
    done: list[str] = []
    with ParsePool(2, lambda t, r: done.append(t.layout.journal)) as pool:
        pool.start()
        pool.add(tasks)  # one call, as when an archive arrives: no later poll needed
        assert len(pool.pending) == 2 * IN_FLIGHT_PER_WORKER
        pool.drain()
    assert sorted(done) == sorted(rels)
