"""Turn index entries and log-derived runs into the index page's data (pure, no I/O).

Two kinds of run feed the page: AIDE journals (one ``index.json`` entry each,
carrying the fields of :func:`job.model.extras.index_extras`) and failed runs
without a journal (:class:`job.model.runs.OtherRun`, read from logs). Both
become :class:`RunRow` (the table) and :class:`FailureRow` (the taxonomy and
``failures.csv``): a *failure* is one AIDE step that raised, or the final error
of a run without a journal.

Kept free of I/O so the numbers on the page can be unit tested against the
index they came from.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from job.model.extras import journal_page_path
from job.model.runs import OtherRun, group_time
from job.model.taxonomy import detail_category

AIDE_DIR = "aide_journals"
FAILED_RUNS_DIR = "failed_runs"
NO_EXCEPTION = "(error line, no exception)"
NO_ERROR_FOUND = "(no error found in logs)"
UNREADABLE = "(journal unreadable)"


@dataclass(frozen=True, slots=True)
class FailureRow:
    """One step that raised (AIDE) or one run's final error (other agents).

    ``category``, ``cause`` and ``label`` are decided once, when the row is made:
    every chart and table of the page reads them again (a cause ~10 times per
    failure), and a drive with months of runs holds hundreds of thousands of rows.
    """

    run_group: str | None
    started: datetime | None
    agent: str | None
    task: str | None
    run: str | None  # the run folder's name, <task>_<uuid>
    experiment: str | None
    step: int | None
    stage: str | None
    type: str | None
    message: str
    detail: str | None
    source: str  # "journal" or "log"
    run_key: str  # the run row this belongs to
    #: The detail's category: "missing module" for "missing module: xgboost".
    category: str | None = field(init=False, repr=False, compare=False)
    #: What the charts count: the detail's category, else the exception type.
    cause: str = field(init=False, repr=False, compare=False)
    #: The most specific name: the detail, else the type, else the cause.
    label: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        category = detail_category(self.detail)
        cause = category or self.type or (NO_EXCEPTION if self.message else NO_ERROR_FOUND)
        object.__setattr__(self, "category", category)  # frozen: set once, here
        object.__setattr__(self, "cause", cause)
        object.__setattr__(self, "label", self.detail or self.type or cause)


@dataclass(slots=True)
class RunRow:
    """One row of the table: a journal, or a failed run without one."""

    key: str
    run_group: str | None
    started: datetime | None
    agent: str | None
    task: str | None
    run: str | None
    experiment: str | None
    steps: int | None
    buggy: int | None
    valid: bool | None
    best_metric: float | None
    failures: int
    cause: str  # the run's most frequent failure, e.g. "missing module: xgboost ×3"
    href: str | None  # relative to ROOT: the journal page, or the log for other runs
    txt_href: str | None
    success: bool | None  # biomlbench's flag in metadata.json
    source: str  # "journal", "log" or "unreadable"
    run_folder: str
    mode: str | None = None  # the run's verdict (job.model.verdict), set by the site build
    verdict: str | None = None  # the verdict's cause
    evidence_href: str | None = None  # relative to ROOT: the evidence page at its line


@dataclass
class Totals:
    run_groups: int = 0
    runs: int = 0
    journals: int = 0
    unreadable_journals: int = 0
    steps: int = 0
    buggy_steps: int = 0
    journal_runs: int = 0
    runs_with_valid_solution: int = 0
    runs_without_journal: int = 0
    failures: int = 0


@dataclass
class SiteData:
    totals: Totals
    runs: list[RunRow]
    failures: list[FailureRow]
    warnings: list[str] = field(default_factory=list)


def run_folder_of(journal: str) -> str:
    """``G/dom/task_uuid/logs/exp/journal.json`` -> ``G/dom/task_uuid``."""
    parts = PurePosixPath(journal).parts
    return "/".join(parts[:-3])


def href(*parts: str) -> str:
    """A relative link to a file below ROOT; each path piece percent-encoded."""
    return "/".join(quote(p, safe="/") for p in parts if p)


def collect(
    entries: Sequence[Mapping[str, Any]],
    others: Sequence[OtherRun],
    outcomes: Mapping[str, bool],
    group_names: Iterable[str] = (),
) -> SiteData:
    """The page's rows, failures and totals.

    ``entries`` are index entries (dicts) with the extras fields; ``others`` the
    failed runs without a journal; ``outcomes`` run folder -> metadata
    ``success``; ``group_names`` run groups found on disk (some have no journal).
    """
    runs: list[RunRow] = []
    failures: list[FailureRow] = []
    for entry in entries:
        row, rows = _journal_run(entry, outcomes)
        runs.append(row)
        failures.extend(rows)
    for other in others:
        row, rows = _other_run(other)
        runs.append(row)
        failures.extend(rows)
    totals = _totals(entries, runs, failures, group_names)
    return SiteData(totals, runs, failures)


def _journal_run(
    entry: Mapping[str, Any], outcomes: Mapping[str, bool]
) -> tuple[RunRow, list[FailureRow]]:
    journal = str(entry["journal"])
    folder = run_folder_of(journal)
    group = entry.get("run_group")
    started = group_time(group) if isinstance(group, str) else None
    key = f"{folder}#{entry.get('experiment') or ''}"
    common = {
        "run_group": group,
        "started": started,
        "agent": entry.get("agent"),
        "task": entry.get("task_id") or entry.get("task"),
        "run": entry.get("run_id"),
        "experiment": entry.get("experiment"),
    }
    failures = [
        FailureRow(
            **common,
            step=_int(f.get("step")),
            stage=f.get("stage"),
            type=f.get("type"),
            message=str(f.get("message") or ""),
            detail=f.get("detail"),
            source="journal",
            run_key=key,
        )
        for f in entry.get("failures") or ()
        if isinstance(f, Mapping)
    ]
    report = entry.get("report")
    error = entry.get("error")
    page = entry.get("html") or (journal_page_path(report) if report else None)
    row = RunRow(
        key=key,
        **common,
        steps=_int(entry.get("steps")),
        buggy=_int(entry.get("buggy_steps")),
        valid=entry.get("valid_solution")
        if isinstance(entry.get("valid_solution"), bool)
        else None,
        best_metric=_float(entry.get("best_metric")),
        failures=len(failures),
        cause=f"{UNREADABLE}: {error}" if error else main_cause(failures),
        href=href(AIDE_DIR, page) if page and not error else None,
        txt_href=href(AIDE_DIR, report) if report and not error else None,
        success=outcomes.get(folder),
        source="unreadable" if error else "journal",
        run_folder=folder,
    )
    return row, failures


def _other_run(other: OtherRun) -> tuple[RunRow, list[FailureRow]]:
    started = other.group.started
    run_name = PurePosixPath(other.run_key).name
    key = f"{other.run_folder}#"
    error = other.error
    failure = FailureRow(
        run_group=other.group.name,
        started=started,
        agent=other.agent,
        task=other.task_id,
        run=run_name,
        experiment=None,
        step=None,
        stage=None,
        type=error.type if error else None,
        message=error.message if error else "",
        detail=error.detail if error else None,
        source="log",
        run_key=key,
    )
    log = other.log or other.run_log
    row = RunRow(
        key=key,
        run_group=other.group.name,
        started=started,
        agent=other.agent,
        task=other.task_id,
        run=run_name,
        experiment=None,
        steps=None,
        buggy=None,
        valid=None,
        best_metric=None,
        failures=1,
        cause=failure.label if error else NO_ERROR_FOUND,
        href=href(FAILED_RUNS_DIR, log) if log else None,
        txt_href=None,
        success=other.success,
        source="log",
        run_folder=other.run_folder,
    )
    return row, [failure]


def main_cause(failures: Sequence[FailureRow]) -> str:
    """The run's most frequent failure (first seen wins ties), with its count."""
    if not failures:
        return ""
    counts = Counter(f.label for f in failures)
    label, n = max(counts.items(), key=lambda kv: kv[1])  # max keeps the first on ties
    return label if n == 1 else f"{label} ×{n}"


