"""One AIDE journal as a self-contained HTML page: the tree, then every step.

The parse worker calls :func:`render_journal_page` with the journal it already
holds and writes the result beside the text report, so the function is pure,
single-pass and its memory is proportional to the journal.

What is rendered where, and why:

* The summary of every step (stage, parent, metric or exception, detail) and
  the tree are markup, so the page answers "what happened" at a glance, with
  no script, and a tree node is a plain link to its step.
* The bulky parts (plan, code, output, analysis: tens of MB in long runs) sit
  in one JSON block and are turned into markup only when a step is opened. A
  5,000-step journal therefore costs the browser 5,000 one-line summaries, not
  5,000 code listings; ``content-visibility`` skips laying out steps off screen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from job.analysis.assets import BASE_CSS, JOURNAL_CSS, JOURNAL_JS
from job.analysis.html import esc, fmt_int, fmt_metric, fmt_pct, json_script, page
from job.analysis.svg import Bar, bar_chart
from job.analysis.taxonomy import failure_detail
from job.analysis.tree import node_class, tree_svg
from job.journal import Journal, Node

#: Header keys with a meaning of their own (not shown in the key/value list).
INDEX_HREF = "index_href"
#: The script file name AIDE gives each step's code (its frames point into the code).
AIDE_SCRIPT = "runfile.py"
_SUMMARY_MESSAGE = 180
#: From this many steps on, the browser skips laying out steps that are off screen.
BIG_JOURNAL = 400


def render_journal_page(journal: Journal, *, header: Mapping[str, Any], report_name: str) -> str:
    """The journal's page as one HTML string (see module doc).

    ``header`` is shown as a key/value list above the tree (None values are
    left out); its ``index_href`` entry, if any, links back to the index page.
    ``report_name`` is the file name of the text report beside the page.
    """
    details = [
        failure_detail(n.error.type, n.error.message, n.term_out) if n.error else None
        for n in journal.nodes
    ]
    title = (
        " — ".join(str(v) for v in (header.get("Task"), header.get("Experiment")) if v)
        or "AIDE journal"
    )
    body = "".join(
        [
            "<main>",
            _top(journal, header, report_name, title),
            _overview(journal, details),
            _tree(journal),
            _steps(journal, details),
            "</main>",
            json_script("steps-data", _step_data(journal, details)),
        ]
    )
    return page(
        title=f"{title} · AIDE journal", css=BASE_CSS + JOURNAL_CSS, body=body, script=JOURNAL_JS
    )


def _top(journal: Journal, header: Mapping[str, Any], report_name: str, title: str) -> str:
    back = header.get(INDEX_HREF)
    nav = [f'<a href="{esc(back)}">← All runs</a>'] if back else []
    nav.append(f'<a href="{esc(report_name)}">Text report</a>')
    rows = "".join(
        f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>"
        for k, v in header.items()
        if k != INDEX_HREF and v is not None and v != ""
    )
    warnings = ""
    if journal.warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in journal.warnings)
        warnings = f'<details class="small"><summary>{len(journal.warnings)} warning(s) reading this journal</summary><ul>{items}</ul></details>'
    return (
        f'<p class="small">{" · ".join(nav)}</p><h1>{esc(title)}</h1>'
        f'<dl class="meta">{rows}</dl>{warnings}'
    )


def _overview(journal: Journal, details: list[str | None]) -> str:
    steps = journal.step_count
    buggy = journal.buggy_count
    valid = sum(1 for n in journal.nodes if n.is_buggy is False)
    stages = Counter(str(n.stage) for n in journal.nodes)
    best = journal.best_node
    best_text = "none" if best is None else f"{fmt_metric(best.metric.value)}"
    best_note = (
        "no step produced a valid metric"
        if best is None
        else f"step {best.step}, {best.metric.direction}"
    )
    cards = [
        (
            fmt_int(steps),
            "steps: "
            + ", ".join(f"{stages[s]} {s}" for s in ("draft", "debug", "improve") if stages[s]),
        ),
        (fmt_pct(buggy, steps), f"buggy ({fmt_int(buggy)} steps)"),
        (fmt_int(valid), "valid steps"),
        (best_text, f"best metric ({best_note})"),
    ]
    out = ['<div class="cards">']
    out += [f"<div class=card><b>{esc(v)}</b><span>{esc(label)}</span></div>" for v, label in cards]
    out.append("</div>")
    labels = Counter(
        d or (n.error.type or "unknown error")
        for n, d in zip(journal.nodes, details, strict=True)
        if n.error is not None
    )
    if labels:
        bars = [Bar(name, count) for name, count in labels.most_common(12)]
        out.append("<h2>Why steps failed</h2>")
        out.append(bar_chart(bars, title="Steps that raised, by cause"))
        if len(labels) > 12:
            out.append(f'<p class="small muted">…and {len(labels) - 12} more causes.</p>')
    return "".join(out)


def _tree(journal: Journal) -> str:
    legend = (
        '<p class="legend-inline small"><span><i class="dot buggy"></i>buggy</span>'
        '<span><i class="dot valid"></i>valid</span><span><i class="dot best"></i>best</span>'
        '<span><i class="dot unknown"></i>not judged</span>'
        '<span class="muted">dashed edge: debug step · number: step · below: metric · click a node to open its step</span></p>'
    )
    return f'<h2>Solution tree</h2>{legend}<div class="treebox">{tree_svg(journal)}</div>'


def _steps(journal: Journal, details: list[str | None]) -> str:
    nodes = journal.nodes
    buttons = (
        '<p class="toolbar"><span class="muted">Show:</span>'
        '<button type="button" data-filter="all" aria-pressed="true">all steps</button>'
        '<button type="button" data-filter="buggy" aria-pressed="false">buggy only</button>'
        '<button type="button" data-filter="valid" aria-pressed="false">valid only</button></p>'
    )
    out = [
        f"<h2>Steps ({fmt_int(len(nodes))})</h2>",
        buttons,
        f'<div id="steps" class="{"steps big" if len(nodes) > BIG_JOURNAL else "steps"}" data-lazy="1">',
    ]
    best = journal.best_index
    for n, detail in zip(nodes, details, strict=True):
        cls = node_class(n, best)
        out.append(
            f'<details class="step {cls}" id="node-{n.index}" data-i="{n.index}"><summary>'
            f"{_summary(n, cls, detail)}</summary><div class=body></div></details>"
        )
    out.append("</div>")
    return "".join(out)


def _summary(n: Node, cls: str, detail: str | None) -> str:
    parts = [f"<b>Step {n.step}</b>", esc(n.stage)]
    if n.parent_step is not None:
        parts[-1] += f" of step {n.parent_step}"
    if n.error is not None:
        msg = n.error.message
        if len(msg) > _SUMMARY_MESSAGE:
            msg = msg[: _SUMMARY_MESSAGE - 1] + "…"
        text = f"{n.error.type or 'error'}: {msg}" if msg else (n.error.type or "error")
        parts.append(f'<span class="err">{esc(text)}</span>')
        if detail:
            parts[-1] += f' <span class="det">→ {esc(detail)}</span>'
    elif n.is_buggy:
        parts.append('<span class="err">buggy (no exception)</span>')
    if n.metric.value is not None and n.is_buggy is not True:
        parts.append(f'<span class="ok">metric {esc(fmt_metric(n.metric.value))}</span>')
    if cls == "best":
        parts.append("★ best")
    if n.exec_time is not None:
        parts.append(f'<span class="muted">{n.exec_time:.1f} s</span>')
    return " · ".join(parts)


def _step_data(journal: Journal, details: list[str | None]) -> list[dict[str, Any]]:
    """Per step (by index) what the script renders on opening it; short keys keep it small."""
    by_id = {n.id: n.index for n in reversed(journal.nodes) if n.id is not None}
    out: list[dict[str, Any]] = []
    for n, detail in zip(journal.nodes, details, strict=True):
        item: dict[str, Any] = {}
        if n.plan:
            item["p"] = n.plan
        if n.code is not None:
            item["c"] = n.code
        if n.term_out is not None:
            item["o"] = n.term_out
        if n.analysis:
            item["a"] = n.analysis
        if n.error is not None:
            item["e"] = {
                "t": n.error.type,
                "m": n.error.message,
                "d": detail,
                "f": [_frame_text(f) for f in n.error.stack],
            }
            lines = [
                f.line
                for f in n.error.stack
                if f.line is not None and (f.file or "").endswith(AIDE_SCRIPT)
            ]
            if lines:
                item["h"] = lines
        parent = by_id.get(n.parent_id) if n.parent_id is not None else None
        if parent is not None:
            item["u"] = parent
            item["us"] = journal.nodes[parent].step
        kids = [by_id[c] for c in n.children_ids if c in by_id]
        if kids:
            item["k"] = [[k, journal.nodes[k].step] for k in kids]
        out.append(item)
    return out


def _frame_text(frame: Any) -> str:
    source = f" — {frame.source.strip()}" if frame.source else ""
    return f"{frame.location}{source}"
