"""Render one journal as a plain-text report that reads well in a terminal and on a share.

The report is written straight to a file object, section by section, and long
texts (terminal output can be most of a 50 MB journal) go out in bounded chunks,
so rendering never holds a second full copy of the journal in memory.

Plain means plain: ANSI escape sequences (colours, cursor moves from progress
bars) are removed, carriage returns become line breaks and other control
characters are shown as ``\\xNN``, so ``less`` or an editor shows what the step
printed without being driven by it. Nothing else is dropped.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, BinaryIO

from job.core.atomic_stream import ENCODE_ERRORS
from job.core.errors import Cancelled
from job.core.textsafe import INVISIBLE_CLASS, visible_escape
from job.model.journal import Journal, Node, StepError
from job.model.layout import Layout

#: Bump when the report's content changes: reports of an older format are rewritten.
REPORT_FORMAT = 2  # 2: an HTML page beside every text report
WIDTH = 80
INDENT = "    "
END_MARKER = "End of report."
_CHUNK = 1 << 20
_LABEL = 18
_RULE = "=" * WIDTH
_CONTINUED = "\n" + " " * _LABEL
_PLAN, _CODE, _OUTPUT, _ANALYSIS = (
    f"\n{title}\n".encode() for title in ("Plan", "Code", "Terminal output", "Analysis")
)

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|[@-_])")
_LINE_START = re.compile(r"\n(?=[^\n])")
_CONTROL = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f{INVISIBLE_CLASS}]")
# What clean_text would change, as bytes of UTF-8 text: C0 controls but tab and
# newline (so CR and ESC too), and DEL; C1 controls are two bytes, found by _C1.
_ASCII_CONTROLS = bytes(range(0x00, 0x09)) + bytes(range(0x0B, 0x20)) + b"\x7f"
_C1 = re.compile(f"[{INVISIBLE_CLASS}]")  # C1 controls, bidi overrides, zero-width...


def render_report(journal: Journal, layout: Layout) -> str:
    """The whole report as one string (for small journals and tests)."""
    buf = io.BytesIO()
    write_report(buf, journal, layout)
    return buf.getvalue().decode("utf-8")


def write_report(
    out: BinaryIO,
    journal: Journal,
    layout: Layout,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Write the report as UTF-8; raises :class:`Cancelled` between steps once ``should_stop()``.

    Each step is assembled as one string and encoded once; big text blocks go
    through :func:`block_bytes`, which does its work with bytes methods (C loops)
    instead of a regular expression per chunk: the report used to cost more
    than reading the journal did.
    """
    text = _Text()
    _header(text, journal, layout)
    if not journal.nodes:
        text.write("\nThis journal has no steps: its 'nodes' list is empty.\n")
        text.write("AIDE recorded nothing, so there is no plan, code or output to show.\n")
    else:
        _overview(text, journal)
    out.write(text.take())
    if journal.nodes:
        steps = {n.id: n.step for n in reversed(journal.nodes) if n.id is not None}
        for node in journal.nodes:
            if should_stop is not None and should_stop():
                raise Cancelled("stop requested while writing a report")
            _step(text, node, steps, out)
    out.write(f"\n{'=' * WIDTH}\n{END_MARKER}\n".encode())


