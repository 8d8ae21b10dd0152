"""Every run's verdict, nightly: ``runs.csv``, ``summary.json`` and the evidence pages.

The verdict itself is :func:`job.model.verdict.decide`; this module runs it over
every run of every group on the drive (succeeded runs included), and writes
what people and alerts read:

* ``ROOT/runs.csv``: one row per run (mode, cause, evidence file/line/text,
  duration, steps), atomically like ``failures.csv``;
* ``ROOT/runs/<run folder>/evidence.html``: the log lines around the evidence
  and the log's last lines, numbered, each with an ``id="L<n>"`` anchor, so
  every number on the index page links to the line that justifies it;
* ``ROOT/summary.json``: counts by mode and agent, and what changed since the
  previous night's summary (read before it is overwritten), for alerting.

Cheap by design: each run costs one tail read of run.log (and two agent logs);
line numbers come from a streaming newline count.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from job.core.atomic import atomic_write_bytes, atomic_write_text
from job.core.safe_fs import ensure_real_dirs
from job.core.textsafe import csv_row
from job.model.run_evidence import RunRecord, group_runs
from job.model.runs import RunGroupDir
from job.model.verdict import (
    MODE_LABELS,
    MODES,
    SUCCEEDED,
    JournalFacts,
    LogLine,
    RunEvidence,
    Verdict,
    decide,
)
from job.report.assets import BASE_CSS
from job.report.collect import FAILED_RUNS_DIR, href, run_folder_of
from job.report.html import esc, page

RUNS_CSV = "runs.csv"
SUMMARY_JSON = "summary.json"
EVIDENCE_DIR = "runs"
EVIDENCE_PAGE = "evidence.html"
CACHE_JSON = f"{EVIDENCE_DIR}/verdicts-cache.json"
RUNS_COLUMNS = (
    "run_group",
    "run",
    "agent",
    "task",
    "seed",
    "success",
    "mode",
    "cause",
    "evidence_file",
    "evidence_line",
    "evidence",
    "duration_s",
    "steps",
)
#: A mode's share of failed runs moving by more than this many points is reported.
MOVE_POINTS = 10.0
#: Lines shown around the evidence line, and from the end of the log.
CONTEXT = 15
LAST_LINES = 60


@dataclass(frozen=True)
class RunVerdict:
    record: RunRecord
    verdict: Verdict
    steps: int | None
    fingerprint: str | None = None  # what the verdict depended on (see run_evidence.fingerprint)
    reused: bool = False  # taken from last night's cache: its logs were not read again

    @property
    def failed(self) -> bool:
        return self.verdict.mode != SUCCEEDED

    @property
    def evidence_href(self) -> str:
        """Relative to ROOT: the run's evidence page, at the evidence line."""
        link = href(EVIDENCE_DIR, self.record.run_folder, EVIDENCE_PAGE)
        line = self.verdict.evidence_line
        return f"{link}#L{line}" if line else link


def journal_facts(entries: Iterable[Mapping[str, Any]]) -> dict[str, JournalFacts]:
    """run folder -> steps (all experiments) and whether any step was a valid solution."""
    steps: Counter[str] = Counter()
    valid: dict[str, bool] = {}
    for e in entries:
        if e.get("error") or not isinstance(e.get("journal"), str):
            continue
        folder = run_folder_of(e["journal"])
        n = e.get("steps")
        steps[folder] += n if isinstance(n, int) and not isinstance(n, bool) else 0
        valid[folder] = valid.get(folder, False) or e.get("valid_solution") is True
    return {f: JournalFacts(steps[f], valid[f]) for f in valid}


