"""``ROOT/index.html``: why the agents fail, biggest causes first, then every run.

Order of the page follows the questions people ask: what is the damage
(totals), why (causes, then the detail of the common ones: which modules,
which keys, which files), where (agents, tasks), since when (over time), and
finally every run in a table that links to its journal page or log.

Charts are server-side SVG (their size does not grow with the data); the
table's rows travel as one JSON block and are drawn by the script a page at a
time, so 2,000 or 20,000 runs load equally fast.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from job.model import taxonomy
from job.report.assets import BASE_CSS, INDEX_JS
from job.report.collect import (
    Count,
    FailureRow,
    RunRow,
    SiteData,
    agents_of,
    causes,
    detail_values,
    exception_types,
    for_agent,
    stacks_by,
    time_buckets,
    top_series,
)
from job.report.html import esc, fmt_int, fmt_pct, json_script, page, plural
from job.report.svg import Bar, Stack, bar_chart, column_chart, stacked_chart
from job.report.verdict_sections import VERDICT_CSS, mode_options, verdict_sections
from job.report.verdicts import RunVerdict

#: Categories whose values are worth their own chart, with the chart's title.
DETAIL_CHARTS = {
    taxonomy.MISSING_MODULE: "Missing modules",
    taxonomy.MISSING_KEY: "Missing keys (columns asked for)",
    taxonomy.MISSING_COLUMNS: "Missing columns",
    taxonomy.FILE_NOT_FOUND: "Files not found",
    taxonomy.MISSING_ATTRIBUTE: "Missing attributes (removed or misspelt APIs)",
    taxonomy.UNDEFINED_NAME: "Undefined names",
    taxonomy.UNEXPECTED_KEYWORD: "Unexpected keyword arguments",
    taxonomy.IMPORT_NOT_ALLOWED: "Imports the agent was not allowed",
    taxonomy.CANNOT_IMPORT: "Names that could not be imported",
    taxonomy.CANNOT_READ_FILE: "Files the agent could not read",
}
TOP_CAUSES = 15
TOP_TASKS = 25
TOP_VALUES = 10

#: The table's columns, in order (``hidden`` ones feed links, tooltips and search): the
#: run's identity, then its main cause, then the numbers. ``clip`` cells stay on one
#: line, cut with an ellipsis, and carry their whole text as a tooltip.
COLUMNS: list[dict[str, Any]] = [
    {"key": "started", "label": "Started (UTC)", "search": True, "nowrap": True},
    {"key": "agent", "label": "Agent", "search": True, "clip": True},
    {"key": "task", "label": "Task", "search": True, "clip": True},
    {
        "key": "run",
        "label": "Run",
        "search": True,
        "link": "href",
        "alt": "txt",
        "title": "path",
        "clip": True,
    },
    {"key": "cause", "label": "Main cause", "search": True},
    {"key": "steps", "label": "Steps", "num": True},
    {"key": "buggy", "label": "Buggy", "num": True, "fmt": "pct"},
    {"key": "valid", "label": "Valid solution"},
    {"key": "best", "label": "Best metric", "num": True, "fmt": "g4"},
    {"key": "mode", "label": "Verdict", "search": True, "link": "ev", "clip": True},
    {"key": "verdict", "label": "Why the run failed", "search": True, "link": "ev"},
    {"key": "failures", "label": "Errors", "num": True},
    # biomlbench's own success flag: searchable, not shown (the verdict says it, and why).
    {"key": "result", "label": "biomlbench", "hidden": True, "search": True},
    {"key": "group", "label": "Run group", "hidden": True, "search": True},
    {"key": "path", "label": "Path", "hidden": True, "search": True},
    {"key": "href", "label": "", "hidden": True},
    {"key": "txt", "label": "", "hidden": True},
    {"key": "ev", "label": "", "hidden": True},
]
DEFAULT_SORT = "started"


def render_index(
    data: SiteData,
    *,
    generated_at: datetime,
    root_name: str,
    version: str,
    verdicts: Sequence[RunVerdict] = (),
    summary: Mapping[str, Any] | None = None,
) -> str:
    """The whole index page as one HTML string.

    ``verdicts`` (every run's :class:`~job.report.verdicts.RunVerdict`) and
    ``summary`` (``summary.json``, with what changed since the last run) feed the
    run-level answer at the top; the step-level sections follow. Every section is
    rendered once per agent (see :func:`by_agent`), for the agent picker.
    """
    views = agent_views(data)
    agent_of = {id(d): a for a, d in views}
    counted = {id(d): causes(d.failures) for _, d in views}  # each view's causes, counted once
    steps = {id(d): [f for f in d.failures if f.source == "journal"] for _, d in views}
    step_counted = {id(d): causes(steps[id(d)]) for _, d in views}

    def causes_of(d: SiteData) -> list[Count]:
        return counted[id(d)]

    def verdicts_of(d: SiteData) -> Sequence[RunVerdict]:
        agent = agent_of[id(d)]
        return verdicts if not agent else [v for v in verdicts if v.record.agent == agent]

    body = [
        "<main>",
        "<h1>Why do the agents fail?</h1>",
        f'<p class="lede">biomlbench failed runs in <b>{esc(root_name)}</b> · generated '
        f"{esc(generated_at.strftime('%Y-%m-%d %H:%M UTC'))}{_span(data)}</p>",
        _agent_picker(views),
        by_agent(views, lambda d: verdict_sections(verdicts_of(d), summary)),
        by_agent(views, _cards),
        by_agent(views, lambda d: _inside(d, step_counted[id(d)], steps[id(d)])),
        by_agent(views, _final_errors_section),
        by_agent(views, _types_section),
        by_agent(views, lambda d: _agents_section(d, causes_of(d))),
        by_agent(views, lambda d: _tasks_section(d, causes_of(d))),
        by_agent(views, lambda d: _time_section(d, causes_of(d))),
        _table_section(data),
        _warnings(data),
        '<footer>Also here: <a href="runs.csv">runs.csv</a> (one row per run, with its verdict) · '
        '<a href="summary.json">summary.json</a> · '
        '<a href="failures.csv">failures.csv</a> (one row per step error or final error) · '
        '<a href="aide_journals/index.json">aide_journals/index.json</a> · '
        f"made by analyze-failures {esc(version)}</footer>",
        "</main>",
        json_script("runs-data", _table_data(data.runs)),
    ]
    return page(
        title="Why do the agents fail? · biomlbench",
        css=BASE_CSS + VERDICT_CSS,
        body="".join(body),
        script=INDEX_JS,
    )


#: One view of the data per agent picker choice: ("", everything) first, then each agent's.
AgentViews = list[tuple[str, SiteData]]
_ID = re.compile(r' id="([^"]*)"')


def agent_views(data: SiteData) -> AgentViews:
    return [("", data)] + [(a, for_agent(data, a)) for a in agents_of(data)]


def by_agent(views: AgentViews, render: Callable[[SiteData], str]) -> str:
    """A section that follows the agent picker: rendered once per view, one shown at a time.

    Each copy sits in ``<div class="by-agent" data-agent="…">``; the page's script
    shows the copy of the chosen agent (``""`` is all agents) and hides the others,
    so charts stay static SVG. Element ids are kept only in the all-agents copy
    (ids are unique; links and tests address the default view) and get a suffix
    in the others. Any section opts in by being rendered through this function.
    """
    if len(views) <= 1:
        return render(views[0][1])
    out = []
    for n, (agent, view) in enumerate(views):
        html = render(view)
        if n:
            html = _ID.sub(lambda m, n=n: f' id="{m.group(1)}-a{n}"', html)
        hidden = " hidden" if n else ""
        out.append(f'<div class="by-agent" data-agent="{esc(agent)}"{hidden}>{html}</div>')
    return "".join(out)


def _agent_picker(views: AgentViews) -> str:
    """The agent picker at the top: it filters the table and switches every by-agent section."""
    options = "".join(
        f'<option value="{esc(a)}">{esc(a)} ({plural(d.totals.runs, "run")})</option>'
        for a, d in views[1:]
    )
    return (
        '<div class="agentbar"><label>Agent <select id="runs-agent">'
        f'<option value="">all agents</option>{options}</select></label>'
        '<span class="small muted">the charts, totals and table below show this choice</span>'
        "</div>"
    )


def _span(data: SiteData) -> str:
    times = [r.started for r in data.runs if r.started is not None]
    if not times:
        return ""
    first, last = min(times), max(times)
    if first.date() == last.date():
        return f" · run groups of {first:%Y-%m-%d}"
    return f" · run groups from {first:%Y-%m-%d} to {last:%Y-%m-%d}"


def _inside(data: SiteData, step_causes: list[Count], steps: Sequence[FailureRow]) -> str:
    """AIDE's step errors, for a view with journals; one line saying why not, without."""
    head = '<h2 id="inside">Inside AIDE\'s search: errors its steps raised</h2>'
    if not steps and not _has_journals(data):
        return (
            head + '<p class="small muted">None of these runs kept an AIDE journal, so there '
            "is no search to look inside: the verdicts above and the last errors below say "
            "why they failed.</p>"
        )
    return (
        head + '<p class="small muted">What went wrong along the way, not why runs failed: AIDE '
        "debugs its own failing steps, so a run can raise dozens of step errors and still "
        "find a solution. The verdicts above decide why runs failed.</p>"
        + _answer(step_causes, len(steps))
        + _causes_section(data, step_causes, steps)
    )


def _has_journals(data: SiteData) -> bool:
    return bool(data.totals.journals or data.totals.unreadable_journals)


def _answer(all_causes: list[Count], failures: int) -> str:
    if not all_causes:
        return '<p class="small">No step errors recorded.</p>'
    top = [
        f"<b>{esc(c.name)}</b> ({fmt_pct(c.failures, failures)} of step errors, in {plural(c.runs, 'run')})"
        for c in all_causes[:3]
    ]
    return f'<p class="small">Most frequent step errors: {", ".join(top)}.</p>'


def _final_errors_section(data: SiteData) -> str:
    """Runs without a journal: the last error in their logs (one per run, not per step)."""
    finals = [f for f in data.failures if f.source == "log"]
    counts = causes(finals)
    bars = [Bar(c.name, c.failures, "") for c in counts[:TOP_CAUSES]]
    return (
        '<h2 id="final-errors">Last error in the logs of runs without a journal</h2>'
        '<p class="small muted">Biomni, STELLA, MLAgentBench (and AIDE runs that left no '
        "journal): the last error their logs show, one per run.</p>"
        + bar_chart(bars, title="Runs by last error in their logs", colour="#B9770E")
    )


def _word(count: int, word: str, many: str | None = None) -> str:
    """The word alone, in the form :func:`plural` gives it: a card shows its number apart."""
    return plural(count, word, many).partition(" ")[2]


def _cards(data: SiteData) -> str:
    t = data.totals
    has_journals = _has_journals(data) or any(f.source == "journal" for f in data.failures)
    # (index, value, label): the index names the card for the page's script and
    # tests whichever cards are shown; the AIDE ones only where there are journals.
    cards = [
        (0, fmt_int(t.run_groups), _word(t.run_groups, "run group")),
        (
            1,
            fmt_int(t.runs),
            f"{_word(t.runs, 'run')} ({fmt_int(t.runs_without_journal)} without a journal)",
        ),
    ]
    if has_journals:
        cards += [
            (
                2,
                fmt_int(t.journals),
                _word(t.journals, "AIDE journal")
                + (f" (+{t.unreadable_journals} unreadable)" if t.unreadable_journals else ""),
            ),
            (3, fmt_int(t.steps), f"{_word(t.steps, 'step')} in the journals"),
            (4, fmt_pct(t.buggy_steps, t.steps), f"of steps buggy ({fmt_int(t.buggy_steps)})"),
            (
                5,
                f"{fmt_int(t.runs_with_valid_solution)} of {fmt_int(t.journal_runs)}",
                f"AIDE {_word(t.journal_runs, 'run')} found ≥ 1 valid solution",
            ),
        ]
    failures_label = (
        "(steps that raised + final errors of other runs)"
        if has_journals
        else "(last errors in their logs)"
    )
    cards.append((6, fmt_int(t.failures), f"{_word(t.failures, 'failure')} {failures_label}"))
    items = "".join(
        f'<div class="card" data-total="{i}"><b>{esc(v)}</b><span>{esc(label)}</span></div>'
        for i, v, label in cards
    )
    return f'<div class="cards grid {card_columns(len(cards))}" id="totals">{items}</div>'


def card_columns(count: int, widest: int = 4) -> str:
    """The grid class for ``count`` cards: rows as even as they can be, none with one card.

    Up to ``widest`` columns, the most that leave the last row full or one short
    (7 cards: 4 + 3, never 6 + 1; 9 cards: 3 rows of 3); failing that, the most
    columns up to ``widest + 1`` that leave no card alone (10 cards: 5 + 5).
    """
    if count <= widest:
        return f"cols-{max(count, 1)}"
    for cols in range(widest, 2, -1):
        if count % cols in (0, cols - 1):
            return f"cols-{cols}"
    for cols in range(widest + 1, 1, -1):
        if count % cols != 1:
            return f"cols-{cols}"
    return f"cols-{widest}"


def _causes_section(data: SiteData, all_causes: list[Count], failures: Sequence[FailureRow]) -> str:
    bars = [Bar(c.name, c.failures, f"in {plural(c.runs, 'run')}") for c in all_causes[:TOP_CAUSES]]
    out = [
        '<h3 id="causes">Step errors by cause</h3>',
        '<p class="small muted">One count per AIDE step that raised. The cause is the detail '
        "that matters (which module, which key…) grouped by kind, or else the exception type.</p>",
        bar_chart(bars, title="AIDE step errors by cause"),
    ]
    if len(all_causes) > TOP_CAUSES:
        rest = sum(c.failures for c in all_causes[TOP_CAUSES:])
        out.append(
            f'<p class="small muted">…and {plural(len(all_causes) - TOP_CAUSES, "more cause")} with '
            f"{plural(rest, 'failure')} (see the table and failures.csv).</p>"
        )
    charts = []
    for count in all_causes:
        title = DETAIL_CHARTS.get(count.name)
        if title is None:
            continue
        values = detail_values(failures, count.name)
        if not values:
            continue
        bars = [Bar(v.name, v.failures, f"in {plural(v.runs, 'run')}") for v in values[:TOP_VALUES]]
        more = (
            f'<p class="small muted">…and {len(values) - TOP_VALUES} more.</p>'
            if len(values) > TOP_VALUES
            else ""
        )
        chart = bar_chart(bars, title=title, width=600, label_width=250)
        charts.append(f"<div><h3>{esc(title)}</h3>{chart}{more}</div>")
    if charts:
        out.append(f'<div class="grid2" id="details">{"".join(charts)}</div>')
    return "".join(out)


def _types_section(data: SiteData) -> str:
    types = exception_types(data.failures)
    bars = [Bar(c.name, c.failures, f"in {plural(c.runs, 'run')}") for c in types[:TOP_CAUSES]]
    return '<h2 id="types">Exceptions by type</h2>' + bar_chart(
        bars, title="Failures by exception type", colour="#6A3D9A"
    )


def _note_for(rows: list[RunRow]) -> str:
    journals = [r for r in rows if r.source == "journal"]
    note = plural(len(rows), "run")
    if journals:
        valid = sum(1 for r in journals if r.valid)
        note += f", {fmt_pct(valid, len(journals))} valid"
    return note


def _agents_section(data: SiteData, all_causes: list[Count]) -> str:
    # The overall top causes are mostly AIDE's; each agent's own top causes are added
    # so a small agent's bar is not all "other".
    extra: list[str] = []
    by_agent: dict[str, list[FailureRow]] = {}
    for f in data.failures:
        by_agent.setdefault(f.agent or "(unknown agent)", []).append(f)
    base = top_series(all_causes)
    for rows in by_agent.values():
        extra += [c.name for c in causes(rows)[:3] if c.name not in base and c.name not in extra]
    series = [s for s in base if s != "other"] + extra[:6]
    if len(all_causes) > len(series):
        series.append("other")
    stacks = stacks_by(data.failures, lambda f: f.agent or "(unknown agent)", series)
    rows_by: dict[str, list[RunRow]] = {}
    for r in data.runs:
        rows_by.setdefault(r.agent or "(unknown agent)", []).append(r)
    order = sorted(stacks, key=lambda a: (-sum(stacks[a].values()), a))
    bars = [Stack(a, stacks[a], _note_for(rows_by.get(a, []))) for a in order]
    return (
        '<h2 id="agents">Errors by agent</h2><p class="small muted">Each bar is 100% of that '
        "agent's errors (AIDE: every step that raised; the others: the last error in a failed "
        "run's logs), split by cause; the numbers are errors, runs and the share of AIDE runs "
        "that found a valid solution. Why runs failed is in the failure modes above.</p>"
        + stacked_chart(bars, title="Failure causes by agent", series=series, unit="failures")
    )


def _tasks_section(data: SiteData, all_causes: list[Count]) -> str:
    series = top_series(all_causes)
    stacks = stacks_by(data.failures, lambda f: f.task or "(unknown task)", series)
    rows_by: dict[str, list[RunRow]] = {}
    for r in data.runs:
        rows_by.setdefault(r.task or "(unknown task)", []).append(r)
    order = sorted(stacks, key=lambda k: (-sum(stacks[k].values()), k))
    bars = [Stack(k, stacks[k], _note_for(rows_by.get(k, []))) for k in order[:TOP_TASKS]]
    more = (
        f'<p class="small muted">Showing the {TOP_TASKS} tasks with the most failures of {len(order)}.</p>'
        if len(order) > TOP_TASKS
        else ""
    )
    return (
        '<h2 id="tasks">Errors by task</h2>'
        + stacked_chart(bars, title="Failure causes by task", series=series, unit="failures")
        + more
    )


def _time_section(data: SiteData, all_causes: list[Count]) -> str:
    series = top_series(all_causes)
    labels, bucket = time_buckets(f.started for f in data.failures if f.started is not None)
    if not labels:
        return '<h2 id="time">Errors over time</h2><p class="empty">No run-group timestamps to plot.</p>'
    stacks = stacks_by(data.failures, lambda f: bucket(f.started), series)
    runs_per = Counter(bucket(r.started) for r in data.runs if r.started is not None)
    cols = [
        Stack(label, stacks.get(label, Counter()), plural(runs_per.get(label, 0), "run"))
        for label in labels
    ]
    period = "week" if labels[0].startswith("wk ") else "day" if len(labels[0]) == 10 else "month"
    return (
        f'<h2 id="time">Errors over time</h2><p class="small muted">Errors per {period} of the run '
        "groups' start, by cause.</p>"
        + column_chart(cols, title="Failures over time", series=series)
    )


def _table_section(data: SiteData) -> str:
    heads = "".join(
        f'<th data-k="{esc(c["key"])}" aria-sort="none" scope="col"><button type="button">{esc(c["label"])}</button></th>'
        for c in COLUMNS
        if not c.get("hidden")
    )
    return (
        '<h2 id="runs-h">All runs</h2>'
        '<div class="toolbar">'
        '<input type="search" id="runs-filter" placeholder="Filter: task, agent, cause, run…" '
        'aria-label="Filter runs">'
        f'<label>Verdict <select id="runs-mode"><option value="">all</option>{mode_options()}</select></label>'
        '<label><input type="checkbox" id="runs-nosolution"> only runs without a valid solution</label>'
        '<span id="runs-count" class="muted" aria-live="polite"></span></div>'
        '<div class="tablewrap"><table id="runs"><thead><tr>'
        f'{heads}</tr></thead><tbody id="runs-body"></tbody></table>'
        '<p><button type="button" id="runs-more" hidden>Show more</button></p></div>'
        "<noscript><p>The table needs JavaScript; failures.csv has the same data.</p></noscript>"
    )


def _warnings(data: SiteData) -> str:
    if not data.warnings:
        return ""
    items = "".join(f"<li>{esc(w)}</li>" for w in data.warnings[:200])
    extra = f"<li>…and {len(data.warnings) - 200} more</li>" if len(data.warnings) > 200 else ""
    return (
        f'<details class="small"><summary>{plural(len(data.warnings), "problem")} while building this '
        f"page</summary><ul>{items}{extra}</ul></details>"
    )


def _table_data(runs: list[RunRow]) -> dict[str, Any]:
    cols = [{k: v for k, v in c.items()} for c in COLUMNS]
    rows = [_row(r) for r in runs]
    return {"cols": cols, "rows": rows, "sort": DEFAULT_SORT}


def _row(r: RunRow) -> list[Any]:
    short = (r.run or "?").rsplit("_", 1)[-1][:8] if r.run else "?"
    label = f"{short} · {r.experiment}" if r.experiment else short
    buggy = r.buggy / r.steps if r.steps and r.buggy is not None else None
    valid = None if r.valid is None else ("yes" if r.valid else "no")
    result = {True: "succeeded", False: "failed", None: ""}[r.success]
    values = {
        "started": r.started.strftime("%Y-%m-%d %H:%M") if r.started else None,
        "agent": r.agent,
        "task": r.task,
        "run": label,
        "steps": r.steps,
        "buggy": None if buggy is None else round(buggy, 4),
        "valid": valid,
        "best": r.best_metric if r.best_metric == r.best_metric else None,  # nan -> blank
        "failures": r.failures,
        "mode": r.mode,
        "verdict": r.verdict,
        "ev": r.evidence_href,
        "cause": r.cause,
        "result": result,
        "group": r.run_group,
        "path": r.run_folder + (f" / {r.experiment}" if r.experiment else ""),
        "href": r.href,
        "txt": r.txt_href,
    }
    return [values[c["key"]] for c in COLUMNS]
