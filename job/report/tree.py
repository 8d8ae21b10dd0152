"""Lay out and draw AIDE's solution tree as SVG (drafts on top, children below).

The layout is the classic "leaves in a row, parents centred over their
children": it needs one pass, no recursion (trees thousands of steps deep
exist), and its width is the number of leaves, so wide trees scroll sideways.
Malformed journals (a parent that is missing, or a cycle in ``node2parent``)
still draw: whatever cannot be reached from a draft becomes a root of its own.

Only positions and edges are drawn here; the page's script draws the nodes
that are in view (a 5,000-step tree would otherwise put ~20,000 SVG elements
through layout on load). Each node it draws is a link to its step
(``#node-<index>``).
"""

from __future__ import annotations

from dataclasses import dataclass

from job.model.journal import Journal, Node

DX = 34  # horizontal distance between leaves
DY = 56  # vertical distance between depths
R = 12  # node radius
MARGIN = 26
#: Height of the metric label drawn under a node (the page's script puts its baseline
#: at y + R + 11): edges leave such a node below it, so no edge runs through a label.
LABEL = 14


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


def shows_metric(node: Node) -> bool:
    """The page labels a node with its metric when it has one and is not buggy."""
    return node.metric.value is not None and node.is_buggy is not True


def node_class(node: Node, best_index: int | None) -> str:
    if node.index == best_index:
        return "best"
    if node.is_buggy is True:
        return "buggy"
    if node.is_buggy is False:
        return "valid"
    return "unknown"


def edges_svg(journal: Journal, pos: list[Placed], children: list[list[int]]) -> str:
    """The tree's edges as two ``<path>`` elements (improve/draft and debug edges).

    One element per kind whatever the size: thousands of separate lines would
    each cost layout and hit-testing; a path costs one.
    """
    nodes = journal.nodes
    improve, debug = [], []
    for parent, kids in enumerate(children):
        p = pos[parent]
        # Straight down through the band where labels sit (an unlabelled parent's own
        # band is empty), then across: a slanted edge would cut a neighbour's label.
        below = p.y + R + LABEL
        drop = f"V{below:.0f}" if not shows_metric(nodes[parent]) else ""
        start = p.y + R if drop else below
        for c in kids:
            q = pos[c]
            seg = f"M{p.x:.0f} {start:.0f}{drop}L{q.x:.0f} {q.y - R:.0f}"
            (debug if nodes[parent].is_buggy else improve).append(seg)
    out = []
    if improve:
        out.append(f'<path class="edge" d="{"".join(improve)}"/>')
    if debug:
        out.append(f'<path class="edge debug" d="{"".join(debug)}"/>')
    return "".join(out)
