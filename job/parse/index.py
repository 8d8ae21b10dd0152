"""``index.json``: one entry per journal, what the parse stage found and where the report is.

The index is both the team's table of contents (run group, agent, task, counts,
best metric, report path) and the parse stage's memory for incremental runs: the
journal file's fingerprint when its report was written, and the report format.
It is rewritten complete and atomically on every run, sorted by journal path.

Sharded workers write ``index.shard-I-of-N.json`` each; :func:`merge_indexes`
combines a complete set into ``index.json``. When reading earlier state, every
index file in the folder counts (newest entry per journal wins), so changing the
shard count between runs does not re-parse everything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from job.core.atomic import atomic_write_json
from job.core.config import Shard
from job.core.errors import UsageError
from job.model.extras import index_extras
from job.model.journal import Journal
from job.model.layout import Layout

INDEX_NAME = "index"
SCHEMA_VERSION = 1
_SHARD_FILE = re.compile(rf"{INDEX_NAME}\.shard-(\d+)-of-(\d+)\.json")


@dataclass(frozen=True)
class Fingerprint:
    """Identity of a journal file's current version.

    Size and times catch edits; inode and ctime also catch a re-extracted archive
    (a new folder renamed into place), even when its bytes are identical.
    """

    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Fingerprint:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class IndexEntry:
    """One journal. A failed journal has ``error`` set and ``report`` None."""

    journal: str  # relative to the failed-runs folder, forward slashes
    report: str | None  # relative to the output folder, forward slashes
    error: str | None = None
    run_group: str | None = None
    agent: str | None = None
    domain: str | None = None
    task: str | None = None
    task_id: str | None = None  # <domain>/<task>
    run_id: str | None = None  # the run folder's name
    run_uuid: str | None = None
    experiment: str | None = None
    steps: int | None = None
    buggy_steps: int | None = None
    exception_counts: dict[str, int] | None = None
    best_metric: float | None = None
    best_step: int | None = None
    layout_warnings: list[str] = field(default_factory=list)
    journal_warnings: list[str] = field(default_factory=list)
    fingerprint: Fingerprint | None = None
    report_format: int | None = None
    parsed_at: str | None = None
    # What the HTML analysis (job.report) needs, so it never re-reads journals.
    failures: list[dict[str, Any]] | None = None  # [{"step","stage","type","message","detail"}]
    valid_solution: bool | None = None
    steps_by_stage: dict[str, int] | None = None
    html: str | None = None  # the journal's page, relative to the output folder
    analysis_version: int | None = None
    # The run's verdict (mode, cause, evidence_file, evidence_line, evidence, href),
    # added by the report stage after each night's site build and kept by the parse
    # stage for journals it does not re-parse.
    verdict: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain data for index.json. Shallow on purpose: ``asdict`` deep-copied every
        failure record of every entry, the slowest part of writing a large index."""
        out = {name: getattr(self, name) for name in _ENTRY_FIELDS}
        if self.fingerprint is not None:
            out["fingerprint"] = asdict(self.fingerprint)
        return out

    @classmethod
    def from_json(cls, raw: Any) -> IndexEntry | None:
        """None when ``raw`` does not look like an entry (then the journal is re-parsed)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("journal"), str):
            return None
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        fp = values.get("fingerprint")
        try:
            values["fingerprint"] = Fingerprint(**fp) if isinstance(fp, dict) else None
            return cls(**values)
        except TypeError:
            return None


_ENTRY_FIELDS = tuple(f.name for f in fields(IndexEntry))


def entry_for(
    layout: Layout,
    journal: Journal,
    fingerprint: Fingerprint | None,
    report_format: int,
    details: Sequence[str | None] | None = None,
) -> IndexEntry:
    """The entry of a journal whose report was just written (``details``: see index_extras).

    ``report_format`` is the renderer's version: a later run re-renders entries
    whose version differs from its own.
    """
    best = journal.best_node
    return IndexEntry(
        **_layout_fields(layout),
        report=layout.report,
        steps=journal.step_count,
        buggy_steps=journal.buggy_count,
        exception_counts=dict(journal.exception_counts),
        best_metric=None if best is None else best.metric.value,
        best_step=None if best is None else best.step,
        journal_warnings=list(journal.warnings),
        fingerprint=fingerprint,
        report_format=report_format,
        parsed_at=now_iso(),
        **index_extras(journal, report=layout.report, details=details),
    )


def failure_entry(layout: Layout, reason: str, fingerprint: Fingerprint | None) -> IndexEntry:
    """The entry of a journal that could not be parsed: what the path says, and why."""
    return IndexEntry(
        **_layout_fields(layout),
        report=None,
        error=" ".join(reason.split()),
        fingerprint=fingerprint,
        parsed_at=now_iso(),
    )


def _layout_fields(layout: Layout) -> dict[str, Any]:
    return {
        "journal": layout.journal,
        "run_group": layout.run_group,
        "agent": layout.agent,
        "domain": layout.domain,
        "task": layout.task,
        "task_id": layout.task_id,
        "run_id": layout.run_id,
        "run_uuid": layout.run_uuid,
        "experiment": layout.experiment,
        "layout_warnings": list(layout.warnings),
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def index_path(output_dir: Path, suffix: str = "") -> Path:
    return output_dir / f"{INDEX_NAME}{suffix}.json"


def index_files(output_dir: Path) -> list[Path]:
    """``index.json`` and every shard index file present, in a fixed order."""
    if not output_dir.is_dir():
        return []
    shards = sorted(p for p in output_dir.iterdir() if _SHARD_FILE.fullmatch(p.name))
    return [p for p in [index_path(output_dir), *shards] if p.is_file()]


def read_index(path: Path) -> list[IndexEntry]:
    """Entries of one index file; raises ValueError/OSError when it cannot be read."""
    doc = orjson.loads(path.read_bytes())
    if not isinstance(doc, dict) or not isinstance(doc.get("journals"), list):
        raise ValueError("not an index file (no 'journals' list)")
    return [e for e in map(IndexEntry.from_json, doc["journals"]) if e is not None]


def load_previous(output_dir: Path, on_error: Any = None) -> dict[str, IndexEntry]:
    """Every journal's newest entry across all index files (unreadable files are skipped)."""
    newest: dict[str, IndexEntry] = {}
    for path in index_files(output_dir):
        try:
            entries = read_index(path)
        except (OSError, ValueError) as exc:
            if on_error is not None:
                on_error(str(path), str(exc))
            continue
        for entry in entries:
            _keep_newest(newest, entry)
    return newest


