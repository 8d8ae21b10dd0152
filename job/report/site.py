"""Build ``ROOT/index.html``, ``failures.csv``, ``runs.csv`` and ``summary.json`` from ROOT.

Inputs, all optional (a missing piece just means less on the page):

* ``ROOT/aide_journals/index.json`` (and shard index files not merged yet): one
  entry per journal with the fields of :func:`job.model.extras.index_extras`.
  Entries written before those fields existed are completed by reading their
  journal once (and their missing journal page is written then too), so
  ``analyze-failures report`` works on any earlier output folder.
* ``ROOT/failed_runs/**/metadata.json``: which runs of each group failed; runs
  without a journal are explained from their logs (:mod:`job.model.runs`).

Both outputs are published atomically: a reader on the file share sees the old
page or the new one, never half of one.
"""

from __future__ import annotations

import csv
import functools
import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from job import __version__
from job.core.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from job.core.errors import ItemError
from job.core.textsafe import csv_row
from job.model.extras import EXTRAS_VERSION, index_extras, journal_page_path
from job.model.journal import load_journal
from job.model.layout import derive_layout
from job.model.runs import failed_runs_without_journal, find_run_groups, run_outcomes
from job.model.taxonomy import step_details
from job.parse.index import index_files
from job.report.collect import (
    AIDE_DIR,
    FAILED_RUNS_DIR,
    FailureRow,
    SiteData,
    collect,
    run_folder_of,
)
from job.report.index_page import render_index
from job.report.journal_files import page_header
from job.report.journal_page import render_journal_page
from job.report.verdict_banners import stamp_all
from job.report.verdicts import (
    SUMMARY_JSON,
    RunVerdict,
    compute_verdicts,
    read_cache,
    read_summary,
    summarize,
    write_evidence_pages,
)
from job.report.verdicts import write_outputs as write_verdict_outputs

INDEX_HTML = "index.html"
FAILURES_CSV = "failures.csv"
CSV_COLUMNS = (
    "run_group",
    "started_utc",
    "agent",
    "task",
    "run",
    "experiment",
    "step",
    "stage",
    "exception_type",
    "message",
    "detail",
    "cause",
    "source",
)


@dataclass
class SiteSummary:
    """What :func:`build_site` did: the numbers on the page and the files written."""

    index_html: str
    failures_csv: str
    run_groups: int = 0
    runs: int = 0
    journals: int = 0
    unreadable_journals: int = 0
    steps: int = 0
    buggy_steps: int = 0
    runs_with_valid_solution: int = 0
    runs_without_journal: int = 0
    failures: int = 0
    entries_backfilled: int = 0  # index entries without the analysis fields, completed here
    pages_written: int = 0  # journal pages written for those entries
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)  # runs by verdict mode
    evidence_pages: int = 0
    verdicts_stamped: int = 0  # journal pages and text reports whose verdict banner changed
    verdicts_reused: int = 0  # runs whose files did not change since the last build

    def as_log(self) -> dict[str, Any]:
        """Fields for one structured log line (warnings counted, not listed)."""
        out = asdict(self)
        out["warnings"] = len(self.warnings)
        return out


