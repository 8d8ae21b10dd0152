"""The parse stage: find journals, decide what needs doing, parse, write the index, summarise.

This module only orchestrates; the pieces live in :mod:`job.parse.discover` (which
journals exist), :mod:`job.model.layout` (what a path says), :mod:`job.model.journal` (the
model), :mod:`job.report.text` (the report), :mod:`job.parse.index` (the index and
incremental state), :mod:`job.parse.worker` (one journal) and
:mod:`job.parse.pool` (many, concurrently, stoppable).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from job.core.atomic import remove_stale_temporaries, temp_prefix
from job.core.config import ParseConfig, usable_cpus
from job.core.errors import UsageError
from job.core.logs import get_logger
from job.core.signals import raise_if_stopped
from job.core.summary import Outcome, StageSummary
from job.model.layout import derive_layout
from job.parse.discover import FoundJournal, ShardFilter, find_journals
from job.parse.index import (
    Fingerprint,
    IndexEntry,
    index_path,
    load_previous,
    merge_indexes,
    write_index,
)
from job.parse.pool import ParsePool, execute
from job.parse.worker import ParseResult, ParseTask, Renderer

__all__ = ["ParseStage", "merge_indexes", "plan", "run_parse"]

#: Niceness of workers that parse while the download still runs (see init_worker).
EARLY_NICE = 5


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


def run_parse(cfg: ParseConfig, renderer: Renderer) -> StageSummary:
    """Parse every journal of this shard that changed; returns the outcome counts.

    Raises :class:`UsageError` when the folders are unusable and
    :class:`job.core.signals.Interrupted` after a stop signal (the index is written
    first, with what completed).
    """
    with ParseStage(cfg, renderer) as stage:
        return stage.finish()


class ParseStage:
    """One parse of a failed-runs folder, which may begin before the folder is complete.

    ``run`` downloads and parses. Parsing every journal only after the last
    archive arrived leaves the second core idle for most of the download and
    then the network idle for the whole parse; instead :meth:`start_early` forks
    the workers before the download starts its threads, :meth:`offer` queues the
    journals of each archive as soon as it is published, and :meth:`finish` does
    the usual full pass over the folder, skipping what was already queued.
    :func:`run_parse` is just ``finish`` on its own.

    Used as a context manager: if the caller fails or is stopped before
    ``finish``, early work still running gets the usual grace period and the
    index records every report that was published.
    """

    def __init__(self, cfg: ParseConfig, renderer: Renderer) -> None:
        self.cfg = cfg
        self.renderer = renderer  # what each journal becomes (the report layer's)
        self.log = get_logger(stage="parse")
        self.summary = StageSummary("parse")
        self.pool: ParsePool | None = None
        self.previous: dict[str, IndexEntry] | None = None
        self.early: dict[str, Planned] = {}  # queued by offer(), by journal
        self.entries: dict[str, IndexEntry] = {}  # what this run parsed, by journal
        self.finished = False

    def __enter__(self) -> ParseStage:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self.pool is None:
            return
        try:
            if exc_type is not None and not self.finished:
                self._abandon_early()
        finally:
            self.pool.close()

    def start_early(self) -> bool:
        """Get ready to parse archives as they arrive; False when this run will not.

        Call it before this process starts any thread (see :class:`ParsePool`).
        Dry runs plan only, and a single worker would parse in this process.
        """
        cfg = self.cfg
        # Forked before anyone knows how many journals will come, so no more workers
        # than CPUs (parsing is CPU-bound); a night with nothing new pays for no more.
        workers = min(cfg.concurrent, usable_cpus())
        if cfg.dry_run or workers < 2:
            return False
        _prepare_output(cfg)
        self.previous = self._previous(ShardFilter(cfg.failed_runs_dir, cfg.shard))
        if not cfg.shard.active:
            # Now, while no worker is writing; finish() cannot sweep the whole tree.
            remove_stale_temporaries(cfg.output_dir)
        self.pool = ParsePool(workers, self._record, nice=EARLY_NICE)
        self.pool.start()
        return True

    def offer(self, folder: Path) -> None:
        """An archive was just published at ``folder``: queue its journals."""
        if self.pool is None or self.previous is None:
            return
        root = self.cfg.failed_runs_dir
        if root not in folder.parents:
            return
        found = find_journals(root, within=folder)
        todo = [p for p in plan(found, self.previous, self.cfg, self.renderer) if not p.up_to_date]
        if self.cfg.shard.active:
            _remove_temporaries(self.cfg, todo)
        for p in todo:
            self.early[p.rel] = p
        self.pool.add([p.task for p in todo])

    def finish(self) -> StageSummary:
        """Discover, plan and parse what is left, write the index, summarise."""
        cfg, log = self.cfg, self.log
        self.finished = True
        if cfg.dry_run and not cfg.failed_runs_dir.exists():
            # `run --dry-run` on a first night: the download stage created nothing yet.
            log.info("parse.discovered", failed_runs_dir=str(cfg.failed_runs_dir), journals=0)
            return self.summary
        _check_input(cfg.failed_runs_dir)
        found = find_journals(
            cfg.failed_runs_dir,
            on_error=lambda path, reason: log.warning("parse.unreadable", path=path, error=reason),
        )
        mine_filter = ShardFilter(cfg.failed_runs_dir, cfg.shard)
        mine = [f for f in found if mine_filter(f.rel)]
        # Read again with this filter: the download may have added manifests since.
        previous = self._previous(mine_filter)
        planned = plan([f for f in mine if f.rel not in self.early], previous, cfg, self.renderer)
        planned = sorted([*planned, *self.early.values()], key=lambda p: p.rel)
        present = {f.rel for f in mine} | set(self.early)
        gone = sorted(
            (e for rel, e in previous.items() if rel not in present), key=lambda e: e.journal
        )
        log.info(
            "parse.discovered",
            failed_runs_dir=str(cfg.failed_runs_dir),
            journals=len(found),
            shard=f"{cfg.shard.index}/{cfg.shard.count}" if cfg.shard.active else None,
            in_shard=len(mine),
            to_parse=sum(not p.up_to_date for p in planned),
            parsed_early=len(self.early),
            gone=len(gone),
        )
        if cfg.dry_run:
            _log_plan(log, cfg.output_dir, planned, gone)
            return self.summary
        _prepare_output(cfg)
        if self.pool is None or cfg.shard.active:
            # Early workers may be writing temporaries now: sweep only before they start.
            _remove_temporaries(cfg, [p for p in planned if p.rel not in self.early])
        for entry in gone:
            _remove_gone(log, cfg.output_dir, entry, self.renderer)
        self._parse_all(planned)
        self.summary.emit(log)
        return self.summary

    def _previous(self, mine_filter: ShardFilter) -> dict[str, IndexEntry]:
        earlier = load_previous(
            self.cfg.output_dir,
            on_error=lambda path, reason: self.log.warning(
                "parse.index_unreadable", path=path, error=reason
            ),
        )
        return {rel: e for rel, e in earlier.items() if mine_filter(rel)}

    def _record(self, task: ParseTask, result: ParseResult) -> None:
        self.entries[result.entry.journal] = result.entry
        _record(self.log, self.summary, task, result)

    def _parse_all(self, planned: list[Planned]) -> None:
        cfg, log = self.cfg, self.log
        entries: dict[str, IndexEntry] = {}
        todo = []
        for p in planned:
            if p.up_to_date and p.previous is not None:
                entries[p.rel] = p.previous
                self.summary.record(Outcome.SKIPPED)
                log.info(
                    "parse.journal",
                    journal=p.rel,
                    outcome=Outcome.SKIPPED.value,
                    steps=p.previous.steps,
                    seconds=0.0,
                    report=p.previous.report,
                )
            elif p.rel not in self.early:
                todo.append(p)
        try:
            if self.pool is not None:
                self.pool.add([p.task for p in todo])
                self.pool.drain()
            else:
                execute([p.task for p in todo], cfg.concurrent, self._record)
            raise_if_stopped()
        finally:
            entries.update(self.entries)
            # Interrupted: journals not reached keep their earlier entry (its fingerprint
            # is stale, so the next run parses them); the index is always complete.
            for p in planned:
                if p.rel not in entries and p.previous is not None:
                    entries[p.rel] = p.previous
            path = write_index(cfg.output_dir, list(entries.values()), cfg.shard)
            log.info("parse.index", path=str(path), journals=len(entries))

    def _abandon_early(self) -> None:
        """The caller failed or was stopped mid-download: let early work end, index it."""
        if self.pool is None or self.previous is None:
            return
        self.pool.drain(stopping=lambda: True)
        if not self.entries:
            return
        entries = {**self.previous, **self.entries}
        path = write_index(self.cfg.output_dir, list(entries.values()), self.cfg.shard)
        self.log.info("parse.index", path=str(path), journals=len(entries))


def plan(
    journals: list[FoundJournal],
    previous: dict[str, IndexEntry],
    cfg: ParseConfig,
    renderer: Renderer,
) -> list[Planned]:
    """Decide per journal whether its report is up to date (only reads the disk)."""
    planned = []
    for found in journals:
        layout = derive_layout(found.rel)
        task = ParseTask(
            found.path,
            layout,
            cfg.output_dir / layout.report,
            renderer,
            found.size,
            cfg.max_journal_bytes,
        )
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
    if prev.report_format != task.renderer.version:
        return "report format changed"
    if prev.report != task.layout.report or not all(
        p.is_file() for p in task.renderer.outputs(task.report_path)
    ):
        return "report missing"
    return "up to date"


def _record(log: Any, summary: StageSummary, task: ParseTask, result: ParseResult) -> None:
    entry = result.entry
    if entry.error is not None:
        # A report left from an earlier, readable version must not pass for current.
        for path in task.renderer.outputs(task.report_path):
            path.unlink(missing_ok=True)
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


def _remove_gone(log: Any, output_dir: Path, entry: IndexEntry, renderer: Renderer) -> None:
    """A journal that disappeared (its archive folder was removed) loses its report."""
    report = _safe_report_path(output_dir, entry.report)
    if report is not None:
        for path in renderer.outputs(report):
            path.unlink(missing_ok=True)
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
    targets = [out for p in planned for out in p.task.renderer.outputs(p.task.report_path)]
    targets.append(index_path(cfg.output_dir, cfg.shard.suffix))
    prefixes: dict[Path, set[str]] = {}
    for target in targets:
        prefixes.setdefault(target.parent, set()).add(temp_prefix(target))
    for folder, names in prefixes.items():
        for leftover in _files_starting_with(folder, tuple(names)):
            leftover.unlink(missing_ok=True)


def _files_starting_with(folder: Path, prefixes: tuple[str, ...]) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [Path(e.path) for e in entries if e.name.startswith(prefixes) and e.is_file()]
