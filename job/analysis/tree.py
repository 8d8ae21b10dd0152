"""Lay out and draw AIDE's solution tree as SVG (drafts on top, children below).

The layout is the classic "leaves in a row, parents centred over their
children": it needs one pass, no recursion (trees thousands of steps deep
exist), and its width is the number of leaves, so wide trees scroll sideways.
Malformed journals (a parent that is missing, or a cycle in ``node2parent``)
still draw: whatever cannot be reached from a draft becomes a root of its own.

Each node is a link to its step (``#node-<index>``), so clicking it works even
without script; the page's script then opens the step.
"""

from __future__ import annotations

from dataclasses import dataclass

from job.analysis.html import esc, fmt_metric
from job.journal import Journal, Node

DX = 34  # horizontal distance between leaves
DY = 56  # vertical distance between depths
R = 12  # node radius
MARGIN = 26


@dataclass(frozen=True)
class Placed:
    x: float
    y: float


def layout(journal: Journal) -> tuple[list[Placed], list[list[int]], float, float]:
    """Positions per node index, the children of each node, and the drawing's size."""
    nodes = journal.nodes
    by_id = {n.id: n.index for n in reversed(nodes) if n.id is not None}  # first id wins
    children: list[list[int]] = [[] for _ in nodes]
    roots: list[int] = []
    for n in nodes:
        parent = by_id.get(n.parent_id) if n.parent_id is not None else None
        if parent is None or parent == n.index:
            roots.append(n.index)
        else:
            children[parent].append(n.index)
    for kids in children:
        kids.sort(key=lambda i: (nodes[i].step, i))

    xs = [0.0] * len(nodes)
    depth = [0] * len(nodes)
    placed = [False] * len(nodes)
    next_slot = 0.0
    # Drafts first; then anything a cycle made unreachable becomes a root of its own.
    for root in [*roots, *range(len(nodes))]:
        if placed[root]:
            continue
        next_slot = _place_subtree(root, children, xs, depth, placed, next_slot)
        next_slot += 0.6  # a little air between separate drafts
    width = max(next_slot - 0.6, 1.0) * DX + 2 * MARGIN
    height = (max(depth, default=0) + 1) * DY + 2 * MARGIN - DY + 2 * R + 14
    positions = [
        Placed(MARGIN + x * DX + R, MARGIN + d * DY + R) for x, d in zip(xs, depth, strict=True)
    ]
    return positions, children, width, height


def _place_subtree(
    root: int,
    children: list[list[int]],
    xs: list[float],
    depth: list[int],
    placed: list[bool],
    next_slot: float,
) -> float:
    """Iterative post-order: leaves take the next slot, parents sit over their children."""
    placed[root] = True
    depth[root] = 0
    stack: list[tuple[int, int]] = [(root, 0)]  # (node, index of the next child to visit)
    while stack:
        node, k = stack[-1]
        kids = children[node]
        while k < len(kids) and placed[kids[k]]:
            k += 1  # a child reached twice (cycle guard) is drawn once
        if k < len(kids):
            stack[-1] = (node, k + 1)
            child = kids[k]
            placed[child] = True
            depth[child] = depth[node] + 1
            stack.append((child, 0))
            continue
        stack.pop()
        # Children placed from here (not a cycle's way back to an ancestor).
        mine = [c for c in kids if depth[c] == depth[node] + 1]
        if mine:
            xs[node] = (xs[mine[0]] + xs[mine[-1]]) / 2
        else:
            xs[node] = next_slot
            next_slot += 1
    return next_slot


def node_class(node: Node, best_index: int | None) -> str:
    if node.index == best_index:
        return "best"
    if node.is_buggy is True:
        return "buggy"
    if node.is_buggy is False:
        return "valid"
    return "unknown"


def tree_svg(journal: Journal) -> str:
    """The whole tree; one ``<path>`` per edge kind keeps the element count low."""
    nodes = journal.nodes
    if not nodes:
        return '<p class="empty">This journal has no steps.</p>'
    pos, children, width, height = layout(journal)
    improve, debug = [], []
    for parent, kids in enumerate(children):
        p = pos[parent]
        for c in kids:
            q = pos[c]
            seg = f"M{p.x:.0f} {p.y + R:.0f}L{q.x:.0f} {q.y - R:.0f}"
            (debug if nodes[parent].is_buggy else improve).append(seg)
    out = [
        f'<svg id="tree" class="tree" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="Solution tree of {len(nodes)} steps" xmlns="http://www.w3.org/2000/svg">',
        f'<path class="edge" d="{"".join(improve)}"/>' if improve else "",
        f'<path class="edge debug" d="{"".join(debug)}"/>' if debug else "",
    ]
    best = journal.best_index
    for n in nodes:
        p = pos[n.index]
        cls = node_class(n, best)
        tip = _tooltip(n, cls)
        out.append(
            f'<a href="#node-{n.index}" class="tn {cls}" data-i="{n.index}" aria-label="{esc(tip)}">'
            f"<title>{esc(tip)}</title>"
            f'<circle cx="{p.x:.0f}" cy="{p.y:.0f}" r="{R}"/>'
            f'<text x="{p.x:.0f}" y="{p.y + 4:.0f}" class="sn">{n.step}</text>'
        )
        if n.metric.value is not None and n.is_buggy is not True:
            out.append(
                f'<text x="{p.x:.0f}" y="{p.y + R + 11:.0f}" class="mv">{fmt_metric(n.metric.value)}</text>'
            )
        out.append("</a>")
    out.append("</svg>")
    return "".join(out)


def _tooltip(n: Node, cls: str) -> str:
    parts = [f"Step {n.step}", str(n.stage), cls]
    if n.metric.value is not None:
        parts.append(f"metric {fmt_metric(n.metric.value)}")
    if n.error is not None:
        msg = n.error.message if len(n.error.message) <= 120 else n.error.message[:119] + "…"
        parts.append(f"{n.error.type or 'error'}: {msg}" if msg else (n.error.type or "error"))
    return " · ".join(parts)