def build_site(root: Path, *, backfill: bool = True, now: datetime | None = None) -> SiteSummary:
    """Write ``root/index.html`` and ``root/failures.csv``; returns what they hold.

    ``backfill``: complete index entries that lack the analysis fields by reading
    their journal (and write their missing journal page). Off, such journals
    still appear, without failures or a page link.

    Raises OSError only when the outputs cannot be written; unreadable inputs
    become warnings on the page and in the summary.
    """
    started = time.monotonic()
    aide_dir = root / AIDE_DIR
    failed_runs = root / FAILED_RUNS_DIR
    warnings: list[str] = []
    entries = read_entries(aide_dir, warnings.append)
    backfilled, pages = 0, 0
    if backfill:
        backfilled, pages = complete_entries(entries, failed_runs, aide_dir, warnings.append)
    groups = find_run_groups(failed_runs)
    warnings += [f"{g.rel}: {g.problem}" for g in groups if g.problem]
    journal_folders = {run_folder_of(str(e["journal"])) for e in entries}
    others = failed_runs_without_journal(failed_runs, groups, journal_folders)
    data = collect(entries, others, run_outcomes(groups), (g.name for g in groups))
    generated = now or datetime.now(UTC)
    verdicts = compute_verdicts(failed_runs, groups, entries, read_cache(root))
    _attach_verdicts(data, verdicts)
    summary = summarize(verdicts, read_summary(root / SUMMARY_JSON, warnings.append), generated)
    evidence_pages = write_evidence_pages(root, verdicts, warnings.append)
    stamp_index(aide_dir, verdicts, warnings.append)
    stamped = stamp_all(aide_dir, entries, verdicts, warnings.append)
    data.warnings = warnings + data.warnings
    html = render_index(
        data,
        generated_at=generated,
        root_name=root.resolve().name or str(root),
        version=__version__,
        verdicts=verdicts,
        summary=summary,
    )
    index_path = root / INDEX_HTML
    csv_path = root / FAILURES_CSV
    atomic_write_text(csv_path, failures_csv(data.failures))
    write_verdict_outputs(root, verdicts, summary)
    atomic_write_text(index_path, html)
    out = _summary(data, index_path, csv_path, backfilled, pages, time.monotonic() - started)
    out.verdicts = dict(summary["by_mode"])
    out.evidence_pages = evidence_pages
    out.verdicts_stamped = stamped
    out.verdicts_reused = sum(1 for v in verdicts if v.reused)
    return out


def verdict_fields(v: RunVerdict) -> dict[str, Any]:
    """A run's verdict as ``index.json`` entries carry it (the columns of runs.csv)."""
    return {
        "mode": v.verdict.mode,
        "cause": v.verdict.cause,
        "evidence_file": v.verdict.evidence_file,
        "evidence_line": v.verdict.evidence_line,
        "evidence": v.verdict.evidence,
        "href": v.evidence_href,
    }


def stamp_index(aide_dir: Path, verdicts: list[RunVerdict], warn: Callable[[str], None]) -> bool:
    """Add each journal's run verdict to ``aide_journals/index.json``; True if rewritten.

    The index is the parse stage's file, but people and scripts read it as "the
    runs with journals": their verdict belongs there too. Only the merged, unsharded
    index is stamped (shard files wait for ``merge``), and only when something changed,
    so a night with nothing new leaves the file as it was.
    """
    path = aide_dir / "index.json"
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return False
    except (OSError, orjson.JSONDecodeError) as exc:
        warn(f"{path}: cannot add verdicts ({exc})")
        return False
    journals = doc.get("journals") if isinstance(doc, dict) else None
    if not isinstance(journals, list):
        return False
    by_folder = {v.record.run_folder: verdict_fields(v) for v in verdicts}
    changed = False
    for entry in journals:
        if not isinstance(entry, dict) or not isinstance(entry.get("journal"), str):
            continue
        fields = by_folder.get(run_folder_of(entry["journal"]))
        if fields is not None and entry.get("verdict") != fields:
            entry["verdict"] = fields
            changed = True
    if changed:
        try:
            atomic_write_json(path, doc)  # as the parse stage writes it
        except OSError as exc:
            warn(f"{path}: cannot add verdicts ({exc.strerror or exc})")
            return False
    return changed


def _attach_verdicts(data: SiteData, verdicts: list[RunVerdict]) -> None:
    """Give each table row its run's verdict (rows of one run share it)."""
    by_folder = {v.record.run_folder: v for v in verdicts}
    for row in data.runs:
        found = by_folder.get(row.run_folder)
        if found is None:
            continue
        row.mode = found.verdict.mode
        row.verdict = found.verdict.cause
        row.evidence_href = found.evidence_href


def _summary(
    data: SiteData, index_path: Path, csv_path: Path, backfilled: int, pages: int, seconds: float
) -> SiteSummary:
    t = data.totals
    return SiteSummary(
        index_html=str(index_path),
        failures_csv=str(csv_path),
        run_groups=t.run_groups,
        runs=t.runs,
        journals=t.journals,
        unreadable_journals=t.unreadable_journals,
        steps=t.steps,
        buggy_steps=t.buggy_steps,
        runs_with_valid_solution=t.runs_with_valid_solution,
        runs_without_journal=t.runs_without_journal,
        failures=t.failures,
        entries_backfilled=backfilled,
        pages_written=pages,
        seconds=round(seconds, 3),
        warnings=data.warnings,
    )


