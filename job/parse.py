"""The parse stage: find journals, decide what needs doing, parse, write the index, summarise.

This module only orchestrates; the pieces live in :mod:`job.discover` (which
journals exist), :mod:`job.layout` (what a path says), :mod:`job.journal` (the
model), :mod:`job.report_text` (the report), :mod:`job.index` (the index and
incremental state), :mod:`job.parse_worker` (one journal) and
:mod:`job.parse_pool` (many, concurrently, stoppable).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from job.atomic import TEMP_MARKER, remove_stale_temporaries
from job.config import ParseConfig
from job.discover import FoundJournal, ShardFilter, find_journals
from job.errors import UsageError
from job.index import (
    Fingerprint,
    IndexEntry,
    index_path,
    load_previous,
    merge_indexes,
    write_index,
)
from job.layout import derive_layout
from job.logs import get_logger
from job.parse_pool import execute
from job.parse_worker import ParseResult, ParseTask, page_path
from job.report_text import REPORT_FORMAT
from job.signals import raise_if_stopped
from job.summary import Outcome, StageSummary

__all__ = ["merge_indexes", "plan", "run_parse"]


@dataclass(frozen=True)
class Planned:
    task: ParseTask
    previous: IndexEntry | None
    reason: str  # why it is (re)parsed, or "up to date"

    @property
    def up_to_date(self) -> bool:
        return self.reason == "up to date"

    @property
    def rel(self) -> str:
        return self.task.layout.journal


def run_parse(cfg: ParseConfig) -> StageSummary:
    """Parse every journal of this shard that changed; returns the outcome counts.

    Raises :class:`UsageError` when the folders are unusable and
    :class:`job.signals.Interrupted` after a stop signal (the index is written
    first, with what completed).
    """
    log = get_logger(stage="parse")
    summary = StageSummary("parse")
    if cfg.dry_run and not cfg.failed_runs_dir.exists():
        # `run --dry-run` on a first night: the download stage created nothing yet.
        log.info("parse.discovered", failed_runs_dir=str(cfg.failed_runs_dir), journals=0)
        return summary
    _check_input(cfg.failed_runs_dir)
    found = find_journals(
        cfg.failed_runs_dir,
        on_error=lambda path, reason: log.warning("parse.unreadable", path=path, error=reason),
    )
    mine_filter = ShardFilter(cfg.failed_runs_dir, cfg.shard)
    mine = [f for f in found if mine_filter(f.rel)]
    earlier = load_previous(
        cfg.output_dir,
        on_error=lambda path, reason: log.warning(
            "parse.index_unreadable", path=path, error=reason
        ),
    )
    previous = {rel: e for rel, e in earlier.items() if mine_filter(rel)}
    planned = plan(mine, previous, cfg)
    present = {f.rel for f in mine}
    gone = sorted((e for rel, e in previous.items() if rel not in present), key=lambda e: e.journal)
    log.info(
        "parse.discovered",
        failed_runs_dir=str(cfg.failed_runs_dir),
        journals=len(found),
        shard=f"{cfg.shard.index}/{cfg.shard.count}" if cfg.shard.active else None,
        in_shard=len(mine),
        to_parse=sum(not p.up_to_date for p in planned),
        gone=len(gone),
    )
    if cfg.dry_run:
        _log_plan(log, cfg.output_dir, planned, gone)
        return summary
    _prepare_output(cfg)
    _remove_temporaries(cfg, planned)
    for entry in gone:
        _remove_gone(log, cfg.output_dir, entry)
    _parse_all(cfg, planned, summary, log)
    summary.emit(log)
    return summary


def plan(
    journals: list[FoundJournal], previous: dict[str, IndexEntry], cfg: ParseConfig
) -> list[Planned]:
    """Decide per journal whether its report is up to date (only reads the disk)."""
    planned = []
    for found in journals:
        layout = derive_layout(found.rel)
        task = ParseTask(found.path, layout, cfg.output_dir / layout.report)
        prev = previous.get(found.rel)
        planned.append(Planned(task, prev, _reason(task, prev, cfg)))
    return planned


def _reason(task: ParseTask, prev: IndexEntry | None, cfg: ParseConfig) -> str:
    if prev is None:
        return "new"
    if cfg.force:
        return "forced"
    if prev.error is not None:
        return "failed before"
    try:
        current = Fingerprint.of(os.stat(task.journal_path))
    except OSError:
        return "changed"
    if prev.fingerprint != current:
        return "changed"
    if prev.report_format != REPORT_FORMAT:
        return "report format changed"
    if (
        prev.report != task.layout.report
        or not task.report_path.is_file()
        or not page_path(task.report_path).is_file()
    ):
        return "report missing"
    return "up to date"


def _parse_all(cfg: ParseConfig, planned: list[Planned], summary: StageSummary, log: Any) -> None:
    entries: dict[str, IndexEntry] = {}
    todo = []
    for p in planned:
        if p.up_to_date and p.previous is not None:
            entries[p.rel] = p.previous
            summary.record(Outcome.SKIPPED)
            log.info(
                "parse.journal",
                journal=p.rel,
                outcome=Outcome.SKIPPED.value,
                steps=p.previous.steps,
                seconds=0.0,
                report=p.previous.report,
            )
        else:
            todo.append(p)

    def record(task: ParseTask, result: ParseResult) -> None:
        entries[result.entry.journal] = result.entry
        _record(log, summary, task, result)

    try:
        execute([p.task for p in todo], cfg.concurrent, record)
        raise_if_stopped()
    finally:
        # Interrupted: journals not reached keep their earlier entry (its fingerprint
        # is stale, so the next run parses them); the index is always complete.
        for p in todo:
            if p.rel not in entries and p.previous is not None:
                entries[p.rel] = p.previous
        path = write_index(cfg.output_dir, list(entries.values()), cfg.shard)
        log.info("parse.index", path=str(path), journals=len(entries))


def _record(log: Any, summary: StageSummary, task: ParseTask, result: ParseResult) -> None:
    entry = result.entry
    if entry.error is not None:
        # A report left from an earlier, readable version must not pass for current.
        task.report_path.unlink(missing_ok=True)
        page_path(task.report_path).unlink(missing_ok=True)
        summary.record(Outcome.FAILED)
        log.error(
            "parse.journal",
            journal=entry.journal,
            outcome=Outcome.FAILED.value,
            steps=entry.steps,
            seconds=result.seconds,
            error=entry.error,
        )
        return
    summary.record(Outcome.SUCCEEDED)
    log.info(
        "parse.journal",
        journal=entry.journal,
        outcome=Outcome.SUCCEEDED.value,
        steps=entry.steps,
        seconds=result.seconds,
        report=entry.report,
    )


def _log_plan(log: Any, output_dir: Path, planned: list[Planned], gone: list[IndexEntry]) -> None:
    for p in planned:
        log.info(
            "parse.plan",
            journal=p.rel,
            report=str(p.task.report_path),
            action="skip" if p.up_to_date else "parse",
            reason=p.reason,
        )
    for entry in gone:
        report = _safe_report_path(output_dir, entry.report)
        log.info(
            "parse.remove",
            journal=entry.journal,
            report=None if report is None else str(report),
            dry_run=True,
        )


def _remove_gone(log: Any, output_dir: Path, entry: IndexEntry) -> None:
    """A journal that disappeared (its archive folder was removed) loses its report."""
    report = _safe_report_path(output_dir, entry.report)
    if report is not None:
        report.unlink(missing_ok=True)
        page_path(report).unlink(missing_ok=True)
        _prune_empty_folders(report.parent, output_dir)
    log.info("parse.remove", journal=entry.journal, report=None if report is None else str(report))


def _safe_report_path(output_dir: Path, rel: str | None) -> Path | None:
    """The report's path, unless the index (a file anyone can edit) points outside."""
    if not rel:
        return None
    parts = PurePosixPath(rel).parts
    if PurePosixPath(rel).is_absolute() or any(p in ("", ".", "..") for p in parts):
        return None
    return output_dir.joinpath(*parts)


