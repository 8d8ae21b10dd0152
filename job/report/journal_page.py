"""One AIDE journal as a self-contained HTML page: the tree, then every step.

The parse worker calls :func:`render_journal_page` with the journal it already
holds and writes the result beside the text report, so the function is pure,
single-pass and its memory is proportional to the journal.

What is rendered where, and why (a 5,000-step journal must not freeze the
browser; measured with ``bench/html_scale.py``):

* Markup: the header, the overview with its chart, the tree's edges. Python
  also lays the tree out, so the script does no geometry.
* ``steps-meta`` (JSON, small): per step its number, stage, parent, class
  (buggy / valid / best / unknown), position in the tree, one-line error,
  detail and metric. The script draws only the tree nodes in view and the
  step summaries in chunks of :data:`CHUNK` as they are scrolled to.
* ``body-<c>`` (JSON, one block per chunk): plan, code, output, analysis and
  stack of each step, parsed only when a step of that chunk is opened. Tens
  of MB of code and output never become markup unless someone asks.

Everything from the journal is escaped (:mod:`job.report.html`) and the
script only ever sets ``textContent``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from job.model.journal import Journal, Node
from job.model.taxonomy import step_details
from job.report.assets import BASE_CSS, JOURNAL_CSS, JOURNAL_JS
from job.report.html import (
    esc,
    fmt_int,
    fmt_metric,
    fmt_pct,
    json_script_bytes,
    page_bytes,
    plural,
    sibling_href,
)
from job.report.svg import Bar, bar_chart
from job.report.tree import R, edges_svg, layout, node_class, shows_metric

#: Header keys with a meaning of their own (not shown in the key/value list).
INDEX_HREF = "index_href"
#: The script file name AIDE gives each step's code (its frames point into the code).
AIDE_SCRIPT = "runfile.py"
#: Steps per chunk: summaries are drawn, and bodies parsed, a chunk at a time.
CHUNK = 100
_SUMMARY_MESSAGE = 180


def render_journal_page(
    journal: Journal,
    *,
    header: Mapping[str, Any],
    report_name: str,
    details: Sequence[str | None] | None = None,
) -> bytes:
    """The journal's page as one UTF-8 HTML document (see module doc).

    ``header`` is shown as a key/value list above the tree (None values are
    left out); its ``index_href`` entry, if any, links back to the index page.
    ``report_name`` is the file name of the text report beside the page.
    ``details`` is :func:`~job.model.taxonomy.step_details` of the journal, when
    the caller has it already.
    """
    nodes = journal.nodes
    if details is None:
        details = step_details(journal)
    pos, children, width, height = layout(journal)
    title = (
        " — ".join(str(v) for v in (header.get("Task"), header.get("Experiment")) if v)
        or "AIDE journal"
    )
    parts = [
        "<main>",
        _top(journal, header, report_name, title),
        _overview(journal, details),
        '<h2 id="tree-h">Solution tree</h2>',
        _legend(),
        f'<div class="treebox" id="treebox"><svg id="tree" class="tree" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="group" '
        f'aria-label="Solution tree of {len(nodes)} steps" xmlns="http://www.w3.org/2000/svg">'
        f'{edges_svg(journal, pos, children)}<g id="tree-nodes"></g></svg></div>',
        f'<h2 id="steps-h">Steps ({fmt_int(len(nodes))})</h2>',
        _filters(),
        f'<div id="steps" class="steps" data-chunk="{CHUNK}"></div>',
        f'<noscript><p>Drawing the tree\'s nodes and the steps needs JavaScript; <a href="{esc(sibling_href(report_name))}">'
        "the text report</a> has the same content.</p></noscript>",
        "</main>",
    ]
    body = [
        "".join(parts).encode("utf-8"),
        json_script_bytes("steps-meta", _meta(journal, details, pos)),
    ]
    by_id = {n.id: n.index for n in reversed(nodes) if n.id is not None}  # first id wins
    for start in range(0, len(nodes), CHUNK):
        chunk = nodes[start : start + CHUNK]
        body.append(json_script_bytes(f"body-{start // CHUNK}", [_body(n, by_id) for n in chunk]))
    return page_bytes(
        title=f"{title} · AIDE journal",
        css=BASE_CSS + JOURNAL_CSS,
        body=body,
        script=JOURNAL_JS,
    )


def _top(journal: Journal, header: Mapping[str, Any], report_name: str, title: str) -> str:
    back = header.get(INDEX_HREF)
    nav = [f'<a href="{esc(back)}">← All runs</a>'] if back else []
    nav.append(f'<a href="{esc(sibling_href(report_name))}">Text report</a>')
    rows = "".join(
        f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>"
        for k, v in header.items()
        if k != INDEX_HREF and v is not None and v != ""
    )
    warnings = ""
    if journal.warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in journal.warnings)
        warnings = (
            f'<details class="small"><summary>{len(journal.warnings)} warning(s) reading this '
            f"journal</summary><ul>{items}</ul></details>"
        )
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
    best_text = "none" if best is None else fmt_metric(best.metric.value)
    best_note = (
        "no step produced a valid metric"
        if best is None
        else f"step {best.step}, {best.metric.direction}"
    )
    stage_text = ", ".join(f"{stages[s]} {s}" for s in ("draft", "debug", "improve") if stages[s])
    cards = [
        (fmt_int(steps), f"steps ({stage_text})" if stage_text else "steps"),
        (fmt_pct(buggy, steps), f"buggy ({plural(buggy, 'step')})"),
        (fmt_int(valid), "valid steps"),
        (best_text, f"best metric ({best_note})"),
    ]
    out = ['<div class="cards" id="overview">']
    out += [
        f'<div class="card"><b>{esc(v)}</b><span>{esc(label)}</span></div>' for v, label in cards
    ]
    out.append("</div>")
    labels = Counter(
        d or (n.error.type or "unknown error")
        for n, d in zip(journal.nodes, details, strict=True)
        if n.error is not None
    )
    if labels:
        bars = [Bar(name, count) for name, count in labels.most_common(12)]
        out.append('<h2 id="why">Why steps failed</h2>')
        out.append(bar_chart(bars, title="Steps that raised, by cause"))
        if len(labels) > 12:
            out.append(f'<p class="small muted">…and {len(labels) - 12} more causes.</p>')
    return "".join(out)


def _legend() -> str:
    return (
        '<p class="legend-inline small"><span><i class="dot buggy"></i>buggy</span>'
        '<span><i class="dot valid"></i>valid</span><span><i class="dot best"></i>best</span>'
        '<span><i class="dot unknown"></i>not judged</span><span class="muted">dashed edge: '
        "debug step · number: step · below: metric · click a node to open its step</span></p>"
    )


def _filters() -> str:
    return (
        '<p class="toolbar"><span class="muted">Show:</span>'
        '<button type="button" data-filter="all" aria-pressed="true">all steps</button>'
        '<button type="button" data-filter="buggy" aria-pressed="false">buggy only</button>'
        '<button type="button" data-filter="valid" aria-pressed="false">valid only</button></p>'
    )


def _meta(journal: Journal, details: list[str | None], pos: list[Any]) -> dict[str, Any]:
    """What the script needs at load: one small record per step (by index)."""
    best = journal.best_index
    steps = []
    for n, detail in zip(journal.nodes, details, strict=True):
        item: dict[str, Any] = {
            "n": n.step,
            "g": str(n.stage),
            "c": node_class(n, best),
            "x": round(pos[n.index].x),
            "y": round(pos[n.index].y),
        }
        if n.parent_step is not None:
            item["ps"] = n.parent_step
        if n.error is not None:
            item["e"] = _error_line(n)
            if detail:
                item["d"] = detail
        elif n.is_buggy is True and n.analysis:
            item["r"] = buggy_reason(n.analysis)
        if shows_metric(n):
            item["m"] = fmt_metric(n.metric.value)
        if n.exec_time is not None:
            item["t"] = f"{n.exec_time:.1f} s"
        steps.append(item)
    return {"steps": steps, "chunk": CHUNK, "r": R}


def buggy_reason(analysis: str) -> str:
    """AIDE's own review, cut to its first sentence: why a step with no exception is buggy.

    Without it the step's header said only "buggy (no exception)" and the reason
    was one click and a scroll away, for every such step.
    """
    text = " ".join(analysis.split())
    for end in (". ", "? ", "! "):
        at = text.find(end)
        if 0 < at < _SUMMARY_MESSAGE:
            text = text[: at + 1]
            break
    if len(text) > _SUMMARY_MESSAGE:
        text = text[: _SUMMARY_MESSAGE - 1] + "…"
    return text


def _error_line(n: Node) -> str:
    assert n.error is not None
    msg = n.error.message
    if len(msg) > _SUMMARY_MESSAGE:
        msg = msg[: _SUMMARY_MESSAGE - 1] + "…"
    kind = n.error.type or "error"
    return f"{kind}: {msg}" if msg else kind


def _body(n: Node, by_id: Mapping[str, int]) -> dict[str, Any]:
    """What opening a step shows; short keys keep the page small."""
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
            "f": [_frame_text(f) for f in n.error.stack],
        }
        lines = [
            f.line
            for f in n.error.stack
            if f.line is not None and (f.file or "").endswith(AIDE_SCRIPT)
        ]
        if lines:
            item["h"] = lines
    if n.parent_id is not None and n.parent_id in by_id:
        item["u"] = by_id[n.parent_id]
    kids = [by_id[c] for c in n.children_ids if c in by_id]
    if kids:
        item["k"] = kids
    return item


def _frame_text(frame: Any) -> str:
    source = f" — {frame.source.strip()}" if frame.source else ""
    return f"{frame.location}{source}"
