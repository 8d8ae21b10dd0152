"""The AIDE journal as typed, normalised data: the one model every renderer reads.

AIDE (0.2.x) serialises its search as ``{"nodes": [...], "node2parent": {child:
parent}, "__version": "2"}``. Any node field may be missing or null, and the
``parent``/``children`` fields inside nodes are left empty by AIDE's serializer,
so the tree comes from ``node2parent``. Building the model decides, once, what
the text report and later the HTML pages must agree on: each step's stage (as
AIDE defines it), its parent and children, its error type and message, and the
best node.

Memory: a long run's journal is tens of MB. :func:`read_journal` drops the raw
bytes before building the model, and building empties the raw node list as it
goes, so at any time there is about one decoded copy of the journal in memory.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

from job.core.errors import ItemError
from job.model.exc_message import error_message
from job.model.jsondecode import decode_json
from job.model.jsonshape import describe, is_a, is_number, number, optional, to_float


class Stage(StrEnum):
    """AIDE's ``Node.stage_name``: no parent -> draft; buggy parent -> debug; else improve."""

    DRAFT = "draft"
    DEBUG = "debug"
    IMPROVE = "improve"
    UNKNOWN = "unknown"  # the parent named in node2parent is not in the journal


@dataclass(frozen=True, slots=True)
class Metric:
    value: float | None = None  # may be nan/inf when the journal says so
    maximize: bool | None = None

    @property
    def direction(self) -> str:
        if self.maximize is None:
            return "direction unknown"
        return "higher is better" if self.maximize else "lower is better"

    @property
    def comparable(self) -> bool:
        """Only finite values can be ranked; nan and inf never make a step "best"."""
        return self.value is not None and math.isfinite(self.value)


@dataclass(frozen=True, slots=True)
class ExcFrame:
    """One traceback frame as AIDE stores it: ``[file, line, function, source]``."""

    file: str | None
    line: int | None
    function: str | None
    source: str | None

    @property
    def location(self) -> str:
        return f"{self.file or '?'}:{'?' if self.line is None else self.line} in {self.function or '?'}"


@dataclass(frozen=True, slots=True)
class StepError:
    type: str | None  # AIDE's exc_type, e.g. "KeyError"
    message: str  # one line; "" when the journal has nothing to say
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)  # exc_info as stored
    stack: tuple[ExcFrame, ...] = ()  # outermost call first, as AIDE stores it


@dataclass(frozen=True, slots=True)
class Node:
    """One step of the search."""

    index: int  # position in the journal's node list
    step: int  # AIDE's step number (the position when the journal has none)
    id: str | None
    parent_id: str | None
    children_ids: tuple[str, ...]
    parent_step: int | None
    stage: Stage
    ctime: float | None  # seconds since the epoch, UTC
    plan: str | None
    code: str | None
    term_out: str | None  # AIDE's ``_term_out`` pieces joined
    analysis: str | None
    exec_time: float | None  # seconds
    error: StepError | None
    metric: Metric
    is_buggy: bool | None

    @property
    def created_at(self) -> datetime | None:
        """``ctime`` as an aware UTC datetime; None when missing or out of range."""
        if self.ctime is None or not math.isfinite(self.ctime):
            return None
        try:
            return datetime.fromtimestamp(self.ctime, UTC)
        except (OverflowError, OSError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class Journal:
    nodes: tuple[Node, ...]
    version: str | None  # the journal's ``__version``
    best_index: int | None  # position of the best node (see :func:`pick_best`)
    exception_counts: Mapping[str, int]  # exc_type -> steps, most frequent first
    warnings: tuple[str, ...] = ()

    @property
    def step_count(self) -> int:
        return len(self.nodes)

    @property
    def buggy_count(self) -> int:
        return sum(1 for n in self.nodes if n.is_buggy is True)

    @property
    def best_node(self) -> Node | None:
        return None if self.best_index is None else self.nodes[self.best_index]

    @property
    def best_node_id(self) -> str | None:
        best = self.best_node
        return None if best is None else best.id

    @property
    def best_metric(self) -> float | None:
        best = self.best_node
        return None if best is None else best.metric.value

    @property
    def drafts(self) -> tuple[Node, ...]:
        """The roots of the solution tree."""
        return tuple(n for n in self.nodes if n.parent_id is None)

    def node_by_id(self, node_id: str) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)


def load_journal(path: Path) -> Journal:
    try:
        with open(path, "rb") as fh:
            return read_journal(fh)
    except OSError as exc:
        raise ItemError(f"cannot read journal: {exc.strerror or exc}") from None


