"""Bar charts as inline SVG, drawn in Python: no chart library, no script, any size.

Charts are static markup so the index page shows its answer before any script
runs, and stays light with thousands of runs (a chart has at most a few dozen
bars, whatever the data size). Every bar carries a ``<title>`` with exact
numbers (hover tooltip, screen readers); labels too long for the label column
are shortened, with the full text in the tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from job.report.html import esc, plural

#: Okabe–Ito-based palette (colour-blind safe), then extras; "other" is grey.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#8C6D31",
    "#F0E442",
    "#6A3D9A",
    "#B2182B",
    "#BCBD22",
    "#17BECF",
    "#E7298A",
    "#66A61E",
    "#1F3A93",
    "#A65628",
)
OTHER_COLOUR = "#9A9A9A"
OTHER = "other"

_WIDTH = 760
_ROW_H = 22
_BAR_H = 15
_LABEL_W = 270
_VALUE_W = 150
_CHAR_W = 7.4  # generous average glyph width of the 12px sans font, for truncation


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    note: str = ""  # shown after the value, e.g. "in 45 runs"
    href: str | None = None


@dataclass(frozen=True)
class Stack:
    label: str
    parts: Mapping[str, int]  # series -> count
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def colours(series: Sequence[str]) -> dict[str, str]:
    """A fixed colour per series, in order; ``other`` is always grey."""
    out: dict[str, str] = {}
    i = 0
    for name in series:
        if name == OTHER:
            out[name] = OTHER_COLOUR
        else:
            out[name] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def _fit(text: str, width: float) -> str:
    limit = max(4, int(width / _CHAR_W))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    colour: str = PALETTE[0],
    width: int = _WIDTH,
    label_width: int = _LABEL_W,
) -> str:
    """Horizontal bars, in the order given; the value and note follow each bar."""
    if not bars:
        return _empty(title)
    top = max(b.value for b in bars) or 1
    span = width - label_width - _VALUE_W
    height = len(bars) * _ROW_H + 6
    out = [_open(title, height, width)]
    for i, b in enumerate(bars):
        y = 3 + i * _ROW_H
        w = max(1.0, span * b.value / top) if b.value else 0.0
        text = f"{b.value:,}" + (f" · {b.note}" if b.note else "")
        tip = f"{b.label}: {text}"
        label = esc(_fit(b.label, label_width - 8))
        out.append(f"<g><title>{esc(tip)}</title>")
        out.append(
            f'<text x="{label_width - 8}" y="{y + _BAR_H - 3}" text-anchor="end" class="lbl">{label}</text>'
        )
        out.append(
            f'<rect x="{label_width}" y="{y}" width="{w:.1f}" height="{_BAR_H}" rx="2" fill="{colour}"/>'
        )
        out.append(
            f'<text x="{label_width + w + 6:.1f}" y="{y + _BAR_H - 3}" class="val">{esc(text)}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)


def stacked_chart(
    stacks: Sequence[Stack],
    *,
    title: str,
    series: Sequence[str],
    normalise: bool = True,
    width: int = 940,
    label_width: int = 300,
    value_width: int = 250,
    unit: str = "",
) -> str:
    """One horizontal bar per row split by series (100% wide when ``normalise``).

    Normalised bars compare *why* groups fail whatever their size (an agent with 3
    runs next to one with 3,000); the note carries the absolute numbers.
    """
    if not stacks:
        return _empty(title)
    palette = colours(series)
    span = width - label_width - value_width
    top = max((sum(s.parts.values()) for s in stacks), default=1) or 1
    legend_h = _legend_height(series, width)
    height = legend_h + len(stacks) * _ROW_H + 6
    out = [_open(title, height, width), _legend(series, palette, width)]
    for i, s in enumerate(stacks):
        y = legend_h + 3 + i * _ROW_H
        total = sum(s.parts.values())
        scale = span / (total if normalise else top) if total else 0.0
        out.append(
            f'<text x="{label_width - 8}" y="{y + _BAR_H - 3}" text-anchor="end" class="lbl">'
            f"<title>{esc(s.label)}</title>{esc(_fit(s.label, label_width - 8))}</text>"
        )
        x = float(label_width)
        for name in series:
            count = s.parts.get(name, 0)
            if not count:
                continue
            w = count * scale
            share = 100.0 * count / total
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{max(w, 0.5):.1f}" height="{_BAR_H}" '
                f'fill="{palette[name]}"><title>{esc(s.label)} — {esc(name)}: {count:,} '
                f"({share:.0f}%)</title></rect>"
            )
            x += w
        note = (plural(total, unit.removesuffix("s"), unit) if unit else f"{total:,}") + (
            f" · {s.note}" if s.note else ""
        )
        out.append(
            f'<text x="{(width - value_width if normalise else x) + 6:.1f}" y="{y + _BAR_H - 3}" '
            f'class="val">{esc(note)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def column_chart(stacks: Sequence[Stack], *, title: str, series: Sequence[str]) -> str:
    """Vertical stacked columns (time goes left to right), absolute heights."""
    if not stacks:
        return _empty(title)
    palette = colours(series)
    legend_h = _legend_height(series) + 10
    plot_h = 170
    axis_h = 34
    left = 48
    n = len(stacks)
    # Columns share the whole width (a few columns used to huddle at the left); a
    # column is at most 56 px wide and sits centred in its slot.
    slot = max(6.0, (_WIDTH - left - 10) / n)
    bar = min(56.0, slot - 2)
    width = max(_WIDTH, int(left + slot * n + 10))
    height = legend_h + plot_h + axis_h
    step, top = nice_scale(max(sum(s.parts.values()) for s in stacks))
    base = legend_h + plot_h
    out = [_open(title, height, width), _legend(series, palette)]
    for tick in range(step, top + 1, step):
        y = base - plot_h * tick / top
        out.append(
            f'<line x1="{left}" x2="{width - 6}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="val">'
            f"{tick:,}</text>"
        )
    out.append(f'<line x1="{left}" x2="{width - 6}" y1="{base}" y2="{base}" class="axis"/>')
    widest = max(len(s.label) for s in stacks) * 6.0 + 8  # 10px tick font
    every = max(1, math.ceil(widest / slot))  # labels never overlap
    for i, s in enumerate(stacks):
        x = left + i * slot + (slot - bar) / 2
        y = float(base)
        total = sum(s.parts.values())
        tip = f"{s.label}: {total:,}" + (f" · {s.note}" if s.note else "")
        out.append(f"<g><title>{esc(tip)}</title>")
        for name in series:
            count = s.parts.get(name, 0)
            if not count:
                continue
            h = plot_h * count / top
            y -= h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{max(h, 0.5):.1f}" '
                f'fill="{palette[name]}"/>'
            )
        out.append("</g>")
        if i % every == 0:
            out.append(
                f'<text x="{x + bar / 2:.1f}" y="{base + 14}" text-anchor="middle" '
                f'class="tick">{esc(s.label)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def nice_scale(largest: int, ticks: int = 4) -> tuple[int, int]:
    """A round tick step (1, 2 or 5 times a power of ten) and the axis top it reaches.

    Ticks at 28 and 55 (halves of the largest column) made the chart hard to read;
    people count in 10s, 20s, 50s.
    """
    rough = max(largest, 1) / ticks
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    step = max(1, int(step))
    return step, step * math.ceil(max(largest, 1) / step)


def _legend_height(series: Sequence[str], width: int = _WIDTH) -> int:
    rows, x = 1, 0.0
    for name in series:
        w = 22 + len(name) * _CHAR_W + 14
        if x + w > width:
            rows, x = rows + 1, 0.0
        x += w
    return rows * 18 + 6


def _legend(series: Sequence[str], palette: Mapping[str, str], width: int = _WIDTH) -> str:
    out = ['<g class="legend">']
    x, y = 0.0, 2
    for name in series:
        w = 22 + len(name) * _CHAR_W + 14
        if x + w > width:
            x, y = 0.0, y + 18
        out.append(
            f'<rect x="{x:.1f}" y="{y + 2}" width="12" height="12" rx="2" fill="{palette[name]}"/>'
            f'<text x="{x + 17:.1f}" y="{y + 12}" class="lbl">{esc(name)}</text>'
        )
        x += w
    out.append("</g>")
    return "".join(out)


def _open(title: str, height: float, width: int = _WIDTH) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height:.0f}" width="{width}" '
        f'height="{height:.0f}" role="img" aria-label="{esc(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{esc(title)}</title>'
    )


def _empty(title: str) -> str:
    return f'<p class="empty">{esc(title)}: nothing to show.</p>'
