"""The parse stage end to end: discovery, reports, index, failures, incremental runs,
sharding, concurrency, stopping and memory (issue #3)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest
import structlog
from structlog.testing import LogCapture, capture_logs

from job.core import signals
from job.core.atomic import iter_temporaries
from job.core.config import ParseConfig, Shard
from job.core.errors import UsageError
from job.core.signals import Interrupted, request_stop
from job.core.summary import StageSummary
from job.model.layout import derive_layout
from job.parse.pool import WORKER_DIED, execute
from job.parse.stage import merge_indexes, run_parse
from job.parse.worker import ParseResult, ParseTask, run_in_worker
from job.report.journal_files import JOURNAL_FILES
from job.report.text import END_MARKER
from tests.journal_builders import (
    aide_sized_journal,
    expected_journals,
    extract_samples,
    failing,
    journal,
    node,
    run_path,
    write_journal,
)

MEMORY_MULTIPLE = 8  # peak RSS growth allowed per byte of journal


pytestmark = pytest.mark.usefixtures("no_stop_left_over")


@pytest.fixture
def cfg(tmp_path: Path) -> ParseConfig:
    (tmp_path / "failed_runs").mkdir(exist_ok=True)
    return ParseConfig(
        failed_runs_dir=tmp_path / "failed_runs", output_dir=tmp_path / "out", concurrent=1
    )


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    return extract_samples(tmp_path / "failed_runs")


def run(cfg: ParseConfig) -> tuple[StageSummary, list[dict[str, Any]]]:
    with capture_logs() as logs:
        summary = run_parse(cfg, JOURNAL_FILES)
    return summary, logs


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def outcomes(logs: list[dict[str, Any]]) -> dict[str, str]:
    return {e["journal"]: e["outcome"] for e in events(logs, "parse.journal")}


def index(out: Path, name: str = "index.json") -> dict[str, dict[str, Any]]:
    doc = json.loads((out / name).read_text())
    entries = doc["journals"]
    assert [e["journal"] for e in entries] == sorted(e["journal"] for e in entries)
    return {e["journal"]: e for e in entries}


def reports(out: Path) -> dict[str, tuple[int, int]]:
    """Every report file: relative path -> (inode, mtime_ns)."""
    return {
        p.relative_to(out).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in out.rglob("*.txt")
    }


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def good_doc(steps: int = 3, tag: str = "") -> dict[str, Any]:
    nodes = [failing(0, "KeyError", f"'label{tag}'", plan=f"plan zero {tag}")]
    nodes += [node(i, value=0.5 + i / 10, plan=f"plan {i} {tag}") for i in range(1, steps)]
    return journal(nodes, {i: i - 1 for i in range(1, steps)})


def make_tree(root: Path, count: int, doc: Any = None) -> list[str]:
    """``count`` journals of one run group, each its own run folder."""
    rels = []
    for i in range(count):
        rel = run_path(task=f"task-{i:03d}")
        write_journal(root, rel, good_doc(tag=str(i)) if doc is None else doc)
        rels.append(rel)
    return rels


# -- the real samples ---------------------------------------------------------------


@pytest.mark.parametrize("concurrent", [1, 3])
def test_samples_index_matches_expected_json(
    samples: Path, cfg: ParseConfig, concurrent: int
) -> None:
    summary, _ = run(replace(cfg, concurrent=concurrent))
    expected = expected_journals()
    assert (summary.succeeded, summary.failed, summary.skipped) == (len(expected), 0, 0)
    entries = index(cfg.output_dir)
    assert set(entries) == {e["rel"] for e in expected}
    for exp in expected:
        entry = entries[exp["rel"]]
        assert entry["steps"] == exp["steps"]
        assert entry["buggy_steps"] == exp["buggy_steps"]
        assert entry["exception_counts"] == exp["exc_types"]
        assert entry["best_metric"] == exp["best_metric"]
        assert entry["run_group"] == exp["archive"]["run_group"]
        assert entry["agent"] == exp["archive"]["agent"]
        assert entry["task_id"] == exp["task"]
        assert entry["domain"] + "/" + entry["run_id"] == exp["run_id"]
        assert entry["experiment"] == exp["exp"]
        assert entry["error"] is None
        assert entry["layout_warnings"] == []
        assert entry["report"] == derive_layout(exp["rel"]).report
        assert (cfg.output_dir / entry["report"]).is_file()


def test_sample_reports_hold_every_steps_plan_code_output_and_error(
    samples: Path, cfg: ParseConfig
) -> None:
    run(cfg)
    entries = index(cfg.output_dir)
    for exp in expected_journals():
        raw = json.loads((samples / exp["rel"]).read_text())
        report = (cfg.output_dir / entries[exp["rel"]]["report"]).read_text(encoding="utf-8")
        starts = [report.index(f"\nStep {n['step']}\n") for n in raw["nodes"]]
        assert starts == sorted(starts)
        ends = [*starts[1:], report.index(END_MARKER)]
        for n, start, end in zip(raw["nodes"], starts, ends, strict=True):
            section = report[start:end]  # this step's part of the report, nothing else
            assert f"\nPlan\n    {n['plan']}\n" in section
            for text in (n["code"], "".join(n["_term_out"])):
                for line in text.splitlines():
                    assert (f"\n    {line}\n" if line.strip() else "\n\n") in section, line
            if n["exc_type"]:
                assert f"\nError             {n['exc_type']}: " in section
                assert f"\n    Type              {n['exc_type']}\n" in section
                for file, line, function, _ in n["exc_stack"]:
                    assert f"\n        {file}:{line} in {function}\n" in section
            else:
                assert "\nError             none\n" in section
        assert report.rstrip().endswith(END_MARKER)


# -- reports: one per journal -------------------------------------------------------


def test_two_runs_of_one_task_get_two_reports(cfg: ParseConfig) -> None:
    a = run_path(task="same-task", run_uuid="11111111-1111-1111-1111-111111111111")
    b = run_path(task="same-task", run_uuid="22222222-2222-2222-2222-222222222222")
    c = a.replace("1-quiet-amber-heron", "2-other-exp")  # second experiment, same run
    for rel, tag in ((a, "A"), (b, "B"), (c, "C")):
        write_journal(cfg.failed_runs_dir, rel, good_doc(tag=tag))
    summary, _ = run(cfg)
    assert summary.succeeded == 3
    entries = index(cfg.output_dir)
    assert {entries[r]["task_id"] for r in (a, b, c)} == {"polarishub/same-task"}
    assert len({entries[r]["report"] for r in (a, b, c)}) == 3
    for rel, tag in ((a, "A"), (b, "B"), (c, "C")):
        text = (cfg.output_dir / entries[rel]["report"]).read_text()
        assert f"plan zero {tag}" in text


def test_layout_mismatch_is_still_parsed_with_warnings(cfg: ParseConfig) -> None:
    rel = "somewhere/else/logs/exp/journal.json"
    write_journal(cfg.failed_runs_dir, rel, good_doc())
    summary, _ = run(cfg)
    assert summary.succeeded == 1
    entry = index(cfg.output_dir)[rel]
    assert entry["steps"] == 3
    assert entry["run_group"] is None
    assert entry["task"] is None
    assert entry["layout_warnings"] == list(derive_layout(rel).warnings)
    assert len(entry["layout_warnings"]) == 2
    text = (cfg.output_dir / entry["report"]).read_text()
    for warning in entry["layout_warnings"]:
        assert warning in text


# -- bad input ----------------------------------------------------------------------


def test_bad_journals_fail_alone_and_others_go_on(cfg: ParseConfig) -> None:
    good, broken, shapeless = (run_path(task=t) for t in ("good", "broken", "shapeless"))
    write_journal(cfg.failed_runs_dir, good, good_doc())
    text = json.dumps(good_doc())
    write_journal(cfg.failed_runs_dir, broken, text[: len(text) // 2].encode())
    write_journal(cfg.failed_runs_dir, shapeless, {"steps": []})
    summary, logs = run(cfg)
    assert (summary.succeeded, summary.failed) == (1, 2)
    assert summary.exit_status == 1
    entries = index(cfg.output_dir)
    assert entries[broken]["error"].startswith("not valid JSON: ")
    assert entries[shapeless]["error"] == "journal has no 'nodes' list"
    for rel in (broken, shapeless):
        assert entries[rel]["report"] is None
        assert entries[rel]["steps"] is None
        assert entries[rel]["task"] in ("broken", "shapeless")  # the path is still read
        assert not (cfg.output_dir / derive_layout(rel).report).exists()
    assert entries[good]["error"] is None
    failed = {e["journal"]: e for e in events(logs, "parse.journal") if e["outcome"] == "failed"}
    assert set(failed) == {broken, shapeless}
    assert all("\n" not in e["error"] and e["error"] for e in failed.values())
    assert events(logs, "parse.summary") == [
        {
            "event": "parse.summary",
            "log_level": "info",
            "stage": "parse",
            "total": 3,
            "succeeded": 1,
            "failed": 2,
            "skipped": 0,
            "success_rate": 0.3333,
            "failure_rate": 0.6667,
        }
    ]


def test_cli_exit_status_is_1_when_a_journal_fails(cfg: ParseConfig) -> None:
    write_journal(cfg.failed_runs_dir, run_path(task="good"), good_doc())
    write_journal(cfg.failed_runs_dir, run_path(task="bad"), b"{")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "job",
            "parse",
            "--failed-runs-dir",
            str(cfg.failed_runs_dir),
            "--output-dir",
            str(cfg.output_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    summary = [json.loads(x) for x in proc.stdout.splitlines() if '"parse.summary"' in x]
    assert summary[0]["failed"] == 1
    assert summary[0]["succeeded"] == 1


def test_lone_surrogates_become_replacement_characters_in_the_report(cfg: ParseConfig) -> None:
    rel = run_path(task="surrogates")
    doc = good_doc()
    doc["nodes"][0]["_term_out"] = ["cut emoji \ud83d here", "\n"]
    doc["nodes"][1]["plan"] = "plan \udc80 end"
    write_journal(cfg.failed_runs_dir, rel, doc)  # stdlib json writes \\ud83d escapes
    summary, _ = run(cfg)
    assert summary.succeeded == 1
    data = (cfg.output_dir / index(cfg.output_dir)[rel]["report"]).read_bytes()
    text = data.decode("utf-8")  # strict: the file is valid UTF-8
    assert "    cut emoji \ufffd here\n" in text
    assert "    plan \ufffd end\n" in text


def test_journal_with_no_nodes_gets_a_report_that_says_so(cfg: ParseConfig) -> None:
    rel = run_path(task="empty")
    write_journal(cfg.failed_runs_dir, rel, {"nodes": [], "node2parent": {}, "__version": "2"})
    summary, _ = run(cfg)
    assert summary.succeeded == 1
    entry = index(cfg.output_dir)[rel]
    assert (entry["steps"], entry["buggy_steps"], entry["best_metric"]) == (0, 0, None)
    assert entry["exception_counts"] == {}
    assert "This journal has no steps" in (cfg.output_dir / entry["report"]).read_text()


def test_a_journal_that_now_fails_loses_its_old_report(cfg: ParseConfig) -> None:
    rel = run_path(task="soon-broken")
    path = write_journal(cfg.failed_runs_dir, rel, good_doc())
    run(cfg)
    report = cfg.output_dir / index(cfg.output_dir)[rel]["report"]
    assert report.is_file()
    path.write_text('{"nodes": [{"step": "zero"}]}')
    summary, _ = run(cfg)
    assert summary.failed == 1
    assert not report.exists()
    entry = index(cfg.output_dir)[rel]
    assert entry["report"] is None
    assert entry["error"] == "node 0: 'step' should be a whole number, found text"


# -- incremental runs ---------------------------------------------------------------


def test_unchanged_journals_are_skipped_and_their_reports_stay(
    samples: Path, cfg: ParseConfig
) -> None:
    run(cfg)
    before_reports, before_index = reports(cfg.output_dir), index(cfg.output_dir)
    summary, logs = run(cfg)
    assert (summary.skipped, summary.succeeded, summary.failed) == (9, 0, 0)
    assert set(outcomes(logs).values()) == {"skipped"}
    assert all(e["steps"] is not None for e in events(logs, "parse.journal"))
    assert reports(cfg.output_dir) == before_reports  # not rewritten
    assert index(cfg.output_dir) == before_index  # rewritten, complete and identical


def test_a_changed_journal_is_parsed_again(cfg: ParseConfig) -> None:
    rels = make_tree(cfg.failed_runs_dir, 3)
    run(cfg)
    write_journal(cfg.failed_runs_dir, rels[1], good_doc(steps=5))
    _, logs = run(cfg)
    assert outcomes(logs) == {rels[0]: "skipped", rels[1]: "succeeded", rels[2]: "skipped"}
    assert index(cfg.output_dir)[rels[1]]["steps"] == 5


def test_force_parses_everything_again(cfg: ParseConfig) -> None:
    rels = make_tree(cfg.failed_runs_dir, 3)
    run(cfg)
    summary, logs = run(replace(cfg, force=True))
    assert summary.succeeded == 3
    assert set(outcomes(logs)) == set(rels)


def test_a_reextracted_archive_is_parsed_again_even_with_identical_bytes(
    samples: Path, cfg: ParseConfig
) -> None:
    run(cfg)
    group = "2025-08-25T20-12-38-GMT_run-group_aide"
    folder = samples / group
    # What the download stage does: extract into a new folder, rename it into place.
    fresh = samples / f".{group}.partial-1-beef"
    shutil.copytree(folder, fresh)  # copy2 keeps mtimes: only inode/ctime differ
    shutil.rmtree(folder)
    fresh.rename(folder)
    summary, logs = run(cfg)
    reparsed = {j for j, o in outcomes(logs).items() if o == "succeeded"}
    assert reparsed == {e["rel"] for e in expected_journals() if e["rel"].startswith(group)}
    assert len(reparsed) == 3
    assert summary.skipped == 6


def test_a_vanished_journal_loses_its_entry_and_report(samples: Path, cfg: ParseConfig) -> None:
    run(cfg)
    group = "2025-08-25T17-09-05-GMT_run-group_aide"
    shutil.rmtree(samples / group)
    summary, logs = run(cfg)
    assert summary.total == 6
    assert not any(j.startswith(group) for j in index(cfg.output_dir))
    assert not any(r.startswith(group) for r in reports(cfg.output_dir))
    assert not (cfg.output_dir / group).exists()  # emptied folders go too
    removed = events(logs, "parse.remove")
    assert len(removed) == 3
    assert all(e["journal"].startswith(group) for e in removed)


def test_a_deleted_report_is_written_again(cfg: ParseConfig) -> None:
    rels = make_tree(cfg.failed_runs_dir, 2)
    run(cfg)
    (cfg.output_dir / index(cfg.output_dir)[rels[0]]["report"]).unlink()
    _, logs = run(cfg)
    assert outcomes(logs) == {rels[0]: "succeeded", rels[1]: "skipped"}


def test_a_failed_journal_is_tried_again_next_run(cfg: ParseConfig) -> None:
    rel = run_path(task="bad")
    write_journal(cfg.failed_runs_dir, rel, b"[")
    run(cfg)
    summary, logs = run(cfg)
    assert outcomes(logs) == {rel: "failed"}
    assert summary.exit_status == 1


# -- dry run ------------------------------------------------------------------------


def test_dry_run_lists_plans_and_writes_nothing(samples: Path, cfg: ParseConfig) -> None:
    before = snapshot(cfg.failed_runs_dir)
    summary, logs = run(replace(cfg, dry_run=True))
    assert not cfg.output_dir.exists()
    assert snapshot(cfg.failed_runs_dir) == before
    plans = events(logs, "parse.plan")
    assert {p["journal"] for p in plans} == {e["rel"] for e in expected_journals()}
    for p in plans:
        assert p["report"] == str(cfg.output_dir / derive_layout(p["journal"]).report)
        assert p["action"] == "parse"
    assert events(logs, "parse.journal") == []
    assert summary.total == 0


def test_dry_run_after_a_run_shows_what_would_change(cfg: ParseConfig) -> None:
    rels = make_tree(cfg.failed_runs_dir, 3)
    run(cfg)
    write_journal(cfg.failed_runs_dir, rels[0], good_doc(steps=4))
    shutil.rmtree(cfg.failed_runs_dir / rels[2].split("/logs/")[0])
    before = snapshot(cfg.output_dir)
    _, logs = run(replace(cfg, dry_run=True))
    assert snapshot(cfg.output_dir) == before
    assert {p["journal"]: p["action"] for p in events(logs, "parse.plan")} == {
        rels[0]: "parse",
        rels[1]: "skip",
    }
    assert [e["journal"] for e in events(logs, "parse.remove")] == [rels[2]]


# -- logs and discovery -------------------------------------------------------------


def test_journal_events_carry_the_fields_dashboards_need(cfg: ParseConfig) -> None:
    good, bad = run_path(task="good"), run_path(task="bad")
    write_journal(cfg.failed_runs_dir, good, good_doc())
    write_journal(cfg.failed_runs_dir, bad, b"nope")
    _, logs = run(cfg)
    by_journal = {e["journal"]: e for e in events(logs, "parse.journal")}
    assert by_journal[good]["outcome"] == "succeeded"
    assert by_journal[good]["steps"] == 3
    assert isinstance(by_journal[good]["seconds"], float)
    assert "error" not in by_journal[good]
    assert by_journal[bad]["outcome"] == "failed"
    assert by_journal[bad]["error"].startswith("not valid JSON")
    assert isinstance(by_journal[bad]["seconds"], float)
    assert logs[-1]["event"] == "parse.summary"


def test_discovery_skips_temporaries_links_and_non_journals(cfg: ParseConfig) -> None:
    root = cfg.failed_runs_dir
    real = make_tree(root, 1)[0]
    write_journal(root, ".G.partial-12-abcd/" + run_path(task="hidden"), good_doc())
    write_journal(root, run_path(task="not-logs").replace("/logs/", "/log/"), good_doc())
    write_journal(root, run_path(task="deeper").replace("/journal.json", "/x/journal.json"), {})
    outside = write_journal(cfg.output_dir.parent, "outside.json", good_doc())
    link = root / run_path(task="linked")
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    _, logs = run(cfg)
    assert set(index(cfg.output_dir)) == {real}
    assert [e["path"] for e in events(logs, "parse.unreadable")] == [str(link)]


def test_deep_and_cloud_style_nesting_is_found(cfg: ParseConfig) -> None:
    group = "2025-09-02T01-02-03-GMT_run-group_aide"
    deep = f"aide/some-task/{group}/{group}/" + run_path(group, archive_folder="")
    write_journal(cfg.failed_runs_dir, deep, good_doc())
    run(cfg)
    entry = index(cfg.output_dir)[deep]
    assert (entry["run_group"], entry["agent"], entry["layout_warnings"]) == (group, "aide", [])


def test_stale_temporaries_in_the_output_are_removed(cfg: ParseConfig) -> None:
    make_tree(cfg.failed_runs_dir, 1)
    run(cfg)
    leftover = cfg.output_dir / ".index.json.partial-1-dead"
    leftover.write_text("half")
    run(cfg)
    assert list(iter_temporaries(cfg.output_dir)) == []


def test_an_unreadable_index_means_parse_everything_and_rewrite_it(cfg: ParseConfig) -> None:
    rels = make_tree(cfg.failed_runs_dir, 2)
    run(cfg)
    (cfg.output_dir / "index.json").write_text("{ half an index")
    summary, logs = run(cfg)
    assert summary.succeeded == 2
    assert [e["path"] for e in events(logs, "parse.index_unreadable")] == [
        str(cfg.output_dir / "index.json")
    ]
    assert set(index(cfg.output_dir)) == set(rels)


def test_unusable_folders_are_usage_errors(cfg: ParseConfig, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        run_parse(replace(cfg, failed_runs_dir=tmp_path / "nope"), JOURNAL_FILES)
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="cannot create output dir"):
        run_parse(replace(cfg, output_dir=tmp_path / "file" / "out"), JOURNAL_FILES)


# -- sharding -----------------------------------------------------------------------


def test_shards_split_the_journals_and_merge_into_one_index(
    samples: Path, cfg: ParseConfig, tmp_path: Path
) -> None:
    rels = {e["rel"] for e in expected_journals()}
    seen: set[str] = set()
    for i in range(2):
        summary, _ = run(replace(cfg, shard=Shard(i, 2)))
        mine = set(index(cfg.output_dir, f"index.shard-{i}-of-2.json"))
        assert mine == {r for r in rels if int(hashlib.sha1(r.encode()).hexdigest(), 16) % 2 == i}
        assert summary.succeeded == len(mine)
        seen |= mine
    assert seen == rels
    assert not (cfg.output_dir / "index.json").exists()
    assert merge_indexes(cfg.output_dir) == cfg.output_dir / "index.json"
    merged = index(cfg.output_dir)
    unsharded = replace(cfg, output_dir=tmp_path / "unsharded")
    run(unsharded)
    whole = index(unsharded.output_dir)
    drop = ("parsed_at",)
    assert {k: {f: v for f, v in e.items() if f not in drop} for k, e in merged.items()} == {
        k: {f: v for f, v in e.items() if f not in drop} for k, e in whole.items()
    }


def test_merge_refuses_an_incomplete_set_of_shards(cfg: ParseConfig) -> None:
    make_tree(cfg.failed_runs_dir, 4)
    run(replace(cfg, shard=Shard(0, 3)))
    with pytest.raises(UsageError, match=r"missing index\.shard-1-of-3\.json, index\.shard-2-of-3"):
        merge_indexes(cfg.output_dir)
    with pytest.raises(UsageError, match="no shard index files"):
        merge_indexes(cfg.output_dir.parent / "empty")


def test_a_shard_removes_only_its_own_temporaries(cfg: ParseConfig) -> None:
    rels = make_tree(cfg.failed_runs_dir, 6)
    owner = {r: int(hashlib.sha1(r.encode()).hexdigest(), 16) % 2 for r in rels}
    assert set(owner.values()) == {0, 1}
    temps = {}
    for rel in rels:
        report = cfg.output_dir / derive_layout(rel).report
        report.parent.mkdir(parents=True, exist_ok=True)
        temps[rel] = report.with_name(f".{report.name}.partial-99-beef")
        temps[rel].write_text("another worker is writing this")
    run(replace(cfg, shard=Shard(0, 2)))
    assert {r: temps[r].exists() for r in rels} == {r: owner[r] == 1 for r in rels}


# -- concurrency and stopping -------------------------------------------------------


@contextmanager
def stop_after_first(event: str) -> Iterator[list[dict[str, Any]]]:
    """Capture logs, and act like SIGTERM right after the first ``event`` is logged."""
    cap = LogCapture()

    def stopper(_logger: Any, _name: str, event_dict: Any) -> Any:
        if event_dict.get("event") == event:
            request_stop(signal.SIGTERM)
        return event_dict

    old = structlog.get_config()["processors"]
    structlog.configure(processors=[stopper, cap])
    try:
        yield cap.entries
    finally:
        structlog.configure(processors=old)


@pytest.mark.parametrize("concurrent", [1, 3])
def test_stop_writes_the_index_with_what_completed_and_nothing_half_written(
    cfg: ParseConfig, concurrent: int
) -> None:
    rels = make_tree(cfg.failed_runs_dir, 30)
    with stop_after_first("parse.journal") as logs, pytest.raises(Interrupted) as info:
        run_parse(replace(cfg, concurrent=concurrent), JOURNAL_FILES)
    assert info.value.signum == signal.SIGTERM
    done = {e["journal"] for e in logs if e["event"] == "parse.journal"}
    entries = index(cfg.output_dir)
    assert set(entries) == done  # exactly what completed
    assert 1 <= len(done) < len(rels)
    for entry in entries.values():
        assert (cfg.output_dir / entry["report"]).read_text().endswith(f"{END_MARKER}\n")
    assert set(reports(cfg.output_dir)) == {e["report"] for e in entries.values()}
    assert list(iter_temporaries(cfg.output_dir)) == []
    assert not any(e["event"] == "parse.summary" for e in logs)

    signals._stop.clear()
    summary, _ = run(cfg)  # the next run finishes the job
    assert (summary.skipped, summary.succeeded) == (len(done), len(rels) - len(done))


def test_pool_and_inline_give_the_same_index_and_reports(samples: Path, cfg: ParseConfig) -> None:
    inline = replace(cfg, output_dir=cfg.output_dir / "inline")
    pooled = replace(cfg, output_dir=cfg.output_dir / "pooled", concurrent=4)
    run(inline)
    run(pooled)

    def content(out: Path) -> dict[str, Any]:
        entries = {k: {**v, "parsed_at": None} for k, v in index(out).items()}
        texts = {r: (out / r).read_text() for r in reports(out)}
        return {"entries": entries, "texts": texts}

    assert content(inline.output_dir) == content(pooled.output_dir)


def die_on_poison(task: ParseTask) -> ParseResult:
    """Stands in for a worker the kernel kills (e.g. out of memory) on one journal."""
    if "poison" in task.layout.journal:
        os._exit(1)
    return run_in_worker(task)


def test_a_worker_that_dies_fails_only_its_own_journal(cfg: ParseConfig) -> None:
    rels = make_tree(cfg.failed_runs_dir, 6)
    poison = run_path(task="poison")
    write_journal(cfg.failed_runs_dir, poison, good_doc())
    tasks = [
        ParseTask(
            cfg.failed_runs_dir / r,
            derive_layout(r),
            cfg.output_dir / derive_layout(r).report,
            JOURNAL_FILES,
        )
        for r in sorted([*rels, poison])
    ]
    results: dict[str, ParseResult] = {}
    execute(tasks, 3, lambda t, r: results.__setitem__(t.layout.journal, r), worker=die_on_poison)
    assert set(results) == {*rels, poison}
    assert results[poison].entry.error == WORKER_DIED
    assert all(results[r].entry.error is None for r in rels)


# -- signals in a real process ------------------------------------------------------

N_BUSY = 150


@pytest.fixture
def busy(cfg: ParseConfig) -> ParseConfig:
    """Enough journals (~150 KB each) that a run is still going when it is signalled."""
    doc = json.dumps(
        good_doc(steps=40) | {"nodes": [failing(i, "E", "x" * 3000) for i in range(40)]}
    )
    for i in range(N_BUSY):
        write_journal(cfg.failed_runs_dir, run_path(task=f"busy-{i:03d}"), doc)
    return cfg


def start(cfg: ParseConfig, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "job",
            "parse",
            "--failed-runs-dir",
            str(cfg.failed_runs_dir),
            "--output-dir",
            str(cfg.output_dir),
            "--concurrent",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def wait_for_event(proc: subprocess.Popen[str], name: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{") and json.loads(line).get("event") == name:
            return
    raise AssertionError(f"the job ended before a {name} event")


def assert_consistent(out: Path) -> None:
    entries = index(out)
    assert 0 < len(entries) < N_BUSY
    for entry in entries.values():
        assert (out / entry["report"]).read_text().endswith(f"{END_MARKER}\n")
    assert list(iter_temporaries(out)) == []


def test_sigterm_stops_workers_and_parent_with_143(busy: ParseConfig) -> None:
    proc = start(busy)
    wait_for_event(proc, "parse.journal")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert_consistent(busy.output_dir)


def test_ctrl_c_to_the_whole_process_group_stops_cleanly_with_130(busy: ParseConfig) -> None:
    proc = start(busy, start_new_session=True)
    wait_for_event(proc, "parse.journal")
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: workers get it too
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
    assert_consistent(busy.output_dir)


def test_workers_die_with_a_killed_parent(busy: ParseConfig) -> None:
    proc = start(busy)
    wait_for_event(proc, "parse.journal")
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children  # the pool's processes
    proc.kill()
    proc.communicate(timeout=60)
    _, alive = psutil.wait_procs(children, timeout=60)
    assert alive == []


# -- memory -------------------------------------------------------------------------

_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from job.model.layout import derive_layout
    from job.parse.worker import ParseTask, parse_one
    from job.report.journal_files import JOURNAL_FILES

    def parse(path, out):
        layout = derive_layout("G_run-group_aide/d/t_00000000-0000-0000-0000-000000000000/logs/e/journal.json")
        return parse_one(ParseTask(Path(path), layout, Path(out), JOURNAL_FILES))

    parse(sys.argv[3], sys.argv[4])  # warm up: imports, compiled patterns
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = parse(sys.argv[1], sys.argv[2])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth": (after - before) * 1024, "error": result.entry.error,
                      "steps": result.entry.steps}))
    """
)


