"""The run-level part of ``index.html``: why the runs failed, by mode and agent.

This is what the page answers first: the share of failed runs per failure mode
(:mod:`job.model.verdict`), a 100% stacked bar per agent like the biomlbench
paper's chart, a mode x task table, infrastructure failures apart (not the
agent's fault) and what changed since the previous night. Every bar segment and
count links to the run table filtered to those runs (``#filter:mode=..;agent=..``,
read by the table's script), whose verdict cells link to each run's evidence line.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from job.model.verdict import INFRASTRUCTURE, MODE_LABELS, PRECEDENCE, SUCCEEDED, UNKNOWN
from job.report.html import esc, fmt_pct
from job.report.verdicts import RunVerdict

#: Failed-run modes in the order the page shows them (the precedence order, then unknown).
FAILED_MODES = (*PRECEDENCE, UNKNOWN)
MODE_COLOURS = {
    INFRASTRUCTURE: "#7f8c8d",
    "time_limit": "#2E86C1",
    "resource_exhaustion": "#8E44AD",
    "submission_error": "#D68910",
    "code_exception": "#C0392B",
    "did_not_finish": "#16A085",
    UNKNOWN: "#BDC3C7",
}
TOP_TASKS = 25
_ROW_H, _BAR_H, _LABEL_W, _BAR_W, _NOTE_W = 26, 18, 150, 560, 230


def filter_link(**params: str | None) -> str:
    """``#filter:mode=..;agent=..``: the run table, filtered (see INDEX_JS)."""
    parts = [f"{k}={quote(v, safe='')}" for k, v in params.items() if v]
    return "#filter:" + ";".join(parts)


def mode_options() -> str:
    return "".join(
        f'<option value="{esc(m)}">{esc(MODE_LABELS[m])}</option>'
        for m in (SUCCEEDED, *FAILED_MODES)
    )


def verdict_sections(rows: Sequence[RunVerdict], summary: Mapping[str, Any] | None) -> str:
    failed = [r for r in rows if r.failed]
    if not rows:
        return '<p class="answer">No runs found under failed_runs/.</p>'
    return "".join(
        [
            _headline(rows, failed),
            _changes(summary),
            _agents_chart(failed),
            _mode_task_table(failed),
        ]
    )


def _headline(rows: Sequence[RunVerdict], failed: Sequence[RunVerdict]) -> str:
    counts = Counter(r.verdict.mode for r in failed)
    succeeded = len(rows) - len(failed)
    if not failed:
        return f'<p class="answer" id="headline">All {len(rows):,} runs succeeded.</p>'
    parts = [
        f'<a href="{esc(filter_link(mode=m))}">{fmt_pct(counts[m], len(failed))} '
        f"{esc(_phrase(m))}</a> ({counts[m]:,})"
        for m in sorted(counts, key=lambda m: (-counts[m], FAILED_MODES.index(m)))
    ]
    infra = counts.get(INFRASTRUCTURE, 0)
    runs_were = (
        "failed run was an infrastructure failure"
        if infra == 1
        else ("failed runs were infrastructure failures")
    )
    note = (
        f' <b class="infra">{infra:,} {runs_were}: not the agent\'s fault</b> '
        "(grading server, missing image, API key)."
        if infra
        else ""
    )
    return (
        f'<p class="answer" id="headline">Of {len(failed):,} failed runs: {", ".join(parts)}.'
        f'{note} <span class="small muted">({succeeded:,} '
        f"{'run' if succeeded == 1 else 'runs'} in these groups succeeded.)"
        "</span></p>"
    )


def _phrase(mode: str) -> str:
    return {
        INFRASTRUCTURE: "failed on infrastructure",
        "time_limit": "hit the time limit",
        "resource_exhaustion": "ran out of memory, GPU memory or disk",
        "submission_error": "wrote an invalid submission",
        "code_exception": "crashed with an exception",
        "did_not_finish": "stopped without submitting",
        UNKNOWN: "left too little evidence to say",
    }.get(mode, mode)


def _changes(summary: Mapping[str, Any] | None) -> str:
    since = (summary or {}).get("since_previous")
    if not isinstance(since, Mapping) or not since.get("previous_generated_at"):
        return (
            '<p class="small muted" id="changes">Since the last run: no previous summary.json.</p>'
        )
    items = []
    new = since.get("new_run_groups") or []
    items.append(f"{len(new):,} new run groups")
    for m in since.get("moved") or []:
        items.append(
            f"<b>{esc(MODE_LABELS.get(m['mode'], m['mode']))}</b> {m['before_pct']:.0f}% → "
            f"{m['now_pct']:.0f}% of failed runs ({m['points']:+.0f} points)"
        )
    before = since.get("failed_runs_before")
    if isinstance(before, int):
        items.append(f"failed runs {before:,} → {(summary or {}).get('failed_runs', 0):,}")
    return (
        f'<p class="small" id="changes">Since the last run ({esc(since["previous_generated_at"])}): '
        + "; ".join(items)
        + ".</p>"
    )