_UNSHARDED = Shard()


def write_index(output_dir: Path, entries: list[IndexEntry], shard: Shard = _UNSHARDED) -> Path:
    target = index_path(output_dir, shard.suffix)
    atomic_write_json(target, _document(entries, shard))
    return target


def merge_indexes(output_dir: Path) -> Path:
    """Combine a complete set of ``index.shard-*-of-N.json`` into ``index.json``.

    When files of several shard counts are present (the count changed between
    runs), the complete set written most recently is used. Raises
    :class:`UsageError` when no complete set exists, rather than publishing an
    index that silently lacks a shard's journals.
    """
    groups: dict[int, dict[int, Path]] = {}
    for path in index_files(output_dir):
        match = _SHARD_FILE.fullmatch(path.name)
        if match:
            groups.setdefault(int(match[2]), {})[int(match[1])] = path
    if not groups:
        raise UsageError(f"no shard index files ({INDEX_NAME}.shard-*-of-*.json) in {output_dir}")
    complete = {n: files for n, files in groups.items() if set(files) == set(range(n))}
    if not complete:
        missing = sorted(
            f"{INDEX_NAME}.shard-{i}-of-{n}.json"
            for n, files in groups.items()
            for i in range(n)
            if i not in files
        )
        raise UsageError(f"cannot merge shard indexes: missing {', '.join(missing)}")
    count = max(complete, key=lambda n: max(p.stat().st_mtime_ns for p in complete[n].values()))
    merged: dict[str, IndexEntry] = {}
    for path in complete[count].values():
        try:
            entries = read_index(path)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
        for entry in entries:
            _keep_newest(merged, entry)
    return write_index(output_dir, list(merged.values()))


def _keep_newest(into: dict[str, IndexEntry], entry: IndexEntry) -> None:
    current = into.get(entry.journal)
    if current is None or (entry.parsed_at or "") > (current.parsed_at or ""):
        into[entry.journal] = entry


def _document(entries: list[IndexEntry], shard: Shard) -> dict[str, Any]:
    ordered = sorted(entries, key=lambda e: e.journal)
    return {
        "schema_version": SCHEMA_VERSION,
        "shard": {"index": shard.index, "count": shard.count} if shard.active else None,
        "journals": [e.to_json() for e in ordered],
    }