def compute_verdicts(
    failed_runs: Path,
    groups: Sequence[RunGroupDir],
    entries: Iterable[Mapping[str, Any]],
    cache: Mapping[str, Any] | None = None,
) -> list[RunVerdict]:
    """A verdict for every run of every group.

    ``cache`` (:func:`read_cache`: last night's verdicts by run folder) spares
    re-reading the logs of runs whose files did not change.
    """
    facts = journal_facts(entries)
    known = cache or {}
    seen: dict[str, tuple[str, Verdict | None]] = {}

    pages = failed_runs.parent / EVIDENCE_DIR  # ROOT/runs beside ROOT/failed_runs

    def reuse(folder: str, fp: str) -> RunEvidence | None:
        hit = _cached_verdict(known.get(folder), fp)
        if hit is not None and not (pages / folder / EVIDENCE_PAGE).is_file():
            hit = None  # its page is gone: read the logs again to write it
        seen[folder] = (fp, hit[0] if hit else None)
        if hit is None:
            return None
        return RunEvidence(
            agent=None,
            success=None,
            submission=None,
            duration_s=hit[1],
            journal=facts.get(folder),
        )

    out = []
    for group in groups:
        for record in group_runs(failed_runs, group, facts, reuse):
            journal = record.evidence.journal
            fp, cached = seen.get(record.run_folder, (None, None))
            verdict = cached or decide(record.evidence)
            out.append(
                RunVerdict(
                    record, verdict, journal and journal.steps, fp, reused=cached is not None
                )
            )
    return out


def _cached_verdict(entry: Any, fp: str) -> tuple[Verdict, float | None] | None:
    if not isinstance(entry, Mapping) or entry.get("fingerprint") != fp:
        return None
    try:
        line = entry.get("evidence_line")
        duration = entry.get("duration_s")
        verdict = Verdict(
            mode=str(entry["mode"]),
            cause=str(entry["cause"]),
            evidence_file=None
            if entry.get("evidence_file") is None
            else str(entry["evidence_file"]),
            evidence_line=line if isinstance(line, int) else None,
            evidence=str(entry.get("evidence") or ""),
        )
    except (KeyError, TypeError):
        return None
    if verdict.mode not in MODES:
        return None
    return verdict, float(duration) if isinstance(duration, int | float) else None


def cache_doc(rows: Sequence[RunVerdict]) -> dict[str, Any]:
    """Tonight's verdicts by run folder, for tomorrow's :func:`compute_verdicts`."""
    return {
        "version": 1,
        "runs": {
            r.record.run_folder: {
                "fingerprint": r.fingerprint,
                "mode": r.verdict.mode,
                "cause": r.verdict.cause,
                "evidence_file": r.verdict.evidence_file,
                "evidence_line": r.verdict.evidence_line,
                "evidence": r.verdict.evidence,
                "duration_s": r.record.evidence.duration_s,
            }
            for r in rows
            if r.fingerprint
        },
    }