def read_journal(fh: BinaryIO) -> Journal:
    """Read, decode and normalise; the raw bytes are released before normalising."""
    data = fh.read()
    doc = decode_json(data)
    del data
    return build_journal(doc)


def build_journal(doc: Any) -> Journal:
    """Normalise a decoded journal document. Consumes ``doc``'s node list (see module doc).

    Raises :class:`ItemError` when the shape is wrong: not an object, no ``nodes``
    list, a node that is not an object or a field of the wrong type. Missing and
    null fields are fine.
    """
    if not isinstance(doc, dict):
        raise ItemError(f"journal is not a JSON object (found {describe(doc)})")
    raw_nodes = doc.get("nodes")
    if not isinstance(raw_nodes, list):
        raise ItemError("journal has no 'nodes' list")
    warnings: list[str] = []
    version = doc.get("__version")
    if version is not None and str(version) != "2":
        warnings.append(f"journal format version {version!r} is not 2; read as version 2")
    skeleton = _Skeleton.scan(raw_nodes, doc.get("node2parent"), warnings)
    nodes = []
    for index in range(len(raw_nodes)):
        nodes.append(_build_node(index, raw_nodes[index], skeleton, warnings))
        raw_nodes[index] = None  # let the raw pieces (e.g. _term_out lists) go now
    built = tuple(nodes)
    return Journal(
        nodes=built,
        version=None if version is None else str(version),
        best_index=pick_best(built, warnings),
        exception_counts=_count_exceptions(built),
        warnings=tuple(warnings),
    )


def pick_best(nodes: tuple[Node, ...], warnings: list[str]) -> int | None:
    """AIDE's best node: the best finite metric among non-buggy steps, first on ties.

    The direction comes from the steps' own ``maximize``; when none says, or they
    disagree, there is no meaningful "best" and a warning says why.
    """
    candidates = [n for n in nodes if n.is_buggy is False and n.metric.comparable]
    if not candidates:
        return None
    directions = {n.metric.maximize for n in candidates} - {None}
    if len(directions) != 1:
        why = "say whether" if not directions else "disagree on whether"
        warnings.append(f"no best metric: the good steps {why} higher or lower is better")
        return None
    sign = 1.0 if directions.pop() else -1.0
    best = max(candidates, key=lambda n: sign * (n.metric.value or 0.0))
    return best.index


def _count_exceptions(nodes: tuple[Node, ...]) -> dict[str, int]:
    counts = Counter(n.error.type for n in nodes if n.error is not None and n.error.type)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class _Skeleton:
    """Ids, steps and bugginess of every node, read first so stages can be decided."""

    ids: list[str | None]
    steps: list[int]
    buggy: list[bool | None]
    parents: dict[str, str]
    by_id: dict[str, int]
    children: dict[str, list[str]]

    @classmethod
    def scan(cls, raw_nodes: list[Any], node2parent: Any, warnings: list[str]) -> _Skeleton:
        ids, steps, buggy = [], [], []
        for index, raw in enumerate(raw_nodes):
            if not isinstance(raw, dict):
                raise ItemError(f"node {index} is not an object (found {describe(raw)})")
            ids.append(optional(raw, "id", str, index))
            step = optional(raw, "step", int, index)
            steps.append(index if step is None else step)
            buggy.append(optional(raw, "is_buggy", bool, index))
        by_id: dict[str, int] = {}
        for index, node_id in enumerate(ids):
            if node_id is None:
                continue
            if node_id in by_id:
                warnings.append(f"node id {node_id} appears more than once; the first is used")
            else:
                by_id[node_id] = index
        parents = _parents(raw_nodes, ids, node2parent, warnings)
        children: dict[str, list[str]] = {}
        for node_id in ids:
            if node_id is not None and node_id in parents:
                children.setdefault(parents[node_id], []).append(node_id)
        return cls(ids, steps, buggy, parents, by_id, children)


def _parents(
    raw_nodes: list[Any], ids: list[str | None], node2parent: Any, warnings: list[str]
) -> dict[str, str]:
    """child id -> parent id; ``node2parent`` wins over a node's own ``parent`` field."""
    if node2parent is None:
        node2parent = {}
    if not isinstance(node2parent, dict):
        raise ItemError(f"journal's 'node2parent' is not an object (found {describe(node2parent)})")
    parents: dict[str, str] = {}
    for child, parent in node2parent.items():
        if isinstance(parent, str):
            parents[child] = parent
        elif parent is not None:
            warnings.append(f"node2parent entry for {child} is not a node id; ignored")
    for index, raw in enumerate(raw_nodes):
        own = raw.get("parent")
        node_id = ids[index]
        if isinstance(own, dict):  # some serialisers nest the parent node itself
            own = own.get("id")
        if not isinstance(own, str) or node_id is None:
            continue
        if node_id not in parents:
            parents[node_id] = own
        elif parents[node_id] != own:
            warnings.append(
                f"node {node_id}: its 'parent' field disagrees with node2parent; node2parent used"
            )
    return parents