def read_entries(aide_dir: Path, warn: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every journal's newest entry across ``index.json`` and any shard index files.

    Read as plain dicts (not :class:`job.parse.index.IndexEntry`) so fields this module
    needs survive whatever version of the index wrote them.
    """
    newest: dict[str, dict[str, Any]] = {}
    for path in index_files(aide_dir):
        try:
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            warn(f"{path.name}: unreadable ({exc})")
            continue
        journals = doc.get("journals") if isinstance(doc, dict) else None
        if not isinstance(journals, list):
            warn(f"{path.name}: not an index file (no 'journals' list)")
            continue
        for entry in journals:
            if not isinstance(entry, dict) or not isinstance(entry.get("journal"), str):
                continue
            current = newest.get(entry["journal"])
            if current is None or str(entry.get("parsed_at") or "") > str(
                current.get("parsed_at") or ""
            ):
                newest[entry["journal"]] = entry
    return [newest[k] for k in sorted(newest)]


def needs_extras(entry: dict[str, Any]) -> bool:
    """A readable journal's entry without current analysis fields.

    Written before the fields existed (absent, or null once ``IndexEntry`` has
    them), or by an older :data:`~job.model.extras.EXTRAS_VERSION`.
    """
    if entry.get("error") or not entry.get("report"):
        return False
    version = entry.get("analysis_version")
    outdated = not isinstance(version, int) or version < EXTRAS_VERSION
    return entry.get("failures") is None or outdated


def complete_entries(
    entries: list[dict[str, Any]], failed_runs: Path, aide_dir: Path, warn: Callable[[str], None]
) -> tuple[int, int]:
    """Fill in the analysis fields of older entries from their journals (in place).

    Also writes the journal page of such an entry when it is missing, so the
    table's link works. Returns (entries completed, pages written).
    """
    completed = pages = 0
    for entry in entries:
        if not needs_extras(entry):
            continue
        journal_rel = str(entry["journal"])
        report = str(entry["report"])
        if not _inside(journal_rel) or not _inside(report):
            warn(f"{journal_rel}: index entry points outside the output folders; skipped")
            continue
        try:
            journal = load_journal(failed_runs / journal_rel)
        except ItemError as exc:
            warn(f"{journal_rel}: {exc.reason}; its failures are not counted")
            continue
        details = step_details(journal)  # shared by the extras and the page
        entry.update(index_extras(journal, report=report, details=details))
        completed += 1
        page_path = aide_dir / journal_page_path(report)
        if not page_path.is_file():
            layout = derive_layout(journal_rel)
            html = render_journal_page(
                journal,
                header=page_header(layout),
                report_name=PurePosixPath(report).name,
                details=details,
            )
            try:
                atomic_write_bytes(page_path, html)
                pages += 1
            except OSError as exc:
                warn(f"{page_path}: cannot write journal page ({exc.strerror or exc})")
                entry.pop("html", None)
        del journal
    return completed, pages


def _inside(rel: str) -> bool:
    path = PurePosixPath(rel)
    return (
        bool(rel) and not path.is_absolute() and all(p not in ("", ".", "..") for p in path.parts)
    )


def failures_csv(failures: list[FailureRow]) -> str:
    """One row per failure; a header row even when there are none."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    stamp = functools.cache(_utc_stamp)  # a run group's failures share its start time
    for f in failures:
        writer.writerow(
            csv_row(
                [
                    f.run_group or "",
                    "" if f.started is None else stamp(f.started),
                    f.agent or "",
                    f.task or "",
                    f.run or "",
                    f.experiment or "",
                    "" if f.step is None else f.step,
                    f.stage or "",
                    f.type or "",
                    f.message,
                    f.detail or "",
                    f.cause,
                    f.source,
                ]
            )
        )
    return buf.getvalue()


def _utc_stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