def read_cache(root: Path) -> dict[str, Any]:
    """Last night's verdicts (empty when missing or unreadable: everything is decided anew)."""
    try:
        doc = orjson.loads((root / CACHE_JSON).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    runs = doc.get("runs") if isinstance(doc, dict) and doc.get("version") == 1 else None
    return runs if isinstance(runs, dict) else {}


# --- runs.csv ---------------------------------------------------------------------------


def runs_csv(rows: Sequence[RunVerdict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(RUNS_COLUMNS)
    for r in rows:
        rec, v = r.record, r.verdict
        duration = rec.evidence.duration_s
        writer.writerow(
            csv_row(
                [
                    rec.group.name,
                    PurePosixPath(rec.run_key).name,
                    rec.agent or "",
                    rec.task_id or "",
                    "" if rec.seed is None else rec.seed,
                    "" if rec.success is None else str(rec.success).lower(),
                    v.mode,
                    v.cause,
                    v.evidence_file or "",
                    "" if v.evidence_line is None else v.evidence_line,
                    v.evidence,
                    "" if duration is None else round(duration),
                    "" if r.steps is None else r.steps,
                ]
            )
        )
    return buf.getvalue()


# --- evidence pages ---------------------------------------------------------------------

_EVIDENCE_CSS = (
    ".log{border:1px solid var(--line);border-radius:6px;overflow:auto}"
    ".log div{display:flex;white-space:pre-wrap;overflow-wrap:anywhere;font:12px/1.45 ui-monospace,monospace}"
    ".log a{flex:0 0 70px;text-align:right;padding-right:10px;color:var(--muted);text-decoration:none}"
    ".log div:target,.log div.hit{background:var(--mark)}.gap{color:var(--muted);padding:2px 80px}"
    ".banner{font-size:15px;border-radius:8px;padding:8px 12px;background:#fdecea;border:1px solid #f5b7b1}"
    ".banner.succeeded{background:#e9f7ef;border-color:#a9dfbf}"
)


def evidence_page(r: RunVerdict, *, depth_to_root: str) -> str:
    """The run's verdict and the numbered log lines it rests on (all text escaped)."""
    rec, v = r.record, r.verdict
    log = _evidence_log(rec.evidence.logs, v.evidence_file)
    raw = (
        href(depth_to_root + FAILED_RUNS_DIR, rec.run_folder, v.evidence_file)
        if v.evidence_file
        else None
    )
    where = (
        f"{esc(v.evidence_file)}, line {v.evidence_line}"
        if v.evidence_file and v.evidence_line
        else esc(v.evidence_file or "no log line")
    )
    body = [
        "<main>",
        f"<h1>{esc(rec.agent or '?')} · {esc(rec.task_id or '?')}</h1>",
        f'<p class="lede">{esc(rec.group.name)} / {esc(rec.run_key)} · seed {esc(rec.seed)}</p>',
        f'<p class="banner {esc(v.mode)}" id="verdict"><b>{esc(MODE_LABELS.get(v.mode, v.mode))}</b>: '
        f'{esc(v.cause)}<br><span class="small">evidence: {where}'
        + (f" · <code>{esc(v.evidence)}</code>" if v.evidence else "")
        + "</span></p>",
        f'<p class="small">{_links(raw, depth_to_root)}</p>',
    ]
    if log:
        body.append(_numbered(log, v.evidence_line))
    else:
        body.append('<p class="empty">No log lines to show.</p>')
    body.append(
        '<p class="small muted">Verdict order when several signals are present: infrastructure, '
        "time limit, resource exhaustion, submission error, code exception, failed to finish. "
        "Errors inside AIDE's search never decide a run.</p></main>"
    )
    return page(
        title=f"Verdict · {rec.run_key}",
        css=BASE_CSS + _EVIDENCE_CSS,
        body="".join(body),
        script="",
    )


def _links(raw: str | None, depth_to_root: str) -> str:
    out = [f'<a href="{esc(depth_to_root)}index.html">index</a>']
    if raw:
        out.append(f'<a href="{esc(raw)}">the whole log</a>')
    return " · ".join(out)


def _evidence_log(logs: Sequence[Sequence[LogLine]], file: str | None) -> Sequence[LogLine]:
    for log in logs:
        if log and (file is None or log[0].file == file):
            return log
    # The evidence is not a log line (a submission file): show how run.log ended.
    return next((log for log in logs if log), ())


def _numbered(log: Sequence[LogLine], line: int | None) -> str:
    """The evidence line with context, then the log's last lines; gaps marked."""
    wanted: set[int] = set()
    numbers = [entry.number for entry in log]
    if line is not None:
        wanted.update(n for n in numbers if abs(n - line) <= CONTEXT)
    wanted.update(numbers[-LAST_LINES:])
    out = ['<div class="log">']
    previous = None
    for entry in log:
        if entry.number not in wanted:
            continue
        if previous is not None and entry.number != previous + 1:
            out.append('<p class="gap">…</p>')
        previous = entry.number
        cls = ' class="hit"' if entry.number == line else ""
        out.append(
            f'<div id="L{entry.number}"{cls}><a href="#L{entry.number}">{entry.number}</a>'
            f"<span>{esc(entry.text[:4000])}</span></div>"
        )
    out.append("</div>")
    return "".join(out)


def write_evidence_pages(root: Path, rows: Iterable[RunVerdict], warn: Any) -> int:
    """One page per run whose verdict was decided tonight (reused verdicts keep their page)."""
    written = 0

    def replaced(link: Path) -> None:
        warn(f"{link}: a symbolic link in the output was replaced by a folder")

    try:  # first of all: the cache and csv written after the pages go in here too
        ensure_real_dirs(root, EVIDENCE_DIR, replaced)
    except OSError as exc:
        warn(f"{root / EVIDENCE_DIR}: cannot make the evidence folder ({exc.strerror or exc})")
    for r in rows:
        folder = r.record.run_folder
        depth = "../" * (len(PurePosixPath(folder).parts) + 1)
        path = root / EVIDENCE_DIR / folder / EVIDENCE_PAGE
        if r.reused:
            continue  # unchanged since the page was written
        try:
            # Real folders from ROOT down: a link planted at runs/ or below is replaced
            # (with a warning), never written through.
            ensure_real_dirs(
                root,
                f"{EVIDENCE_DIR}/{folder}",
                lambda link: warn(
                    f"{link}: a symbolic link in the output was replaced by a folder"
                ),
            )
            atomic_write_text(path, evidence_page(r, depth_to_root=depth))
            written += 1
        except OSError as exc:
            warn(f"{path}: cannot write evidence page ({exc.strerror or exc})")
    return written


# --- summary.json -----------------------------------------------------------------------


def summarize(
    rows: Sequence[RunVerdict], previous: Mapping[str, Any] | None, generated: datetime
) -> dict[str, Any]:
    """Counts by mode and agent, and what moved since ``previous`` (last night's summary)."""
    by_mode = Counter(r.verdict.mode for r in rows)
    by_agent: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        by_agent[r.record.agent or "(unknown agent)"][r.verdict.mode] += 1
    failed = sum(n for m, n in by_mode.items() if m != SUCCEEDED)
    groups = sorted({r.record.group.name for r in rows})
    shares = {m: _share(by_mode.get(m, 0), failed) for m in MODES if m != SUCCEEDED}
    doc: dict[str, Any] = {
        "generated_at": generated.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "runs": len(rows),
        "failed_runs": failed,
        "by_mode": {m: by_mode.get(m, 0) for m in MODES},
        "failed_share_pct": shares,
        "by_agent": {a: {m: c.get(m, 0) for m in MODES} for a, c in sorted(by_agent.items())},
        "run_groups": groups,
    }
    doc["since_previous"] = _changes(doc, previous)
    return doc


def _share(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def _changes(doc: Mapping[str, Any], previous: Mapping[str, Any] | None) -> dict[str, Any]:
    if not isinstance(previous, Mapping) or not isinstance(previous.get("by_mode"), Mapping):
        return {"previous_generated_at": None, "new_run_groups": doc["run_groups"], "moved": []}
    before_groups = previous.get("run_groups")
    before_set = set(before_groups) if isinstance(before_groups, list) else set()
    before = previous.get("failed_share_pct")
    before = before if isinstance(before, Mapping) else {}
    moved = []
    for mode, now in doc["failed_share_pct"].items():
        was = before.get(mode, 0.0)
        was = float(was) if isinstance(was, int | float) and not isinstance(was, bool) else 0.0
        if abs(now - was) > MOVE_POINTS:
            moved.append(
                {"mode": mode, "before_pct": was, "now_pct": now, "points": round(now - was, 1)}
            )
    counts = previous.get("by_mode")
    return {
        "previous_generated_at": previous.get("generated_at"),
        "new_run_groups": [g for g in doc["run_groups"] if g not in before_set],
        "moved": moved,
        "failed_runs_before": previous.get("failed_runs"),
        "by_mode_before": dict(counts) if isinstance(counts, Mapping) else {},
    }


def read_summary(path: Path, warn: Any) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        warn(f"{path.name}: previous summary unreadable ({exc}); changes not reported")
        return None
    return doc if isinstance(doc, dict) else None


def write_outputs(root: Path, rows: Sequence[RunVerdict], summary: Mapping[str, Any]) -> None:
    atomic_write_text(root / RUNS_CSV, runs_csv(rows))
    atomic_write_bytes(root / SUMMARY_JSON, orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    atomic_write_bytes(root / CACHE_JSON, orjson.dumps(cache_doc(rows)), durable=False)