def _totals(
    entries: Sequence[Mapping[str, Any]],
    runs: Sequence[RunRow],
    failures: Sequence[FailureRow],
    group_names: Iterable[str],
) -> Totals:
    t = Totals()
    groups = {g for g in group_names if g}
    groups.update(r.run_group for r in runs if r.run_group)
    t.run_groups = len(groups)
    t.runs = len({r.run_folder for r in runs})
    ok = [e for e in entries if not e.get("error")]
    t.journals = len(ok)
    t.unreadable_journals = len(entries) - len(ok)
    t.steps = sum(_int(e.get("steps")) or 0 for e in ok)
    t.buggy_steps = sum(_int(e.get("buggy_steps")) or 0 for e in ok)
    journal_runs: dict[str, bool] = {}
    for r in runs:
        if r.source == "journal":
            journal_runs[r.run_folder] = journal_runs.get(r.run_folder, False) or bool(r.valid)
    t.journal_runs = len(journal_runs)
    t.runs_with_valid_solution = sum(journal_runs.values())
    t.runs_without_journal = sum(1 for r in runs if r.source == "log")
    t.failures = len(failures)
    return t


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# --- aggregates for the charts ----------------------------------------------------------


@dataclass(frozen=True)
class Count:
    name: str
    failures: int
    runs: int  # distinct runs (table rows) affected