def _build_node(index: int, raw: dict[str, Any], sk: _Skeleton, warnings: list[str]) -> Node:
    node_id = sk.ids[index]
    parent_id = sk.parents.get(node_id) if node_id is not None else None
    parent_index = sk.by_id.get(parent_id) if parent_id is not None else None
    if parent_id is None:
        stage = Stage.DRAFT
    elif parent_index is None:
        stage = Stage.UNKNOWN
        warnings.append(f"step {sk.steps[index]}: parent {parent_id} is not in the journal")
    else:
        stage = Stage.DEBUG if sk.buggy[parent_index] else Stage.IMPROVE
    term_out = _term_out(raw, index)
    return Node(
        index=index,
        step=sk.steps[index],
        id=node_id,
        parent_id=parent_id,
        children_ids=tuple(sk.children.get(node_id, ())) if node_id is not None else (),
        parent_step=None if parent_index is None else sk.steps[parent_index],
        stage=stage,
        ctime=number(raw, "ctime", index),
        plan=optional(raw, "plan", str, index),
        code=optional(raw, "code", str, index),
        term_out=term_out,
        analysis=optional(raw, "analysis", str, index),
        exec_time=number(raw, "exec_time", index),
        error=_error(raw, index, term_out),
        metric=_metric(raw.get("metric"), index),
        is_buggy=sk.buggy[index],
    )


def _term_out(raw: dict[str, Any], index: int) -> str | None:
    pieces = raw.get("_term_out")
    if pieces is None or isinstance(pieces, str):
        return pieces
    if not isinstance(pieces, list):
        raise ItemError(f"node {index}: '_term_out' should be a list of text")
    try:
        return "".join(pieces)  # fails on any non-text piece, without a Python-level scan
    except TypeError:
        raise ItemError(f"node {index}: '_term_out' should be a list of text") from None


def _error(raw: dict[str, Any], index: int, term_out: str | None) -> StepError | None:
    exc_type = optional(raw, "exc_type", str, index)
    info = raw.get("exc_info")
    if info is not None and not isinstance(info, dict):
        raise ItemError(f"node {index}: 'exc_info' should be an object, found {describe(info)}")
    stack = _stack(raw.get("exc_stack"), index)
    if exc_type is None and not info and not stack:
        return None
    return StepError(
        type=exc_type,
        message=error_message(exc_type, info or {}, term_out),
        info=info or {},
        stack=stack,
    )


def _stack(raw: Any, index: int) -> tuple[ExcFrame, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ItemError(f"node {index}: 'exc_stack' should be a list, found {describe(raw)}")
    frames = []
    for frame in raw:
        if type(frame) is list and len(frame) == 4 and _plain_frame(*frame):
            frames.append(ExcFrame(*frame))  # the usual case, checked in one call
            continue
        if not isinstance(frame, list) or len(frame) > 4:
            raise ItemError(
                f"node {index}: 'exc_stack' frames should be [file, line, function, source]"
            )
        file, line, function, source = (list(frame) + [None] * 4)[:4]
        if not (is_a(file, str) and is_a(line, int) and is_a(function, str) and is_a(source, str)):
            raise ItemError(f"node {index}: 'exc_stack' frame has a field of the wrong type")
        frames.append(ExcFrame(file, line, function, source))
    return tuple(frames)


def _plain_frame(file: Any, line: Any, function: Any, source: Any) -> bool:
    """A well-formed frame as a JSON decoder makes it (exact types; see ``_stack``)."""
    return (
        (file is None or type(file) is str)
        and (line is None or type(line) is int)
        and (function is None or type(function) is str)
        and (source is None or type(source) is str)
    )


def _metric(raw: Any, index: int) -> Metric:
    if raw is None:
        return Metric()
    if is_number(raw):  # older serialisers stored the bare value
        return Metric(to_float(raw, f"node {index}: 'metric'"))
    if not isinstance(raw, dict):
        raise ItemError(f"node {index}: 'metric' should be an object, found {describe(raw)}")
    value, maximize = raw.get("value"), raw.get("maximize")
    if value is not None and not is_number(value):
        raise ItemError(f"node {index}: metric 'value' should be a number, found {describe(value)}")
    if maximize is not None and not isinstance(maximize, bool):
        raise ItemError(f"node {index}: metric 'maximize' should be true/false/null")
    value = None if value is None else to_float(value, f"node {index}: metric 'value'")
    return Metric(value, maximize)