def test_a_20mb_journal_parses_within_a_small_multiple_of_its_size(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(aide_sized_journal(20_000_000))
    small = tmp_path / "small.json"
    small.write_text(json.dumps(good_doc()))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEASURE,
            str(big),
            str(tmp_path / "big.txt"),
            str(small),
            str(tmp_path / "s.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(proc.stdout)
    size = big.stat().st_size
    assert size >= 20_000_000
    assert result["error"] is None
    assert result["steps"] > 100
    assert (tmp_path / "big.txt").stat().st_size > size // 2  # the report really was written
    assert result["growth"] < MEMORY_MULTIPLE * size, result["growth"] / size


# -- cost: work done once, nothing loaded that parsing does not use ----------------


def test_each_failing_step_is_classified_once(
    cfg: ParseConfig, classify_calls: list[str | None]
) -> None:
    """The page and the index entry share one classification per failing step."""
    doc = journal([failing(0, "KeyError", "'a'"), node(1), failing(2, "ValueError", "b")])
    write_journal(cfg.failed_runs_dir, run_path(), doc)
    summary, _ = run(cfg)
    assert summary.succeeded == 1
    assert sorted(classify_calls, key=str) == ["KeyError", "ValueError"]
    [entry] = index(cfg.output_dir).values()
    assert [f["detail"] for f in entry["failures"]] == ["missing key: 'a'", None]
    page = next(cfg.output_dir.rglob("*.html")).read_text()
    assert "missing key: 'a'" in page


def test_parse_starts_without_the_s3_client_stack(cfg: ParseConfig) -> None:
    """botocore and urllib3 cost ~35 ms of every parse's start-up and are never used there."""
    write_journal(cfg.failed_runs_dir, run_path(), good_doc())
    code = textwrap.dedent(
        """
        import sys
        from job.cli import main
        status = main(["parse", "--failed-runs-dir", sys.argv[1], "--output-dir", sys.argv[2]])
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "urllib3"))
        print(status, loaded, file=sys.stderr)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(cfg.failed_runs_dir), str(cfg.output_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stderr.strip().splitlines()[-1] == "0 []", proc.stderr
    assert (cfg.output_dir / "index.json").exists()


def test_a_journal_over_max_journal_bytes_fails_unread_and_the_rest_parse(tmp_path: Path) -> None:
    runs = tmp_path / "failed_runs"
    small, big = run_path(task="small"), run_path(task="big")
    write_journal(runs, small, good_doc())
    doc = good_doc()
    doc["nodes"][0]["plan"] = "x" * 20_000
    write_journal(runs, big, doc)
    out = tmp_path / "aide_journals"
    proc = subprocess.run(
        [sys.executable, "-m", "job", "parse", "--failed-runs-dir", str(runs),
         "--output-dir", str(out), "--max-journal-bytes", "10000"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    entries = {e["journal"]: e for e in json.loads((out / "index.json").read_text())["journals"]}
    assert entries[small]["error"] is None
    assert "over --max-journal-bytes (10,000)" in entries[big]["error"]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    (failed,) = [e for e in events if e["event"] == "parse.journal" and e["outcome"] == "failed"]
    assert failed["journal"] == big
    assert (out / "index.json").is_file()