def count_by(failures: Iterable[FailureRow], key: Any) -> list[Count]:
    """Failures and distinct runs per ``key(failure)``, biggest first (then by name)."""
    n: Counter[str] = Counter()
    runs: dict[str, set[str]] = defaultdict(set)
    for f in failures:
        k = key(f)
        if k is None:
            continue
        n[k] += 1
        runs[k].add(f.run_key)
    return sorted(
        (Count(k, v, len(runs[k])) for k, v in n.items()), key=lambda c: (-c.failures, c.name)
    )


def causes(failures: Iterable[FailureRow]) -> list[Count]:
    return count_by(failures, lambda f: f.cause)


def exception_types(failures: Iterable[FailureRow]) -> list[Count]:
    """By exception class; failures without one (ERROR lines, nothing found) apart."""
    return count_by(failures, lambda f: f.type or (NO_EXCEPTION if f.message else NO_ERROR_FOUND))


def detail_values(failures: Iterable[FailureRow], category: str) -> list[Count]:
    """For one category (e.g. "missing module"), how often each value occurred."""

    def value(f: FailureRow) -> str | None:
        if f.detail is None or f.category != category or ": " not in f.detail:
            return None
        return f.detail.split(": ", 1)[1]

    return count_by(failures, value)


def top_series(counts: Sequence[Count], limit: int = 9) -> list[str]:
    """Chart series: the biggest causes, then "other" for the rest."""
    names = [c.name for c in counts[:limit]]
    if len(counts) > limit:
        names.append("other")
    return names


def stacks_by(
    failures: Iterable[FailureRow], key: Any, series: Sequence[str]
) -> dict[str, Counter[str]]:
    """Group -> cause counts, causes outside ``series`` folded into "other"."""
    known = set(series)
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for f in failures:
        group = key(f)
        if group is None:
            continue
        cause = f.cause if f.cause in known else "other"
        out[group][cause] += 1
    return out


def time_bucket(started: datetime, span: timedelta) -> str:
    """A day, an ISO week or a month, so the chart has a readable number of columns."""
    if span <= timedelta(days=120):
        return started.strftime("%Y-%m-%d")
    if span <= timedelta(days=3 * 365):
        monday = started - timedelta(days=started.weekday())
        return "wk " + monday.strftime("%Y-%m-%d")
    return started.strftime("%Y-%m")


def time_buckets(times: Iterable[datetime]) -> tuple[list[str], Any]:
    """Every bucket from the first to the last time (empty ones too) and the bucketing."""
    ordered = sorted(times)
    if not ordered:
        return [], lambda _t: None
    span = ordered[-1] - ordered[0]

    @functools.cache  # failures share their run group's time: format each time once
    def labelled(t: datetime) -> str:
        return time_bucket(t, span)

    def bucket(t: datetime | None) -> str | None:
        return None if t is None else labelled(t)

    labels: list[str] = []
    step = timedelta(days=1)
    t = ordered[0]
    while t <= ordered[-1] + step:
        label = time_bucket(t, span)
        if not labels or labels[-1] != label:
            labels.append(label)
        t += step
    last = bucket(ordered[-1])
    while labels and labels[-1] != last:
        labels.pop()
    return labels, bucket


def agents_of(data: SiteData) -> list[str]:
    """The agents named in the runs, in alphabetical order (what the agent picker offers)."""
    return sorted({r.agent for r in data.runs if r.agent})


def for_agent(data: SiteData, agent: str) -> SiteData:
    """The runs and failures of one agent, with totals recounted from those rows.

    The index renders each filterable section once per agent from this, so a section
    shows that agent's numbers without any computation in the browser.
    """
    runs = [r for r in data.runs if r.agent == agent]
    failures = [f for f in data.failures if f.agent == agent]
    t = Totals()
    t.run_groups = len({r.run_group for r in runs if r.run_group})
    t.runs = len({r.run_folder for r in runs})
    journals = [r for r in runs if r.source == "journal"]
    t.journals = len(journals)
    t.unreadable_journals = sum(1 for r in runs if r.source == "unreadable")
    t.steps = sum(r.steps or 0 for r in journals)
    t.buggy_steps = sum(r.buggy or 0 for r in journals)
    journal_runs: dict[str, bool] = {}
    for r in journals:
        journal_runs[r.run_folder] = journal_runs.get(r.run_folder, False) or bool(r.valid)
    t.journal_runs = len(journal_runs)
    t.runs_with_valid_solution = sum(journal_runs.values())
    t.runs_without_journal = sum(1 for r in runs if r.source == "log")
    t.failures = len(failures)
    return SiteData(t, runs, failures)