def _prune_empty_folders(folder: Path, stop_at: Path) -> None:
    while folder != stop_at and stop_at in folder.parents:
        try:
            folder.rmdir()  # only succeeds when empty
        except OSError:
            return
        folder = folder.parent


def _check_input(failed_runs_dir: Path) -> None:
    if not failed_runs_dir.is_dir():
        raise UsageError(
            f"failed-runs dir {failed_runs_dir} does not exist or is not a folder: "
            "run the download stage first or pass --failed-runs-dir"
        )


def _prepare_output(cfg: ParseConfig) -> None:
    try:
        cfg.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output dir {cfg.output_dir}: {exc.strerror}") from None
    if not os.access(cfg.output_dir, os.W_OK | os.X_OK):
        raise UsageError(
            f"output dir {cfg.output_dir} is not writable: fix its permissions or choose another"
        )


def _remove_temporaries(cfg: ParseConfig, planned: list[Planned]) -> None:
    """Delete what a killed run left behind, without touching other shards' files.

    Unsharded, the whole output tree is swept. Sharded workers may be writing into
    the same folders at this moment, so each removes only temporaries of its own
    targets (temporary names start with ``.<target name>.partial-``).
    """
    if not cfg.shard.active:
        remove_stale_temporaries(cfg.output_dir)
        return
    targets = [p.task.report_path for p in planned]
    targets += [page_path(p.task.report_path) for p in planned]
    targets.append(index_path(cfg.output_dir, cfg.shard.suffix))
    prefixes: dict[Path, set[str]] = {}
    for target in targets:
        prefixes.setdefault(target.parent, set()).add(f".{target.name}{TEMP_MARKER}")
    for folder, names in prefixes.items():
        for leftover in _files_starting_with(folder, tuple(names)):
            leftover.unlink(missing_ok=True)


def _files_starting_with(folder: Path, prefixes: tuple[str, ...]) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [Path(e.path) for e in entries if e.name.startswith(prefixes) and e.is_file()]