def _agents_chart(failed: Sequence[RunVerdict]) -> str:
    by_agent: dict[str, Counter[str]] = defaultdict(Counter)
    for r in failed:
        by_agent[r.record.agent or "(unknown agent)"][r.verdict.mode] += 1
    agents = sorted(by_agent, key=lambda a: (-sum(by_agent[a].values()), a))
    modes = [m for m in FAILED_MODES if any(by_agent[a][m] for a in agents)]
    width = _LABEL_W + _BAR_W + _NOTE_W
    legend = "".join(
        f'<span><i style="background:{MODE_COLOURS[m]}"></i>{esc(MODE_LABELS[m])}</span>'
        for m in modes
    )
    height = len(agents) * _ROW_H + 8
    svg = [
        f'<svg class="chart" id="mode-chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"><title>Failure modes by agent</title>'
    ]
    for i, agent in enumerate(agents):
        y = 4 + i * _ROW_H
        total = sum(by_agent[agent].values())
        svg.append(
            f'<text x="{_LABEL_W - 8}" y="{y + _BAR_H - 4}" text-anchor="end" class="lbl">'
            f"{esc(agent)}</text>"
        )
        x = float(_LABEL_W)
        for m in modes:
            n = by_agent[agent][m]
            if not n:
                continue
            w = _BAR_W * n / total
            share = fmt_pct(n, total)
            svg.append(
                f'<a href="{esc(filter_link(mode=m, agent=agent))}" class="seg" '
                f'data-mode="{esc(m)}" data-agent="{esc(agent)}">'
                f'<rect x="{x:.1f}" y="{y}" width="{max(w, 0.5):.1f}" height="{_BAR_H}" '
                f'fill="{MODE_COLOURS[m]}"><title>{esc(agent)}: {esc(MODE_LABELS[m])} {n:,} '
                f"({share})</title></rect>"
                + (
                    f'<text x="{x + w / 2:.1f}" y="{y + _BAR_H - 5}" text-anchor="middle" '
                    f'class="seglbl">{share}</text>'
                    if w > 34
                    else ""
                )
                + "</a>"
            )
            x += w
        svg.append(
            f'<text x="{_LABEL_W + _BAR_W + 8}" y="{y + _BAR_H - 4}" class="val">'
            f"{total:,} failed runs</text>"
        )
    svg.append("</svg>")
    table = _agent_table(agents, modes, by_agent)
    return (
        '<h2 id="modes">Failure modes by agent</h2>'
        '<p class="small muted">Each bar is 100% of that agent\'s failed runs, split by the '
        "run's verdict. Click a segment or a count for those runs. When a run shows several "
        "signals the first of these decides: infrastructure, time limit, resource exhaustion, "
        "submission error, code exception, failed to finish; errors inside AIDE's search "
        "never decide a run.</p>"
        f'<div class="legend-modes small">{legend}</div>' + "".join(svg) + table
    )


def _agent_table(
    agents: Sequence[str], modes: Sequence[str], by_agent: Mapping[str, Counter[str]]
) -> str:
    head = "".join(f"<th>{esc(MODE_LABELS[m])}</th>" for m in modes)
    body = []
    for a in agents:
        total = sum(by_agent[a].values())
        cells = "".join(
            f'<td class="num"><a href="{esc(filter_link(mode=m, agent=a))}">{by_agent[a][m]:,}'
            f'</a> <span class="muted">{fmt_pct(by_agent[a][m], total)}</span></td>'
            if by_agent[a][m]
            else '<td class="num">–</td>'
            for m in modes
        )
        body.append(f'<tr><th scope="row">{esc(a)}</th>{cells}<td class="num">{total:,}</td></tr>')
    return (
        '<div class="scrollx">'
        f'<table id="mode-agent" class="small"><thead><tr><th>agent</th>{head}<th>failed runs</th>'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _mode_task_table(failed: Sequence[RunVerdict]) -> str:
    by_task: dict[str, Counter[str]] = defaultdict(Counter)
    for r in failed:
        by_task[r.record.task_id or "(unknown task)"][r.verdict.mode] += 1
    tasks = sorted(by_task, key=lambda t: (-sum(by_task[t].values()), t))
    modes = [m for m in FAILED_MODES if any(by_task[t][m] for t in tasks)]
    head = "".join(f"<th>{esc(MODE_LABELS[m])}</th>" for m in modes)
    rows = []
    for t in tasks[:TOP_TASKS]:
        cells = "".join(
            f'<td class="num"><a href="{esc(filter_link(mode=m, task=t))}">{by_task[t][m]:,}</a></td>'
            if by_task[t][m]
            else '<td class="num">–</td>'
            for m in modes
        )
        rows.append(f'<tr><th scope="row">{esc(t)}</th>{cells}</tr>')
    more = (
        f'<p class="small muted">The {TOP_TASKS} tasks with the most failed runs of {len(tasks)}.</p>'
        if len(tasks) > TOP_TASKS
        else ""
    )
    return (
        '<h3 id="mode-task-h">Failure modes by task</h3><div class="tablewrap">'
        f'<table id="mode-task" class="small"><thead><tr><th>task</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>{more}"
    )


VERDICT_CSS = (
    ".legend-modes span{display:inline-flex;align-items:center;gap:5px;margin-right:14px}"
    ".legend-modes i{width:12px;height:12px;display:inline-block;border-radius:2px}"
    "svg .seglbl{fill:#fff;font-size:11px;pointer-events:none}"
    "svg a.seg:hover rect,svg a.seg:focus rect{stroke:#1d2430;stroke-width:2}"
    "b.infra{color:#7f8c8d}#mode-agent,#mode-task{width:auto}.scrollx{overflow-x:auto;max-width:100%}"
)
