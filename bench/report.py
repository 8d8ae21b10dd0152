"""Plain-text tables for the terminal; the same numbers go to ``--json``."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from bench.runner import MB, Series


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def contender_table(
    series: Sequence[Series], volume_bytes: int, volume_label: str = "MB/s extr"
) -> str:
    head = f"{'contender':<10} {'median s':>9} {'min s':>8} {volume_label:>10} {'max RSS MB':>11} {'sum RSS MB':>11}  status"
    lines = [head, "-" * len(head)]
    for s in series:
        median = s.median
        rate = volume_bytes / MB / median if median else None
        status = "ok" if s.ok else ("FAILED: " + (s.errors[0].splitlines()[0] if s.errors else "?"))
        if not s.ok and s.good:
            status = f"{len(s.good)}/{len(s.runs)} ok: " + s.errors[0].splitlines()[0]
        lines.append(
            f"{s.name:<10} {_num(median):>9} {_num(s.best):>8} {_num(rate, '{:.1f}'):>10} "
            f"{_num(s.rss_max_mb, '{:.0f}'):>11} {_num(s.rss_sum_mb, '{:.0f}'):>11}  {status}"
        )
    return "\n".join(lines)


def ratio_lines(
    results: dict[str, Series], parse: dict[str, Series]
) -> tuple[list[str], dict[str, float | None]]:
    """The headline ratios: job vs plain tools, and run vs the old way end to end."""

    def med(name: str, where: dict[str, Series]) -> float | None:
        return where[name].median if name in where else None

    old_total = None
    if med("old", results) is not None and med("old_parse", parse) is not None:
        old_total = med("old", results) + med("old_parse", parse)  # type: ignore[operator]
    apart = None  # download, then a separate parse: what `run` overlaps
    if med("download", results) is not None and med("parse", parse) is not None:
        apart = med("download", results) + med("parse", parse)  # type: ignore[operator]
    ratios = {
        "download/pipeline": ratio(med("download", results), med("pipeline", results)),
        "download/old": ratio(med("download", results), med("old", results)),
        "pipeline/old": ratio(med("pipeline", results), med("old", results)),
        "download/floor": ratio(med("download", results), med("floor", results)),
        "run/(old+old_parse)": ratio(med("run", results), old_total),
        "parse/old_parse": ratio(med("parse", parse), med("old_parse", parse)),
        "run/(download+parse)": ratio(med("run", results), apart),
    }
    lines = [f"  {k:<22} {_num(v, '{:.2f}x')}" for k, v in ratios.items()]
    return lines, ratios


def paired_ratios(
    results: dict[str, Series], parse: dict[str, Series]
) -> tuple[list[str], dict[str, dict[str, float] | None]]:
    """The same ratios round by round, between runs made next to each other.

    This machine's speed drifts by more than some of the differences the bench
    is asked about (a whole run of rounds can be 1.5x slower for CPU-heavy
    contenders), so a ratio of medians alone can hide that its rounds disagree.
    Each round's pair ran back to back; their spread shows what is the machine.
    ``run/(old+old_parse)`` adds the baseline parse of the same round number
    (its own section; it is a few percent of the old way).
    """

    def rounds(name: str, where: dict[str, Series]) -> list[float | None]:
        series = where.get(name)
        return [m.seconds if m.ok else None for m in series.runs] if series else []

    old_total = [
        a + b if a is not None and b is not None else None
        for a, b in zip(rounds("old", results), rounds("old_parse", parse), strict=False)
    ]
    pairs = {
        "download/pipeline": (rounds("download", results), rounds("pipeline", results)),
        "download/floor": (rounds("download", results), rounds("floor", results)),
        "run/(old+old_parse)": (rounds("run", results), old_total),
        "parse/old_parse": (rounds("parse", parse), rounds("old_parse", parse)),
    }
    spread: dict[str, dict[str, float] | None] = {}
    lines = []
    for name, (a, b) in pairs.items():
        values = [x / y for x, y in zip(a, b, strict=False) if x is not None and y]
        if not values:
            spread[name] = None
            lines.append(f"  {name:<22} -")
            continue
        spread[name] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "rounds": len(values),
        }
        lines.append(
            f"  {name:<22} {min(values):.2f}x .. {max(values):.2f}x, "
            f"median {statistics.median(values):.2f}x ({len(values)} rounds)"
        )
    return lines, spread