class _Text:
    """Collects short pieces of text and writes them to the file encoded in one go."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.write = self.parts.append

    def take(self) -> bytes:
        """Everything written so far, encoded; the collector is empty afterwards."""
        data = encode("".join(self.parts))
        self.parts.clear()
        return data


def encode(text: str) -> bytes:
    return text.encode("utf-8", ENCODE_ERRORS)


# -- header -------------------------------------------------------------------------


def _header(out: _Text, journal: Journal, layout: Layout) -> None:
    title = f"AIDE journal report: {_inline(layout.task_id or layout.run_id or layout.journal)}"
    out.write(f"{'=' * WIDTH}\n{title}\n{'=' * WIDTH}\n\n")
    best = journal.best_node
    rows: list[tuple[str, str | Iterable[str]]] = [
        ("Run group", _known(layout.run_group)),
        ("Agent", _known(layout.agent)),
        ("Domain", _known(layout.domain)),
        ("Task", _known(layout.task)),
        ("Task id", _known(layout.task_id)),
        ("Run folder", _inline(layout.run_folder) or "(the failed-runs folder itself)"),
        ("Run id", _known(layout.run_id)),
        ("Run uuid", _known(layout.run_uuid)),
        ("Experiment", _inline(layout.experiment)),
        ("Journal", _inline(layout.journal)),
        ("Journal format", _known(journal.version)),
        ("Steps", str(journal.step_count)),
        ("Buggy steps", str(journal.buggy_count)),
        ("Best metric", _best(best)),
        ("Exceptions", _exceptions(journal.exception_counts)),
        ("Layout warnings", [_inline(w) for w in layout.warnings] or "none"),
        ("Journal warnings", [_inline(w) for w in journal.warnings] or "none"),
    ]
    for label, value in rows:
        _field(out, label, value)


def _best(best: Node | None) -> str:
    if best is None:
        return "none (no step without a bug has a comparable metric)"
    return f"{_number(best.metric.value)} at step {best.step} ({best.metric.direction})"


def _exceptions(counts: Mapping[str, int]) -> str | list[str]:
    if not counts:
        return "none"
    return [f"{_inline(name)}: {count}" for name, count in counts.items()]


def _overview(out: _Text, journal: Journal) -> None:
    """One line per step, so the shape of the search is visible before the details."""
    out.write(f"\n{'-' * WIDTH}\nSteps at a glance\n{'-' * WIDTH}\n")
    metrics = ["-" if n.metric.value is None else _number(n.metric.value) for n in journal.nodes]
    # As wide as the longest metric (0.7179789213213216 is 18 characters), so the
    # error column stays one column however precise the metric is.
    width = max([10, *map(len, metrics)])
    out.write(f"{'step':>6}  {'stage':<8} {'parent':>6}  {'buggy':<7} {'metric':<{width}} error\n")
    for node, metric in zip(journal.nodes, metrics, strict=True):
        parent = "-" if node.parent_step is None else str(node.parent_step)
        error = "-" if node.error is None else _inline(node.error.type or "(untyped)")
        out.write(
            f"{node.step:>6}  {node.stage.value:<8} {parent:>6}  "
            f"{_yes_no(node.is_buggy):<7} {metric:<{width}} {error}\n"
        )


# -- steps --------------------------------------------------------------------------


def _step(text: _Text, node: Node, steps: Mapping[str, int], out: BinaryIO) -> None:
    when = node.created_at
    stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z") if when else None
    children = [f"step {steps[c]} ({_inline(c)})" for c in node.children_ids if c in steps]
    exec_time = "unknown" if node.exec_time is None else f"{node.exec_time:.3f} s"
    # One template per step (this runs for every step of every journal); the
    # layout is _field's: labels padded to _LABEL, continuation lines aligned.
    text.write(
        f"\n{_RULE}\nStep {node.step}\n{_RULE}\n"
        f"Time (UTC)        {stamp or _unreadable_time(node.ctime)}\n"
        f"Stage             {_stage(node)}\n"
        f"Node id           {_known(node.id)}\n"
        f"Children          {_CONTINUED.join(children) if children else 'none'}\n"
        f"Buggy             {_yes_no(node.is_buggy)}\n"
        f"Execution time    {exec_time}\n"
        f"Metric            {_metric(node)}\n"
        f"Error             {_error_line(node.error)}\n"
    )
    parts = [text.take(), _PLAN]
    block_parts(node.plan, parts)
    parts.append(_CODE)
    block_parts(node.code, parts)
    parts.append(_OUTPUT)
    block_parts(node.term_out, parts)
    parts.append(_ANALYSIS)
    block_parts(node.analysis, parts)
    if node.error is not None:
        text.write("\nError details\n")
        _error_details(text, node.error)
        parts.append(text.take())
    out.writelines(parts)  # no join: a 50 MB output block is not copied again


def _stage(node: Node) -> str:
    if node.parent_step is None:
        if node.parent_id is not None:
            return f"{node.stage.value} (parent {_inline(node.parent_id)} is not in the journal)"
        return node.stage.value
    return f"{node.stage.value} (parent: step {node.parent_step})"


def _metric(node: Node) -> str:
    if node.metric.value is None:
        return "none"
    return f"{_number(node.metric.value)} ({node.metric.direction})"


def _error_line(error: StepError | None) -> str:
    if error is None:
        return "none"
    kind = _inline(error.type or "(no exception type)")
    return f"{kind}: {_inline(error.message)}" if error.message else kind


_TYPE = f"{INDENT}{'Type':<{_LABEL}}"
_MESSAGE = f"{INDENT}{'Message':<{_LABEL}}"
_INFO = f"{INDENT}{'Info':<{_LABEL}}"
_INFO_MORE = "\n" + " " * (len(INDENT) + _LABEL)
_NO_STACK = f"{INDENT}{'Stack':<{_LABEL}}none\n"
_STACK = f"{INDENT}Stack (most recent call last)\n"
_FRAME = INDENT * 2
_FRAME_SOURCE = "\n" + INDENT * 3


def _error_details(out: _Text, error: StepError) -> None:
    """:func:`_field` rows and the stack, in one string: about half the steps have one."""
    info = [f"{_inline(k)}: {_inline(_json_inline(v))}" for k, v in error.info.items()]
    parts = [
        f"{_TYPE}{_known(error.type)}\n{_MESSAGE}{_inline(error.message) or 'none'}\n"
        f"{_INFO}{_INFO_MORE.join(info) if info else 'none'}\n"
    ]
    if not error.stack:
        parts.append(_NO_STACK)
    else:
        parts.append(_STACK)
        for frame in error.stack:
            where = _inline(frame.location)
            if frame.source:
                parts.append(f"{_FRAME}{where}{_FRAME_SOURCE}{_inline(frame.source.strip())}\n")
            else:
                parts.append(f"{_FRAME}{where}\n")
    out.write("".join(parts))


# -- text helpers -------------------------------------------------------------------


def block_parts(text: str | None, parts: list[bytes], indent: str = INDENT) -> None:
    """Append the indented, cleaned, UTF-8 copy of ``text`` to ``parts``.

    Long texts are cut at line breaks into chunks of :data:`_CHUNK` characters,
    so no step's output is ever copied whole more than once. Blank lines stay
    empty (no trailing indentation).
    """
    if text is None:
        parts.append(f"{indent}(not recorded)\n".encode())
        return
    if not text or text.isspace():
        parts.append(f"{indent}(empty)\n".encode())
        return
    ind = indent.encode()
    if len(text) <= _CHUNK:  # nearly every block: the loop below, for one chunk
        data = _clean_bytes(text)
        if data:
            if not data.startswith(b"\n"):
                parts.append(ind)
            parts += (_indent(data[:-1] if data.endswith(b"\n") else data, ind), b"\n")
        return
    at_line_start = True
    start, size = 0, len(text)
    while start < size:
        end = size if size - start <= _CHUNK else _chunk_end(text, start, size)
        data = _clean_bytes(text[start:end] if start or end < size else text)
        start = end
        if not data:
            continue
        if at_line_start and not data.startswith(b"\n"):
            parts.append(ind)
        ends_line = data.endswith(b"\n")
        parts.append(_indent(data[:-1] if ends_line else data, ind))
        if ends_line:
            parts.append(b"\n")
        at_line_start = ends_line
    if not at_line_start:
        parts.append(b"\n")


def block_text(text: str | None, indent: str = INDENT) -> str:
    """:func:`block_parts` as one string (tests, small texts)."""
    parts: list[bytes] = []
    block_parts(text, parts, indent)
    return b"".join(parts).decode("utf-8")


def _clean_bytes(piece: str) -> bytes:
    """``clean_text(piece)`` encoded; the common clean case is decided with bytes methods."""
    data = encode(piece)
    if len(data.translate(None, _ASCII_CONTROLS)) == len(data) and (
        piece.isascii() or _C1.search(piece) is None
    ):
        return data
    return encode(clean_text(piece))


def _indent(body: bytes, ind: bytes) -> bytes:
    """Indent every line after the first that has content (the caller indents the first)."""
    if b"\n" not in body:
        return body
    out = body.replace(b"\n", b"\n" + ind)
    blank = b"\n" + ind + b"\n"
    if blank in out:
        # Non-overlapping replace fixes every other blank line of a run; twice fixes all.
        out = out.replace(blank, b"\n\n").replace(blank, b"\n\n")
    if out.endswith(b"\n" + ind):
        out = out[: -len(ind)]
    return out


def _chunk_end(text: str, start: int, size: int) -> int:
    end = min(size, start + _CHUNK)
    if end == size:
        return end
    newline = text.rfind("\n", start, end)
    if newline >= start:
        return newline + 1
    # One very long line: cut anywhere, but not between "\r" and "\n" nor inside an
    # escape sequence (those are short, so an ESC near the cut starts the next chunk).
    escape = text.rfind("\x1b", max(start, end - 64), end)
    if escape > start:
        return escape
    if text[end - 1] == "\r":
        end += 1
    return end


def clean_text(text: str) -> str:
    """Remove terminal control sequences; keep everything printable."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if _CONTROL.search(text) is None:  # the common case: nothing to escape, no copy
        return text
    return _CONTROL.sub(lambda m: visible_escape(m.group()), text)


def _inline(text: str) -> str:
    """One line of cleaned text, for header fields (file names may contain anything)."""
    if text.isprintable():  # C-speed test; no control character, line break or escape
        return text
    return clean_text(text.replace("\r", "\\r").replace("\n", "\\n"))


def _field(out: _Text, label: str, value: str | Iterable[str], indent: str = "") -> None:
    lines = [value] if isinstance(value, str) else list(value)
    pad = " " * (len(indent) + _LABEL)
    out.write(f"{indent}{label:<{_LABEL}}{lines[0] if lines else ''}\n")
    for line in lines[1:]:
        out.write(f"{pad}{line}\n")


def _known(value: str | None) -> str:
    return "unknown" if value is None else _inline(value)


def _yes_no(flag: bool | None) -> str:
    return "unknown" if flag is None else ("yes" if flag else "no")


def _number(value: float | None) -> str:
    if value is None:
        return "none"
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _unreadable_time(ctime: float | None) -> str:
    return "unknown" if ctime is None else f"{ctime!r} (not a valid time)"


def _json_inline(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:  # circular (cannot happen for decoded JSON) or similar
        return repr(value)
